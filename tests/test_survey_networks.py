"""The networks of the survey editions (GLC 2024, 2025): a CNN per time-series cube, a
Sentinel-2 CNN, their multimodal fusion with the values MLP, the multi-label losses, the
cubes in the dataset with train statistics, and the presence-only occurrences to
pre-train on. Every kind trains one batch on CPU."""

import numpy as np
import pandas as pd
import pytest
import torch

from geolifeclef.data.cubes import INDEX_FILE
from geolifeclef.data.dataset import GlcDataset
from geolifeclef.data.normalization import cube_statistics, write_normalization_stats
from geolifeclef.data.presence_only import presence_only_tables
from geolifeclef.errors import InputDataError
from geolifeclef.experiments.training import make_loss, train_step
from geolifeclef.models.features import ModelBatch
from geolifeclef.models.networks import build_model
from geolifeclef.settings.configs import TrainConfig
from geolifeclef.settings.experiment import ExperimentSettings, shaping_settings
from geolifeclef.survey_layout import CUBE_SHAPES

N_SPECIES = 12
S2 = {"glc2024": {"s2_rgb": 3, "s2_nir": 1}, "glc2025": {"s2": 4}}
"""Each edition's Sentinel-2 modalities and their channels: 4 bands either way."""


def settings_of(model: dict, **train) -> ExperimentSettings:
    entry = {"model": model, "train": {"batch_size": 8, "warmup_epochs": 0, **train}}
    settings = ExperimentSettings.from_config("net", entry, multi_label=True)
    return settings.with_data(N_SPECIES, 5, list(range(100, 100 + N_SPECIES)))


KINDS = {
    "landsat_cnn": {"kind": "cube", "cubes": ["landsat"], "cube_cnn": {"width": 8}},
    "bioclim_cnn": {"kind": "cube", "cubes": ["bioclim"], "cube_cnn": {"width": 8}},
    "sentinel_cnn_2024": {"kind": "cnn", "modalities": ["s2_rgb", "s2_nir"], "cnn": {"width": 8}},
    "sentinel_cnn_2025": {"kind": "cnn", "modalities": ["s2"], "cnn": {"width": 8}},
    "multimodal": {
        "kind": "multimodal",
        "modalities": ["s2_rgb", "s2_nir"],
        "cubes": ["landsat", "bioclim"],
        "tabular": ["env", "coordinates"],
        "cnn": {"width": 8},
        "cube_cnn": {"width": 8},
        "mlp": {"hidden": 16},
    },
}


