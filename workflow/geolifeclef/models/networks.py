"""The PyTorch models, each built from a config dataclass.

* the tabular branch: a residual MLP over environmental values, coordinates and patch
  statistics (``TabularEncoder``);
* the patch branch: the chosen modalities stacked into one image (land cover as one-hot or
  a learned embedding; derived channels such as NDVI, see ``geolifeclef.settings.inputs``) and
  run through a backbone: any timm model or a small CNN for CPU demos
  (``geolifeclef.models.backbones``);
* the cube branch: a CNN per time-series cube of a survey edition (``CubeEncoder``: the
  Landsat cube as a 6-channel image of quarters x years, the bioclim cube as a 4-channel
  image of years x months), as the organizers' ResNet-18s read them;
* ``SpeciesModel``: the branches its kind reads (``fusion``: patches and tabular;
  ``multimodal``: an encoder per modality, GLC 2024's multimodal ensemble), concatenated
  before a shared classifier, as the best GLC 2022 teams did; optionally a hidden layer
  before the classifier.

Pretrained weights only come from a local file or the user's Hugging Face cache: nothing
is downloaded during a run (see ``geolifeclef.models.backbones``).
"""

import torch
from torch import nn

from geolifeclef.layout import N_LANDCOVER_CODES
from geolifeclef.models.backbones import build_backbone
from geolifeclef.settings.configs import CnnConfig, MlpConfig, ModelConfig
from geolifeclef.settings.inputs import modality_channels

# --------------------------------------------------------------------------------------
# Tabular branch
# --------------------------------------------------------------------------------------


class TabularEncoder(nn.Module):
    """MLP with batch norm and residual blocks over standardised tabular features."""

    def __init__(self, n_features: int, config: MlpConfig) -> None:
        super().__init__()
        self.quadratic = config.quadratic
        inputs = 2 * n_features if config.quadratic else n_features
        self.input = nn.Sequential(
            nn.Linear(inputs, config.hidden), nn.BatchNorm1d(config.hidden), nn.GELU()
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
        if self.quadratic:
            x = torch.cat([x, x * x], dim=1)
        x = self.input(x)
        for block in self.blocks:
            x = x + block(x)
        return x


# --------------------------------------------------------------------------------------
# Patch branch
# --------------------------------------------------------------------------------------


class PatchEncoder(nn.Module):
    """Stacks the chosen modalities into one image and runs a backbone over it."""

    def __init__(
        self, modalities: tuple[str, ...], config: CnnConfig, load_weights: bool = True
    ) -> None:
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
                channels += modality_channels(modality)
        if "landcover" in self.modalities and config.landcover == "embedding":
            self.landcover_embedding = nn.Embedding(
                N_LANDCOVER_CODES, config.landcover_embedding_dim
            )
        self.backbone = build_backbone(
            config.backbone, channels, config.width, config.pretrained, load_weights
        )
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
# Cube branch
# --------------------------------------------------------------------------------------


class CubeEncoder(nn.Module):
    """A backbone over one time-series cube (B, C, T1, T2), standardised and without NaN
    (the dataset's work), resized to ``input_size`` first when set: a timm ResNet's stem
    would reduce a 4 x 21 Landsat cube to nothing, 64 px keep its layers' meaning."""

    def __init__(self, cube: str, config: CnnConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.cube = cube
        self.input_size = config.input_size
        self.backbone = build_backbone(
            config.backbone, modality_channels(cube), config.width, config.pretrained, load_weights
        )
        self.out_features = self.backbone.out_features

    def forward(self, cube: torch.Tensor) -> torch.Tensor:
        x = cube.float()
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size,) * 2:
            x = nn.functional.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return self.backbone(x)


# --------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------


class SpeciesModel(nn.Module):
    """Any kind (``geolifeclef.settings.inputs.MODEL_KINDS``): its encoders, then dropout
    and a linear classifier.

    ``forward`` takes a batch dict with ``tabular`` (B, F), ``patches`` ({modality:
    tensor}) and ``cubes`` ({cube: tensor}), those the kind reads, and returns logits
    (B, n_classes).
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__()
        if config.n_classes <= 0:  # a classifier of no species would build without a word
            raise ValueError(
                "ModelConfig.n_classes is not set: fill it from the species table "
                "(ExperimentSettings.with_classes) before building the model"
            )
        self.config = config
        features = 0
        self.tabular = None
        self.patches = None
        if config.reads.uses_tabular:
            self.tabular = TabularEncoder(config.n_tabular, config.mlp)
            features += self.tabular.out_features
        if config.reads.uses_patches:
            self.patches = PatchEncoder(config.modalities, config.cnn, load_weights)
            features += self.patches.out_features
        self.cubes = None
        if config.reads.uses_cubes:
            self.cubes = nn.ModuleDict(
                {cube: CubeEncoder(cube, config.cube_cnn, load_weights) for cube in config.cubes}
            )
            features += sum(encoder.out_features for encoder in self.cubes.values())
        hidden = []
        if config.head_hidden:
            hidden = [
                nn.Dropout(config.dropout),
                nn.Linear(features, config.head_hidden),
                nn.ReLU(inplace=True),
            ]
            features = config.head_hidden
        self.head = nn.Sequential(
            *hidden, nn.Dropout(config.dropout), nn.Linear(features, config.n_classes)
        )

    def forward(self, batch: dict) -> torch.Tensor:
        parts = []
        if self.tabular is not None:
            parts.append(self.tabular(batch["tabular"].float()))
        if self.patches is not None:
            parts.append(self.patches(batch["patches"]))
        if self.cubes is not None:
            parts.extend(encoder(batch["cubes"][cube]) for cube, encoder in self.cubes.items())
        return self.head(torch.cat(parts, dim=1))


def build_model(config: ModelConfig, load_weights: bool = True) -> SpeciesModel:
    """The model described by ``config``; its backbone starts from the pretrained weights
    the config names, unless ``load_weights`` is False (a trained model rebuilt to receive
    its own state dict needs neither the file nor the cache)."""
    return SpeciesModel(config, load_weights)
