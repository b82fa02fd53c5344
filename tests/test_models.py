"""One batch forward and backward on CPU through every model and modality combination,
the winners' timm backbones, and pretrained weights loaded from a local file."""

import itertools
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from geolifeclef.layout import MODALITIES, N_LANDCOVER_CODES
from geolifeclef.models.networks import build_model
from geolifeclef.settings.configs import CnnConfig, MlpConfig, ModelConfig

N_CLASSES = 23
SIZE = 32


def _batch(modalities, n_tabular=7, batch_size=4, size=SIZE):
    generator = torch.Generator().manual_seed(0)
    patches = {}
    for modality in modalities:
        if modality == "landcover":
            patches[modality] = torch.randint(0, N_LANDCOVER_CODES, (batch_size, size, size))
        else:
            channels = 3 if modality == "rgb" else 1
            patches[modality] = torch.randn(batch_size, channels, size, size, generator=generator)
    return {"tabular": torch.randn(batch_size, n_tabular, generator=generator), "patches": patches}


def _step(model, batch):
    model.train()
    logits = model(batch)
    assert logits.shape == (len(batch["tabular"]), N_CLASSES)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)) % N_CLASSES)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_mlp_one_batch():
    model = build_model(ModelConfig(kind="mlp", n_classes=N_CLASSES, n_tabular=7))
    _step(model, _batch(()))


def test_quadratic_mlp_is_fed_the_squares_of_its_inputs():
    model = build_model(
        ModelConfig(kind="mlp", n_classes=N_CLASSES, n_tabular=7, mlp=MlpConfig(quadratic=True))
    )
    _step(model, _batch(()))
    encoder = model.tabular
    assert encoder.input[0].in_features == 14
    # With the weights on x itself zeroed, only x * x reaches the network: x and -x agree.
    with torch.no_grad():
        encoder.input[0].weight[:, :7] = 0.0
    encoder.eval()
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(encoder(x), encoder(-x))
    assert not torch.allclose(encoder(x), encoder(2 * x))


MODALITY_SETS = [combo for r in (1, 2, 4) for combo in itertools.combinations(MODALITIES, r)]
# The land-cover encoding only matters where land cover is read.
CASES = [(m, "embedding") for m in MODALITY_SETS] + [
    (m, "onehot") for m in MODALITY_SETS if "landcover" in m
]


@pytest.mark.parametrize(("modalities", "landcover"), CASES)
def test_small_cnn_and_fusion_on_every_modality_set(modalities, landcover):
    for kind in ("cnn", "fusion"):
        config = ModelConfig(
            kind=kind,
            n_classes=N_CLASSES,
            n_tabular=7 if kind == "fusion" else 0,
            modalities=modalities,
            cnn=CnnConfig(backbone="small", width=8, landcover=landcover),
        )
        _step(build_model(config), _batch(modalities))


# The winners' backbones (GLC22-FORMAT.md) on 3-, 4- and 6-channel stacks: RGB, the 1st
# place's RGB+NIR, and RGB + NIR + NDVI + altitude. Inception-v4 needs 75 px at least.
WINNERS = {"resnet34": 32, "mobilenetv3_large_100": 32, "inception_v4": 75}
STACKS = {
    3: ("rgb",),
    4: ("rgb", "near_ir"),
    6: ("rgb", "near_ir", "ndvi", "altitude"),
}