def batch_of(settings: ExperimentSettings, rows: int = 8) -> dict:
    generator = torch.Generator().manual_seed(0)
    channels = {**S2["glc2024"], **S2["glc2025"]}
    batch = {
        "observation_id": torch.arange(rows),
        "label": torch.rand(rows, N_SPECIES, generator=generator) < 0.3,
        "patches": {
            m: torch.randn(rows, channels[m], 16, 16, generator=generator)
            for m in settings.model.modalities
        },
        "cubes": {
            c: torch.randn(rows, *CUBE_SHAPES[c], generator=generator) for c in settings.model.cubes
        },
    }
    if settings.model.reads.uses_tabular:
        batch["tabular"] = torch.randn(rows, settings.model.n_tabular, generator=generator)
    return batch


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("loss", ["cross_entropy", "focal", "asymmetric"])
def test_every_kind_trains_a_batch_on_cpu(name, loss):
    settings = settings_of(KINDS[name], loss=loss, pos_weight=5.0)
    model = build_model(settings.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = make_loss(settings.train, np.ones(N_SPECIES), torch.device("cpu"), True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    value = train_step(
        model,
        batch_of(settings),
        optimizer,
        loss_fn,
        scaler,
        settings.train,
        torch.device("cpu"),
        torch.Generator().manual_seed(1),
    )
    assert torch.isfinite(value) and value > 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    encoders = {
        "cubes": settings.model.reads.uses_cubes,
        "patches": settings.model.reads.uses_patches,
    }
    for encoder, read in encoders.items():
        assert any(k.startswith(f"{encoder}.") for k in changed) == read, encoder
    model.eval()
    assert model(batch_of(settings, 3)).shape == (3, N_SPECIES)


def test_a_cube_cnn_resized_for_a_timm_resnet():
    settings = settings_of(
        {
            "kind": "cube",
            "cubes": ["landsat"],
            "cube_cnn": {"backbone": "resnet18", "input_size": 32},
        }
    )
    model = build_model(settings.model).eval()
    assert model(batch_of(settings, 2)).shape == (2, N_SPECIES)


def test_the_multi_label_losses_reduce_to_the_binary_cross_entropy():
    """Focal with gamma 0, asymmetric with gamma 0 and no shift: the plain BCE; with their
    defaults, an easy absence (p = 0.01) costs less than in the BCE, a missed presence as
    much or more."""
    logits = torch.tensor([[-4.6, 2.0, 0.3], [0.0, -1.0, 4.0]])
    present = torch.tensor([[False, True, False], [True, False, True]])
    cpu = torch.device("cpu")
    bce = make_loss(TrainConfig(), np.ones(3), cpu, True)(logits, present)
    plain = {
        "focal": {"focal_gamma": 0.0},
        "asymmetric": {"asymmetric_gamma_neg": 0.0, "asymmetric_clip": 0.0},
    }
    for loss, options in plain.items():
        found = make_loss(TrainConfig(loss=loss, **options), np.ones(3), cpu, True)(logits, present)
        torch.testing.assert_close(found, bce)
    easy_absence = (torch.tensor([[-4.6]]), torch.tensor([[False]]))
    missed = (torch.tensor([[-2.0]]), torch.tensor([[True]]))
    for loss in plain:
        fn = make_loss(TrainConfig(loss=loss), np.ones(1), cpu, True)
        base = make_loss(TrainConfig(), np.ones(1), cpu, True)
        assert fn(*easy_absence) < 0.1 * base(*easy_absence)
        assert fn(*missed) >= 0.7 * base(*missed)


def test_the_settings_of_the_survey_kinds_and_what_they_refuse():
    cube = settings_of(KINDS["landsat_cnn"])
    assert cube.inputs.cubes == ("landsat",) and not cube.inputs.patch_modalities
    assert not cube.inputs.env and cube.tabular == ()
    assert shaping_settings(cube)["model"]["cubes"] == ["landsat"]
    multimodal = settings_of(KINDS["multimodal"])
    assert multimodal.inputs.cubes == ("landsat", "bioclim") and multimodal.inputs.env
    assert multimodal.inputs.patch_modalities == ("s2_rgb", "s2_nir")
    assert ExperimentSettings.from_config("net", multimodal.to_config()).model == (
        ExperimentSettings.from_config("net", settings_of(KINDS["multimodal"]).to_config()).model
    )
    mlp = ExperimentSettings.from_config("m", {"model": {"kind": "mlp"}})
    assert "cubes" not in mlp.to_config()["model"]  # GLC 2022's settings as they were
    assert "po_pretrain_epochs" not in mlp.to_config()["train"]
    refusals = {
        "needs at least one cube": ({"kind": "cube"}, {}),
        "unknown cubes": ({"kind": "cube", "cubes": ["modis"]}, {}),
        "give it to an mlp, not a cube": (KINDS["landsat_cnn"], {"po_pretrain_epochs": 2}),
    }
    for message, (model, train) in refusals.items():
        with pytest.raises(ValueError, match=message):
            settings_of(model, **train)
    with pytest.raises(ValueError, match="train.loss focal is a multi-label loss"):
        ExperimentSettings.from_config("e", {"model": {"kind": "mlp"}, "train": {"loss": "focal"}})
    with pytest.raises(
        ValueError, match="train.po_pretrain_epochs 3 is a setting of a multi-label"
    ):
        ExperimentSettings.from_config(
            "e", {"model": {"kind": "mlp"}, "train": {"po_pretrain_epochs": 3}}
        )


# -- cubes in the dataset ------------------------------------------------------------------


def write_packed_cubes(folder, ids, rng) -> dict[str, np.ndarray]:
    """A packed cube folder (geolifeclef.data.cubes' format) of ``ids``, with NaN cells."""
    folder.mkdir(parents=True)
    arrays = {}
    for kind, shape in CUBE_SHAPES.items():
        scale = np.arange(1, shape[0] + 1, dtype=np.float32).reshape(1, -1, 1, 1) * 10
        array = (rng.standard_normal((len(ids), *shape)) * scale + scale**2).astype(np.float32)
        array[rng.random(array.shape) < 0.05] = np.nan
        np.save(folder / f"{kind}.npy", array)
        arrays[kind] = array
    index = pd.DataFrame({"observation_id": np.asarray(ids, np.int64), "row": np.arange(len(ids))})
    for kind in CUBE_SHAPES:
        index[f"missing_{kind}"] = False
    index.to_parquet(folder / INDEX_FILE, index=False)
    return arrays


def test_cube_statistics_are_per_channel_over_the_finite_cells(tmp_path):
    arrays = write_packed_cubes(tmp_path / "train", [5, 3, 9, 1], np.random.default_rng(0))
    stats = cube_statistics(tmp_path / "train", chunk_rows=3)  # two chunks: merged moments
    for kind, array in arrays.items():
        cells = array.swapaxes(0, 1).reshape(array.shape[1], -1)
        np.testing.assert_allclose(stats[kind]["mean"], np.nanmean(cells, axis=1), rtol=1e-5)
        np.testing.assert_allclose(stats[kind]["std"], np.nanstd(cells, axis=1), rtol=1e-4)
        assert stats[kind]["finite_cells"] == np.isfinite(cells).sum(axis=1).tolist()


def test_the_dataset_gives_each_surveys_cubes_standardised_without_nan(tmp_path):
    rng = np.random.default_rng(1)
    ids = [42, 7, 19, 3]
    arrays = write_packed_cubes(tmp_path / "cubes", ids, rng)
    table = tmp_path / "surveys.parquet"
    order = [19, 42, 3]  # the table's order, not the packed one
    pd.DataFrame(
        {"observation_id": order, "latitude": [45.0] * 3, "longitude": [5.0] * 3}
    ).to_parquet(table, index=False)
    stats = write_normalization_stats(
        tmp_path / "stats.json", table, train_cubes=tmp_path / "cubes"
    )
    dataset = GlcDataset(
        None,
        observations=table,
        stats=stats,
        cubes=tmp_path / "cubes",
        cube_kinds=["landsat", "bioclim"],
    )
    batch = dataset.__getitems__([2, 0])
    for kind, array in arrays.items():
        entry = stats["cubes"][kind]
        shape = (1, -1, 1, 1)
        expected = (array[[3, 2]] - np.reshape(entry["mean"], shape)) / np.reshape(
            entry["std"], shape
        )
        np.testing.assert_allclose(
            batch[kind].numpy(), np.nan_to_num(expected), rtol=1e-5, atol=1e-5
        )
        assert torch.isfinite(batch[kind]).all()
    model_batch = ModelBatch((), (), stats, ("landsat",))(batch)
    assert set(model_batch["cubes"]) == {"landsat"}
    raw = GlcDataset(
        None, observations=table, normalize=False, cubes=tmp_path / "cubes", cube_kinds=["landsat"]
    )
    assert torch.isnan(raw[1]["landsat"]).sum() == np.isnan(arrays["landsat"][0]).sum()


def test_a_survey_without_packed_cubes_is_named(tmp_path):
    write_packed_cubes(tmp_path / "cubes", [1, 2], np.random.default_rng(2))
    table = tmp_path / "surveys.parquet"
    pd.DataFrame(
        {"observation_id": [1, 77], "latitude": [45.0] * 2, "longitude": [5.0] * 2}
    ).to_parquet(table, index=False)
    with pytest.raises(
        InputDataError, match=r"no cubes of 1 surveys of this split \(first: \[77\]\)"
    ):
        GlcDataset(
            None,
            observations=table,
            normalize=False,
            cubes=tmp_path / "cubes",
            cube_kinds=["landsat"],
        )


# -- presence-only occurrences ---------------------------------------------------------------


def test_presence_only_points_borrow_their_nearest_surveys_values():
    surveys = pd.DataFrame(
        {
            "observation_id": [10, 20, 30],
            "latitude": [45.0, 46.0, 60.0],
            "longitude": [5.0, 5.0, 20.0],
        }
    )
    env = pd.DataFrame(
        {
            "observation_id": [30, 10, 20],
            "Bio1": [3.0, 1.0, 2.0],
            "Elevation": [300.0, 100.0, np.nan],
        }
    )
    po = pd.DataFrame(
        {
            # PO ids overlap PA ids (10): they are never joined.
            "observation_id": [10, 10, 10, 5, 8],
            "latitude": [45.99, 45.99, 45.99, 45.01, 50.0],
            "longitude": [5.0, 5.0, 5.0, 5.01, 12.0],
            "year": [2020] * 5,
            "species_id": [7, 3, 999, 7, 3],
        }
    )
    tables = presence_only_tables(po, surveys, env, np.array([3, 7]), max_distance_km=10)
    assert tables.surveys["observation_id"].tolist() == [5, 10]
    assert [list(s) for s in tables.surveys["species_ids"]] == [[7], [3, 7]]
    assert tables.env["Bio1"].tolist() == [1.0, 2.0]  # survey 10's and survey 20's
    assert np.isnan(tables.env["Elevation"].iloc[1])
    assert tables.env["observation_id"].tolist() == [5, 10]
    assert 1.0 < tables.surveys["nearest_km"].iloc[0] < 2.0
    assert (tables.dropped_far, tables.dropped_species) == (1, 1)
