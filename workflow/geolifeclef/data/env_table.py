"""The env table: the 27 environmental values of every observation, one Parquet file.

``results/environment/env_values.parquet`` holds ``observation_id`` (int64, sorted) and
the 27 variables as float32, NaN where the raster has no value (sea, holes) or the point
lies outside its raster. The values come from the rasters (``rasters``: the organizers'
semantics, each raster read once by windows) or from the archive's pre-extracted CSV.
"""

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.data.rasters import (
    WINDOW_BYTES,
    ExtractionReport,
    RasterTask,
    gdal_block_cache,
    plan_rasters,
    sample_plan,
)
from geolifeclef.errors import InputDataError, listed
from geolifeclef.layout import CSV_SEPARATOR, ENV_VARIABLES, DatasetLayout

log = logging.getLogger(__name__)


def env_schema(variables: Sequence[str]) -> pa.Schema:
    """Schema of an env table: ``observation_id`` + one float32 column per variable."""
    return pa.schema(
        [("observation_id", pa.int64())] + [(name, pa.float32()) for name in variables]
    )


ENV_SCHEMA = env_schema(ENV_VARIABLES)
"""Schema of ``results/environment/env_values.parquet`` (GLC 2022)."""


def extract_environment(
    layout: DatasetLayout,
    longitude: np.ndarray,
    latitude: np.ndarray,
    variables: Sequence[str] = ENV_VARIABLES,
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
    progress: bool = True,
) -> tuple[np.ndarray, ExtractionReport]:
    """The ``variables`` at every point from the archive's rasters: (n, len(variables))
    float32 with NaN for masked pixels and points outside their raster.

    Each raster is read once, by windows, by ``workers`` threads (GDAL releases the GIL).
    """
    longitude = np.asarray(longitude, dtype=np.float64)
    latitude = np.asarray(latitude, dtype=np.float64)
    tasks, report = plan_rasters(layout, longitude, latitude, variables, window_bytes)
    # Variable-major: each raster fills one contiguous row (the caller gets the transpose).
    by_variable = np.full((len(variables), len(longitude)), np.nan, dtype=np.float32)

    def run(task: RasterTask) -> tuple[RasterTask, tuple[np.ndarray, str | None]]:
        return task, sample_plan(task.path, task.plan)

    with (
        gdal_block_cache(workers, window_bytes),
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(total=len(tasks), desc="rasters", unit="raster", disable=not progress) as bar,
    ):
        for task, (sampled, fill_warning) in pool.map(run, tasks):
            by_variable[task.column, task.plan.points] = sampled
            if fill_warning:
                report.fill_warnings[task.path.name] = fill_warning
            region_points = len(task.plan.points) + len(task.plan.outside)
            missed = np.isnan(sampled).sum() + len(task.plan.outside)
            report.nan_shares[task.path.name] = missed / region_points if region_points else 0.0
            bar.update()
    report.nan_counts = {v: int(np.isnan(by_variable[i]).sum()) for i, v in enumerate(variables)}
    return by_variable.T, report


def observation_points(tables: Sequence[str | Path]) -> pd.DataFrame:
    """observation_id, latitude, longitude of every observation of the given tables, sorted by
    observation_id (the row order of the env table and of the env patch cache)."""
    frames = [
        pd.read_parquet(path, columns=["observation_id", "latitude", "longitude"])
        for path in tables
    ]
    points = pd.concat(frames, ignore_index=True).sort_values("observation_id", kind="stable")
    ids = points["observation_id"].to_numpy()
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        repeated = ids[1:][ids[1:] == ids[:-1]][0]
        raise InputDataError(
            tables[0], f"observation_id {repeated} appears in more than one table", "rerun ingest"
        )
    return points.reset_index(drop=True)


def read_pre_extracted(path: Path, observation_ids: np.ndarray) -> np.ndarray:
    """The archive's ``pre-extracted/environmental_vectors.csv`` rows of the given ids, as an
    (n, 27) float32 array in the order of ``observation_ids``.

    Raises InputDataError naming the file when the header is not observation_id + the 27
    variables, or when an observation has no row.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            path,
            "file is missing",
            "restore pre-extracted/environmental_vectors.csv, or set environment.source: rasters",
        )
    expected = ["observation_id", *ENV_VARIABLES]
    with open(path, encoding="utf-8-sig") as handle:
        header = [c.strip() for c in handle.readline().rstrip("\r\n").split(CSV_SEPARATOR)]
    if header != expected:
        raise InputDataError(
            path,
            f"header is {CSV_SEPARATOR.join(header)[:200]!r}",
            f"the header must be {CSV_SEPARATOR.join(expected)}",
            line=1,
        )
    frame = pd.read_csv(
        path,
        sep=CSV_SEPARATOR,
        encoding="utf-8-sig",
        dtype={"observation_id": np.int64, **dict.fromkeys(ENV_VARIABLES, np.float64)},
        engine="c",
    )
    frame = frame.drop_duplicates("observation_id").set_index("observation_id")
    missing = np.setdiff1d(observation_ids, frame.index.to_numpy())
    if len(missing):
        raise InputDataError(
            path,
            f"{len(missing)} observations have no row: {listed(missing)}",
            "use the archive's file unchanged, or set environment.source: rasters",
        )
    return frame.loc[observation_ids, list(ENV_VARIABLES)].to_numpy(dtype=np.float32)


def write_env_table(
    observation_ids: np.ndarray,
    values: np.ndarray,
    path: Path,
    variables: Sequence[str] = ENV_VARIABLES,
) -> None:
    """Write the env table (observation_id + one float32 column per variable: GLC 2022's 27,
    or the columns of a survey archive's values CSVs) atomically."""
    if values.shape[1] != len(variables):
        raise ValueError(f"{values.shape[1]} value columns for {len(variables)} variables")
    columns = {"observation_id": pa.array(np.asarray(observation_ids, dtype=np.int64))}
    for i, name in enumerate(variables):
        columns[name] = pa.array(np.ascontiguousarray(values[:, i], dtype=np.float32))
    table = pa.table(columns, schema=env_schema(variables))
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_env_table(path: Path) -> pd.DataFrame:
    """The env table as a DataFrame (observation_id + its float32 columns)."""
    return pq.read_table(path).to_pandas()


def build_env_table(
    layout: DatasetLayout,
    observation_tables: Sequence[str | Path],
    output: Path,
    source: str = "rasters",
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
    nan_share_limit: float = 1.0,
) -> None:
    """The env table of every observation of ``observation_tables``, from the rasters or from
    the archive's pre-extracted CSV (``source``), written to ``output``; nothing is written
    when a raster leaves ``nan_share_limit`` or more of its region's points NaN."""
    points = observation_points(observation_tables)
    ids = points["observation_id"].to_numpy()
    if source == "rasters":
        values, report = extract_environment(
            layout,
            points["longitude"].to_numpy(),
            points["latitude"].to_numpy(),
            workers=workers,
            window_bytes=window_bytes,
        )
        report.log_summary()
        report.check_nan_shares(nan_share_limit)
    elif source == "pre_extracted":
        values = read_pre_extracted(layout.environmental_vectors, ids)
        log.info("read %d rows from %s", len(ids), layout.environmental_vectors)
    else:
        raise ValueError(f"unknown environment source {source!r}: rasters or pre_extracted")
    write_env_table(ids, values, output)
    log.info("wrote %d observations x %d variables to %s", len(ids), values.shape[1], output)
