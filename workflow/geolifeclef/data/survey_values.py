"""The env table of the survey editions, from the archive's pre-extracted values CSVs.

Each of the five families (:data:`~geolifeclef.survey_layout.VALUE_FAMILIES`) has one CSV
per PA split, keyed by ``surveyId`` (``GLC24-25-FORMAT.md`` §7). The columns are taken from
the files, under the archive's names, so that GLC 2024's (16 Venter ``HumanFootprint-``
columns, possibly a single ``LandCover``) and GLC 2025's (22 OSM ``HumanFootprint-``
columns, ``LandCover-1`` to ``-13``) both pass; the train and test files of a family must
have the same columns. They are joined on surveyId into the 2022 env table's format
(:func:`geolifeclef.data.env_table.write_env_table`): ``observation_id`` sorted, one float32
column per variable, NaN where a cell is empty, NaN or ±inf, or the survey has no row.

Every family listed is required: a missing file is refused by name, since a model trained
without a family cannot be served with it. A workflow that does without a family leaves it
out of ``families``.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from geolifeclef.data.env_table import write_env_table
from geolifeclef.data.observations import _fail_rows
from geolifeclef.data.surveys import also, read_columns, read_header, survey_ids
from geolifeclef.errors import InputDataError, listed
from geolifeclef.survey_layout import VALUE_FAMILIES, SurveyLayout, resolve

log = logging.getLogger(__name__)

ARCHIVE_SPLIT = {"train": "train", "val": "train", "test": "test"}
"""The archive split whose values files hold a survey table's rows (val is carved from
train)."""


@dataclass(frozen=True)
class ValuesFile:
    """One values CSV: its survey ids and value columns, in file order."""

    path: Path
    columns: list[str]
    survey_ids: np.ndarray
    values: np.ndarray
    """(rows, columns) float64, NaN where empty or NaN, ±inf kept."""


def read_values_csv(path: Path, family: str) -> ValuesFile:
    """A values CSV: ``surveyId`` + value columns (every named column but surveyId; an
    unnamed index column is dropped), refused when a survey repeats or a cell is not a
    number, naming the line."""
    path = Path(path)
    header = read_header(path, f"the {family} values")
    unnamed = header.unnamed()
    columns = [name for name in header.names if name != "surveyId" and name not in unnamed]
    if "surveyId" in header.names and not columns:
        raise InputDataError(
            path, "no value column besides surveyId", "restore it from the archive", line=1
        )
    types = {"surveyId": pa.float64()} | dict.fromkeys(columns, pa.float64())
    frame = read_columns(header, types, expected_header=f"surveyId,<the {family} columns>")
    ids = survey_ids(path, frame)
    order = np.argsort(ids, kind="stable")
    repeated = np.unique(ids[order][1:][ids[order][1:] == ids[order][:-1]])
    if len(repeated):
        _fail_rows(
            path,
            frame.index.to_numpy()[ids == repeated[0]],
            f"surveyId {repeated[0]} has more than one row"
            f"{also(len(repeated), 'repeated surveys')}",
            "keep one row per survey; restore the file from the archive",
        )
    return ValuesFile(path, columns, ids, frame[columns].to_numpy(dtype=np.float64))


@dataclass
class SurveyEnvReport:
    """What the values join did, for the log and the checks."""

    n_surveys: int = 0
    columns: list[str] = field(default_factory=list)
    column_files: dict[str, Path] = field(default_factory=dict)
    """Column -> the train (else test) file it comes from, for errors."""
    nan_counts: dict[str, int] = field(default_factory=dict)
    """Column -> NaN values in the table (empty or NaN cells, ±inf, surveys without a row)."""
    infinite_counts: dict[str, int] = field(default_factory=dict)
    """Column -> ±inf cells of the surveys' rows (NaN in the table)."""
    absent: dict[str, int] = field(default_factory=dict)
    """File name -> surveys of the tables that have no row in it (NaN in the table)."""
    unused_rows: dict[str, int] = field(default_factory=dict)
    """File name -> rows of surveys that are in none of the tables."""

    def check_nan_shares(self, limit: float = 1.0) -> None:
        """Refuse a column that is NaN for ``limit`` or more of the surveys (1: all of them,
        a file that matches no survey or holds no value), naming its file."""
        if not self.n_surveys:
            return
        for name in self.columns:
            share = self.nan_counts[name] / self.n_surveys
            if share < limit:
                continue
            fix = "check that the values file belongs to this archive's surveys"
            if limit < 1:
                fix += f" (or raise environment.nan_share_limit, now {limit:g})"
            raise InputDataError(
                self.column_files[name],
                f"column {name} has no value for {share:.0%} of the {self.n_surveys:,} surveys",
                fix,
            )

    def log_summary(self) -> None:
        for name, n in self.unused_rows.items():
            if n:
                log.info("%s: %d row(s) of surveys in no table, not used", name, n)
        infinite = {name: n for name, n in self.infinite_counts.items() if n}
        if infinite:
            log.info(
                "±inf values set to NaN: %s", ", ".join(f"{k}={v}" for k, v in infinite.items())
            )
        log.info(
            "NaN values per column: %s",
            ", ".join(f"{name}={n}" for name, n in self.nan_counts.items()),
        )


