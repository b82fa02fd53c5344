"""The long-tail analysis: counts, priors, buckets, summary figures and outputs."""

import json

import numpy as np
import pandas as pd
import pytest

from geolifeclef.data.class_frequency import (
    BucketThresholds,
    analyze_class_frequency,
    gini,
    read_species_table,
    species_table,
    summarize,
)
from geolifeclef.data.observations import load_observations, read_species_ids
from geolifeclef.errors import InputDataError


def _observations(species_counts: dict[int, int], region: str = "fr") -> pd.DataFrame:
    labels = [s for s, n in species_counts.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "observation_id": np.arange(len(labels)) + 10_000_000,
            "species_id": pd.array(labels, dtype="Int32"),
            "region": region,
        }
    )


def test_counts_priors_ranks_and_buckets_by_hand():
    train = pd.concat(
        [_observations({0: 101, 1: 100, 2: 20}), _observations({3: 19, 1: 5}, region="us")]
    )
    val = _observations({3: 2, 5: 1})
    table = species_table(train, val, np.arange(6), BucketThresholds(100, 20))
    assert table["train_count"].tolist() == [101, 105, 20, 19, 0, 0]
    assert table["train_fr"].tolist() == [101, 100, 20, 0, 0, 0]
    assert table["train_us"].tolist() == [0, 5, 0, 19, 0, 0]
    assert table["val_count"].tolist() == [0, 0, 0, 2, 0, 1]
    assert table["prior"].sum() == pytest.approx(1.0)
    assert table["prior"].iloc[1] == pytest.approx(105 / 245)
    assert table["rank"].tolist() == [2, 1, 3, 4, 5, 6]  # ties (4 and 5 at 0): smaller id first
    # Exactly 100 is medium, 101 head; exactly 20 medium, 19 tail; never seen: tail.
    table = species_table(
        _observations({0: 101, 1: 100, 2: 20, 3: 19}), val, np.arange(6), BucketThresholds(100, 20)
    )
    assert table["bucket"].tolist() == ["head", "medium", "medium", "tail", "tail", "tail"]


def test_summary_figures_by_hand():
    train = _observations({i: n for i, n in enumerate([50, 30, 10, 5, 3, 2] + [0] * 94)})
    val = _observations({0: 4, 3: 2, 4: 1, 99: 1})
    table = species_table(train, val, np.arange(100), BucketThresholds(40, 6))
    summary = summarize(table, {"train": train, "val": val}, BucketThresholds(40, 6), [3, 10])
    assert summary["top_1pct_species"] == 1
    assert summary["top_1pct_train_share"] == pytest.approx(0.5)
    assert summary["species_with_train_count_below"] == {"3": 95, "10": 97}
    # In val but with < 6 train observations: species 3, 4 and 99 (unseen), 4 of 8 val obs.
    assert summary["val_species_rare_in_train"]["n_species"] == 3
    assert summary["val_species_rare_in_train"]["val_share"] == pytest.approx(0.5)
    assert summary["val_species_unseen_in_train"] == {"n_species": 1, "val_share": 0.125}
    assert summary["buckets"]["head"]["n_species"] == 1
    assert summary["buckets"]["tail"]["train_share"] == pytest.approx(0.1)


def test_gini():
    assert gini(np.full(10, 7)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)  # (n - 1) / n
    assert 0 < gini(np.array([1, 2, 3, 100])) < 1


def test_bad_thresholds_and_unknown_species_are_refused():
    with pytest.raises(ValueError, match="tail_below"):
        BucketThresholds(head_above=10, tail_below=50)
    with pytest.raises(InputDataError, match="species_id 9 is not in"):
        species_table(_observations({9: 1}), _observations({}), np.arange(5), BucketThresholds())


def test_outputs_on_the_tiny_demo(tiny_demo, tmp_path):
    layout, _, demo_summary = tiny_demo
    tables = load_observations(layout)
    observations = {split: tables.split(split) for split in ("train", "val", "test")}
    species_ids = read_species_ids(layout.species_details)
    paths = {name: tmp_path / name for name in ("species.parquet", "summary.json", "plot.png")}
    analyze_class_frequency(
        observations, species_ids, BucketThresholds(10, 3), [5], *paths.values()
    )
    table = read_species_table(paths["species.parquet"])
    assert table["species_id"].tolist() == sorted(species_ids.tolist())
    assert table["train_count"].sum() == demo_summary["n_observations"]["train"]
    assert table["val_count"].sum() == demo_summary["n_observations"]["val"]
    assert (table["train_fr"] + table["train_us"] == table["train_count"]).all()
    assert str(table["species_id"].dtype) == "int32"
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["n_observations"]["test"]["total"] == demo_summary["n_observations"]["test"]
    assert paths["plot.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
