"""Normalisation and noise layers: ``SPADE``, ``NoiseInjection`` and helpers."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import positive_int

__all__ = [
    "NORM_KINDS",
    "make_norm",
    "resize_labels",
    "resize_noise",
    "noise_pyramid",
    "fold_batchnorm",
    "NoiseInjection",
    "SPADE",
]

#: Normalisation kinds accepted by the ``norm`` arguments of the networks.
NORM_KINDS = ("batch", "instance")


def make_norm(kind: str, channels: int, affine: bool = True) -> nn.Module:
    """Build a 2-D normalisation layer by name.

    Parameters
    ----------
    kind : {"batch", "instance"}
        ``"batch"`` is :class:`torch.nn.BatchNorm2d` (running statistics, so
        eval-mode output of a pixel does not depend on the rest of the tile);
        ``"instance"`` is :class:`torch.nn.InstanceNorm2d` without running
        statistics.
    channels : int
        Number of feature channels.
    affine : bool, default True
        Learn a per-channel scale and shift.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        If ``kind`` is unknown or ``channels`` is not a positive int.
    """
    positive_int("make_norm", "channels", channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)
    raise ValueError(f"make_norm: unknown norm {kind!r}; use one of {', '.join(NORM_KINDS)}")


def resize_labels(labels: torch.Tensor, size_yx: tuple[int, int]) -> torch.Tensor:
    """Resize a one-hot (or soft) label map to ``size_yx``.

    Downsizing uses area averaging, so each output pixel holds the class
    fractions of the block it covers; upsizing uses nearest neighbour.
    """
    if tuple(labels.shape[-2:]) == tuple(size_yx):
        return labels
    if labels.shape[-2] >= size_yx[0] and labels.shape[-1] >= size_yx[1]:
        return F.interpolate(labels, size=size_yx, mode="area")
    return F.interpolate(labels, size=size_yx, mode="nearest")


def resize_noise(noise: torch.Tensor, size_yx: tuple[int, int]) -> torch.Tensor:
    """Resize a full-resolution noise map to a feature size, keeping unit variance.

    Parameters
    ----------
    noise : torch.Tensor
        ``[B, 1, H, W]`` standard-normal noise.
    size_yx : tuple of int
        Target ``(h, w)``.

    Returns
    -------
    torch.Tensor
        ``[B, 1, h, w]``.

    Notes
    -----
    Downsizing averages ``(H/h) * (W/w)`` pixels (area mode), which shrinks
    the standard deviation by ``sqrt(H*W / (h*w))``; the result is multiplied
    back by that factor so every layer sees standard-normal noise. Because the
    map is a pure function of the full-resolution noise, overlapping tiles that
    share noise also share it at every feature scale. Upsizing is bilinear.
    """
    in_h, in_w = noise.shape[-2:]
    out_h, out_w = size_yx
    if (in_h, in_w) == (out_h, out_w):
        return noise
    if in_h >= out_h and in_w >= out_w:
        pooled = F.interpolate(noise, size=(out_h, out_w), mode="area")
        return pooled * math.sqrt((in_h * in_w) / (out_h * out_w))
    return F.interpolate(noise, size=(out_h, out_w), mode="bilinear", align_corners=False)


def noise_pyramid(noise: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``noise`` at 1/2, 1/4, ... 1/2**levels of its size, each standard normal.

    Level ``k`` equals ``resize_noise(noise, size / 2**k)`` up to float
    rounding (relative 1e-6): it is built by repeated 2x2 averaging (times 2
    to keep unit variance), one pass over each level instead of one pass over
    the full-resolution map per level.
    """
    out = []
    for _ in range(levels):
        noise = F.avg_pool2d(noise, 2) * 2.0
        out.append(noise)
    return out


