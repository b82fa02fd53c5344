"""The ``geolifeclef`` command: what users run by hand, beside ``snakemake``.

Each subcommand is the ``main`` of the module that does the work (``geolifeclef query``
runs ``geolifeclef.maps.query.main``), imported only when its subcommand runs, so that
``geolifeclef --help`` answers at once.
"""

import argparse
import importlib
import sys

COMMANDS = {
    "query": ("geolifeclef.maps.query", "top species of a mapped model at points"),
    "check-submission": (
        "geolifeclef.evaluation.submission",
        "check a Kaggle submission file before uploading it",
    ),
    "score": (
        "geolifeclef.evaluation.set_submission",
        "samples F1 of a GLC 2024/2025 submission against a solution file",
    ),
    "fetch-weights": (
        "geolifeclef.models.weights",
        "download a timm backbone's ImageNet weights (on a machine with internet)",
    ),
    "sync-runs": (
        "geolifeclef.tracking.runs",
        "replay the local metric logs of jobs that could not reach MLflow",
    ),
    "run-job": (
        "geolifeclef.experiments.jobs",
        "run a training or prediction job from its JSON file (as torchrun does)",
    ),
}
"""Subcommand -> (module whose ``main(argv)`` runs it, one-line help)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    listing = "\n".join(f"  {name:<18}{help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="geolifeclef",
        description="GeoLifeCLEF workflow commands (the workflow itself runs with "
        "snakemake). `geolifeclef COMMAND --help` describes each.",
        epilog=f"commands:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv:
        parser.print_help()
        return 2
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command = parser.parse_args(argv[:1]).command
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
