"""The recipes of config/recipes/ run end to end on the tiny demo, sizes shrunk, so that a
recipe never rots: the same file, with epochs, input size and backbones made tiny."""

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workdir, merged, run_snakemake
from snakemake.utils import validate

RECIPES = sorted((REPO / "config" / "recipes").glob("*.yaml"))
RECIPE = REPO / "config" / "recipes" / "glc2022-winners.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# Above it the decoded store outgrows disks: 190 GB at 128 px, 760 GB at 256 px for the
# archive's 1.66 M observations, against ~57 GB encoded at any size.
DECODED_MAX_SIZE = 64
# The same family, tiny: timm's test models stand in for ResNet-34 and MobileNetV3.
TINY_BACKBONES = {"resnet34": "test_resnet", "mobilenetv3_large_100": "test_efficientnet"}


def shrunk(recipe: dict) -> dict:
    """The recipe at the tiny demo's sizes; every other setting as the recipe says (the
    demo itself: tests/configs/demo.yaml's)."""
    experiments = {}
    for name, entry in recipe["experiments"].items():
        backbone = entry["model"]["cnn"]["backbone"]
        experiments[name] = {
            "model": {
                "mlp": {"hidden": 32},
                "head_hidden": min(entry["model"].get("head_hidden", 0), 64),
                "cnn": {"backbone": TINY_BACKBONES[backbone], "pretrained": None, "input_size": 16},
            },
            "train": {"epochs": 1, "batch_size": 64, "num_workers": 0},
        }
    return merged(
        recipe,
        {
            "patches": {"size": 64, "shards": 2},  # the store as the recipe says
            "predictions": {"top_k": 30},
            "baselines": {"random_forest": {"n_estimators": 2, "max_depth": 4}},
            "experiments": experiments,
        },
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_no_recipe_keeps_decoded_patches_above_64_px(recipe):
    config = yaml.safe_load(recipe.read_text())
    validate(config, str(SCHEMA))  # as the Snakefile does: a valid config, defaults filled
    patches = config["patches"]
    assert patches["store"] == "encoded" or patches["size"] <= DECODED_MAX_SIZE, (
        f"{recipe}: patches.size {patches['size']} in the {patches['store']} store takes "
        f"{7 * patches['size'] ** 2 / 1000:.0f} kB per observation; set patches.store: encoded"
    )


@pytest.mark.slow
def test_the_winners_recipe_runs_end_to_end_on_the_tiny_demo(demo_workdir, tmp_path):
    recipe = yaml.safe_load(RECIPE.read_text())
    # On the shared tiny demo (its dataset and env values reused; the recipe's own store
    # and patch statistics built).
    copy_workdir(demo_workdir, tmp_path, shrunk(recipe))
    result = run_snakemake(tmp_path, "submission", timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results"
    final = pd.read_csv(results / "submission" / "final.csv")
    assert final["Predicted"].str.split().map(len).eq(30).all()
    board = pd.read_parquet(results / "evaluation" / "leaderboard.parquet").set_index("model")
    for name in [*recipe["experiments"], "random_forest", "knn", *recipe["blends"]]:
        assert name in board.index, name
    for name in recipe["fitted_blends"]:
        assert board.loc[name, "kind"] == "fitted blend"
        assert set(recipe["fitted_blends"][name]["models"]) >= {
            member.split()[0] for member in board.loc[name, "members"].split(", ")
        }
    # Refits: the test predictions come from train + val, the val scores from train only.
    assert board.loc["random_forest", "test_fit"] == "train+val"
    for name in recipe["experiments"]:
        assert board.loc[name, "test_fit"] == "train+val"
        assert (results / "models" / name / "refit.pt").exists()
        log = (tmp_path / "logs" / "predict_model" / f"{name}.log").read_text()
        assert "test: predicted by results/models/" + name + "/refit.pt" in log
        assert "test-time augmentation" in log
