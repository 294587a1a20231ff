"""Output filters a model card can ask for, applied inside the generator's forward pass.

``lattice_period_px`` (card ``postprocess``): remove the picture that repeats with the tile grid. Up-sampling
layers (transposed convolutions above all) leave a faint dot lattice locked to the tile: at period 4 px the
shipped default model's is 11x the real photos' (benchmarks/realism.py). For each generated image, the mean
over all positions congruent modulo ``p`` (its *mean cell*, the projection of the image onto the functions of
period ``p``) minus that cell's own mean is subtracted. This zeroes exactly the image's Fourier coefficients
at multiples of 1/p cycles per pixel except the mean: for p = 16 on a 256 px tile, 255 of 65,536 frequency
bins, all at 16 cycles per tile or more; every divisor period (4, 8) goes with it.

``refiner`` (``{"file": NAME.safetensors, "sha256": ...}`` beside the card): a small fully convolutional
network (:class:`Refiner`) that adds a learned correction to the RGB, given the class map, trained
adversarially against real photos with the generator frozen (:mod:`geogan.training.refiner`). Reflect
padding and no position input: it cannot paint anything tied to the tile. Run after the lattice filter,
and the lattice filter runs again after it.

Registered as a forward hook (:func:`apply_postprocess`), so every path that runs the module (renders,
evaluation, Dask workers, half-precision copies) gets the same images.
"""

from __future__ import annotations

from pathlib import Path
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


class Refiner(nn.Module):
    """RGB (B, 3, H, W) in [-1, 1] + class one-hot (B, K, H, W) -> RGB plus a learned residual (starts as 0)."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3 + n_classes, width, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 3, 3, padding=1, padding_mode="reflect"))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, rgb: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return (rgb + self.net(torch.cat([rgb, onehot.to(rgb.dtype)], dim=1))).clamp(-1, 1)


def load_refiner(spec: Mapping, card_dir: Path, n_classes: int, where: str) -> Refiner:
    """The refiner a card names (its file beside the card, checked against its SHA-256)."""
    import hashlib

    from safetensors.torch import load_file

    path = card_dir / str(spec.get("file", ""))
    if not path.is_file():
        raise ModelError(f"{where}: postprocess.refiner file '{path}' does not exist; restore it or remove the key")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.get("sha256"):
        raise ModelError(f"{where}: postprocess.refiner '{path.name}' does not match its SHA-256; restore the file")
    state = load_file(str(path))
    width = int(state["net.0.weight"].shape[0])
    refiner = Refiner(n_classes, width)
    refiner.load_state_dict(state, strict=True)
    for t in refiner.state_dict().values():
        if not bool(torch.isfinite(t).all()):
            raise ModelError(f"{where}: postprocess.refiner '{path.name}' holds NaN/inf weights; retrain it")
    return refiner.eval()


def check_postprocess(spec: object, where: str) -> dict:
    """The card's ``postprocess`` mapping, checked (one-line ModelError naming the card)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping) or set(spec) - {"lattice_period_px", "refiner"}:
        raise ModelError(f"{where}: 'postprocess' must be a mapping with only 'lattice_period_px' and 'refiner'")
    refiner = spec.get("refiner")
    if refiner is not None and (not isinstance(refiner, Mapping) or set(refiner) != {"file", "sha256"}):
        raise ModelError(f"{where}: postprocess.refiner must be {{'file': NAME.safetensors, 'sha256': HEX}}")
    period = spec.get("lattice_period_px")
    if period is not None and (not isinstance(period, int) or isinstance(period, bool) or not 2 <= period <= 64):
        raise ModelError(f"{where}: postprocess.lattice_period_px must be a whole number of pixels, 2..64")
    return dict(spec)


def apply_postprocess(module: nn.Module, card: Mapping, where: str, card_dir: Path | None = None) -> nn.Module:
    """Register the card's output filters on ``module`` (a forward hook); returns ``module``.

    ``card_dir``: the card's folder (where a refiner's weights lie)."""
    spec = check_postprocess(card.get("postprocess"), where)
    period = spec.get("lattice_period_px")
    refiner = None
    if spec.get("refiner") is not None:
        refiner = load_refiner(spec["refiner"], Path(card_dir or "."), len(card.get("classes", ())), where)
    if not period and refiner is None:
        return module

    def hook(_module, args, kwargs, output):
        if period:
            output = remove_tile_lattice(output, period)
        if refiner is not None and args:
            k = min(3, output.shape[1])
            refiner.to(device=output.device, dtype=output.dtype)  # kept out of the generator's state_dict
            rgb = refiner(output[:, :k].clamp(-1, 1), args[0])
            output = torch.cat([rgb, output[:, k:]], dim=1) if k < output.shape[1] else rgb
            if period:
                output = remove_tile_lattice(output, period)
        return output
    module.register_forward_hook(hook, with_kwargs=True)
    return module


__all__ = ["Refiner", "apply_postprocess", "check_postprocess", "load_refiner", "remove_tile_lattice"]
