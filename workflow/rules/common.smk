# Shared names and paths: where the input data lives, where every output goes, which
# models exist. Every rule file reads these; none depends on another for a name.

import json
import os
import re
import uuid
from pathlib import Path

from geolifeclef.experiment import TRAINING_SPLITS, experiment_inputs, weight_settings
from geolifeclef.layout import REGIONS, SPLITS, DatasetLayout
from geolifeclef.patch_stats import PATCH_STAT_GROUPS
from geolifeclef.tracking import Tracking, default_tracking_uri

# -- where files go ---------------------------------------------------------------------
DEMO_ROOT = Path("resources/demo/glc22")
DEMO_TRUTH = Path("resources/demo/truth")
USING_DEMO = not config["data"]["root"]
DATA_ROOT = DEMO_ROOT if USING_DEMO else Path(config["data"]["root"]).expanduser()
LAYOUT = DatasetLayout(DATA_ROOT)


def results(path):
    """A path under results/ (every output of the workflow but the demo dataset)."""
    return f"results/{path}"


def logs(name):
    return f"logs/{name}.log"


def benchmarks(name):
    return f"benchmarks/{name}.tsv"


def predictions(model, split):
    """The predictions table of any model (baseline, blend or experiment) and split."""
    return results(f"predictions/{model}/{split}.parquet")


def model_dir(experiment):
    return results(f"models/{experiment}")


# -- which models exist -------------------------------------------------------------------
PREDICTED_SPLITS = ("val", "test")
BASELINE_MODELS = ["constant", "knn", "random_forest"]  # rules predict_<name>
BLEND_MODELS = list(config["blends"])
FITTED_BLENDS = list(config["fitted_blends"])
EXPERIMENTS = list(config["experiments"])
MODEL_KIND = {
    **{m: "experiment" for m in EXPERIMENTS},
    **{m: "blend" for m in BLEND_MODELS},
    **{m: "fitted blend" for m in FITTED_BLENDS},
    **{m: "baseline" for m in BASELINE_MODELS},
}
MODELS = BASELINE_MODELS + BLEND_MODELS + FITTED_BLENDS + EXPERIMENTS
RESERVED_NAMES = set(BASELINE_MODELS) | {"final", "leaderboard"}
for _name in BLEND_MODELS + FITTED_BLENDS + EXPERIMENTS:
    if _name in RESERVED_NAMES or MODELS.count(_name) > 1:
        raise ValueError(
            f"config: model name {_name!r} is used twice or reserved "
            f"({sorted(RESERVED_NAMES)}); rename the blend or experiment"
        )
_BLENDABLE = BASELINE_MODELS + EXPERIMENTS
for _key, _blends in (
    ("blends", config["blends"]),
    ("fitted_blends", config["fitted_blends"]),
):
    for _blend, _entry in _blends.items():
        for _part in _entry if _key == "blends" else _entry["models"]:
            if _part not in _BLENDABLE:
                raise ValueError(
                    f"config {_key}.{_blend}: unknown model {_part!r}; "
                    f"blend baselines {BASELINE_MODELS} or experiments {EXPERIMENTS}"
                )
SUBMITTED = config["submission"]["model"]
if SUBMITTED != "best" and SUBMITTED not in MODELS:
    raise ValueError(
        f"config submission.model: {SUBMITTED!r} is not 'best' or one of the models {MODELS}"
    )
SUBMISSION_CANDIDATES = MODELS if SUBMITTED == "best" else [SUBMITTED]


def refitted(model):
    """Whether a model's test predictions come from a fit on train + val."""
    if model in EXPERIMENTS:
        return config["experiments"][model]["refit"]
    return config["baselines"].get(model, {}).get("refit", False)


def test_fit(model):
    """What the test predictions of ``model`` were fitted on, for the leaderboard."""
    if model in BLEND_MODELS + FITTED_BLENDS:
        parts = config["blends"].get(model) or config["fitted_blends"][model]["models"]
        refits = {refitted(part) for part in parts}
        return (
            "mixed"
            if len(refits) > 1
            else ("train+val" if refits == {True} else "train")
        )
    return "train+val" if refitted(model) else "train"


def one_of(names):
    """Wildcard constraint matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def canonical(value):
    """A value as sorted JSON: the params Snakemake compares do not depend on key order."""
    return json.dumps(value, sort_keys=True)


def experiment_reads(experiment):
    """What an experiment reads: patch caches, env table, patch statistics (decided by the
    package, geolifeclef.experiment.experiment_inputs)."""
    return experiment_inputs(config["experiments"][experiment])


# -- tracking ------------------------------------------------------------------------------
# Resolved once here and handed to every job through the environment (Tracking.export says
# why not through params); mlflow.* settings rerun nothing.
TRACKING = Tracking(
    config["mlflow"]["tracking_uri"] or default_tracking_uri(),
    config["mlflow"]["experiment"],
)
TRACKING.export()
# The invocation that the user started; the jobs it spawns (local or SLURM) inherit its id.
IS_MAIN_INVOCATION = "GLC_INVOCATION_ID" not in os.environ
os.environ.setdefault("GLC_INVOCATION_ID", uuid.uuid4().hex[:12])
