"""Ingest of observation CSVs: the real sample passes, every kind of bad input is named."""

import shutil

import numpy as np
import pandas as pd
import pytest

from geolifeclef.data.observations import (
    OBSERVATION_SCHEMA,
    ingest_observations,
    read_observation_csv,
    read_table,
)
from geolifeclef.errors import InputDataError
from geolifeclef.layout import N_SPECIES, REGIONS, SPLITS, DatasetLayout


def _copy_observations(source: DatasetLayout, target_root, n_species: int | None = None):
    """A writable copy of the observation CSVs and species list of ``source``."""
    target = DatasetLayout(target_root)
    for path in source.observation_files():
        destination = target.root / path.relative_to(source.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    target.species_details.parent.mkdir(parents=True, exist_ok=True)
    if source.species_details.exists():
        shutil.copyfile(source.species_details, target.species_details)
    else:  # the sample ships no metadata: list the real archive's ids
        ids = np.arange(n_species or N_SPECIES)
        pd.DataFrame({"species_id": ids, "GBIF_species_name": "x"}).to_csv(
            target.species_details, sep=";", index=False
        )
    return target


def _outputs(tmp_path):
    return {split: tmp_path / "out" / f"{split}.parquet" for split in SPLITS}


def test_real_sample_ingests_unchanged(sample_layout, tmp_path):
    layout = _copy_observations(sample_layout, tmp_path / "data")
    for path in sample_layout.observation_files():  # the copies are byte-identical
        assert (
            layout.root / path.relative_to(sample_layout.root)
        ).read_bytes() == path.read_bytes()
    counts = ingest_observations(layout, _outputs(tmp_path))
    assert counts["train"] + counts["val"] == 2000 and counts["test"] == 46
    train = read_table(tmp_path / "out" / "train.parquet")
    assert train.dtypes["observation_id"] == np.int64
    assert train.dtypes["latitude"] == np.float64
    assert str(train.dtypes["species_id"]) == "Int32"
    row = train.loc[train["observation_id"] == 10561949].iloc[0]
    assert row["latitude"] == 45.70511627197271 and row["longitude"] == 1.4246221780776998
    assert row["species_id"] == 241 and row["region"] == "fr" and row["subset"] == "train"
    us = train.loc[train["observation_id"] == 20000173].iloc[0]
    assert (us["latitude"], us["longitude"], us["region"]) == (33.19766, -116.18068, "us")


def test_demo_ingests_with_the_arrow_schema(tiny_demo, tmp_path):
    layout, _, summary = tiny_demo
    counts = ingest_observations(layout, _outputs(tmp_path))
    assert counts == summary["n_observations"]
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "out" / "val.parquet")
    assert schema.remove_metadata() == OBSERVATION_SCHEMA


@pytest.fixture
def editable(tiny_demo, tmp_path):
    """A writable copy of the tiny demo's observation files."""
    layout, _, _ = tiny_demo
    return _copy_observations(layout, tmp_path / "data")


def _edit(layout, region, kind, change):
    path = layout.observations(region, kind)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")
    return path


def _replace_field(line: str, index: int, value: str) -> str:
    fields = line.split(";")
    fields[index] = value
    return ";".join(fields)


BAD_EDITS = {
    "missing column": (
        lambda ls: [";".join(line.split(";")[:4]) for line in ls],
        r"missing column\(s\) \['subset'\]",
        1,
    ),
    "renamed column": (
        lambda ls: [ls[0].replace("latitude", "lat")] + ls[1:],
        r"missing column\(s\) \['latitude'\]; unexpected column\(s\) \['lat'\]",
        1,
    ),
    "comma separator": (
        lambda ls: [line.replace(";", ",") for line in ls],
        r"separated by ','",
        1,
    ),
    "non-numeric latitude": (
        lambda ls: [ls[0], _replace_field(ls[1], 1, "45,3")] + ls[2:],
        r"latitude '45,3' is not a finite number",
        2,
    ),
    "NaN longitude": (
        lambda ls: ls[:3] + [_replace_field(ls[3], 2, "nan")] + ls[4:],
        r"longitude 'nan' is not a finite number",
        4,
    ),
    "out-of-range latitude": (
        lambda ls: [ls[0], _replace_field(ls[1], 1, "95.0")] + ls[2:],
        r"outside region fr",
        2,
    ),
    "swapped coordinates": (
        lambda ls: (
            [ls[0]]
            + [
                _replace_field(
                    _replace_field(ls[1], 1, ls[1].split(";")[2]), 2, ls[1].split(";")[1]
                )
            ]
            + ls[2:]
        ),
        r"latitude and longitude look swapped",
        2,
    ),
    "duplicate id": (
        lambda ls: ls + [ls[1]],
        r"duplicate observation_id",
        None,
    ),
    "id of the wrong region": (
        lambda ls: [ls[0], "2" + ls[1][1:]] + ls[2:],
        r"starts with 2, but ids of region fr start with 1",
        2,
    ),
    "id of 7 digits": (
        lambda ls: [ls[0], ls[1][1:]] + ls[2:],
        r"does not have 8 digits",
        2,
    ),
    "unknown species": (
        lambda ls: [ls[0], _replace_field(ls[1], 3, "99999")] + ls[2:],
        r"species_id 99999 is not in species_details.csv",
        2,
    ),
    "bad subset": (
        lambda ls: [ls[0], _replace_field(ls[1], 4, "training")] + ls[2:],
        r"subset 'training' is not 'train' or 'val'",
        2,
    ),
    "too many fields": (
        lambda ls: [ls[0], ls[1], ls[2] + ";extra"] + ls[3:],
        r"malformed row: 6 fields",
        3,
    ),
    "too few fields": (
        lambda ls: [ls[0], ls[1], ";".join(ls[2].split(";")[:4])] + ls[3:],
        r"subset '' is not 'train' or 'val'",
        3,
    ),
    "header only": (lambda ls: ls[:1], r"header but no rows", None),
}


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_bad_train_file_is_refused_with_file_line_and_fix(editable, tmp_path, case):
    change, pattern, line = BAD_EDITS[case]
    path = _edit(editable, "fr", "train", change)
    outputs = _outputs(tmp_path)
    with pytest.raises(InputDataError, match=pattern) as raised:
        ingest_observations(editable, outputs)
    error = raised.value
    assert error.path == path
    assert str(path) in str(error) and "Fix:" in str(error)
    if line is not None:
        assert error.line == line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing


