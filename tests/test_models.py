"""One batch forward and backward on CPU through every model and modality combination."""

import itertools

import pytest
import torch

from geolifeclef.layout import MODALITIES, N_LANDCOVER_CODES
from geolifeclef.models import (
    BACKBONES,
    CnnConfig,
    ModelConfig,
    ResNet,
    build_model,
)

N_CLASSES = 23
SIZE = 32


def _batch(modalities, n_tabular=7, batch_size=4):
    generator = torch.Generator().manual_seed(0)
    patches = {}
    for modality in modalities:
        if modality == "landcover":
            patches[modality] = torch.randint(0, N_LANDCOVER_CODES, (batch_size, SIZE, SIZE))
        else:
            channels = 3 if modality == "rgb" else 1
            patches[modality] = torch.randn(batch_size, channels, SIZE, SIZE, generator=generator)
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


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b != "small"])
def test_resnets_one_batch(backbone):
    modalities = ("rgb", "near_ir", "landcover")
    config = ModelConfig(
        kind="fusion",
        n_classes=N_CLASSES,
        n_tabular=7,
        modalities=modalities,
        cnn=CnnConfig(backbone=backbone),
    )
    _step(build_model(config), _batch(modalities, batch_size=2))


def test_pretrained_weights_load_from_a_local_file_and_adapt_conv1(tmp_path):
    source = ResNet("resnet18", in_channels=3)
    path = tmp_path / "resnet18.pth"
    state = source.state_dict()
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision files carry a classifier
    torch.save(state, path)
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb", "near_ir"),
        cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
    )
    model = build_model(config)
    conv1 = model.patches.backbone.conv1.weight
    assert conv1.shape[1] == 4
    torch.testing.assert_close(conv1[:, :3], source.conv1.weight)
    torch.testing.assert_close(conv1[:, 3:], source.conv1.weight.mean(dim=1, keepdim=True))
    torch.testing.assert_close(
        model.patches.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight
    )


def test_a_file_that_is_not_a_resnet_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(3)}, path)
    config = ModelConfig(
        kind="cnn",
        n_classes=N_CLASSES,
        modalities=("rgb",),
        cnn=CnnConfig(backbone="resnet18", pretrained=str(path)),
    )
    with pytest.raises(ValueError, match="not a ResNet state dict"):
        build_model(config)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "transformer"}, "unknown model kind"),
        ({"kind": "cnn"}, "at least one patch modality"),
        ({"kind": "cnn", "modalities": ("sar",)}, "unknown modalities"),
        ({"kind": "mlp"}, "needs tabular features"),
        (
            {"kind": "cnn", "modalities": ("rgb",), "cnn": CnnConfig(backbone="vgg")},
            "unknown backbone",
        ),
    ],
)
def test_invalid_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(n_classes=N_CLASSES, **kwargs)


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