def survey_splits(survey_tables: Sequence[str | Path]) -> pd.DataFrame:
    """observation_id and archive split (train for train and val) of every survey of the
    tables, sorted by observation_id; an id in two tables is refused."""
    frames = [pd.read_parquet(path, columns=["observation_id", "subset"]) for path in survey_tables]
    surveys = pd.concat(frames, ignore_index=True).sort_values("observation_id", kind="stable")
    ids = surveys["observation_id"].to_numpy()
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        repeated = ids[1:][ids[1:] == ids[:-1]][0]
        raise InputDataError(
            survey_tables[0],
            f"observation_id {repeated} appears in more than one survey table",
            "rerun the survey ingest",
        )
    surveys["split"] = surveys["subset"].map(ARCHIVE_SPLIT)
    return surveys.reset_index(drop=True)


def _values_path(layout: SurveyLayout, family: str, split: str) -> Path:
    path = resolve(layout.values(family, split))
    if not path.is_file():
        raise InputDataError(
            path,
            f"file is missing (the {family} values of the PA {split} surveys)",
            f"restore it from the archive, or leave {family} out of the values families",
        )
    return path


def build_survey_env_table(
    layout: SurveyLayout,
    survey_tables: Sequence[str | Path],
    output: Path,
    nan_share_limit: float = 1.0,
    families: Sequence[str] = VALUE_FAMILIES,
) -> SurveyEnvReport:
    """The env table of every survey of ``survey_tables`` from the archive's values CSVs of
    ``families``, written to ``output``; nothing is written when a file is refused or a
    column is NaN for ``nan_share_limit`` or more of the surveys."""
    surveys = survey_splits(survey_tables)
    ids = surveys["observation_id"].to_numpy()
    splits = [split for split in ("train", "test") if (surveys["split"] == split).any()]
    report = SurveyEnvReport(n_surveys=len(ids))
    blocks = []
    for family in families:
        files = {
            split: read_values_csv(_values_path(layout, family, split), family) for split in splits
        }
        reference = files[splits[0]] if splits else None
        for split in splits[1:]:
            _check_same_columns(reference, files[split])
        columns = reference.columns if reference else []
        for name in columns:
            if name in report.column_files:
                raise InputDataError(
                    reference.path,
                    f"column {name} is also in {report.column_files[name].name}",
                    "each values file has its own columns; restore them from the archive",
                    line=1,
                )
            report.column_files[name] = reference.path
        block = np.full((len(ids), len(columns)), np.nan, dtype=np.float64)
        for split, values_file in files.items():
            mine = np.flatnonzero(surveys["split"].to_numpy() == split)
            rows = _rows_of(values_file, ids[mine], report)
            found = rows >= 0
            picked = values_file.values[:, [values_file.columns.index(c) for c in columns]]
            block[mine[found]] = picked[rows[found]]
        infinite = np.isinf(block)
        for i, name in enumerate(columns):
            report.infinite_counts[name] = int(infinite[:, i].sum())
        block[infinite] = np.nan
        for i, name in enumerate(columns):
            report.nan_counts[name] = int(np.isnan(block[:, i]).sum())
        report.columns.extend(columns)
        blocks.append(block.astype(np.float32))
    report.log_summary()
    report.check_nan_shares(nan_share_limit)
    values = np.hstack(blocks) if blocks else np.zeros((len(ids), 0), dtype=np.float32)
    write_env_table(ids, values, Path(output), report.columns)
    log.info("wrote %d surveys x %d columns to %s", len(ids), len(report.columns), output)
    return report


def _check_same_columns(train: ValuesFile, other: ValuesFile) -> None:
    missing = [name for name in train.columns if name not in other.columns]
    extra = [name for name in other.columns if name not in train.columns]
    if missing or extra:
        parts = [f"lacks {', '.join(missing)}"] if missing else []
        parts += [f"has {', '.join(extra)} besides"] if extra else []
        raise InputDataError(
            other.path,
            f"its columns differ from those of {train.path.name}: it {' and '.join(parts)}",
            "use the train and test files of the same archive (same columns, any order)",
            line=1,
        )


def _rows_of(values_file: ValuesFile, wanted: np.ndarray, report: SurveyEnvReport) -> np.ndarray:
    """Row of each ``wanted`` survey in ``values_file`` (-1 where it has none); counts the
    absent surveys and the rows no survey wants."""
    order = np.argsort(values_file.survey_ids)
    sorted_ids = values_file.survey_ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, wanted), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[at] == wanted if len(sorted_ids) else np.zeros(len(wanted), dtype=bool)
    rows = np.where(found, order[at] if len(sorted_ids) else 0, -1)
    name = values_file.path.name
    report.absent[name] = int((~found).sum())
    if not found.all():
        log.warning(
            "%s: %d survey(s) have no row, their values are NaN: %s",
            name,
            int((~found).sum()),
            listed(wanted[~found]),
        )
    report.unused_rows[name] = len(sorted_ids) - int(found.sum())
    return rows
