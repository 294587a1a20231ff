"""Weight initialisation shared by the generators and discriminators."""

from __future__ import annotations

from torch import nn

__all__ = ["init_weights"]

_CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise a network the DCGAN / pix2pix way, in place.

    Convolution, transposed convolution and linear weights are drawn from
    N(0, std); their biases are set to 0. Affine normalisation layers get
    scale N(1, std) and shift 0. Other parameters (for example the noise
    scales of :class:`~geogan.models.normalization.NoiseInjection`, which
    start at 0) are left alone.

    Parameters
    ----------
    module : torch.nn.Module
        Network to initialise; every sub-module is visited.
    std : float, default 0.02
        Standard deviation of the normal draws; must be > 0.

    Returns
    -------
    torch.nn.Module
        ``module`` itself, for chaining.

    Raises
    ------
    ValueError
        If ``std`` is not positive.
    """
    if not std > 0:
        raise ValueError(f"init_weights: std must be > 0, got {std!r}")
    for sub in module.modules():
        if isinstance(sub, _CONV_TYPES):
            weight = getattr(sub, "weight_orig", None)  # old-style spectral norm
            if weight is None:
                weight = _plain_weight(sub)
            nn.init.normal_(weight, 0.0, std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, _NORM_TYPES):
            if getattr(sub, "weight", None) is not None:
                nn.init.normal_(sub.weight, 1.0, std)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
    return module


def _plain_weight(layer: nn.Module):
    """Return the trainable weight tensor, looking through parametrizations."""
    parametrizations = getattr(layer, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        return parametrizations.weight.original
    return layer.weight
