"""The PyTorch models, each built from a config dataclass.

* ``TabularMlp``: environmental values + coordinates (+ land-cover shares, altitude statistics).
* ``PatchCnn``: a CNN over the patches, channels chosen by modality (rgb, near_ir, altitude,
  landcover as one-hot or as a learned embedding). Backbones: ResNet-18/34/50 with
  torchvision's layer names (so torchvision state dicts load) or a small CNN for CPU demos.
* ``FusionModel``: both encoders joined before a shared classifier, as the best GLC 2022 teams.

Pretrained weights only come from a local file named in the config: nothing is downloaded.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .layout import MODALITIES, N_LANDCOVER_CODES, PATCH_CHANNELS

MODEL_KINDS = ("mlp", "cnn", "fusion")
BACKBONES = ("small", "resnet18", "resnet34", "resnet50")
LANDCOVER_MODES = ("onehot", "embedding")


@dataclass(frozen=True)
class MlpConfig:
    """The tabular branch."""

    hidden: int = 256
    layers: int = 3
    dropout: float = 0.1


@dataclass(frozen=True)
class CnnConfig:
    """The patch branch."""

    backbone: str = "small"
    width: int = 32
    """Channels of the first stage of the small CNN (ResNets have their own)."""
    landcover: str = "embedding"
    """How land-cover codes enter the CNN: ``onehot`` (34 channels) or ``embedding``."""
    landcover_embedding_dim: int = 4
    pretrained: str | None = None
    """Local path of a torchvision-style ResNet state dict; None trains from scratch."""
    input_size: int | None = None
    """Side the stacked patches are area-resized to before the backbone (e.g. 32 for a
    CPU demo); None keeps the cache's size."""


@dataclass(frozen=True)
class ModelConfig:
    """What to build: ``kind`` in MODEL_KINDS, inputs and outputs."""

    kind: str
    n_classes: int
    n_tabular: int = 0
    """Features of the tabular branch (env values, coordinates, patch statistics)."""
    modalities: tuple[str, ...] = ()
    """Patch modalities the CNN reads, from MODALITIES."""
    mlp: MlpConfig = field(default_factory=MlpConfig)
    cnn: CnnConfig = field(default_factory=CnnConfig)
    dropout: float = 0.2
    """Dropout before the classifier."""

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {MODEL_KINDS}")
        uses_patches = self.kind in ("cnn", "fusion")
        uses_tabular = self.kind in ("mlp", "fusion")
        if uses_patches and not self.modalities:
            raise ValueError(f"a {self.kind} model needs at least one patch modality")
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
        if uses_tabular and self.n_tabular <= 0:
            raise ValueError(f"a {self.kind} model needs tabular features (n_tabular > 0)")
        if self.cnn.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.cnn.backbone!r}; choose one of {BACKBONES}")
        if self.cnn.landcover not in LANDCOVER_MODES:
            raise ValueError(f"cnn.landcover must be one of {LANDCOVER_MODES}")


# --------------------------------------------------------------------------------------
# Tabular branch
# --------------------------------------------------------------------------------------


class TabularEncoder(nn.Module):
    """MLP with batch norm and residual blocks over standardised tabular features."""

    def __init__(self, n_features: int, config: MlpConfig) -> None:
        super().__init__()
        self.input = nn.Sequential(
            nn.Linear(n_features, config.hidden), nn.BatchNorm1d(config.hidden), nn.GELU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(config.hidden, config.hidden),
                nn.BatchNorm1d(config.hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
            )
            for _ in range(max(0, config.layers - 1))
        )
        self.out_features = config.hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for block in self.blocks:
            x = x + block(x)
        return x


# --------------------------------------------------------------------------------------
# Patch branch
# --------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes)
    )