@pytest.mark.parametrize("backbone", list(WINNERS))
@pytest.mark.parametrize("channels", list(STACKS))
def test_winners_backbones_one_batch(backbone, channels):
    modalities = STACKS[channels]
    config = ModelConfig(
        kind="fusion",
        n_classes=N_CLASSES,
        n_tabular=7,
        modalities=modalities,
        cnn=CnnConfig(backbone=backbone),
        head_hidden=16,
    )
    model = build_model(config)
    first = next(m for m in model.patches.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == channels
    _step(model, _batch(modalities, batch_size=2, size=WINNERS[backbone]))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_weights_load_from_a_local_file(tmp_path, suffix):
    """A timm state dict in a file loads through cnn.pretrained: the same features as the
    source model on RGB; extra channels get timm's adapted copy of the RGB filters."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False).eval()  # with its classifier
    path = tmp_path / f"resnet18{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(images), pre_logits=True)
    rgb = build_model(
        ModelConfig(
            kind="cnn",
            n_classes=N_CLASSES,
            modalities=("rgb",),
            cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
        )
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(rgb.patches({"rgb": images}), expected)
    four = build_model(
        ModelConfig(
            kind="cnn",
            n_classes=N_CLASSES,
            modalities=("rgb", "near_ir"),
            cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
        )
    )
    conv1 = four.patches.backbone.model.conv1.weight
    original = source.conv1.weight
    assert conv1.shape[1] == 4
    # timm's adapt_input_conv: channel i takes RGB filter i mod 3, scaled by 3 / channels.
    torch.testing.assert_close(conv1[:, :3], original * 3 / 4)
    torch.testing.assert_close(conv1[:, 3], original[:, 0] * 3 / 4)
    torch.testing.assert_close(
        four.patches.backbone.model.layer4[1].conv2.weight, source.layer4[1].conv2.weight
    )


def test_a_trained_model_is_rebuilt_without_its_pretrained_file(tmp_path):
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb",),
        cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
    )
    path.unlink()  # gone on the node that predicts: building for its own weights needs none
    rebuilt = build_model(config, load_weights=False)
    fresh = build_model(replace(config, cnn=replace(config.cnn, pretrained=None)))
    shapes = {name: tuple(p.shape) for name, p in fresh.state_dict().items()}
    assert {name: tuple(p.shape) for name, p in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(fresh.state_dict())  # the trained bundle's weights go in
    batch = {"patches": {"rgb": torch.rand(2, 3, 32, 32)}}
    assert rebuilt.eval()(batch).shape == (2, N_CLASSES)
    with pytest.raises(FileNotFoundError, match="pretrained weights file is missing"):
        build_model(config)


def test_files_that_are_not_weights_of_the_backbone_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(3)}, path)
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb",),
        cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
    )
    with pytest.raises(ValueError, match="not resnet18 weights"):
        build_model(config)
    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": torch.zeros(3), "code": object()}, pickled)
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb",),
        cnn=CnnConfig(backbone="resnet18", pretrained=str(pickled)),
    )
    with pytest.raises(Exception, match="Weights only load failed"):
        build_model(config)


def test_hub_weights_are_never_downloaded_and_the_fix_is_named(tmp_path):
    # A compute node as the README sets it up: HF_HUB_OFFLINE=1 from the start (huggingface_hub
    # reads it when imported), and here a cache without the weights.
    code = (
        "from geolifeclef.settings.configs import CnnConfig, ModelConfig\n"
        "from geolifeclef.models.networks import build_model\n"
        "build_model(ModelConfig(kind='cnn', n_classes=3, modalities=('rgb',),"
        " cnn=CnnConfig(backbone='resnet18', pretrained=True)))\n"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert result.returncode != 0
    assert "geolifeclef fetch-weights resnet18" in result.stderr
    assert not any((tmp_path / "empty").rglob("*.safetensors"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "transformer"}, "unknown model kind"),
        ({"kind": "cnn"}, "at least one patch modality"),
        ({"kind": "cnn", "modalities": ("sar",)}, "unknown modalities"),
        ({"kind": "mlp"}, "needs tabular features"),
    ],
)
def test_invalid_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(n_classes=N_CLASSES, **kwargs)


def test_an_unknown_backbone_is_refused_where_it_is_built():
    """The settings stay torch-free (the Snakefile builds them): timm checks the name when
    the backbone is built, with suggestions."""
    config = ModelConfig(
        kind="cnn", n_classes=N_CLASSES, modalities=("rgb",), cnn=CnnConfig(backbone="resnet34x")
    )
    with pytest.raises(ValueError, match="unknown backbone 'resnet34x'"):
        build_model(config)


def test_input_size_resizes_before_the_backbone():
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb", "landcover"),
        cnn=CnnConfig(backbone="small", width=8, input_size=16),
    )
    model = build_model(config)
    seen = []
    model.patches.backbone.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape)
    )
    _step(model, _batch(("rgb", "landcover")))
    assert seen[0][-2:] == (16, 16)


def test_a_model_without_its_species_count_is_refused():
    """The Snakefile's settings leave ``n_classes`` at 0 (the species table gives it when
    the job runs): a classifier of no species is never built."""
    with pytest.raises(ValueError, match="n_classes is not set"):
        build_model(ModelConfig(kind="mlp", n_tabular=7))
