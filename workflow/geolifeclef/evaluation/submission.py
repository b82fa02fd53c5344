"""The Kaggle submission file: written only when it is exactly what Kaggle accepts.

Format (GLC 2022 sample submission)::

    Id,Predicted
    10000001,12 4 9051 ... (30 distinct species ids, separated by single spaces)

One row per test observation, every test id exactly once, comma-separated, header
``Id,Predicted``. :func:`check_submission` checks a file's text against this and the test
ids and listed species; it is what :func:`write_submission` runs before it writes, and it
can check any file before an upload::

    geolifeclef check-submission my.csv results/observations/test.parquet \
        resources/demo/glc22/metadata/species_details.csv
"""

import argparse
import json
import logging
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import write_text
from geolifeclef.data.observations import read_species_ids
from geolifeclef.editions import TOP30, Task
from geolifeclef.errors import InputDataError, listed
from geolifeclef.evaluation.scores import best_model
from geolifeclef.evaluation.set_submission import check_set_submission
from geolifeclef.evaluation.submission_file import SubmissionError, submission_rows
from geolifeclef.predictions.metrics import KAGGLE_K
from geolifeclef.predictions.table import Predictions
from geolifeclef.tracking.records import MODEL_URI_KEY, SETS_MODEL_URI_KEY
from geolifeclef.tracking.runs import (
    clean_metric,
    redact,
    register_version,
    short_reason,
    store_problem,
)

log = logging.getLogger(__name__)

HEADER = "Id,Predicted"
_INTEGER = re.compile(r"\d+")


def format_submission(predictions: Predictions) -> str:
    """The submission text of ``predictions`` (its first 30 ids per row), rows by Id."""
    if predictions.k < KAGGLE_K:
        raise ValueError(f"predictions hold {predictions.k} ids per row, Kaggle needs {KAGGLE_K}")
    ordered = predictions.sorted()
    rows = [
        f"{observation_id},{' '.join(map(str, species[:KAGGLE_K].tolist()))}"
        for observation_id, species in zip(
            ordered.observation_id.tolist(), ordered.species_ids, strict=True
        )
    ]
    return "\n".join([HEADER, *rows]) + "\n"


def check_submission(
    text: str,
    source: str | Path,
    test_ids: np.ndarray,
    known_species: np.ndarray,
) -> None:
    """Raise SubmissionError (file, line, problem, fix) unless ``text`` is a valid submission
    for the observations ``test_ids`` with species among ``known_species``."""
    known = set(np.asarray(known_species).tolist())
    expected = set(np.asarray(test_ids, dtype=np.int64).tolist())
    first_line_of: dict[int, int] = {}
    rows = submission_rows(text, source, HEADER, "<Id>,<30 species ids separated by spaces>")
    for number, observation, predicted in rows:
        if not _INTEGER.fullmatch(observation):
            raise SubmissionError(source, f"Id {observation!r} is not an integer", "", number)
        observation_id = int(observation)
        if observation_id not in expected:
            raise SubmissionError(
                source,
                f"Id {observation_id} is not a test observation",
                "predict only the ids of the test observation files",
                number,
            )
        if observation_id in first_line_of:
            raise SubmissionError(
                source,
                f"Id {observation_id} repeats line {first_line_of[observation_id]}",
                "one row per test observation",
                number,
            )
        first_line_of[observation_id] = number
        tokens = predicted.split(" ")
        if len(tokens) != KAGGLE_K:
            raise SubmissionError(
                source,
                f"{len(tokens)} predicted ids for Id {observation_id}",
                f"predict exactly {KAGGLE_K} species ids separated by single spaces",
                number,
            )
        bad = [t for t in tokens if not _INTEGER.fullmatch(t)]
        if bad:
            raise SubmissionError(
                source, f"predicted id {bad[0]!r} is not a non-negative integer", "", number
            )
        species = [int(t) for t in tokens]
        if len(set(species)) != len(species):
            repeated = sorted({s for s in species if species.count(s) > 1})
            raise SubmissionError(
                source,
                f"species {listed(repeated)} predicted twice for Id {observation_id}",
                f"the {KAGGLE_K} ids must be distinct (a duplicate wastes a guess)",
                number,
            )
        unknown = [s for s in species if s not in known]
        if unknown:
            raise SubmissionError(
                source,
                f"species {listed(unknown)} not in metadata/species_details.csv",
                "predict only listed species ids",
                number,
            )
    missing = sorted(expected - set(first_line_of))
    if missing:
        raise SubmissionError(
            source,
            f"{len(missing)} test observation(s) have no row: {listed(missing)}",
            "predict every test observation",
        )


def write_submission(
    path: str | Path, predictions: Predictions, test_ids: np.ndarray, known_species: np.ndarray
) -> None:
    """Format, check, then write atomically; nothing is written when the check fails."""
    text = format_submission(predictions)
    check_submission(text, path, test_ids, known_species)
    write_text(path, text)
    log.info("%d test observations -> %s", len(predictions), path)


def check_submission_file(
    path: str | Path, test_ids: np.ndarray, known_species: np.ndarray
) -> None:
    path = Path(path)
    if not path.exists():
        raise SubmissionError(path, "file is missing", "build it with `snakemake submission`")
    check_submission(path.read_bytes().decode("utf-8"), path, test_ids, known_species)


