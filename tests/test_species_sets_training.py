"""A multi-label experiment (GLC 2024/2025: the set of species present in each survey) on
the shared training stack: survey tables with ``species_ids`` lists over non-contiguous
species ids, an env table with the archive's column names and NaN, the multi-label
settings, loss, per-epoch F1, marginal predictions and the served model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tracking_uri_kept

from geolifeclef.data.class_frequency import SPECIES_TABLE_SCHEMA
from geolifeclef.data.dataset import GlcDataset
from geolifeclef.data.normalization import write_normalization_stats
from geolifeclef.errors import InputDataError
from geolifeclef.experiments.training import evaluate_species_sets, make_loss
from geolifeclef.predictions.metrics import top_k_f1
from geolifeclef.predictions.table import Predictions, check_predictions, read_predictions
from geolifeclef.settings.configs import TrainConfig
from geolifeclef.settings.experiment import ExperimentSettings, shaping_settings
from geolifeclef.tracking.records import MODEL_URI_KEY

SPECIES = np.sort(np.random.default_rng(7).choice(11_255, 40, replace=False))
"""Species ids as an edition's: a random subset of the archive's 0..11,254."""
HOT, COLD = int(SPECIES[17]), int(SPECIES[3])
"""Present exactly where Bio1 is high (HOT) or low (COLD)."""
ENV_COLUMNS = ("Bio1", "Bio12", "Elevation", "LandCover-1", "Soilgrid-bdod", "HumanFootprint-road")
ENTRY = {
    "model": {"kind": "mlp", "tabular": ["env", "coordinates"], "mlp": {"hidden": 32}},
    "train": {"epochs": 4, "batch_size": 50, "learning_rate": 0.01, "warmup_epochs": 0},
}


def _surveys(rng: np.random.Generator, n: int, first_id: int, labelled: bool):
    """A survey table of ``n`` surveys and their env rows: HOT present iff Bio1 > 0 (warm
    sites near +2, cold ones near -2), COLD iff not, each other species at random (p =
    0.1, independent of the env)."""
    bio1 = rng.choice([-2.0, 2.0], n) + 0.5 * rng.standard_normal(n)
    others = [s for s in SPECIES if s not in (HOT, COLD)]
    lists = []
    for value in bio1:
        present = [s for s in others if rng.random() < 0.1] + [HOT if value > 0 else COLD]
        lists.append(sorted(int(s) for s in present) if labelled else [])
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    table = pa.table(
        {
            "observation_id": pa.array(ids, pa.int64()),
            "latitude": pa.array(rng.uniform(43, 50, n)),
            "longitude": pa.array(rng.uniform(-1, 7, n)),
            "species_ids": pa.array(lists, pa.list_(pa.int32())),
        }
    )
    env = {"observation_id": ids, "Bio1": bio1.astype(np.float32)}
    for column in ENV_COLUMNS[1:]:
        values = rng.standard_normal(n).astype(np.float32)
        values[rng.random(n) < 0.2] = np.nan  # missing values, filled after standardising
        env[column] = values
    return table, pd.DataFrame(env)


@pytest.fixture(scope="module")
def surveys(tmp_path_factory) -> dict:
    """Train, val and test survey tables, their env table, the normalisation statistics
    and the species table, as the survey rules leave them."""
    base = tmp_path_factory.mktemp("surveys")
    rng = np.random.default_rng(0)
    tables, envs = {}, []
    for split, n, first, labelled in (
        ("train", 600, 1, True),
        ("val", 200, 5_000, True),
        ("test", 100, 9_000, False),
    ):
        table, env = _surveys(rng, n, first, labelled)
        tables[split] = base / f"{split}.parquet"
        pq.write_table(table, tables[split])
        envs.append(env)
    env_table = base / "env_values.parquet"
    pd.concat(envs).sort_values("observation_id").to_parquet(env_table, index=False)
    stats = base / "stats.json"
    write_normalization_stats(stats, tables["train"], env_table)
    train_lists = pq.read_table(tables["train"]).column("species_ids").to_pylist()
    counts = pd.Series([s for row in train_lists for s in row]).value_counts()
    species = pd.DataFrame({"species_id": SPECIES.astype(np.int32)})
    species["train_count"] = species["species_id"].map(counts).fillna(0).astype(np.int64)
    for column in SPECIES_TABLE_SCHEMA.names[2:]:
        kind = SPECIES_TABLE_SCHEMA.field(column).type
        species[column] = "tail" if kind == pa.string() else 0
    species_table = base / "species.parquet"
    # Rows in another order than the ids': the columns are the sorted ids all the same.
    pq.write_table(
        pa.Table.from_pandas(species[::-1], schema=SPECIES_TABLE_SCHEMA, preserve_index=False),
        species_table,
    )
    return {"tables": tables, "env": env_table, "stats": stats, "species": species_table}


def _settings(**train) -> ExperimentSettings:
    entry = {**ENTRY, "train": {**ENTRY["train"], **train}}
    return ExperimentSettings.from_config("sets_mlp", entry, multi_label=True)


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def test_the_task_travels_in_the_settings_and_refuses_what_it_cannot_use():
    settings = _settings(pos_weight=10.0)
    entry = settings.to_config()
    assert entry["multi_label"] is True and entry["train"]["pos_weight"] == 10.0
    assert ExperimentSettings.from_config("sets_mlp", entry) == settings  # bundle, job JSON
    assert shaping_settings(settings)["train"]["pos_weight"] == 10.0
    assert "label_smoothing" not in shaping_settings(settings)["train"]
    single = ExperimentSettings.from_config("sets_mlp", ENTRY)
    assert settings.fingerprint() != single.fingerprint()
    assert "multi_label" not in single.to_config()
    assert "pos_weight" not in single.to_config()["train"]  # GLC 2022's files as they were
    refused = {
        "loss": ("logit_adjusted", "train.loss logit_adjusted is a softmax loss"),
        "label_smoothing": (0.1, "train.label_smoothing is not applied"),
        "block_label_swap": (0.5, "train.block_label_swap swaps one species"),
    }
    for key, (value, message) in refused.items():
        with pytest.raises(ValueError, match=f"experiment sets_mlp: {message}"):
            _settings(**{key: value})
    with pytest.raises(ValueError, match="train.pos_weight 10.0 is a setting of a multi-label"):
        ExperimentSettings.from_config("e", {**ENTRY, "train": {"pos_weight": 10.0}})


def test_a_glc2022_experiment_keeps_its_fingerprint_and_settings_file():
    """Checkpoint names and settings.json of GLC 2022 are those before multi-label tasks
    (the values the code gave before them)."""
    entry = {"model": {"kind": "mlp", "tabular": ["env", "coordinates"]}, "train": {}}
    settings = ExperimentSettings.from_config("x", entry).with_classes(60)
    assert settings.fingerprint() == "fe51d86875bc"
    assert settings.with_data(60).fingerprint() == "fe51d86875bc"
    assert list(settings.to_config()) == ["model", "train"]
    assert list(settings.to_config()["train"]) == [
        "epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "momentum",
        "schedule", "warmup_epochs", "step_epochs", "step_gamma", "grad_clip",
        "label_smoothing", "loss", "logit_adjust_tau", "class_weight_power",
        "block_label_swap", "block_size_degrees", "early_stopping_patience",
        "steps_per_epoch", "seed", "amp", "num_workers", "augment",
    ]  # fmt: skip
    assert settings.data() == {"n_classes": 60}  # what its model.pt holds beside the weights


def test_the_data_sets_the_env_width_and_the_species_of_the_columns():
    settings = _settings().with_data(3, env_width=64, species_ids=[4, 90, 11_254])
    assert settings.model.n_tabular == 64 + 3  # env + coordinates
    assert settings.column_species.tolist() == [4, 90, 11_254]
    assert settings.data() == {"n_classes": 3, "env_width": 64, "species_ids": [4, 90, 11_254]}


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def test_a_survey_table_gives_multi_hot_labels_over_the_sorted_species(surveys):
    dataset = GlcDataset(
        None,
        observations=surveys["tables"]["train"],
        env_table=surveys["env"],
        stats=surveys["stats"],
        species_columns=SPECIES,
    )
    lists = pq.read_table(surveys["tables"]["train"]).column("species_ids").to_pylist()
    batch = dataset.__getitems__([5, 0, 77])
    assert batch["label"].dtype == torch.bool and batch["label"].shape == (3, len(SPECIES))
    for row, position in zip(batch["label"], (5, 0, 77), strict=True):
        assert SPECIES[row.numpy()].tolist() == lists[position]
    # The env columns are the table's (survey names), NaN filled after standardising.
    stats = json.loads(surveys["stats"].read_text())
    assert stats["environment"]["variables"] == list(ENV_COLUMNS)
    assert batch["env"].shape == (3, len(ENV_COLUMNS))
    assert not torch.isnan(batch["env"]).any() and batch["env_missing"].any()
    test = GlcDataset(
        None,
        observations=surveys["tables"]["test"],
        env_table=surveys["env"],
        stats=surveys["stats"],
        species_columns=SPECIES,
    )
    assert "label" not in test.__getitems__([0, 1])  # empty lists: nothing to learn


def test_a_species_outside_the_species_table_names_the_row(surveys, tmp_path):
    table = pq.read_table(surveys["tables"]["val"]).to_pandas()
    table.at[3, "species_ids"] = np.array([int(SPECIES[0]), 11_254 + 7])
    table.to_parquet(tmp_path / "val.parquet")
    with pytest.raises(InputDataError, match=r"row 3 \(observation_id 5003\) lists species 11261"):
        GlcDataset(None, observations=tmp_path / "val.parquet", species_columns=SPECIES)
    with pytest.raises(ValueError, match="give species_columns"):
        GlcDataset(None, observations=surveys["tables"]["val"])


# --------------------------------------------------------------------------------------
# Loss, metric, predictions format
# --------------------------------------------------------------------------------------


def test_the_loss_is_a_binary_cross_entropy_weighting_the_species_present():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    present = torch.tensor([[True, False, False], [False, False, True]])
    device = torch.device("cpu")
    plain = make_loss(TrainConfig(), np.ones(3), device, multi_label=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, present.float())
    torch.testing.assert_close(plain(logits, present), expected)
    weighted = make_loss(TrainConfig(pos_weight=10.0), np.ones(3), device, multi_label=True)
    missed = torch.tensor([[-2.0, 0.0, 0.0], [0.0, 0.0, -2.0]])  # both present ones missed
    assert weighted(missed, present) > 5 * plain(missed, present)


def test_top_k_f1_is_the_samples_averaged_f1_of_each_rows_set():
    predicted = np.array([[7, 2, 9], [4, 5, -1], [1, 2, 3]])
    truth = [np.array([2, 8]), np.array([], dtype=int), np.array([3, 1, 2])]
    # 2*1/(3+2), 0 (nothing true, 2 predicted), 2*3/(3+3)
    assert top_k_f1(predicted, truth) == pytest.approx((0.4 + 0.0 + 1.0) / 3)
    assert top_k_f1(predicted, truth, k=1) == pytest.approx((0.0 + 0.0 + 0.5) / 3)


class _Logits(torch.nn.Module):
    def forward(self, batch):
        return batch["x"]


def test_per_epoch_figures_are_the_top25_f1_and_the_bce():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(70, 40, generator=generator) * 3
    present = torch.rand(70, 40, generator=generator) < 0.2
    loader = [
        {
            "observation_id": torch.arange(i, i + 32),
            "x": logits[i : i + 32],
            "label": present[i : i + 32],
        }
        for i in range(0, 70, 32)
    ]
    found = evaluate_species_sets(_Logits(), loader, torch.device("cpu"))
    ranked = np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :25]
    truth = [np.flatnonzero(row) for row in present.numpy()]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, present.float())
    assert found["val_top25_f1"] == pytest.approx(top_k_f1(ranked, truth), abs=1e-12)
    # From the float32 probabilities the model yields: near 0 or 1 they lose digits.
    assert found["val_bce"] == pytest.approx(bce.item(), rel=1e-4)
    assert list(found) == ["val_top25_f1", "val_bce"]
    assert "val_top30_error" not in found  # apart from the single-label figures' names


def test_marginal_scores_need_not_sum_to_one():
    rows = Predictions(
        np.array([1, 2]), np.array([[5, 9], [9, 5]]), np.array([[0.9, 0.8], [0.6, 0.1]])
    )
    check_predictions(rows, min_k=2, marginal=True)
    with pytest.raises(InputDataError, match="scores sum to 1.7000 > 1"):
        check_predictions(rows, min_k=2)  # GLC 2022's check, as it was
    above = Predictions(np.array([1]), np.array([[5, 9]]), np.array([[1.5, 0.8]]))
    with pytest.raises(InputDataError, match="apply a sigmoid"):
        check_predictions(above, min_k=2, marginal=True)
    unsorted = Predictions(np.array([1]), np.array([[5, 9]]), np.array([[0.2, 0.8]]))
    with pytest.raises(InputDataError, match="not sorted best first"):
        check_predictions(unsorted, min_k=2, marginal=True)


# --------------------------------------------------------------------------------------
# The jobs: train, predict, serve
# --------------------------------------------------------------------------------------


def _training_job(surveys, folder: Path, settings, **more):
    from geolifeclef.experiments.jobs import TrainingJob
    from geolifeclef.experiments.trained import ExperimentInputs
    from geolifeclef.settings.tracking import Tracking

    tables = surveys["tables"]
    return TrainingJob(
        settings=settings,
        inputs=ExperimentInputs(
            observations={split: str(tables[split]) for split in ("train", "val")},
            env_table=str(surveys["env"]),
            stats=str(surveys["stats"]),
        ),
        species_table=str(surveys["species"]),
        model=str(folder / "model.pt"),
        history=str(folder / "history.json"),
        checkpoint_dir=str(folder / "checkpoints"),
        local_metrics=str(folder / "metrics.jsonl"),
        tracking=Tracking(f"sqlite:///{folder / 'mlflow.db'}", "tests"),
        learning_curve=str(folder / "learning_curve.png"),
        **{"log_model": False, **more},
    )


@pytest.fixture(scope="module")
def trained(surveys, tmp_path_factory) -> dict:
    """The multi-label MLP trained on the survey tables, and its val and test predictions."""
    from geolifeclef.experiments.jobs import PredictionJob, run_prediction, run_training
    from geolifeclef.experiments.trained import ExperimentInputs

    folder = tmp_path_factory.mktemp("trained")
    served = ExperimentInputs(  # every split: where the logged MLflow model reads its rows
        observations={s: str(p) for s, p in surveys["tables"].items()},
        env_table=str(surveys["env"]),
        stats=str(surveys["stats"]),
    )
    job = _training_job(surveys, folder, _settings(), log_model=True, served_inputs=served)
    with tracking_uri_kept():
        summary = run_training(job)
    inputs = ExperimentInputs(
        observations={split: str(surveys["tables"][split]) for split in ("val", "test")},
        env_table=str(surveys["env"]),
        stats=str(surveys["stats"]),
    )
    outputs = {split: str(folder / f"{split}.parquet") for split in ("val", "test")}
    run_prediction(PredictionJob({s: job.model for s in outputs}, inputs, outputs, top_k=30))
    return {"job": job, "summary": summary, "outputs": outputs}


def test_the_mlp_learns_which_species_a_survey_holds(trained, surveys):
    """HOT is present exactly where Bio1 is high, COLD where it is low: the trained model
    ranks the right one first, with marginal scores written as predictions."""
    history = trained["summary"]["history"]
    assert {"val_top25_f1", "val_bce", "train_loss"} <= set(history[-1])
    assert trained["summary"]["best_val_top25_f1"] == max(h["val_top25_f1"] for h in history)
    assert history[-1]["val_bce"] < history[0]["val_bce"]
    val = read_predictions(trained["outputs"]["val"], marginal=True, min_k=30)
    assert val.k == 30 and np.isin(val.species_ids, SPECIES).all()
    assert (val.scores.sum(axis=1) > 1).any()  # marginal: the sum is the expected richness
    with pytest.raises(InputDataError, match="sum to"):
        read_predictions(trained["outputs"]["val"])  # a softmax's table would not
    bio1 = pd.read_parquet(surveys["env"]).set_index("observation_id").loc[val.observation_id]
    bio1 = bio1["Bio1"].to_numpy()
    assert (val.species_ids[:, 0] == np.where(bio1 > 0, HOT, COLD)).all()
    test = read_predictions(trained["outputs"]["test"], marginal=True)
    assert len(test) == 100
    assert Path(trained["job"].learning_curve).stat().st_size > 0


def test_the_bundle_reloads_with_its_species_and_env_width(trained):
    from geolifeclef.experiments.trained import load_trained

    settings, model = load_trained(trained["job"].model)
    assert settings.multi_label and settings.column_species.tolist() == SPECIES.tolist()
    assert settings.env_width == len(ENV_COLUMNS)
    assert model.head[-1].out_features == len(SPECIES)
    saved = json.loads(Path(trained["job"].history).with_name("settings.json").read_text())
    assert saved["multi_label"] is True


def test_the_served_model_answers_the_predictions_top_k(trained, surveys):
    """The logged MLflow model (TopSpeciesModel) answers survey rows with the top K by
    marginal probability: the predictions table's."""
    import mlflow

    rows = pd.concat([pd.read_parquet(surveys["tables"][s]).head(4) for s in ("val", "test")])
    with tracking_uri_kept():
        mlflow.set_tracking_uri(trained["job"].tracking.uri)
        served = mlflow.pyfunc.load_model(trained["summary"][MODEL_URI_KEY])
        answer = served.predict(rows, params={"top_k": 5})
    table = {
        split: read_predictions(trained["outputs"][split], marginal=True).aligned_to(
            rows["observation_id"].to_numpy()[i * 4 : i * 4 + 4]
        )
        for i, split in enumerate(("val", "test"))
    }
    expected_ids = np.concatenate([table[s].species_ids[:, :5] for s in ("val", "test")])
    expected_scores = np.concatenate([table[s].scores[:, :5] for s in ("val", "test")])
    np.testing.assert_array_equal(np.stack(answer["species_ids"]), expected_ids)
    np.testing.assert_allclose(np.stack(answer["scores"]), expected_scores, rtol=1e-6)