def test_empty_file_is_refused(editable, tmp_path):
    path = editable.observations("us", "test")
    path.write_text("")
    with pytest.raises(InputDataError, match="file is empty"):
        ingest_observations(editable, _outputs(tmp_path))


def test_missing_file_is_refused(editable, tmp_path):
    editable.observations("us", "train").unlink()
    with pytest.raises(InputDataError, match="file is missing"):
        ingest_observations(editable, _outputs(tmp_path))


def test_test_id_also_in_train_is_refused(editable, tmp_path):
    train_line = editable.observations("us", "train").read_text().splitlines()[1]
    identifier, lat, lon = train_line.split(";")[:3]
    _edit(editable, "us", "test", lambda ls: ls + [f"{identifier};{lat};{lon}"])
    with pytest.raises(InputDataError, match=f"observation_id {identifier} also appears in"):
        ingest_observations(editable, _outputs(tmp_path))


def _lines(change):
    """A change of the text lines of a file (its final line end kept)."""

    def changed(data: bytes) -> bytes:
        return ("\n".join(change(data.decode().splitlines())) + "\n").encode()

    return changed


HARMLESS_QUIRKS = {
    "bom": lambda b: b"\xef\xbb\xbf" + b,  # UTF-8 byte-order mark
    "crlf": lambda b: b.replace(b"\n", b"\r\n"),  # Windows line ends
    "trailing empty line": lambda b: b + b"\n",
    "bom + crlf + blank lines at the end": lambda b: (
        b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n") + b"\r\n\r\n"
    ),
    "quoted header": _lines(lambda ls: ['"' + ls[0].replace(";", '";"') + '"', *ls[1:]]),
    "blank line in the middle": _lines(lambda ls: [*ls[:3], "", *ls[3:]]),
    "spaces around fields": _lines(lambda ls: [ls[0], ls[1].replace(";", " ; "), *ls[2:]]),
}
"""What a spreadsheet or an editor does to a file it saves again: all read as the original."""


@pytest.mark.parametrize("quirk", list(HARMLESS_QUIRKS))
def test_harmless_quirks_are_accepted(editable, tmp_path, quirk):
    path = editable.observations("fr", "train")
    original = read_observation_csv(path, "fr", labelled=True)
    path.write_bytes(HARMLESS_QUIRKS[quirk](path.read_bytes()))
    pd.testing.assert_frame_equal(read_observation_csv(path, "fr", labelled=True), original)
    ingest_observations(editable, _outputs(tmp_path))


def test_quoted_fields_are_read_as_values(editable):
    path = editable.observations("fr", "test")
    original = read_observation_csv(path, "fr", labelled=False)
    lines = path.read_text().splitlines()
    quoted = '"' + lines[1].replace(";", '";"') + '"'  # every field of line 2 in quotes
    path.write_text("\n".join([lines[0], quoted, *lines[2:]]) + "\n")
    pd.testing.assert_frame_equal(read_observation_csv(path, "fr", labelled=False), original)


def test_regions_come_from_the_file_and_match_the_id(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    ingest_observations(layout, _outputs(tmp_path))
    for split in SPLITS:
        table = read_table(tmp_path / "out" / f"{split}.parquet")
        digit = table["observation_id"] // 10**7
        assert set(table["region"]) <= set(REGIONS)
        assert ((table["region"] == "fr") == (digit == 1)).all()
        assert (table["subset"] == split).all()
