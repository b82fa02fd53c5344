"""Ingest of the observation CSVs into typed, validated Parquet tables.

Every check names the file, the line (as a text editor counts it, header = line 1) and the
fix. Harmless quirks of hand-edited or re-saved files are accepted: a UTF-8 byte-order
mark, CRLF line ends, a trailing empty line, quoted fields.
"""

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError, listed
from geolifeclef.layout import (
    CSV_SEPARATOR,
    OBSERVATION_ID_DIGITS,
    REGION_DIGIT,
    REGIONS,
    SUBSETS,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
    DatasetLayout,
)

log = logging.getLogger(__name__)

REGION_EXTENT = {
    # lat_min, lat_max, lon_min, lon_max: generous boxes around metropolitan France
    # (with Corsica) and the conterminous US; a point outside is a typo or swapped axes.
    "fr": (38.0, 53.0, -10.0, 12.0),
    "us": (17.0, 52.0, -130.0, -60.0),
}

OBSERVATION_SCHEMA = pa.schema(
    [
        ("observation_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("species_id", pa.int32()),
        ("subset", pa.string()),
        ("region", pa.string()),
    ]
)


def _lines(rows: np.ndarray) -> str:
    """'line 5, 9 and 3 more' for 0-based data-row positions (header is line 1)."""
    return listed(int(r) + 2 for r in rows)


def _fail_rows(path: Path, rows: np.ndarray, problem: str, fix: str) -> None:
    """Raise an InputDataError for the given 0-based data rows, if any."""
    if len(rows):
        first = int(rows[0]) + 2
        where = "" if len(rows) == 1 else f" (lines {_lines(rows)})"
        raise InputDataError(path, problem + where, fix, line=first)


def decode_text(path: Path) -> str:
    """The text of a CSV file of the archive, as UTF-8 (a byte-order mark is dropped).

    Raises InputDataError for what a text editor or a failed copy leaves behind: a
    compressed file, UTF-16 or Latin-1 text, NUL bytes (a copy cut short on some file
    systems). Warns when the last line has no line end: the archive's files all end with
    one, so the file may have been truncated on a row boundary, which no check can see.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b" or raw[:4] == b"PK\x03\x04":
        raise InputDataError(path, "file is compressed (gzip or zip)", "unpack it in place")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputDataError(path, "file is UTF-16 text", "save it as UTF-8", line=1)
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputDataError(
            path,
            "file holds NUL bytes (an incomplete copy?)",
            "copy the file again from the archive",
            line=raw.count(b"\n", 0, nul) + 1,
        )
    try:
        text = raw.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as error:
        raise InputDataError(
            path,
            f"not UTF-8 text (byte 0x{raw[error.start]:02x})",
            "save the file as UTF-8",
            line=raw.count(b"\n", 0, error.start) + 1,
        ) from None
    if text.strip() and not text.endswith(("\n", "\r")):
        log.warning(
            "%s does not end with a line end, unlike the archive's files: "
            "if it was copied, check that the copy is complete",
            path,
        )
    return text


def read_observation_csv(path: Path, region: str, labelled: bool) -> pd.DataFrame:
    """Read one observation CSV strictly; return observation_id, latitude, longitude
    (+ species_id, subset when ``labelled``) as typed columns.

    Raises InputDataError on anything that is not a well-formed GLC observation file.
    """
    path = Path(path)
    expected = TRAIN_COLUMNS if labelled else TEST_COLUMNS
    if not path.exists():
        raise InputDataError(
            path, "file is missing", "check data.root in the config, or restore the file"
        )
    text = decode_text(path)
    if not text.strip():
        raise InputDataError(path, "file is empty", "restore it from the archive")
    header = text.splitlines()[0]
    if CSV_SEPARATOR not in header:
        other = next((s for s in (",", "\t", "|") if s in header), None)
        hint = f"columns are separated by {other!r}" if other else "no ';' in the header"
        raise InputDataError(
            path,
            f"{hint}, GLC files use ';'",
            f"save the file with ';' as separator: {';'.join(expected)}",
            line=1,
        )
    columns = next(csv.reader([header], delimiter=CSV_SEPARATOR))
    columns = [c.strip() for c in columns]
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise InputDataError(
            path, "; ".join(parts), f"the header must be exactly {';'.join(expected)}", line=1
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=CSV_SEPARATOR,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
            index_col=False,  # a row with an extra field is an error, not an index
            engine="c",
        )
    except pd.errors.ParserError as error:
        found = re.search(r"in line (\d+), saw (\d+)", str(error))
        raise InputDataError(
            path,
            f"malformed row: {found.group(2)} fields" if found else f"malformed row ({error})",
            line=int(found.group(1)) if found else None,
            fix=f"every row needs exactly {len(expected)} fields separated by ';'",
        ) from None
    frame.columns = [c.strip() for c in frame.columns]
    frame = frame[list(expected)]
    if frame.empty:
        raise InputDataError(path, "header but no rows", "restore the file from the archive")
    # Blank lines are skipped by the parser; keep line numbers right for the rest.
    out = pd.DataFrame(index=frame.index)
    out["observation_id"] = _integers(path, frame["observation_id"], "observation_id")
    for name in ("latitude", "longitude"):
        out[name] = _floats(path, frame[name], name)
    _check_ids(path, out["observation_id"].to_numpy(), region)
    _check_coordinates(path, out["latitude"].to_numpy(), out["longitude"].to_numpy(), region)
    if labelled:
        out["species_id"] = _integers(path, frame["species_id"], "species_id")
        subset = frame["subset"].str.strip()
        bad = np.flatnonzero(~subset.isin(SUBSETS).to_numpy())
        _fail_rows(
            path,
            bad,
            f"subset {subset.iloc[bad[0]]!r} is not 'train' or 'val'" if len(bad) else "",
            "use train or val",
        )
        out["subset"] = subset
    return out.reset_index(drop=True)


def _integers(path: Path, column: pd.Series, name: str) -> pd.Series:
    text = column.str.strip()
    bad = np.flatnonzero(~text.str.fullmatch(r"-?\d+").to_numpy())
    if len(bad):
        _fail_rows(
            path,
            bad,
            f"{name} {text.iloc[bad[0]]!r} is not an integer",
            f"write a whole number in column {name}",
        )
    return text.astype(np.int64)


def _floats(path: Path, column: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(column.str.strip(), errors="coerce").astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values.to_numpy()))
    if len(bad):
        _fail_rows(
            path,
            bad,
            f"{name} {column.iloc[bad[0]]!r} is not a finite number",
            f"write decimal degrees with '.' in column {name}",
        )
    return values


def _check_ids(path: Path, ids: np.ndarray, region: str) -> None:
    low, high = 10 ** (OBSERVATION_ID_DIGITS - 1), 10**OBSERVATION_ID_DIGITS
    bad = np.flatnonzero((ids < low) | (ids >= high))
    _fail_rows(
        path,
        bad,
        f"observation_id {ids[bad[0]] if len(bad) else ''} does not have 8 digits",
        "ids are 8-digit numbers",
    )
    digit = REGION_DIGIT[region]
    bad = np.flatnonzero(ids // low != digit)
    if len(bad):
        _fail_rows(
            path,
            bad,
            f"observation_id {ids[bad[0]]} starts with {ids[bad[0]] // low}, "
            f"but ids of region {region} start with {digit}",
            "move the row to the file of its region",
        )
    order = np.argsort(ids, kind="stable")
    repeated = order[1:][ids[order[1:]] == ids[order[:-1]]]
    if len(repeated):
        _fail_rows(
            path,
            np.sort(repeated),
            f"duplicate observation_id {ids[repeated[0]]}",
            "keep one row per id",
        )


def _check_coordinates(path: Path, lat: np.ndarray, lon: np.ndarray, region: str) -> None:
    lat_min, lat_max, lon_min, lon_max = REGION_EXTENT[region]
    outside = (lat < lat_min) | (lat > lat_max) | (lon < lon_min) | (lon > lon_max)
    bad = np.flatnonzero(outside)
    if not len(bad):
        return
    i = bad[0]
    swapped = lat_min <= lon[i] <= lat_max and lon_min <= lat[i] <= lon_max
    problem = f"point (latitude {lat[i]}, longitude {lon[i]}) lies outside region {region}"
    if swapped:
        problem += "; latitude and longitude look swapped"
    _fail_rows(path, bad, problem, "columns are latitude then longitude in WGS84 decimal degrees")


def read_species_ids(path: Path) -> np.ndarray:
    """Species ids listed in ``metadata/species_details.csv``."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            path, "file is missing", "restore metadata/species_details.csv from the archive"
        )
    text = decode_text(path)
    if not text.strip():
        raise InputDataError(
            path, "file is empty", "restore metadata/species_details.csv from the archive"
        )
    try:
        frame = pd.read_csv(io.StringIO(text), sep=CSV_SEPARATOR, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as error:
        raise InputDataError(
            path, f"malformed CSV ({error})", "restore it from the archive"
        ) from None
    if "species_id" not in frame.columns:
        raise InputDataError(
            path,
            f"no species_id column (columns: {list(frame.columns)})",
            "the file is ';'-separated with a species_id column",
            line=1,
        )
    return _integers(path, frame["species_id"], "species_id").to_numpy()


def read_species_names(path: Path) -> dict[int, str]:
    """Species id -> ``GBIF_species_name`` of ``metadata/species_details.csv`` (the id as
    text where the file has no name column or an empty name)."""
    path = Path(path)
    ids = read_species_ids(path)
    frame = pd.read_csv(
        io.StringIO(decode_text(path)), sep=CSV_SEPARATOR, dtype=str, keep_default_na=False
    )
    names = frame.get("GBIF_species_name", pd.Series([""] * len(ids))).str.strip()
    return {int(i): name or f"species {i}" for i, name in zip(ids, names, strict=True)}


@dataclass(frozen=True)
class ObservationTables:
    """The three splits as typed tables (train and val carry species_id)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


def load_observations(layout: DatasetLayout) -> ObservationTables:
    """Read and cross-check every observation CSV of the archive.

    Beyond the per-file checks: species ids must be in species_details, an id may
    appear in only one file (a test id in train would leak the answer), each region's
    train file has train rows, and the two hold val rows (models are ranked on them).
    """
    known_species = read_species_ids(layout.species_details)
    labelled, test = [], []
    first_file_of_id: dict[str, tuple[Path, np.ndarray]] = {}
    for region in REGIONS:
        for kind in ("train", "test"):
            path = layout.observations(region, kind)
            frame = read_observation_csv(path, region, labelled=kind == "train")
            frame["region"] = region
            if kind == "train":
                unknown = np.flatnonzero(~np.isin(frame["species_id"].to_numpy(), known_species))
                if len(unknown):
                    _fail_rows(
                        path,
                        unknown,
                        f"species_id {frame['species_id'].iloc[unknown[0]]} "
                        f"is not in {layout.species_details.name}",
                        "use an id listed in metadata/species_details.csv",
                    )
                if not (frame["subset"] == "train").any():
                    raise InputDataError(
                        path,
                        f"no row has subset 'train' ({len(frame):,} rows, all 'val'): the "
                        f"{region.upper()} models would have nothing to learn from",
                        "restore the file from the archive (the last column is 'train' for "
                        "most rows)",
                    )
                labelled.append(frame)
            else:
                test.append(frame)
            first_file_of_id[str(path)] = (path, frame["observation_id"].to_numpy())
    _check_ids_unique_across_files(list(first_file_of_id.values()))
    train_val = pd.concat(labelled, ignore_index=True)
    if not (train_val["subset"] == "val").any():
        files = " and ".join(layout.observations(r, "train").name for r in REGIONS)
        raise InputDataError(
            layout.observations(REGIONS[0], "train").parent,
            f"no row of {files} has subset 'val': every model is evaluated and ranked on "
            "the val rows",
            "restore the files from the archive (40,080 rows are 'val' in their last column)",
        )
    test_frame = pd.concat(test, ignore_index=True)
    test_frame["species_id"] = pd.array([pd.NA] * len(test_frame), dtype="Int32")
    test_frame["subset"] = "test"
    tables = {
        "train": train_val[train_val["subset"] == "train"],
        "val": train_val[train_val["subset"] == "val"],
        "test": test_frame,
    }
    typed = {name: _typed(frame) for name, frame in tables.items()}
    return ObservationTables(**typed)


def _check_ids_unique_across_files(files: list[tuple[Path, np.ndarray]]) -> None:
    for i, (path_a, ids_a) in enumerate(files):
        for path_b, ids_b in files[i + 1 :]:
            shared = np.intersect1d(ids_a, ids_b)
            if len(shared):
                rows = np.flatnonzero(np.isin(ids_b, shared))
                _fail_rows(
                    path_b,
                    rows,
                    f"observation_id {shared[0]} also appears in {path_a.name} "
                    f"({len(shared)} shared ids)",
                    "an observation belongs to exactly one file; remove the duplicates",
                )


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("observation_id", kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "observation_id": frame["observation_id"].astype(np.int64),
            "latitude": frame["latitude"].astype(np.float64),
            "longitude": frame["longitude"].astype(np.float64),
            "species_id": frame["species_id"].astype("Int32"),
            "subset": frame["subset"].astype(str),
            "region": frame["region"].astype(str),
        }
    )


def write_table(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    """Write a DataFrame to Parquet atomically."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def ingest_observations(layout: DatasetLayout, outputs: dict[str, Path]) -> dict[str, int]:
    """Validate all observation CSVs, then write one Parquet table per split.

    Nothing is written unless every file passes. Returns the row count of each split.
    """
    tables = load_observations(layout)
    for split, path in outputs.items():
        write_table(tables.split(split), Path(path), OBSERVATION_SCHEMA)
        log.info("%s: %d observations -> %s", split, len(tables.split(split)), path)
    return {split: len(tables.split(split)) for split in outputs}


def read_table(path: Path) -> pd.DataFrame:
    """Read an observation table written by ``ingest_observations``."""
    return pq.read_table(path).to_pandas()