def test_a_refit_joins_train_and_val_sets(surveys, tmp_path):
    from geolifeclef.experiments.jobs import run_training

    summary = run_training(_training_job(surveys, tmp_path, _settings(), refit_epochs=1))
    assert summary["fitted_on"] == "train+val" and summary["epochs_run"] == 1


def test_a_single_label_table_is_refused_for_a_multi_label_experiment(surveys, tmp_path):
    from geolifeclef.experiments.jobs import run_training

    table = pd.read_parquet(surveys["tables"]["train"]).drop(columns="species_ids")
    table["species_id"] = int(SPECIES[0])
    table.to_parquet(tmp_path / "train.parquet")
    job = _training_job(surveys, tmp_path, _settings())
    job.inputs.observations["train"] = str(tmp_path / "train.parquet")
    with pytest.raises(InputDataError, match="experiment sets_mlp is multi-label: it needs"):
        run_training(job)


def test_a_fit_pre_trained_on_presence_only_surveys_starts_from_their_best_epoch(surveys, tmp_path):
    """Two epochs on presence-only surveys (HOT and COLD as in the surveys), logged as
    po_* metrics of the fit's run, then one epoch on the surveys: its first epoch starts
    from the weights that already tell HOT from COLD, and scores above the first epoch of
    a fit from scratch."""
    from mlflow.tracking import MlflowClient

    from geolifeclef.experiments.jobs import run_training
    from geolifeclef.experiments.trained import ExperimentInputs
    from geolifeclef.tracking.records import RUN_ID_KEY

    table, env = _surveys(np.random.default_rng(3), 600, 20_000, True)
    pq.write_table(table, tmp_path / "po.parquet")
    env.to_parquet(tmp_path / "po_env.parquet", index=False)
    presence_only = ExperimentInputs(
        observations={"train": str(tmp_path / "po.parquet")},
        env_table=str(tmp_path / "po_env.parquet"),
        stats=str(surveys["stats"]),
    )
    with pytest.raises(ValueError, match="needs the presence-only tables"):
        run_training(_training_job(surveys, tmp_path / "none", _settings(po_pretrain_epochs=2)))
    runs = {}
    for name, settings, more in (
        ("pretrained", _settings(epochs=1, po_pretrain_epochs=2), {"presence_only": presence_only}),
        ("scratch", _settings(epochs=1), {}),
    ):
        with tracking_uri_kept():
            runs[name] = run_training(_training_job(surveys, tmp_path / name, settings, **more))
    client = MlflowClient(f"sqlite:///{tmp_path / 'pretrained' / 'mlflow.db'}")
    history = client.get_metric_history(runs["pretrained"][RUN_ID_KEY], "po_val_top25_f1")
    assert sorted(m.step for m in history) == [1, 2]
    assert list((tmp_path / "pretrained" / "checkpoints").glob("*-po_best.pt"))
    first = {name: run["history"][0]["val_top25_f1"] for name, run in runs.items()}
    assert first["pretrained"] > first["scratch"], first


def test_a_multi_label_checkpoint_loads_safely_to_resume(trained):
    """Its history holds Python floats (a NumPy scalar, as the val BCE was, is refused by
    torch.load(weights_only=True): a killed fit could not resume)."""
    from geolifeclef.experiments.trained import load_trained
    from geolifeclef.experiments.training import load_checkpoint

    settings, model = load_trained(trained["job"].model)
    checkpoint = Path(trained["job"].checkpoint_dir) / f"{settings.fingerprint()}.pt"
    state = load_checkpoint(checkpoint, model)
    assert state.epoch == len(trained["summary"]["history"])
    assert not any(isinstance(value, np.generic) for value in state.history[-1].values())