def select_submission(
    model: str,
    candidates: list[str],
    submission_of: dict[str, str | Path],
    leaderboard_path: str | Path | None,
    test_ids: np.ndarray,
    known_species: np.ndarray,
    output: str | Path,
    task: Task = TOP30,
) -> str:
    """Copy the chosen model's submission to ``output`` after checking it again; ``model``
    is a model name or ``best`` (the best val figure of the ``task``, the lowest top-30
    error or a survey edition's highest F1, among ``candidates`` on the leaderboard).
    Returns the chosen model."""
    if model == "best":
        if leaderboard_path is None:
            raise ValueError("choosing the best model needs the leaderboard")
        leaderboard = pd.read_parquet(leaderboard_path)
        model = best_model(leaderboard, candidates, task.metric, task.higher_is_better)
        value = leaderboard.set_index("model").loc[model, task.metric]
        log.info("best of %s by val %s: %s (%.4f)", candidates, task.metric, model, value)
    path = Path(submission_of[model])
    if task.multi_label:
        check_set_submission(path.read_bytes().decode("utf-8"), path, test_ids)
    else:
        check_submission_file(path, test_ids, known_species)
    write_text(output, path.read_text())
    log.info("final submission: %s -> %s", path, output)
    return model


CHAMPION_MODEL = "geolifeclef-submission"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{CHAMPION_MODEL}@{CHAMPION_ALIAS}"
"""What loads the model behind ``final.csv`` (``mlflow.pyfunc.load_model``)."""


def register_champion(
    tracking_uri: str,
    model: str,
    metrics: str | Path,
    invocation: str | None,
    task: Task = TOP30,
    registered: str = CHAMPION_MODEL,
) -> str | None:
    """Register the MLflow model behind the final submission as a new version of
    ``CHAMPION_MODEL`` with the alias ``CHAMPION_ALIAS``, tagged with the submitted model's
    name, its val top-30 error and the invocation's parent run; returns the version.

    ``registered``: the edition's registered model (``Edition.champion_model``).

    Every ranked model has a logged model, named in its evaluation's ``metrics`` (the one
    that predicted test: an experiment's refit, a baseline's fit on train + val with
    ``refit``, a blend of those). One evaluated while MLflow could not record runs has
    none, and MLflow may not record this one: the champion is then left as it was, and the
    log says why and which rerun registers it (None).
    """
    uri = f"models:/{registered}@{CHAMPION_ALIAS}"
    found = json.loads(Path(metrics).read_text())
    model_uri = found.get(SETS_MODEL_URI_KEY if task.multi_label else MODEL_URI_KEY)
    if model_uri is None:
        log.warning(
            "%s is not updated: %s has no MLflow model (MLflow could not record runs when "
            "it was evaluated). Fix: once it can, evaluate it again, which registers it: "
            "snakemake --forcerun %s",
            uri,
            model,
            shlex.quote(str(metrics)),
        )
        return None
    problem = store_problem(tracking_uri, 5.0)
    if problem is not None:
        log.warning(
            "%s is not updated with %s: %s. Fix: %s, then rerun: snakemake --forcerun "
            "select_submission",
            uri,
            model,
            problem.problem,
            problem.fix,
        )
        return None
    error = found.get(task.metric)
    if error is not None:
        error = clean_metric(error)
    tags = {
        "glc.model": model,
        f"val_{task.metric}": error,
        "glc.invocation_run_id": invocation or "",
    }
    answer = (
        "the species of their sets (a survey edition: params workdir, the folder where the "
        "workflow ran)"
        if task.multi_label
        else "their top 30 species (params: workdir, the folder where the workflow ran; top_k)"
    )
    figure = "val F1" if task.multi_label else "val top-30 error"
    descriptions = (
        "The model behind results/submission/final.csv, a version per submission; "
        f"`mlflow.pyfunc.load_model('{uri}')` loads the latest. It takes rows of "
        f"the observation tables (observation_id, latitude, longitude) and returns {answer}.",
        f"{model} ({found.get('kind', 'model')}): {figure} {error}; its test "
        "predictions are final.csv.",
    )
    try:
        version = register_version(
            tracking_uri, model_uri, registered, CHAMPION_ALIAS, tags, descriptions
        )
    except Exception as error:  # a tracking failure must not fail the submission
        log.warning(
            "%s is not updated: registering %s (%s) failed (%s). Fix: make MLflow at %s "
            "usable, then rerun: snakemake --forcerun select_submission",
            uri,
            model,
            model_uri,
            short_reason(error),
            redact(tracking_uri),
        )
        return None
    log.info("%s (%s) registered: %s is version %s", model, model_uri, uri, version)
    return version


def main(argv: list[str] | None = None) -> int:
    """Command line: check a submission file before uploading it."""

    parser = argparse.ArgumentParser(
        prog="geolifeclef check-submission", description="Check a GLC 2022 Kaggle submission file."
    )
    parser.add_argument("submission", type=Path)
    parser.add_argument("test", type=Path, help="results/observations/test.parquet")
    parser.add_argument("species", type=Path, help="metadata/species_details.csv")
    arguments = parser.parse_args(argv)
    test_ids = pd.read_parquet(arguments.test, columns=["observation_id"])["observation_id"]
    try:
        check_submission_file(
            arguments.submission, test_ids.to_numpy(), read_species_ids(arguments.species)
        )
    except InputDataError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{arguments.submission}: valid ({len(test_ids)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
