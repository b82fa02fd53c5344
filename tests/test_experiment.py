"""Experiment settings and the batches the models read."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geolifeclef.data.coordinates import unit_sphere
from geolifeclef.data.dataset import to_device
from geolifeclef.experiments.jobs import read_job, write_job
from geolifeclef.models.features import ModelBatch
from geolifeclef.patches.normalize import ndvi
from geolifeclef.settings.experiment import ExperimentSettings, experiment_inputs
from geolifeclef.settings.inputs import PATCH_STAT_COLUMNS, TABULAR_SIZES, InputsNeeded

ENTRY = {
    "model": {
        "kind": "fusion",
        "modalities": ["rgb", "landcover", "ndvi"],
        "tabular": ["env", "coordinates", "landcover_shares", "altitude_stats"],
        "cnn": {"backbone": "small", "width": 8},
    },
    "train": {"epochs": 3, "augment": {"flip": False}},
}


def test_settings_become_typed_configs():
    settings = ExperimentSettings.from_config("x", ENTRY)
    groups = ENTRY["model"]["tabular"]
    assert settings.model.n_tabular == sum(TABULAR_SIZES[g] for g in groups)
    assert settings.model.modalities == ("rgb", "landcover", "ndvi")
    assert settings.train.epochs == 3 and settings.train.augment.flip is False
    # NDVI is derived from the cached rgb and near_ir; patch statistics come from a table.
    assert settings.inputs == InputsNeeded(("rgb", "landcover", "near_ir"), True, True)


def test_fingerprint_follows_what_shapes_the_weights():
    base = ExperimentSettings.from_config("x", ENTRY).fingerprint()
    assert ExperimentSettings.from_config("renamed", ENTRY).fingerprint() == base
    changed = {**ENTRY, "train": {**ENTRY["train"], "epochs": 4}}
    assert ExperimentSettings.from_config("x", changed).fingerprint() != base
    # Prediction settings are not weight settings: they are not even in the typed settings.
    assert ExperimentSettings.from_config("x", {**ENTRY, "tta": True}).fingerprint() == base


def test_what_an_experiment_reads_and_what_retrains_it_are_decided_once():
    settings = ExperimentSettings.from_config("x", ENTRY)
    assert experiment_inputs(ENTRY) == settings.inputs
    env_only = {"model": {"kind": "mlp", "tabular": ["env", "coordinates"]}}
    assert experiment_inputs(env_only) == InputsNeeded((), env=True, patch_stats=False)
    # An MLP on land-cover shares reads the statistics table, no patch cache at all.
    shares = {"model": {"kind": "mlp", "modalities": ["rgb"], "tabular": ["landcover_shares"]}}
    assert experiment_inputs(shares) == InputsNeeded((), env=False, patch_stats=True)
    cnn = {"model": {"kind": "cnn", "modalities": ["green"], "tabular": ["env"]}}
    assert experiment_inputs(cnn) == InputsNeeded(("rgb",), env=False, patch_stats=False)
    assert ExperimentSettings.from_config("x", {**ENTRY, "tta": True}) == settings


def test_jobs_round_trip_through_json(tmp_path):
    from geolifeclef.experiments.jobs import PredictionJob, TrainingJob
    from geolifeclef.experiments.trained import ExperimentInputs
    from geolifeclef.settings.tracking import Tracking

    inputs = ExperimentInputs({"train": "t.parquet"}, "env.parquet", "stats.json", {"train": "c"})
    training = TrainingJob(
        ExperimentSettings.from_config("x", ENTRY),
        inputs,
        "species.parquet",
        "m.pt",
        "h.json",
        "ck",
        "m.jsonl",
        Tracking("sqlite:///x.db", "e"),
        artifacts=("a.png",),
    )
    prediction = PredictionJob({"val": "m.pt"}, inputs, {"val": "v.parquet"}, top_k=30, tta=True)
    for job in (training, prediction):
        write_job(job, tmp_path / "job.json")
        assert read_job(tmp_path / "job.json") == job


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown TrainConfig settings"):
        ExperimentSettings.from_config("x", {**ENTRY, "train": {"epoch": 3}})
    bad = {"model": {**ENTRY["model"], "tabular": ["env", "sentinel"]}}
    with pytest.raises(ValueError, match="unknown tabular features"):
        ExperimentSettings.from_config("x", bad)


def test_model_batch_builds_tabular_features_and_patches():
    stats = {
        "patches": {
            m: {"mean": [10.0] * c, "std": [2.0] * c} for m, c in (("rgb", 3), ("near_ir", 1))
        }
    }
    raw_rgb = torch.arange(2 * 3 * 16, dtype=torch.uint8).reshape(2, 3, 4, 4)
    raw_nir = torch.full((2, 1, 4, 4), 40, dtype=torch.uint8)
    table = torch.arange(2 * len(PATCH_STAT_COLUMNS), dtype=torch.float32).reshape(2, -1)
    batch = {
        "observation_id": torch.tensor([10000001, 20000002]),
        "coords": torch.tensor([[45.0, 3.0], [40.0, -100.0]]),
        "env": torch.ones(2, 27),
        "rgb": raw_rgb,  # as GlcDataset(raw_patches=True) ships them
        "near_ir": raw_nir,
        "patch_stats": table,
        "label": torch.tensor([5, 6]),
    }
    groups = ("altitude_stats", "env", "country", "coordinates", "landcover_shares")
    shipped = ModelBatch(groups, ("green", "ndvi"), stats)(batch)
    # The workers ship the raw sources of the CNN's modalities; the device makes them.
    assert set(shipped["patches"].sources) == {"rgb", "near_ir"}
    assert shipped["patches"].sources["rgb"].dtype == torch.uint8
    out = to_device(shipped, "cpu")
    assert set(out["patches"]) == {"green", "ndvi"}
    assert out["patches"]["green"].dtype == torch.float32
    torch.testing.assert_close(out["patches"]["green"], (raw_rgb[:, 1:2].float() - 10) / 2)
    # NDVI from the raw reflectances, by hand for one pixel: (40 - 5) / (40 + 5).
    assert out["patches"]["ndvi"][0, 0, 1, 1].item() == pytest.approx((40 - 5) / 45)
    torch.testing.assert_close(out["patches"]["ndvi"], ndvi(raw_rgb[:, :1], raw_nir))
    # Patches the dataset normalised already would be normalised twice: refused.
    with pytest.raises(ValueError, match="raw_patches=True"):
        ModelBatch(groups, ("green",), stats)({**batch, "rgb": (raw_rgb - 10.0) / 2})
    tabular = out["tabular"]
    assert tabular.shape == (2, sum(TABULAR_SIZES[g] for g in groups))
    torch.testing.assert_close(tabular[:, :27], batch["env"])  # TABULAR_SIZES order
    np.testing.assert_allclose(
        tabular[:, 27:30], unit_sphere(np.array([45.0, 40.0]), np.array([3.0, -100.0])), rtol=1e-6
    )
    assert tabular[:, 30].tolist() == [0.0, 1.0]  # France, US
    altitude = [PATCH_STAT_COLUMNS.index(f"altitude_{s}") for s in ("mean", "std", "min", "range")]
    torch.testing.assert_close(tabular[:, 31:35], table[:, altitude])
    assert torch.equal(out["label"], batch["label"])


def test_ndvi_of_dark_pixels_is_zero():
    zero = torch.zeros(1, 1, 2, 2)
    assert torch.equal(ndvi(zero, zero), zero)
    assert ndvi(torch.tensor([[[[0.0]]]]), torch.tensor([[[[50.0]]]])).item() == 1.0


def _training_job(extracted, tmp_path, settings, **more):
    """A training job of ``settings`` on the tiny demo's tables, logging to a sqlite store
    under ``tmp_path``."""
    from geolifeclef.experiments.jobs import TrainingJob
    from geolifeclef.experiments.trained import ExperimentInputs
    from geolifeclef.settings.experiment import TRAINING_SPLITS
    from geolifeclef.settings.tracking import Tracking

    tables = extracted["tables"]
    return TrainingJob(
        settings=settings,
        inputs=ExperimentInputs(
            observations={split: str(tables[split]) for split in TRAINING_SPLITS},
            env_table=str(extracted["env"]),
            stats=str(extracted["stats"]),
            patch_stats={split: str(extracted["patch_stats"][split]) for split in TRAINING_SPLITS},
        ),
        species_table=str(extracted["species"]),
        model=str(tmp_path / "model.pt"),
        history=str(tmp_path / "history.json"),
        checkpoint_dir=str(tmp_path / "checkpoints"),
        local_metrics=str(tmp_path / "metrics.jsonl"),
        tracking=Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests"),
        log_model=False,
        **more,
    )


def test_refit_trains_on_train_and_val_rows_and_never_on_test(with_species, tmp_path, monkeypatch):
    from geolifeclef.experiments import jobs as experiment
    from geolifeclef.experiments import training

    entry = {
        "model": {"kind": "mlp", "tabular": ["env", "coordinates", "patch_quantiles"]},
        "train": {"epochs": 1, "batch_size": 32},
    }
    seen = {}

    def spy(model, make_train_loader, val_loader, config, counts, checkpoint, best, **kwargs):
        ids = np.concatenate([b["observation_id"].numpy() for b in make_train_loader(0)])
        seen["ids"], seen["epochs"], seen["val"] = ids, config.epochs, val_loader
        Path(best).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), best)
        return training.TrainState(epoch=config.epochs, best_epoch=config.epochs - 1)

    monkeypatch.setattr(experiment, "train", spy)  # jobs calls the train it imported
    ids = {
        s: pd.read_parquet(p)["observation_id"].to_numpy()
        for s, p in with_species["tables"].items()
    }
    settings = ExperimentSettings.from_config("x", entry)
    experiment.run_training(_training_job(with_species, tmp_path, settings, refit_epochs=3))
    assert sorted(seen["ids"]) == sorted(np.concatenate([ids["train"], ids["val"]]))
    assert not set(seen["ids"]) & set(ids["test"])
    assert seen["epochs"] == 3 and seen["val"] is None  # the epochs the train-only fit chose
    experiment.run_training(_training_job(with_species, tmp_path / "plain", settings))
    assert sorted(seen["ids"]) == sorted(ids["train"]) and seen["val"] is not None


def _spy_train(seen):
    """A stand-in for ``training.train`` that records the TrainConfig it is handed and
    saves the untrained weights as the best epoch."""
    from geolifeclef.experiments import training

    def spy(model, make_train_loader, val_loader, config, counts, checkpoint, best, **kwargs):
        seen["config"] = config
        Path(best).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), best)
        return training.TrainState(epoch=config.epochs, best_epoch=config.epochs - 1)

    return spy


def test_the_learning_rate_goes_from_the_config_to_the_job_and_its_files(
    with_species, tmp_path, monkeypatch
):
    """config -> typed settings (as common.smk builds them) -> job -> optimizer, bundle,
    settings.json and MLflow params, and through a job's JSON file for torchrun."""
    import json

    import mlflow
    from conftest import SCHEMA
    from snakemake.utils import validate

    from geolifeclef.experiments import jobs
    from geolifeclef.experiments.trained import load_trained

    config = {
        "experiments": {
            "x": {
                "train": {"learning_rate": 0.0123, "epochs": 1},
                "model": {"tabular": ["coordinates", "env"], "kind": "mlp"},
            }
        }
    }
    validate(config, str(SCHEMA))  # as the Snakefile does: the schema fills the defaults
    settings = ExperimentSettings.from_config("x", config["experiments"]["x"])
    assert settings.train.learning_rate == 0.0123 and settings.model.n_classes == 0
    job = _training_job(with_species, tmp_path, settings)
    assert job.settings.train.learning_rate == 0.0123
    write_job(job, tmp_path / "job.json")
    assert read_job(tmp_path / "job.json") == job

    seen = {}
    monkeypatch.setattr(jobs, "train", _spy_train(seen))  # jobs calls the train it imported
    jobs.run_training(job)
    assert seen["config"].learning_rate == 0.0123
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved == settings.to_config() and saved["train"]["learning_rate"] == 0.0123
    trained, _ = load_trained(job.model)
    assert trained == settings.with_classes(trained.model.n_classes)
    assert trained.model.n_classes > 0
    [run] = mlflow.MlflowClient(job.tracking.uri).search_runs(
        [mlflow.MlflowClient(job.tracking.uri).get_experiment_by_name("tests").experiment_id]
    )
    assert run.data.params["train.learning_rate"] == "0.0123"


