"""Benchmark: the GLC 2024/2025 survey ingest and values join at the archive's counts.

Generates, in the archive's formats (``GLC24-25-FORMAT.md`` §4, §7; GLC 2025 names):

- ``GLC25_PA_metadata_train.csv``: 1,483,637 rows, 88,987 surveys (1 + a multinomial
  share of the other rows each: mean 16.7 species, as the real file), species drawn with a
  Zipf-like popularity from 5,016 ids in 0..11,254 (so some (survey, species) pairs repeat),
  ``speciesId`` written ``6310.0``, ``areaInM2`` empty or ``-inf`` for some surveys;
- ``GLC25_PA_metadata_test.csv``: 4,716 surveys, one row each;
- ``GLC25_P0_metadata_train.csv``: 5,079,797 rows, 3,845,533 surveys, the twelve GLC 2025
  columns (publisher, date, ...);
- the five values CSVs of each split (93,703 surveys, the GLC 2025 column set: 64 columns).

Then, each in its own process (wall time, CPU time of all its threads, and peak RSS,
the process's VmHWM; on a busy machine the CPU time is the steadier figure):

1. **ingest**: ``ingest_surveys`` (PA train + test + PO, val carved, four tables written);
2. **values**: ``build_survey_env_table`` over the three survey tables;
3. **pandas PA / pandas PO**: for reference, ``pandas.read_csv`` with its defaults (every
   column, as the organizers' loaders read them) of the PA train and of the PO file, and
   nothing else.

    .venv/bin/python bench/bench_survey_ingest.py /tmp/glc-bench-surveys
    .venv/bin/python bench/bench_survey_ingest.py /tmp/glc-bench-surveys --scale 0.1 --keep

Writes results.json in the work folder and removes everything else unless ``--keep``.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from geolifeclef.data.survey_values import build_survey_env_table
from geolifeclef.data.surveys import ingest_surveys
from geolifeclef.survey_layout import N_LABEL_SLOTS, SURVEY_ARCHIVES, SurveyLayout

PA_TRAIN_ROWS, PA_TRAIN_SURVEYS, PA_TEST_SURVEYS = 1_483_637, 88_987, 4_716
PO_ROWS, PO_SURVEYS = 5_079_797, 3_845_533
N_PA_SPECIES = 5_016
VALUE_COLUMNS = {
    "bioclimatic": [f"Bio{i}" for i in range(1, 20)],
    "elevation": ["Elevation"],
    "human_footprint": [f"HumanFootprint-{i}" for i in range(22)],
    "landcover": [f"LandCover-{i}" for i in range(1, 14)],
    "soilgrids": [f"Soilgrid-{v}" for v in ("bdod", "cec", "cfvo", "clay", "nitrogen")]
    + [f"Soilgrid-{v}" for v in ("phh2o", "sand", "silt", "soc")],
}
REGIONS = ["ALPINE", "ATLANTIC", "BLACK SEA", "BOREAL", "CONTINENTAL", "MEDITERRANEAN"]
COUNTRIES = ["Denmark", "France", "Netherlands", "Czech Republic", "Austria"] + [
    "The former Yugoslav Republic of Macedonia"
]


def peak_rss_mb() -> float:
    """This process's peak RSS since it started: VmHWM, not getrusage's ru_maxrss, which a
    child started by fork + exec inherits from its parent (the generator's arrays)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _text(values) -> pa.Array:
    """Numbers as the shortest text that reads back the same (``9.67188``)."""
    return pc.cast(pa.array(values), pa.string())


def _float_text(ints: np.ndarray) -> pa.Array:
    """Whole numbers written as floats, as the archive writes speciesId: ``6310.0``."""
    return pc.binary_join_element_wise(_text(ints), ".0", "")


def _pick(options: list[str], rng, n: int, p=None) -> pa.Array:
    return pa.array(np.asarray(options, dtype=object)[rng.choice(len(options), n, p=p)])


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # the header unquoted, as pandas writes it
        handle.write((",".join(table.column_names) + "\n").encode())
        options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
        pa_csv.write_csv(table, handle, options)


def _rows_per_survey(rng, rows: int, surveys: int) -> np.ndarray:
    """At least one row per survey, the rest shared in proportion to lognormal weights."""
    weights = rng.lognormal(0, 1, surveys)
    return 1 + rng.multinomial(rows - surveys, weights / weights.sum())


def generate(workdir: Path, scale: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    layout = SurveyLayout(workdir / "archive", SURVEY_ARCHIVES[2025])
    layout.root.mkdir(parents=True, exist_ok=True)
    n_train, n_test = round(PA_TRAIN_SURVEYS * scale), round(PA_TEST_SURVEYS * scale)
    pa_ids = rng.choice(np.arange(212, 3_919_656), n_train + n_test, replace=False)
    train_ids, test_ids = pa_ids[:n_train], pa_ids[n_train:]
    species_pool = np.sort(rng.choice(N_LABEL_SLOTS - 2, N_PA_SPECIES, replace=False) + 2)
    popularity = 1 / np.arange(1, N_PA_SPECIES + 1) ** 0.8
    popularity /= popularity.sum()

    def surveys_table(ids: np.ndarray) -> dict:
        n = len(ids)
        return {
            "lon": _text(np.round(rng.uniform(-10, 30, n), 5)),
            "lat": _text(np.round(rng.uniform(36, 70, n), 5)),
            "year": _text(rng.integers(2017, 2022, n)),
            "geoUncertaintyInM": _pick(["10.0", "1.0", "0.0", "3.0", "5.0", ""], rng, n),
            "areaInM2": _pick(
                ["79.0", "707.0", "25.0", "", "-inf"], rng, n, [0.5, 0.2, 0.2, 0.08, 0.02]
            ),
            "region": _pick(REGIONS, rng, n),
            "country": _pick(COUNTRIES, rng, n),
        }

    per_survey = _rows_per_survey(rng, round(PA_TRAIN_ROWS * scale), n_train)
    rows = np.repeat(np.arange(n_train), per_survey)
    train = {name: column.take(pa.array(rows)) for name, column in surveys_table(train_ids).items()}
    train["speciesId"] = _float_text(
        species_pool[rng.choice(N_PA_SPECIES, len(rows), p=popularity)]
    )
    train["surveyId"] = _text(train_ids[rows])
    _write(pa.table(train), layout.pa_metadata("train"))
    n_train_rows = len(rows)
    test = surveys_table(test_ids) | {"surveyId": _text(test_ids)}
    _write(pa.table(test), layout.pa_metadata("test"))

    n_po_surveys = round(PO_SURVEYS * scale)
    po_ids = rng.choice(np.arange(1, 3_919_663), n_po_surveys, replace=False)
    per_survey = _rows_per_survey(rng, round(PO_ROWS * scale), n_po_surveys)
    rows = np.repeat(np.arange(n_po_surveys), per_survey)
    n = len(rows)
    days = rng.integers(np.datetime64("2000-01-01").astype(int), 19_000, n).astype("datetime64[D]")
    dates = pd.DatetimeIndex(days)
    po = {
        "publisher": _pick(["iNaturalist", "Naturgucker", "Observation.org"], rng, n),
        "year": _text(dates.year.to_numpy()),
        "month": pc.if_else(rng.random(n) < 0.05, None, _float_text(dates.month.to_numpy())),
        "day": _float_text(dates.day.to_numpy()),
        "lat": _text(np.round(rng.uniform(36, 70, n_po_surveys), 5)[rows]),
        "lon": _text(np.round(rng.uniform(-10, 30, n_po_surveys), 5)[rows]),
        "geoUncertaintyInM": _pick(["10.0", "25.0", "100.0", ""], rng, n),
        "taxonRank": _pick(["SPECIES"], rng, n),
        "date": pa.array(np.datetime_as_string(days, unit="D")),
        "dayOfYear": _text(dates.day_of_year.to_numpy()),
        "speciesId": _float_text(rng.integers(0, N_LABEL_SLOTS, n)),
        "surveyId": _text(po_ids[rows]),
    }
    _write(pa.table(po), layout.po_metadata)
    for split, ids in (("train", train_ids), ("test", test_ids)):
        for family, columns in VALUE_COLUMNS.items():
            values = np.round(rng.normal(100, 30, (len(ids), len(columns))), 2)
            values[rng.random(values.shape) < 0.01] = np.nan
            values[rng.random(values.shape) < 0.001] = np.inf
            frame = pd.DataFrame(values, columns=columns)
            frame.insert(0, "surveyId", ids)
            path = layout.values(family, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=split == "test")  # the test files with an index column
    written = sum(p.stat().st_size for p in layout.root.rglob("*") if p.is_file())
    return {
        "pa_train_rows": n_train_rows,
        "pa_train_surveys": n_train,
        "pa_test_surveys": n_test,
        "po_rows": n,
        "po_surveys": n_po_surveys,
        "pa_train_csv_mb": layout.pa_metadata("train").stat().st_size / 1e6,
        "po_csv_mb": layout.po_metadata.stat().st_size / 1e6,
        "gb_written": written / 1e9,
    }


def run_phase(phase: str, workdir: Path) -> dict:
    layout = SurveyLayout(workdir / "archive", SURVEY_ARCHIVES[2025])
    tables = {s: workdir / "observations" / f"{s}.parquet" for s in ("train", "val", "test", "po")}
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    start = time.perf_counter()
    if phase == "ingest":
        counts = ingest_surveys(layout, tables, val_share=0.05, block_km=10, seed=0)
    elif phase == "values":
        report = build_survey_env_table(
            layout, [tables[s] for s in ("train", "val", "test")], workdir / "env_values.parquet"
        )
        counts = {"surveys": report.n_surveys, "columns": len(report.columns)}
    elif phase == "pandas_pa":
        counts = {"rows": len(pd.read_csv(layout.pa_metadata("train")))}
    elif phase == "pandas_po":
        counts = {"rows": len(pd.read_csv(layout.po_metadata))}
    else:
        raise ValueError(phase)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
        "peak_rss_mb": peak_rss_mb(),
        "load_average": os.getloadavg()[0],
        **counts,
    }


def child(phase: str, workdir: Path) -> dict:
    command = [sys.executable, __file__, str(workdir), "--phase", phase]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the archive's rows")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.workdir)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    start = time.perf_counter()
    results["generated"] = generate(args.workdir, args.scale)
    results["generated"]["seconds"] = time.perf_counter() - start
    print(json.dumps(results["generated"]), flush=True)
    for phase in ("ingest", "values", "pandas_pa", "pandas_po"):
        results[phase] = child(phase, args.workdir)
        print(phase, json.dumps(results[phase]), flush=True)
    if not args.keep:
        for entry in args.workdir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
