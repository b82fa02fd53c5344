"""The config schema and the package's settings dataclasses describe the same settings.

The dataclasses are the home of every default and choice (nanoGPT's rule); the schema
(workflow/schemas/config.schema.yaml) repeats them so that Snakemake can validate and fill
a config before anything runs. These tests walk every default and enum of the schema
against the dataclass it feeds, in both directions: a setting added, removed, renamed or
given another default in one place and not the other fails here.
"""

import dataclasses

import pytest
import yaml
from conftest import SCHEMA

from geolifeclef.baselines.forest import ForestSettings
from geolifeclef.baselines.knn import KnnSettings
from geolifeclef.data.class_frequency import BucketThresholds
from geolifeclef.demo.spec import DEMO_SCALES, DemoSpec
from geolifeclef.experiments.jobs import PredictionJob
from geolifeclef.layout import MODALITIES
from geolifeclef.patches.geometry import MODES
from geolifeclef.patches.store import BAD_FILE_POLICIES, STORES, CacheSpec
from geolifeclef.settings.configs import (
    LANDCOVER_MODES,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    SMALL,
    AugmentConfig,
    CnnConfig,
    MlpConfig,
    ModelConfig,
    TrainConfig,
)
from geolifeclef.settings.evaluation import BlockBootstrap
from geolifeclef.settings.experiment import DEFAULT_TABULAR
from geolifeclef.settings.inputs import (
    CNN_MODALITIES,
    FOREST_FEATURE_GROUPS,
    MODEL_KINDS,
    TABULAR_SIZES,
)
from geolifeclef.settings.maps import (
    VARIABLE_GROUPS,
    ImportanceSettings,
    MapSettings,
    MessSettings,
    ResponseSettings,
)

SCHEMA = yaml.safe_load(SCHEMA.read_text())
EXPERIMENT = SCHEMA["properties"]["experiments"]["additionalProperties"]["properties"]


def section(*keys: str) -> dict:
    """The ``properties`` of a nested object of the schema."""
    node = SCHEMA
    for key in keys:
        node = node["properties"][key]
    return node["properties"]


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def as_json(value):
    """A default as the schema writes it (tuples are lists)."""
    return list(value) if isinstance(value, tuple) else value


# (schema properties, dataclass, dataclass fields that the workflow derives, not the config)
SECTIONS = {
    "experiments.*.model": (
        EXPERIMENT["model"]["properties"],
        ModelConfig,
        {"n_classes", "n_tabular"},
    ),
    "experiments.*.model.mlp": (
        EXPERIMENT["model"]["properties"]["mlp"]["properties"],
        MlpConfig,
        set(),
    ),
    "experiments.*.model.cnn": (
        EXPERIMENT["model"]["properties"]["cnn"]["properties"],
        CnnConfig,
        set(),
    ),
    "experiments.*.train": (EXPERIMENT["train"]["properties"], TrainConfig, set()),
    "experiments.*.train.augment": (
        EXPERIMENT["train"]["properties"]["augment"]["properties"],
        AugmentConfig,
        set(),
    ),
    "patches": (section("patches"), CacheSpec, set()),
    "baselines.knn": (section("baselines", "knn"), KnnSettings, set()),
    "baselines.random_forest": (section("baselines", "random_forest"), ForestSettings, set()),
    "class_frequency": (section("class_frequency"), BucketThresholds, set()),
    "maps": (section("maps"), MapSettings, set()),
    "evaluation": (section("evaluation"), BlockBootstrap, set()),
    "importance": (section("importance"), ImportanceSettings, set()),
    "response": (section("response"), ResponseSettings, set()),
    "mess": (section("mess"), MessSettings, set()),
}
CONFIG_ONLY = {
    # Keys that live in the config but not in the dataclass, and why.
    "experiments.*.model": {"tabular"},  # ExperimentSettings.tabular (DEFAULT_TABULAR)
    "patches": {"enabled"},  # whether the workflow builds caches at all
    "class_frequency": {"count_thresholds"},  # a summary setting, not a bucket
}


@pytest.mark.parametrize("name", list(SECTIONS))
def test_schema_defaults_are_the_dataclass_defaults(name):
    properties, cls, not_in_config = SECTIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in not_in_config}
    assert set(properties) - CONFIG_ONLY.get(name, set()) == set(fields), name
    for key, field in fields.items():
        if properties[key].get("type") == "object":
            continue  # a nested section, compared as a section of its own
        if default_of(field) is dataclasses.MISSING:
            assert "default" not in properties[key], f"{name}.{key}: required, no default"
            continue
        assert properties[key].get("default") == as_json(default_of(field)), f"{name}.{key}"


ENUMS = {
    ("experiments.*.model", "kind"): tuple(MODEL_KINDS),
    ("experiments.*.model.cnn", "landcover"): LANDCOVER_MODES,
    ("experiments.*.train", "optimizer"): OPTIMIZERS,
    ("experiments.*.train", "schedule"): SCHEDULES,
    ("experiments.*.train", "loss"): LOSSES,
    ("patches", "mode"): MODES,
    ("patches", "on_bad_file"): BAD_FILE_POLICIES,
    ("patches", "store"): STORES,
}
LIST_ENUMS = {
    ("experiments.*.model", "modalities"): CNN_MODALITIES,
    ("baselines.random_forest", "features"): FOREST_FEATURE_GROUPS,
    ("experiments.*.model", "tabular"): tuple(TABULAR_SIZES),
    ("patches", "modalities"): MODALITIES,
    ("importance", "groups"): tuple(VARIABLE_GROUPS),
}


@pytest.mark.parametrize("where", list(ENUMS) + list(LIST_ENUMS))
def test_schema_choices_are_the_package_choices(where):
    name, key = where
    node = SECTIONS[name][0][key]
    if where in LIST_ENUMS:
        assert node["items"]["enum"] == list(LIST_ENUMS[where])
    else:
        assert node["enum"] == list(ENUMS[where])


def test_defaults_that_live_outside_a_settings_dataclass():
    model = EXPERIMENT["model"]["properties"]
    assert model["tabular"]["default"] == list(DEFAULT_TABULAR)
    tta = next(f for f in dataclasses.fields(PredictionJob) if f.name == "tta")
    assert EXPERIMENT["tta"]["default"] == tta.default
    # Any timm model name is a backbone: the schema cannot list them, the package checks.
    backbone = EXPERIMENT["model"]["properties"]["cnn"]["properties"]["backbone"]
    assert "enum" not in backbone and backbone["default"] == SMALL
    demo = section("demo")
    assert demo["scale"]["enum"] == list(DEMO_SCALES)
    assert demo["seed"]["default"] == DemoSpec().seed
