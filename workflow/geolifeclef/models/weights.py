"""Fetch a backbone's ImageNet weights once, on a machine with internet (a login node).

Training jobs never download (compute nodes often have no internet, and tests and CI must
not). Fetch the weights beforehand, either into the Hugging Face cache that the compute
nodes read (``cnn.pretrained: true``; same ``HF_HOME``, and ``HF_HUB_OFFLINE=1`` there)::

    geolifeclef fetch-weights resnet34

or into a file that the config names (``cnn.pretrained: weights/resnet34.safetensors``)::

    geolifeclef fetch-weights resnet34 --to weights/resnet34.safetensors
"""

import argparse
import sys
from pathlib import Path

import timm
from safetensors.torch import save_file

from geolifeclef.atomic import atomic_path
from geolifeclef.models.backbones import check_backbone


def fetch(name: str, to: str | Path | None = None) -> Path | None:
    """Download ``name``'s default pretrained weights (timm, from the Hugging Face hub) into
    the cache, and also save them to ``to`` as safetensors when given."""

    check_backbone(name)
    model = timm.create_model(name, pretrained=True)
    print(f"{name}: weights {model.pretrained_cfg.get('hf_hub_id') or name} in the cache")
    if to is None:
        return None
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    with atomic_path(to) as temporary:
        save_file(state, str(temporary))
    print(f"{name}: saved to {to}")
    return Path(to)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="geolifeclef fetch-weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="timm model name, e.g. resnet34")
    parser.add_argument("--to", help="also save them to this .safetensors file")
    args = parser.parse_args(argv)
    fetch(args.model, args.to)
    return 0


if __name__ == "__main__":
    sys.exit(main())
