"""Ingest of the GLC 2024 / 2025 metadata CSVs into the survey tables and the PO table.

``GLC2x_PA_metadata_train.csv`` (one row per survey and species) and
``GLC2x_PA_metadata_test.csv`` (one row per survey) become ``observations/{train,val,test}
.parquet``, one row per presence-absence survey (:data:`SURVEY_SCHEMA`), val carved from
train by spatial blocks (:func:`spatial_blocks`); ``GLC2x_P0_metadata_train.csv`` becomes
``observations/po.parquet`` (:data:`PO_SCHEMA`), one row per (survey, species). Facts and
sources: ``GLC24-25-FORMAT.md`` §4.

The files are read as the organizers' loaders read them (pandas defaults, columns by name),
with their traps handled and everything else refused naming the file, the line (as an
editor counts it, header = 1) and the fix:

* species ids written as floats (``6310.0``) are whole numbers; ``6310.5`` is refused;
* empty or ``-inf`` cells of ``areaInM2``, empty ``geoUncertaintyInM``: NaN;
* rows without a ``speciesId`` are dropped with a warning (the organizers' loaders do so);
  duplicate (survey, species) pairs are dropped and counted;
* a survey's attributes are those of its first row (the organizers' ``groupby().first()``);
  surveys whose rows disagree are counted;
* columns are selected by name: an unnamed index column (``Unnamed: 0`` or an empty name) and
  any other extra column are ignored with a note, reordered columns are fine;
* a UTF-8 byte-order mark, CRLF line ends, quoted fields and blank lines are accepted;
* PO survey ids are a key of their own: the PO table is never joined with the PA tables.

The CSVs are parsed by pyarrow (multithreaded, only the needed columns, and strict about the
number of fields in a row, which pandas is not once columns are selected).
"""

import csv
import logging
import mmap
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from geolifeclef.data.observations import _fail_rows, decode_text, write_table
from geolifeclef.errors import InputDataError, listed
from geolifeclef.survey_layout import N_LABEL_SLOTS, SurveyLayout, resolve

log = logging.getLogger(__name__)

