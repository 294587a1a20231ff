"""Output filters a model card can ask for, applied inside the generator's forward pass.

``lattice_period_px`` (card ``postprocess``): remove the picture that repeats with the tile grid. Up-sampling
layers (transposed convolutions above all) leave a faint dot lattice locked to the tile: at period 4 px the
shipped default model's is 11x the real photos' (benchmarks/realism.py). For each generated image, the mean
over all positions congruent modulo ``p`` (its *mean cell*, the projection of the image onto the functions of
period ``p``) minus that cell's own mean is subtracted. This zeroes exactly the image's Fourier coefficients
at multiples of 1/p cycles per pixel except the mean: for p = 16 on a 256 px tile, 255 of 65,536 frequency
bins, all at 16 cycles per tile or more; every divisor period (4, 8) goes with it.

Registered as a forward hook (:func:`apply_postprocess`), so every path that runs the module (renders,
evaluation, Dask workers, half-precision copies) gets the same images.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import ModelError


def remove_tile_lattice(x: torch.Tensor, period_px: int, channels: int = 3) -> torch.Tensor:
    """``x`` (B, C, H, W) without its tile-locked picture of period ``period_px`` in the first ``channels``.

    Images whose sides are not multiples of the period are returned unchanged.
    """
    b, c, h, w = x.shape
    p = int(period_px)
    if p < 2 or h % p or w % p:
        return x
    k = min(channels, c)
    rgb = x[:, :k].reshape(b, k, h // p, p, w // p, p)
    cell = rgb.mean(dim=(2, 4), keepdim=True)
    cell = cell - cell.mean(dim=(3, 5), keepdim=True)
    out = (rgb - cell).reshape(b, k, h, w)
    return out if k == c else torch.cat([out, x[:, k:]], dim=1)


def check_postprocess(spec: object, where: str) -> dict:
    """The card's ``postprocess`` mapping, checked (one-line ModelError naming the card)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping) or set(spec) - {"lattice_period_px"}:
        raise ModelError(f"{where}: 'postprocess' must be a mapping with only 'lattice_period_px'")
    period = spec.get("lattice_period_px")
    if period is not None and (not isinstance(period, int) or isinstance(period, bool) or not 2 <= period <= 64):
        raise ModelError(f"{where}: postprocess.lattice_period_px must be a whole number of pixels, 2..64")
    return dict(spec)


def apply_postprocess(module: nn.Module, card: Mapping, where: str) -> nn.Module:
    """Register the card's output filters on ``module`` (a forward hook); returns ``module``."""
    spec = check_postprocess(card.get("postprocess"), where)
    period = spec.get("lattice_period_px")
    if period:
        def hook(_module, _inputs, output):
            return remove_tile_lattice(output, period)
        module.register_forward_hook(hook)
    return module


__all__ = ["apply_postprocess", "check_postprocess", "remove_tile_lattice"]
