"""CNN backbones: any timm model, or a small CNN that trains on 2 CPU cores.

A backbone takes the stacked patch channels (any number: ``in_chans``) and returns one
feature vector per sample (``out_features`` wide). timm builds every backbone the GLC 2022
winners used (``resnet34``, ``mobilenetv3_large_100``, ``inception_v4``, ...) with
``num_classes=0`` (no classifier) and ``in_chans`` set to the stack's channels, so that
ImageNet weights are *adapted* to near-infrared, altitude or land cover rather than dropped:
timm repeats the RGB filters of the first convolution over the extra channels and rescales
them by 3 / ``in_chans`` (``timm.models.adapt_input_conv``).

Pretrained weights never come from the internet during a run:

* ``pretrained: <path>``: a local file, ``.safetensors`` or a torch state dict (loaded with
  ``weights_only=True``: a tampered file cannot run code), in timm's layout for that model;
* ``pretrained: true``: the user's Hugging Face cache (``~/.cache/huggingface``, or
  ``HF_HOME``), filled once on a machine with internet by
  ``geolifeclef fetch-weights <model>``; set ``HF_HUB_OFFLINE=1`` on compute nodes.
"""

from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import load_file
from torch import nn

from geolifeclef.settings.backbones import backbone_problem
from geolifeclef.settings.configs import SMALL


def _timm() -> ModuleType:
    """timm, loaded by the jobs of timm backbones only: it loads torchvision and
    torch._dynamo, ~3 CPU s a process that the MLP's and the small CNN's jobs skip."""
    import timm  # deferred: ~3 CPU s a process, only timm backbones need it

    return timm


def check_backbone(name: str) -> None:
    """Refuse a backbone name that is neither ``small`` nor a timm model, with suggestions
    (the words of the check when the workflow is parsed)."""
    problem = backbone_problem(name)
    if problem:
        raise ValueError(problem)


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


class TimmBackbone(nn.Module):
    """A timm model without its classifier, exposing ``out_features``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # MobileNetV3's num_features is the width before its head convolution, not what
        # forward returns with num_classes=0; head_hidden_size is, where a model has one.
        self.out_features = int(getattr(model, "head_hidden_size", None) or model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local ``.safetensors`` file or torch file (``weights_only``);
    a checkpoint that wraps it under ``state_dict`` or ``model`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: pretrained weights file is missing. Fix: fetch it on a machine with "
            f"internet (geolifeclef fetch-weights <model> --to {path}) or set "
            "cnn.pretrained: null"
        )
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def build_backbone(
    name: str, in_channels: int, width: int, pretrained: str | bool | None, load_weights: bool
) -> nn.Module:
    """The backbone ``name`` over ``in_channels`` channels. ``pretrained`` weights are loaded
    only when ``load_weights`` (not when a trained model is rebuilt to receive its own)."""
    check_backbone(name)
    if name == SMALL:
        if pretrained:
            raise ValueError("cnn.pretrained needs a timm backbone; the small CNN has no weights")
        return SmallCnn(in_channels, width)
    options = {"num_classes": 0, "in_chans": in_channels}
    timm = _timm()
    if not (pretrained and load_weights):
        return TimmBackbone(timm.create_model(name, pretrained=False, **options))
    if pretrained is True:
        return TimmBackbone(_from_hub_cache(name, options))
    state = read_weights(pretrained)
    try:
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **options
        )
        missing = sorted(set(model.state_dict()) - set(state))  # timm only warns
        if missing:
            raise KeyError(f"{len(missing)} parameters missing, e.g. {missing[:3]}")
    except (RuntimeError, KeyError) as error:
        raise ValueError(
            f"{pretrained}: not {name} weights in timm's layout ({str(error)[:300]})"
        ) from None
    return TimmBackbone(model)


def _from_hub_cache(name: str, options: dict) -> nn.Module:
    try:
        return _timm().create_model(name, pretrained=True, **options)
    except (OSError, RuntimeError) as error:  # huggingface_hub's offline errors are OSErrors
        raise RuntimeError(
            f"no ImageNet weights of {name} in the Hugging Face cache ({type(error).__name__}). "
            "Fix: on a machine with internet run "
            f"`geolifeclef fetch-weights {name}` "
            "(same HF_HOME as the compute nodes), or give cnn.pretrained a local file"
        ) from None