SURVEY_SCHEMA = pa.schema(
    [
        ("observation_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("year", pa.int32()),
        ("area_m2", pa.float64()),
        ("geo_uncertainty_m", pa.float64()),
        ("region", pa.string()),
        ("country", pa.string()),
        ("species_ids", pa.list_(pa.int32())),
        ("subset", pa.string()),
    ]
)
"""Schema of ``observations/{train,val,test}.parquet`` in the survey editions: one row per
PA survey, ``observation_id`` = surveyId, ``species_ids`` sorted and unique (empty in test)."""

PO_SCHEMA = pa.schema(
    [
        ("observation_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("year", pa.int32()),
        ("species_id", pa.int32()),
    ]
)
"""Schema of ``observations/po.parquet``: one row per unique (PO survey, species) pair;
``observation_id`` is the PO surveyId, which also occurs among the PA ids for other surveys."""

EUROPE_EXTENT = (25.0, 75.0, -35.0, 50.0)
"""lat_min, lat_max, lon_min, lon_max: a generous box around the surveys (the organizers'
rasters span latitudes 26.6 to 72.2 and longitudes -32.3 to 35.6; the box leaves room east
for the Ukrainian GLC 2025 test surveys). A point outside is a typo or swapped axes; swapped
axes are recognised where the swapped point falls inside the box (most of western Europe)."""

PA_ATTRIBUTES = ("lon", "lat", "year", "geoUncertaintyInM", "areaInM2", "region", "country")
"""The per-survey columns of the PA files, repeated on every row of a survey."""
PA_TRAIN_COLUMNS = (*PA_ATTRIBUTES, "speciesId", "surveyId")
PA_TEST_COLUMNS = (*PA_ATTRIBUTES, "surveyId")
PO_COLUMNS = ("lat", "lon", "year", "speciesId", "surveyId")
"""The PO columns read (the file has more: see :data:`PO_UNREAD_COLUMNS`)."""
PO_UNREAD_COLUMNS = (
    "publisher",
    "month",
    "day",
    "geoUncertaintyInM",
    "taxonRank",
    "date",
    "dayOfYear",
)
"""The PO file's other columns (GLC 2024's has no ``publisher``): known, not needed."""

PA_HEADER = ",".join(PA_TRAIN_COLUMNS)
"""The organizers' PA train header, for the fixes (test: the same without speciesId)."""

_TEXT = pa.dictionary(pa.int32(), pa.string())
"""Text columns (region, country) are read dictionary-encoded: few values, many rows."""
_COLUMN_TYPES = {
    "lon": pa.float64(),
    "lat": pa.float64(),
    "year": pa.float64(),
    "geoUncertaintyInM": pa.float64(),
    "areaInM2": pa.float64(),
    "region": _TEXT,
    "country": _TEXT,
    # Ids are read as numbers and checked to be whole: speciesId is written 6310.0.
    "speciesId": pa.float64(),
    "surveyId": pa.float64(),
}
_UNNAMED = re.compile(r"(Unnamed: \d+)?")
"""What pandas calls an index column without a name (``Unnamed: 0``), or an empty name."""

MAX_SURVEY_ID = 10**12 - 1
"""Survey ids run to 3,919,662 in the archives; the bound keeps (survey, species) keys in
int64."""

EARTH_RADIUS_KM = 6371.0088
BLOCK_CENTRAL_LONGITUDE = 10.0
"""The spatial blocks are squares of a sinusoidal (equal-area) projection centred on 10°E."""


# -- reading the CSVs ---------------------------------------------------------------------


@dataclass(frozen=True)
class CsvHeader:
    """The header of a CSV file: its column names (stripped) and where each one is."""

    path: Path
    names: list[str]

    def position(self, name: str) -> int:
        return self.names.index(name)

    def unnamed(self) -> list[str]:
        """Index columns without a name (written by ``DataFrame.to_csv`` with its index)."""
        return [name for name in self.names if _UNNAMED.fullmatch(name)]


def check_csv_bytes(path: Path) -> None:
    """Refuse what a failed copy or another program leaves in place of a CSV (a compressed
    file, UTF-16 text, NUL bytes), with :func:`decode_text`'s messages, without decoding the
    whole file (it may hold 5 million rows); warn when the last line has no line end."""
    path = Path(path)
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        if not size:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            suspect = (
                data[:2] in (b"\x1f\x8b", b"\xff\xfe", b"\xfe\xff")
                or data[:4] == b"PK\x03\x04"
                or data.find(b"\x00") >= 0
            )
            unterminated = data[size - 1 : size] not in (b"\n", b"\r")
    if suspect or unterminated:
        decode_text(path)  # raises the named error, or warns about the last line


def read_header(path: Path, what: str) -> CsvHeader:
    """The header of a comma-separated file of the archive, refused when missing, empty, not
    UTF-8, or separated otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            path, "file is missing", f"restore {path.name} ({what}) from the archive"
        )
    check_csv_bytes(path)
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        decode_text(path)  # names the byte and the line
        raise
    if not line.strip():
        raise InputDataError(path, "file is empty", f"restore {path.name} from the archive", 1)
    if "," not in line:
        other = next((s for s in (";", "\t", "|") if s in line), None)
        if other:
            raise InputDataError(
                path,
                f"columns are separated by {other!r}; the GLC 2024/2025 files use ','",
                "save the file with ',' as separator",
                line=1,
            )
    names = [name.strip() for name in next(csv.reader([line]))]
    return CsvHeader(path, names)


def read_columns(
    header: CsvHeader,
    types: Mapping[str, pa.DataType],
    known: Iterable[str] = (),
    expected_header: str = "",
) -> pd.DataFrame:
    """The columns ``types`` of a CSV file, typed, selected by name (whatever their order).

    The frame's index is each row's 0-based position among the data rows: its line is the
    index + 2 (blank lines count, and are dropped). Columns neither read nor ``known`` are
    ignored with a note. Raises InputDataError for a missing or repeated column, a row with
    another number of fields than the header, and a cell that is not a number.
    """
    path, names = header.path, header.names
    missing = [name for name in types if name not in names]
    if missing:
        raise InputDataError(
            path,
            f"missing column(s) {', '.join(missing)} (columns: {', '.join(names)})",
            f"use the archive's file; its header is {expected_header or ', '.join(types)}",
            line=1,
        )
    repeated = sorted({name for name in types if names.count(name) > 1})
    if repeated:
        raise InputDataError(
            path,
            f"column(s) {', '.join(repeated)} appear more than once in the header",
            "keep one column of each name",
            line=1,
        )
    unnamed = header.unnamed()
    extra = [n for n in names if n not in types and n not in known and n not in unnamed]
    if unnamed:
        log.info("%s: unnamed index column(s) ignored (%d)", path.name, len(unnamed))
    if extra:
        log.info("%s: column(s) not used, ignored: %s", path.name, ", ".join(extra))
    # Arrow reads the columns under their positions: any header (repeated or odd names) works.
    positional = {name: f"c{header.position(name)}" for name in types}
    invalid: list = []

    def collect(row) -> str:
        invalid.append(row)
        return "skip"

    def read(column_types: Mapping[str, pa.DataType], threads: bool = True) -> pa.Table:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(
                skip_rows=1,
                column_names=[f"c{i}" for i in range(len(names))],
                use_threads=threads,
                encoding="utf8",
            ),
            parse_options=pa_csv.ParseOptions(
                invalid_row_handler=collect, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[positional[name] for name in column_types],
                column_types={positional[n]: t for n, t in column_types.items()},
                strings_can_be_null=True,
            ),
        )

    def raise_invalid_rows() -> None:
        if invalid[0].number is None:  # multithreaded parsing does not count lines
            invalid.clear()
            try:
                read(dict.fromkeys(types, pa.string()), threads=False)
            except pa.ArrowInvalid:
                decode_text(path)  # the one error text can raise: bytes that are not UTF-8
                raise
        row = invalid[0]
        text = row.text if len(row.text) <= 120 else row.text[:117] + "..."
        raise InputDataError(
            path,
            f"row has {row.actual_columns} fields, the header {row.expected_columns}"
            f"{also(len(invalid), 'such rows')}: {text!r}",
            f"every row needs {row.expected_columns} fields separated by ','; "
            "quote a field that holds a comma",
            line=row.number,
        )

    try:
        table = read(types)
    except pa.ArrowInvalid as error:
        # Find the cell arrow refused: the numbers re-read as text (bytes that are not UTF-8
        # refuse that too: decode_text names them).
        unreadable = InputDataError(
            path, f"cannot be read ({error})", "restore it from the archive"
        )
        numbers = [name for name, kind in types.items() if kind == pa.float64()]
        try:
            if "UTF8" in str(error):
                raise pa.ArrowInvalid(str(error))
            as_text = read(dict.fromkeys(numbers, pa.string()))
        except pa.ArrowInvalid:
            decode_text(path)
            raise unreadable from None
        if invalid:
            raise_invalid_rows()
        _raise_not_a_number(path, as_text, numbers, positional)
        raise unreadable from None
    if invalid:
        raise_invalid_rows()
    frame = table.to_pandas()
    frame.columns = list(types)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        log.info("%s: %d blank line(s) skipped", path.name, int(blank.sum()))
        frame = frame[~blank]
    return frame


def _raise_not_a_number(
    path: Path, as_text: pa.Table, numbers: list[str], positional: Mapping[str, str]
) -> None:
    """Name the first cell of ``numbers`` that is neither empty nor a number (the columns
    re-read as text after arrow refused one)."""
    first = None
    for name in numbers:
        text = as_text.column(positional[name]).to_pandas()
        parsed = pd.to_numeric(text.str.strip(), errors="coerce")
        bad = np.flatnonzero((parsed.isna() & text.notna() & ~text.isin(_NULL_TEXT)).to_numpy())
        if len(bad) and (first is None or bad[0] < first[0]):
            first = (bad[0], name, text.iloc[bad[0]], bad)
    if first is not None:
        row, name, value, bad = first
        _fail_rows(
            path,
            bad,
            f"{name} {value!r} is not a number",
            f"write a number with '.' as decimal mark in column {name}, or leave it empty",
        )


_NULL_TEXT = set(pa_csv.ConvertOptions().null_values)
"""The cells arrow reads as missing (``''``, ``NA``, ``NaN``...)."""


def also(count: int, what: str) -> str:
    """`` (3 such rows)`` after a problem shown by its first case, when there are more."""
    return f" ({count:,} {what})" if count > 1 else ""


# -- checks of typed columns --------------------------------------------------------------


def whole_numbers(
    path: Path, frame: pd.DataFrame, name: str, low: int, high: int, fix: str
) -> np.ndarray:
    """Column ``name`` (floats, no NaN) as int64, refusing a cell that is not a whole number
    in ``low``..``high``, naming its line."""
    values = frame[name].to_numpy()
    rows = frame.index.to_numpy()
    fractional = np.flatnonzero(values != np.floor(values))
    if len(fractional):
        _fail_rows(
            path,
            rows[fractional],
            f"{name} {float(values[fractional[0]])!r} is not a whole number",
            fix,
        )
    outside = np.flatnonzero((values < low) | (values > high))
    if len(outside):
        _fail_rows(
            path,
            rows[outside],
            f"{name} {values[outside[0]]:.0f} is outside {low}..{high:,}",
            fix,
        )
    return values.astype(np.int64)


def survey_ids(path: Path, frame: pd.DataFrame) -> np.ndarray:
    """Column ``surveyId`` as int64, refusing an empty cell or one that is not a positive
    whole number (``1234.0`` is fine), naming its line."""
    empty = np.flatnonzero(np.isnan(frame["surveyId"].to_numpy()))
    if len(empty):
        _fail_rows(
            path,
            frame.index.to_numpy()[empty],
            "surveyId is empty",
            "every row needs its surveyId; restore the file from the archive",
        )
    return whole_numbers(
        path, frame, "surveyId", 1, MAX_SURVEY_ID, "a surveyId is a positive whole number"
    )


def _check_coordinates(path: Path, frame: pd.DataFrame) -> None:
    lat, lon = frame["lat"].to_numpy(), frame["lon"].to_numpy()
    lat_min, lat_max, lon_min, lon_max = EUROPE_EXTENT
    with np.errstate(invalid="ignore"):
        inside = (lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)
    bad = np.flatnonzero(~inside)
    if not len(bad):
        return
    i = bad[0]
    problem = f"point (lat {lat[i]}, lon {lon[i]}) lies outside Europe"
    if not (np.isfinite(lat[i]) and np.isfinite(lon[i])):
        problem = f"point (lat {lat[i]}, lon {lon[i]}) is not a pair of finite numbers"
    elif lat_min <= lon[i] <= lat_max and lon_min <= lat[i] <= lon_max:
        problem += "; lat and lon look swapped"
    box = f"latitudes {lat_min:g} to {lat_max:g}, longitudes {lon_min:g} to {lon_max:g}"
    _fail_rows(
        path,
        frame.index.to_numpy()[bad],
        problem,
        f"columns lon and lat hold WGS84 decimal degrees within {box}",
    )


def _species_ids(
    path: Path, frame: pd.DataFrame, ids: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows with a speciesId (those without are dropped with a warning, as the
    organizers' loaders do), their survey ids and their species ids, refused unless whole
    numbers of the label space."""
    empty = np.isnan(frame["speciesId"].to_numpy())
    if empty.any():
        log.warning(
            "%s: %d row(s) without speciesId dropped (line %s)",
            path.name,
            int(empty.sum()),
            listed(frame.index.to_numpy()[empty] + 2),
        )
        frame, ids = frame[~empty], ids[~empty]
    if frame.empty:
        raise InputDataError(
            path, "no row has a speciesId", "restore the file from the archive", line=2
        )
    species = whole_numbers(
        path,
        frame,
        "speciesId",
        0,
        N_LABEL_SLOTS - 1,
        f"species ids are the archive's label ids, 0 to {N_LABEL_SLOTS - 1:,}",
    )
    return frame, ids, species


def _unique_pairs(ids: np.ndarray, species: np.ndarray) -> np.ndarray:
    """Positions of the first row of each (survey, species) pair, sorted by survey then
    species: one int64 key per pair, sorted stably (a pair's first row comes first; a
    lexsort of the two columns costs 2.6 times more at 5 million rows)."""
    key = ids * N_LABEL_SLOTS + species  # ids <= MAX_SURVEY_ID: no overflow
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    return order[np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]]


def _species_lists(ids: np.ndarray, species: np.ndarray) -> np.ndarray:
    """The ``species_ids`` column: one int32 array per survey, ``species`` cut where the
    ascending ``ids`` change (unique pairs sorted by survey); every survey of ``ids`` gets
    an empty array when ``species`` is empty (test). Arrow cuts them: ``np.split`` took
    1.5 s at the archive's 89,000 surveys."""
    if not len(species):
        offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    else:
        offsets = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)].astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(species.astype(np.int32)))
    return lists.to_numpy(zero_copy_only=False)