_RESNET_LAYOUT = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet without its classifier, with torchvision's parameter names."""

    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        block, counts = _RESNET_LAYOUT[name]
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            stride = 1 if index == 0 else 2
            layers = []
            for i in range(count):
                layers.append(block(inplanes, planes, stride if i == 0 else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = inplanes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def load_pretrained(backbone: ResNet, path: str | Path) -> None:
    """Load a local torchvision-style state dict; adapt conv1 to the input channels.

    Channels beyond RGB start from the mean of the RGB filters, the usual way to reuse
    ImageNet weights on near-infrared, altitude and land cover.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    wanted = backbone.conv1.weight.shape[1]
    if conv1 is not None and conv1.shape[1] != wanted:
        mean = conv1.mean(dim=1, keepdim=True)
        extra = mean.repeat(1, max(0, wanted - conv1.shape[1]), 1, 1)
        state["conv1.weight"] = torch.cat([conv1, extra], dim=1)[:, :wanted]
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a {type(backbone).__name__} state dict "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )


class SmallCnn(nn.Module):
    """Four conv stages with batch norm: fast enough to train on 2 CPU cores."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for i in range(4):
            out = width * 2**i
            stages += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class PatchEncoder(nn.Module):
    """Stacks the chosen modalities into one image and runs a backbone over it."""

    def __init__(self, modalities: tuple[str, ...], config: CnnConfig) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.landcover_mode = config.landcover
        self.input_size = config.input_size
        channels = 0
        for modality in self.modalities:
            if modality == "landcover":
                channels += (
                    N_LANDCOVER_CODES
                    if config.landcover == "onehot"
                    else config.landcover_embedding_dim
                )
            else:
                channels += PATCH_CHANNELS[modality]
        if "landcover" in self.modalities and config.landcover == "embedding":
            self.landcover_embedding = nn.Embedding(
                N_LANDCOVER_CODES, config.landcover_embedding_dim
            )
        if config.backbone == "small":
            self.backbone = SmallCnn(channels, config.width)
        else:
            self.backbone = ResNet(config.backbone, channels)
            if config.pretrained:
                load_pretrained(self.backbone, config.pretrained)
        self.out_features = self.backbone.out_features

    def stack(self, patches: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C, H, W) float input from the per-modality tensors of a batch.

        Images arrive as normalised float tensors (B, C, H, W); land cover as integer
        codes (B, H, W) or (B, 1, H, W).
        """
        parts = []
        for modality in self.modalities:
            tensor = patches[modality]
            if modality == "landcover":
                codes = tensor.long().reshape(tensor.shape[0], *tensor.shape[-2:])
                codes = codes.clamp(0, N_LANDCOVER_CODES - 1)
                if self.landcover_mode == "onehot":
                    onehot = nn.functional.one_hot(codes, N_LANDCOVER_CODES)
                    parts.append(onehot.permute(0, 3, 1, 2).float())
                else:
                    parts.append(self.landcover_embedding(codes).permute(0, 3, 1, 2))
            else:
                parts.append(tensor.float())
        return torch.cat(parts, dim=1)

    def forward(self, patches: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.stack(patches)
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = nn.functional.adaptive_avg_pool2d(x, self.input_size)
        if x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)


# --------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------


class SpeciesModel(nn.Module):
    """Any of the three kinds: encoders, then dropout and a linear classifier.

    ``forward`` takes a batch dict with ``tabular`` (B, F) and/or ``patches``
    ({modality: tensor}) and returns logits (B, n_classes).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        features = 0
        self.tabular = None
        self.patches = None
        if config.kind in ("mlp", "fusion"):
            self.tabular = TabularEncoder(config.n_tabular, config.mlp)
            features += self.tabular.out_features
        if config.kind in ("cnn", "fusion"):
            self.patches = PatchEncoder(config.modalities, config.cnn)
            features += self.patches.out_features
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(features, config.n_classes))

    def forward(self, batch: dict) -> torch.Tensor:
        parts = []
        if self.tabular is not None:
            parts.append(self.tabular(batch["tabular"].float()))
        if self.patches is not None:
            parts.append(self.patches(batch["patches"]))
        return self.head(torch.cat(parts, dim=1))


def build_model(config: ModelConfig) -> SpeciesModel:
    """The model described by ``config``."""
    return SpeciesModel(config)
