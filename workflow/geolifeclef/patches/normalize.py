"""Patch tensors made into model inputs on their device: normalised with the train
statistics (``geolifeclef.data.normalization`` computes them) and NDVI from raw
reflectances. Torch; the loader (``geolifeclef.data.patch_batches``) and the GPU JPEG
decoder (``geolifeclef.patches.device_decode``) call them."""

import torch


def ndvi(red: torch.Tensor, near_ir: torch.Tensor) -> torch.Tensor:
    """(NIR - R) / (NIR + R) of raw reflectances, 0 where both are 0."""
    red, near_ir = red.float(), near_ir.float()
    total = near_ir + red
    return torch.where(total > 0, (near_ir - red) / total.clamp_min(1e-6), torch.zeros_like(total))


def normalize_patches(data: torch.Tensor, mean, std) -> torch.Tensor:
    """Patches (B, C, S, S) as float32 ``(x - mean) / std`` per channel (train statistics),
    on their device; ``data`` is left as it is."""
    shape = (1, -1, 1, 1)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=data.device).view(shape)
    std = torch.as_tensor(std, dtype=torch.float32, device=data.device).view(shape)
    # In place on a fresh copy: one float batch, not three (a 256 px batch is ~0.5 GB).
    return data.to(torch.float32, copy=True).sub_(mean).div_(std.clamp_min(1e-6))