def _check_years(path: Path, frame: pd.DataFrame) -> pd.arrays.IntegerArray:
    """``year`` as nullable int32 (empty stays missing); a fractional year is refused."""
    years = frame["year"].to_numpy()
    with np.errstate(invalid="ignore"):
        fractional = np.flatnonzero(np.isfinite(years) & (years != np.floor(years)))
    infinite = np.flatnonzero(np.isinf(years))
    bad = np.sort(np.r_[fractional, infinite])
    if len(bad):
        _fail_rows(
            path,
            frame.index.to_numpy()[bad],
            f"year {float(years[bad[0]])!r} is not a whole number",
            "write the survey's year, e.g. 2019, or leave it empty",
        )
    return pd.array(years, dtype="Int32")


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Plot area and uncertainty: ``-inf`` and other non-finite values mean unknown."""
    return np.where(np.isfinite(values), values, np.nan)


# -- the survey tables --------------------------------------------------------------------


@dataclass
class PaTrain:
    """The PA train file, one row per survey: its attributes (first row) and species."""

    surveys: pd.DataFrame
    """The survey table's columns but subset, one row per survey, sorted by observation_id."""
    counts: dict[str, int]


def _survey_rows(frame: pd.DataFrame, ids: np.ndarray, years, rows: np.ndarray) -> dict:
    """The survey table's columns (but species_ids and subset) of the given rows."""
    return {
        "observation_id": ids[rows],
        "latitude": frame["lat"].to_numpy()[rows],
        "longitude": frame["lon"].to_numpy()[rows],
        "year": years[rows],
        "area_m2": _finite_or_nan(frame["areaInM2"].to_numpy()[rows]),
        "geo_uncertainty_m": _finite_or_nan(frame["geoUncertaintyInM"].to_numpy()[rows]),
        "region": _text(frame["region"], rows),
        "country": _text(frame["country"], rows),
    }


