"""The archive as the workflow reads it: the files a config reads from ``data.root``, by the
step that reads them, checked before any job runs, and their fingerprints, which rerun the
steps that read them when they change.

Snakemake decides a rerun from its outputs' and inputs' times; an input that is missing,
or a ``data.root`` pointed elsewhere, leaves results built from another archive "up to
date". The check refuses a missing folder or file by name (stat calls: never the 6.66 M
patch files, which the cache build checks), and a fingerprint of each file read (its
path, size and modification time) is a param of the step that reads it: another file,
even an older copy, reruns the step and everything downstream (workflow/rules/common.smk).
"""

import hashlib
from pathlib import Path

from geolifeclef.errors import InputDataError, listed
from geolifeclef.layout import REGIONS, DatasetLayout


def archive_inputs(layout: DatasetLayout) -> dict[str, list[Path]]:
    """What the workflow may read from the archive, by part: the observation CSVs and the
    species list (``observations``: every target starts from them), the rasters
    (``rasters``), the pre-extracted CSV (``pre_extracted``), the patch folders
    (``patches``). A part is checked when a step planned to run, or kept, reads it."""
    return {
        "observations": [*layout.observation_files(), layout.species_details],
        "rasters": layout.raster_files(),
        "pre_extracted": [layout.environmental_vectors],
        "patches": [layout.patch_folder(r) for r in REGIONS],
    }


def check_archive(layout: DatasetLayout, inputs: dict[str, list[Path]]) -> None:
    """Refuse an archive folder that does not exist, or that lacks one of the files of
    ``inputs`` (parts of ``archive_inputs``)."""
    fix = (
        "set data.root in the config to the folder where the Kaggle archive is unpacked "
        "(the one holding observations/, metadata/ and rasters/), or to null for the demo"
    )
    if not layout.root.is_dir():
        raise InputDataError(layout.root, "data.root: no such folder", fix)
    missing = [p for paths in inputs.values() for p in paths if not p.exists()]
    if missing:
        names = [str(p.relative_to(layout.root)) for p in missing]
        raise InputDataError(
            layout.root,
            f"{len(missing)} file(s) that the workflow reads are missing from the archive: "
            f"{listed(names)}",
            "restore them from the Kaggle archive (unpack it again), or point data.root at "
            "a complete copy",
        )


def fingerprint(paths: list[Path]) -> str:
    """A short digest of each file's path, size and modification time: a param of the step
    that reads them, so that any other file there reruns it (the contents are not read:
    the observation CSVs alone are 300 MB)."""
    digest = hashlib.sha1()
    for path in paths:
        status = path.stat()
        digest.update(f"{path.resolve()}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
