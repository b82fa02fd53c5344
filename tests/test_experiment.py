"""Experiment settings and the batches the models read."""

import numpy as np
import pytest
import torch

from geolifeclef.experiment import (
    ExperimentSettings,
    experiment_modalities,
    read_job,
    weight_settings,
    write_job,
)
from geolifeclef.features import TABULAR_SIZES, ModelBatch, unit_sphere
from geolifeclef.layout import N_LANDCOVER_CODES

ENTRY = {
    "model": {
        "kind": "fusion",
        "modalities": ["rgb", "landcover"],
        "tabular": ["env", "coordinates", "landcover_shares", "altitude_stats"],
        "cnn": {"backbone": "small", "width": 8},
    },
    "train": {"epochs": 3, "augment": {"flip": False}},
}


def test_settings_become_typed_configs():
    settings = ExperimentSettings.from_config("x", ENTRY, n_classes=40)
    assert settings.model.n_tabular == sum(TABULAR_SIZES.values())
    assert settings.model.modalities == ("rgb", "landcover")
    assert settings.train.epochs == 3 and settings.train.augment.flip is False
    # Altitude is loaded for its statistics although the CNN does not read it.
    assert settings.patch_modalities == ("rgb", "landcover", "altitude")


def test_fingerprint_follows_what_shapes_the_weights():
    base = ExperimentSettings.from_config("x", ENTRY, 40).fingerprint()
    assert ExperimentSettings.from_config("renamed", ENTRY, 40).fingerprint() == base
    changed = {**ENTRY, "train": {**ENTRY["train"], "epochs": 4}}
    assert ExperimentSettings.from_config("x", changed, 40).fingerprint() != base
    assert ExperimentSettings.from_config("x", {**ENTRY, "tta": True}, 40).fingerprint() == base


def test_what_an_experiment_reads_and_what_retrains_it_are_decided_once():
    settings = ExperimentSettings.from_config("x", ENTRY, 40)
    assert experiment_modalities(ENTRY) == settings.patch_modalities
    env_only = {"model": {"kind": "mlp", "tabular": ["env", "coordinates"]}}
    assert experiment_modalities(env_only) == ()
    # An MLP on land-cover shares reads the land-cover cache, but no CNN modality.
    shares = {"model": {"kind": "mlp", "modalities": ["rgb"], "tabular": ["landcover_shares"]}}
    assert experiment_modalities(shares) == ("landcover",)
    assert weight_settings({**ENTRY, "tta": True}) == ENTRY


def test_jobs_round_trip_through_json(tmp_path):
    from geolifeclef.experiment import ExperimentInputs, PredictionJob, Tracking, TrainingJob

    inputs = ExperimentInputs({"train": "t.parquet"}, "env.parquet", "stats.json", {"train": "c"})
    training = TrainingJob(
        "x",
        ENTRY,
        inputs,
        "species.parquet",
        "m.pt",
        "h.json",
        "ck",
        "m.jsonl",
        Tracking("sqlite:///x.db", "e"),
        artifacts=("a.png",),
    )
    prediction = PredictionJob("m.pt", inputs, {"val": "v.parquet"}, top_k=30, tta=True)
    for job in (training, prediction):
        write_job(job, tmp_path / "job.json")
        assert read_job(tmp_path / "job.json") == job


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown TrainConfig settings"):
        ExperimentSettings.from_config("x", {**ENTRY, "train": {"epoch": 3}}, 40)
    bad = {"model": {**ENTRY["model"], "tabular": ["env", "sentinel"]}}
    with pytest.raises(ValueError, match="unknown tabular features"):
        ExperimentSettings.from_config("x", bad, 40)


def test_model_batch_builds_tabular_features_and_patches():
    landcover = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    landcover[0, 0, :2] = 3  # half the patch is code 3, half code 0
    batch = {
        "observation_id": torch.tensor([1, 2]),
        "coords": torch.tensor([[45.0, 3.0], [40.0, -100.0]]),
        "env": torch.ones(2, 27),
        "rgb": torch.zeros(2, 3, 4, 4),
        "landcover": landcover,
        "altitude": torch.arange(32.0).reshape(2, 1, 4, 4),
        "label": torch.tensor([5, 6]),
    }
    out = ModelBatch(("altitude_stats", "env", "coordinates", "landcover_shares"), ("rgb",))(batch)
    assert set(out["patches"]) == {"rgb"}
    tabular = out["tabular"]
    assert tabular.shape == (2, sum(TABULAR_SIZES.values()))
    np.testing.assert_allclose(
        tabular[:, 27:30], unit_sphere(np.array([45.0, 40.0]), np.array([3.0, -100.0])), rtol=1e-6
    )
    shares = tabular[:, 30 : 30 + N_LANDCOVER_CODES]
    torch.testing.assert_close(shares.sum(1), torch.ones(2))
    assert shares[0, 3] == 0.5 and shares[1, 0] == 1.0
    altitude = tabular[:, 30 + N_LANDCOVER_CODES :]
    # Sample 0 is 0..15: mean 7.5, sample std sqrt(sum((x - 7.5)^2) / 15), min 0, range 15.
    std = float(np.std(np.arange(16.0), ddof=1))
    torch.testing.assert_close(altitude[0], torch.tensor([7.5, std, 0.0, 15.0]))
    assert torch.equal(out["label"], batch["label"])
