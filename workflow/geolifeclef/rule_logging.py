"""Logging for rule scripts: to the rule's ``log:`` file and to the console."""

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def logging_to(log_file: str | Path | None) -> Iterator[logging.Logger]:
    """Send log records to ``log_file`` and stderr; log any exception before it propagates.

    The error message that a user sees in the Snakemake output is then also in the rule's
    log, with its traceback, next to what the step did before it failed.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, format=FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    logger = logging.getLogger("geolifeclef")
    try:
        yield logger
    except Exception as error:
        logger.error("%s: %s", type(error).__name__, error, exc_info=True)
        raise
    finally:
        for handler in handlers:
            handler.flush()