def test_typed_settings_change_with_a_setting_not_with_the_order_of_keys():
    """What the train rule's params record (sorted JSON of ``to_config``): a reordered
    entry reads the same, another learning rate does not; and it reads back."""
    settings = ExperimentSettings.from_config("x", ENTRY)
    reordered = {"train": dict(reversed(ENTRY["train"].items())), **ENTRY}
    reordered["model"] = dict(reversed(ENTRY["model"].items()))
    assert ExperimentSettings.from_config("x", reordered) == settings
    faster = {**ENTRY, "train": {**ENTRY["train"], "learning_rate": 0.01}}
    assert ExperimentSettings.from_config("x", faster).to_config() != settings.to_config()
    assert ExperimentSettings.from_config("x", settings.to_config()) == settings


def test_an_unknown_backbone_stops_the_job_naming_the_experiment(with_species, tmp_path):
    """The settings take any backbone name (the Snakefile builds them without torch); the
    job refuses an unknown one before reading any data, naming experiment and backbone."""
    from geolifeclef.experiments.jobs import run_training

    entry = {"model": {"kind": "cnn", "modalities": ["rgb"], "cnn": {"backbone": "resnet34x"}}}
    settings = ExperimentSettings.from_config("x", entry)
    with pytest.raises(ValueError, match="experiment x: unknown backbone 'resnet34x'"):
        run_training(_training_job(with_species, tmp_path, settings))