def _text(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Text cells of the given rows as an object array, None where empty."""
    picked = values.iloc[rows].astype(object).to_numpy()
    return np.where(pd.isna(picked), None, picked)


def _disagreeing(
    frame: pd.DataFrame, order: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Per survey (rows ``order`` grouped from ``starts``), whether any of its rows differs
    from its first row in a per-survey column (NaN equals NaN); and per column, how many
    surveys differ in it."""
    sizes = np.diff(np.r_[starts, len(order)])
    first = order[starts]
    disagreeing = np.zeros(len(starts), dtype=bool)
    by_column = {}
    for name in PA_ATTRIBUTES:
        values = frame[name]
        codes = (
            values.cat.codes.to_numpy().astype(np.float64)  # -1 where empty
            if isinstance(values.dtype, pd.CategoricalDtype)
            else values.to_numpy(dtype=np.float64)
        )
        mine, firsts = codes[order], np.repeat(codes[first], sizes)
        differs = np.logical_or.reduceat(
            (mine != firsts) & ~(np.isnan(mine) & np.isnan(firsts)), starts
        )
        if differs.any():
            by_column[name] = int(differs.sum())
        disagreeing |= differs
    return disagreeing, by_column


def read_pa_train(path: Path) -> PaTrain:
    """``GLC2x_PA_metadata_train.csv`` as one row per survey, checked."""
    path = Path(path)
    header = read_header(path, "the PA train metadata")
    frame = read_columns(
        header,
        {name: _COLUMN_TYPES[name] for name in PA_TRAIN_COLUMNS},
        expected_header=PA_HEADER,
    )
    if frame.empty:
        raise InputDataError(path, "header but no rows", "restore the file from the archive")
    n_rows = len(frame)
    all_ids = survey_ids(path, frame)
    frame, ids, species = _species_ids(path, frame, all_ids)
    _check_coordinates(path, frame)
    years = _check_years(path, frame)
    # Rows grouped by survey, in file order within a survey: the first is the survey's.
    order = np.argsort(ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    disagreeing, by_column = _disagreeing(frame, order, starts)
    pairs = _unique_pairs(ids, species)
    surveys = pd.DataFrame(_survey_rows(frame, ids, years, order[starts]))
    surveys["species_ids"] = _species_lists(ids[pairs], species[pairs])
    counts = {
        "pa_train_rows": n_rows,
        "rows_without_species": n_rows - len(frame),
        "surveys_without_species": len(np.unique(all_ids)) - len(starts),
        "duplicate_pairs": len(ids) - len(pairs),
        "surveys_with_disagreeing_rows": int(disagreeing.sum()),
    }
    if counts["duplicate_pairs"]:
        log.info(
            "%s: %d duplicate (survey, species) row(s) dropped",
            path.name,
            counts["duplicate_pairs"],
        )
    if disagreeing.any():
        log.info(
            "%s: %d survey(s) whose rows disagree (surveys per column: %s): the first row's "
            "values are kept (surveys %s)",
            path.name,
            int(disagreeing.sum()),
            ", ".join(f"{name} {n}" for name, n in by_column.items()),
            listed(surveys["observation_id"].to_numpy()[disagreeing]),
        )
    return PaTrain(surveys, counts)


def read_pa_test(path: Path, train_ids: np.ndarray, train_path: Path) -> pd.DataFrame:
    """``GLC2x_PA_metadata_test.csv`` (one row per survey, no species) as survey rows in
    the file's order (a submission's row order); a survey repeated, or one of
    ``train_ids`` (the surveys of ``train_path``: its answer would leak), is refused
    naming its line."""
    path = Path(path)
    header = read_header(path, "the PA test metadata")
    frame = read_columns(
        header,
        {name: _COLUMN_TYPES[name] for name in PA_TEST_COLUMNS},
        known=("speciesId",),  # a copy that carries labels: not read, test sets are empty
        expected_header=",".join(PA_TEST_COLUMNS),
    )
    if frame.empty:
        raise InputDataError(path, "header but no rows", "restore the file from the archive")
    ids = survey_ids(path, frame)
    rows = frame.index.to_numpy()
    leaked = np.flatnonzero(np.isin(ids, train_ids))
    if len(leaked):
        _fail_rows(
            path,
            rows[leaked],
            f"surveyId {ids[leaked[0]]} is also a survey of {Path(train_path).name}"
            f"{also(len(leaked), 'shared surveys')}",
            "a test survey must not be in train; use the two files of one archive",
        )
    order = np.argsort(ids, kind="stable")
    repeated = np.unique(ids[order][1:][ids[order][1:] == ids[order][:-1]])
    if len(repeated):
        _fail_rows(
            path,
            rows[ids == repeated[0]],
            f"surveyId {repeated[0]} appears on more than one row"
            f"{also(len(repeated), 'repeated surveys')}",
            "the test file has one row per survey; restore it from the archive",
        )
    _check_coordinates(path, frame)
    years = _check_years(path, frame)
    surveys = pd.DataFrame(_survey_rows(frame, ids, years, np.arange(len(ids))))
    surveys["species_ids"] = _species_lists(np.arange(len(surveys)), np.zeros(0, np.int32))
    return surveys


def spatial_blocks(latitude: np.ndarray, longitude: np.ndarray, block_km: float) -> np.ndarray:
    """Each point's block: the ``block_km`` km square that holds it in a sinusoidal projection
    centred on 10°E (equal-area: every block covers ``block_km``² km² of the ground), as an
    index into the sorted list of occupied blocks."""
    phi = np.radians(latitude)
    y = EARTH_RADIUS_KM * phi
    x = EARTH_RADIUS_KM * np.radians(longitude - BLOCK_CENTRAL_LONGITUDE) * np.cos(phi)
    cells = np.stack([np.floor(y / block_km), np.floor(x / block_km)], axis=1).astype(np.int64)
    _, block = np.unique(cells, axis=0, return_inverse=True)
    return block.reshape(-1)


def carve_val(
    surveys: pd.DataFrame, val_share: float, block_km: float, seed: int, path: Path
) -> np.ndarray:
    """Which train surveys go to val: those of ``round(val_share x blocks)`` spatial blocks
    (at least one, and one left to train), drawn by ``seed`` from the sorted occupied blocks,
    so the same surveys give the same split whatever their order."""
    if not 0 <= val_share < 1:
        raise ValueError(f"val_share must be in [0, 1), not {val_share}")
    if not block_km > 0:
        raise ValueError(f"block_km must be positive, not {block_km}")
    if val_share == 0:
        return np.zeros(len(surveys), dtype=bool)
    block = spatial_blocks(
        surveys["latitude"].to_numpy(), surveys["longitude"].to_numpy(), block_km
    )
    n_blocks = int(block.max()) + 1 if len(block) else 0
    if n_blocks < 2:
        raise InputDataError(
            path,
            f"all {len(surveys):,} train surveys lie in one block of {block_km:g} km: no "
            "spatial val split is possible",
            "lower the val block size (block_km), or use the archive's whole train file",
        )
    n_val = min(n_blocks - 1, max(1, round(val_share * n_blocks)))
    chosen = np.random.default_rng(seed).permutation(n_blocks)[:n_val]
    return np.isin(block, chosen)


# -- the PO table -------------------------------------------------------------------------


def read_po(path: Path) -> pd.DataFrame:
    """``GLC2x_P0_metadata_train.csv`` as one row per unique (survey, species), the first
    row's coordinates and year kept, sorted by survey then species."""
    path = Path(path)
    header = read_header(path, "the presence-only metadata")
    frame = read_columns(
        header,
        {name: _COLUMN_TYPES[name] for name in PO_COLUMNS},
        known=PO_UNREAD_COLUMNS,
        expected_header="publisher,year,month,day,lat,lon,geoUncertaintyInM,taxonRank,date,"
        "dayOfYear,speciesId,surveyId (GLC 2024: without publisher)",
    )
    if frame.empty:
        raise InputDataError(path, "header but no rows", "restore the file from the archive")
    frame, ids, species = _species_ids(path, frame, survey_ids(path, frame))
    _check_coordinates(path, frame)
    years = _check_years(path, frame)
    keep = _unique_pairs(ids, species)
    if len(keep) < len(ids):
        log.info(
            "%s: %d duplicate (survey, species) row(s) dropped", path.name, len(ids) - len(keep)
        )
    return pd.DataFrame(
        {
            "observation_id": ids[keep],
            "latitude": frame["lat"].to_numpy()[keep],
            "longitude": frame["lon"].to_numpy()[keep],
            "year": years[keep],
            "species_id": species[keep].astype(np.int32),
        }
    )


def _empty_po() -> pd.DataFrame:
    return PO_SCHEMA.empty_table().to_pandas()


# -- the whole ingest ---------------------------------------------------------------------


def ingest_surveys(
    layout: SurveyLayout,
    outputs: dict[str, Path],
    val_share: float,
    block_km: float,
    seed: int,
) -> dict[str, int]:
    """Read and check the PA train and test metadata (and the PO metadata when ``outputs``
    has ``po``), carve val from train by spatial blocks, then write each table of
    ``outputs`` (``train``, ``val``, ``test``, ``po``) atomically.

    Nothing is written unless every file passes. The PO file is optional in an archive: when
    absent, po.parquet is written empty (with its schema) and the log says so. Returns the
    counts of the log (surveys per split, PO pairs, rows dropped).
    """
    train_path = resolve(layout.pa_metadata("train"))
    test_path = resolve(layout.pa_metadata("test"))
    train = read_pa_train(train_path)
    test = read_pa_test(test_path, train.surveys["observation_id"].to_numpy(), train_path)
    in_val = carve_val(train.surveys, val_share, block_km, seed, train_path)
    tables = {
        "train": train.surveys[~in_val].assign(subset="train"),
        "val": train.surveys[in_val].assign(subset="val"),
        "test": test.assign(subset="test"),
    }
    counts = {split: len(table) for split, table in tables.items()} | train.counts
    if "po" in outputs:
        po_path = resolve(layout.po_metadata)
        if po_path.exists():
            tables["po"] = read_po(po_path)
        else:
            log.warning(
                "%s is not in the archive: po.parquet is written empty (no presence-only "
                "data for the models)",
                layout.po_metadata.name,
            )
            tables["po"] = _empty_po()
        counts["po"] = len(tables["po"])
    for split, path in outputs.items():
        schema = PO_SCHEMA if split == "po" else SURVEY_SCHEMA
        write_table(tables[split].reset_index(drop=True), Path(path), schema)
        log.info("%s: %d rows -> %s", split, len(tables[split]), path)
    log.info(
        "val: %d of %d train surveys (blocks of %g km, share %g of the blocks, seed %d)",
        counts["val"],
        counts["train"] + counts["val"],
        block_km,
        val_share,
        seed,
    )
    return counts