def fold_batchnorm(conv: nn.Conv2d | nn.ConvTranspose2d, norm: nn.BatchNorm2d) -> nn.Module:
    """One convolution equal to ``norm(conv(x))`` for an eval-mode ``norm`` (running statistics).

    The per-channel scale ``weight / sqrt(running_var + eps)`` goes into the
    kernel, the shift into the bias. For inference only: the result differs
    from the pair by float rounding (about 1e-6 relative).
    """
    if norm.training or norm.running_mean is None:
        raise ValueError("fold_batchnorm: the batch norm must be in eval mode with running statistics")
    if conv.groups != 1:
        raise ValueError("fold_batchnorm: grouped convolutions are not supported")
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        shape = [1] * conv.weight.dim()
        shape[out_axis] = -1
        fused = copy.deepcopy(conv)
        fused.weight = nn.Parameter(conv.weight * scale.view(shape))
        bias = conv.bias * scale + shift if conv.bias is not None else shift
        fused.bias = nn.Parameter(bias.to(conv.weight.dtype))
    return fused


class NoiseInjection(nn.Module):
    """StyleGAN-style noise: ``x + scale[c] * noise``.

    Parameters
    ----------
    channels : int
        Feature channels; one learned scale per channel, initialised to 0 so a
        fresh network ignores the noise until training finds it useful.

    Notes
    -----
    ``forward(x, noise=None)``: ``noise`` is a full-resolution ``[B, 1, H, W]``
    map that is resized to the feature size with :func:`resize_noise`; when it
    is None a fresh ``torch.randn`` map of the feature size is drawn. The same
    single-channel noise is broadcast over all channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = positive_int("NoiseInjection", "channels", channels)
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(
                x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype
            )
        else:
            noise = resize_noise(noise.to(dtype=x.dtype), (x.shape[2], x.shape[3]))
        return x + self.weight * noise

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation (Park et al. 2019).

    ``out = norm(x) * (1 + gamma(labels)) + beta(labels)`` where ``norm`` is
    parameter-free and ``gamma``/``beta`` are per-pixel maps predicted from the
    label map by a small conv net.

    Parameters
    ----------
    norm_nc : int
        Channels of the features being normalised.
    label_nc : int
        Channels of the label map.
    hidden_nc : int, default 128
        Channels of the shared hidden layer; its cost is paid at the feature
        resolution, so lower it on CPU.
    kernel : int, default 3
        Odd kernel size of the label convolutions.
    param_free_norm : {"batch", "instance"}, default "batch"
        Parameter-free normalisation applied to ``x`` first.
    style_nc : int, default 0
        Size of a style latent that scales and shifts the hidden layer per channel (FiLM);
        ``forward(x, labels, style)`` then takes ``style`` ``[B, style_nc]``. 0: no style input.

    Raises
    ------
    ValueError
        On a non-positive size, an even kernel or an unknown norm.
    """

    def __init__(
        self,
        norm_nc: int,
        label_nc: int,
        hidden_nc: int = 128,
        kernel: int = 3,
        param_free_norm: str = "batch",
        style_nc: int = 0,
    ):
        super().__init__()
        positive_int("SPADE", "norm_nc", norm_nc)
        positive_int("SPADE", "style_nc", style_nc, minimum=0)
        positive_int("SPADE", "label_nc", label_nc)
        positive_int("SPADE", "hidden_nc", hidden_nc)
        positive_int("SPADE", "kernel", kernel)
        if kernel % 2 == 0:
            raise ValueError(f"SPADE: kernel must be odd, got {kernel}")
        self.norm = make_norm(param_free_norm, norm_nc, affine=False)
        pad = kernel // 2
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, hidden_nc, kernel, padding=pad), nn.ReLU(inplace=True)
        )
        self.mlp_gamma = nn.Conv2d(hidden_nc, norm_nc, kernel, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden_nc, norm_nc, kernel, padding=pad)
        # style FiLM: a per-channel scale and shift of the hidden layer from the style latent, so that the
        # modulation (gamma, beta) depends on the class *and* the look; zero-initialised (no effect at first)
        self.style_film = nn.Linear(style_nc, 2 * hidden_nc) if style_nc else None
        if self.style_film is not None:
            nn.init.zeros_(self.style_film.weight)
            nn.init.zeros_(self.style_film.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        normalized = self.norm(x)
        actv = self.mlp_shared(resize_labels(labels, (x.shape[2], x.shape[3])))
        if self.style_film is not None and style is not None:
            scale, shift = self.style_film(style.to(actv.dtype))[:, :, None, None].chunk(2, dim=1)
            actv = actv * (1 + scale) + shift
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)
