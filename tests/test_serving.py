"""A trained experiment logged as an MLflow model: reloaded, it predicts what the workflow's
prediction step writes, from observation rows."""

import json

import numpy as np
import pandas as pd
import pytest

from geolifeclef.experiments.jobs import PredictionJob, TrainingJob, run_prediction, run_training
from geolifeclef.experiments.trained import ExperimentInputs
from geolifeclef.layout import SPLITS
from geolifeclef.predictions.table import read_predictions
from geolifeclef.settings.experiment import ExperimentSettings
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking.records import MODEL_URI_KEY, RUN_ID_KEY

FUSION = {
    "model": {
        "kind": "fusion",
        "modalities": ["rgb", "near_ir", "landcover"],
        "tabular": ["env", "coordinates", "landcover_shares"],
        "cnn": {"backbone": "small", "width": 4, "input_size": 16},
    },
    "train": {"epochs": 2, "batch_size": 64},
}


def _inputs(extracted, splits) -> ExperimentInputs:
    return ExperimentInputs(
        observations={split: str(extracted["tables"][split]) for split in splits},
        env_table=str(extracted["env"]),
        stats=str(extracted["stats"]),
        caches={split: str(extracted["patches"] / split) for split in splits},
        patch_stats={split: str(extracted["patch_stats"][split]) for split in splits},
    )


@pytest.fixture(scope="module")
def logged(with_species, tmp_path_factory):
    """The fusion experiment trained for 2 epochs, its model logged to a sqlite store."""
    folder = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    summary = run_training(
        TrainingJob(
            settings=ExperimentSettings.from_config("fusion", FUSION),
            inputs=_inputs(with_species, ("train", "val")),
            species_table=str(with_species["species"]),
            model=str(folder / "model.pt"),
            history=str(folder / "history.json"),
            checkpoint_dir=str(folder / "checkpoints"),
            local_metrics=str(folder / "metrics.jsonl"),
            tracking=Tracking(uri, "tests"),
            learning_curve=str(folder / "learning_curve.png"),
            served_inputs=_inputs(with_species, SPLITS),
        )
    )
    return folder, uri, summary


def test_the_logged_model_predicts_what_the_prediction_step_writes(logged, with_species):
    import mlflow

    folder, uri, summary = logged
    assert json.loads((folder / "history.json").read_text())[RUN_ID_KEY] == summary[RUN_ID_KEY]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary[MODEL_URI_KEY])
    assert model.metadata.get_input_schema().input_names() == [
        "observation_id",
        "latitude",
        "longitude",
    ]
    assert {p.name for p in model.metadata.get_params_schema().params} == {
        "workdir",
        "top_k",
        "tta",
    }
    run_prediction(
        PredictionJob(
            models={"val": str(folder / "model.pt"), "test": str(folder / "model.pt")},
            inputs=_inputs(with_species, ("val", "test")),
            outputs={split: str(folder / f"{split}.parquet") for split in ("val", "test")},
            top_k=30,
        )
    )
    # Rows of two splits, shuffled, with the other columns of the observation tables.
    rows = pd.concat(
        [pd.read_parquet(with_species["tables"][split]).head(7) for split in ("test", "val")]
    ).sample(frac=1.0, random_state=0)
    answer = model.predict(rows, params={"top_k": 30})
    assert answer["observation_id"].tolist() == rows["observation_id"].tolist()
    written = {}
    for split in ("val", "test"):
        table = read_predictions(folder / f"{split}.parquet")
        for i, observation in enumerate(table.observation_id):
            written[observation] = (table.species_ids[i], table.scores[i])
    for _, row in answer.iterrows():
        species, scores = written[row["observation_id"]]
        assert list(row["species_ids"]) == species[:30].tolist()
        np.testing.assert_allclose(row["scores"], scores[:30], rtol=1e-4)


def test_rows_the_workflow_never_extracted_are_refused_by_name(logged, with_species):
    import mlflow

    folder, uri, summary = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(summary[MODEL_URI_KEY])
    row = pd.DataFrame({"observation_id": [99], "latitude": [45.0], "longitude": [5.0]})
    with pytest.raises(Exception, match="in none of"):
        model.predict(row)
    moved = pd.read_parquet(with_species["tables"]["val"]).head(2)
    moved["latitude"] += 1.0
    with pytest.raises(Exception, match="differ from the workflow's observation table"):
        model.predict(moved)


def test_the_logged_model_is_named_after_the_experiment_with_its_settings(logged):
    import mlflow

    _, uri, summary = logged
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_logged_model(summary[MODEL_URI_KEY].removeprefix("models:/"))
    assert found.name == "fusion" and found.source_run_id == summary[RUN_ID_KEY]
    assert found.params["model.kind"] == "fusion"
    assert found.tags["mlflow.source.name"] == "workflow/scripts/train_model.py"
    files = {f.path for f in mlflow.artifacts.list_artifacts(summary[MODEL_URI_KEY])}
    assert {"code", "artifacts", "MLmodel", "input_example.json"} <= files
