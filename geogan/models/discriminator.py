"""PatchGAN and multi-scale PatchGAN discriminators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ._validate import choice, positive_int
from .init import init_weights
from .normalization import make_norm

__all__ = ["DISC_NORM_KINDS", "PatchGANDiscriminator", "MultiScaleDiscriminator", "receptive_field"]

#: ``norm`` values of the discriminators. "spectral" wraps every conv in
#: spectral normalisation and adds no normalisation layer.
DISC_NORM_KINDS = ("batch", "instance", "spectral", "none")


def receptive_field(n_layers: int) -> int:
    """Receptive field in px of a :class:`PatchGANDiscriminator` output pixel.

    ``n_layers`` stride-2 4x4 convs followed by two stride-1 4x4 convs;
    ``receptive_field(3) == 70`` (the pix2pix 70x70 PatchGAN).
    """
    positive_int("receptive_field", "n_layers", n_layers)
    field = 1
    for stride in [1, 1] + [2] * n_layers:  # walk back from the output
        field = field * stride + (4 - stride)
    return field


def _pair(labels: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
    return labels if image is None else torch.cat([labels, image], dim=1)


class PatchGANDiscriminator(nn.Module):
    """pix2pix PatchGAN: classifies overlapping patches of a (labels, image) pair.

    ``C{ndf}`` (no norm) then ``n_layers - 1`` stride-2 and one stride-1 4x4
    convolutions with ``ndf * min(2**n, 8)`` channels, norm and LeakyReLU 0.2,
    then a stride-1 4x4 convolution to one logit per patch. With
    ``n_layers=3`` each logit sees 70x70 px (see :func:`receptive_field`);
    a 256 px input gives a 30x30 logit map.

    Parameters
    ----------
    in_nc : int
        Channels of the concatenated input (label channels + image channels).
    ndf : int, default 64
    n_layers : int, default 3
    norm : {"batch", "instance", "spectral", "none"}, default "batch"

    Notes
    -----
    ``forward(labels, image=None)`` returns the logit map ``[B, 1, h, w]``;
    ``labels`` and ``image`` are concatenated on channels (pass ``image=None``
    to give an already-concatenated tensor). :meth:`features` returns every
    intermediate activation, the logit map last, for feature matching.
    """

    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        owner = "PatchGANDiscriminator"
        positive_int(owner, "in_nc", in_nc)
        positive_int(owner, "ndf", ndf)
        positive_int(owner, "n_layers", n_layers)
        choice(owner, "norm", norm, DISC_NORM_KINDS)
        self.in_channels = in_nc
        self.n_layers = n_layers

        def conv(c_in: int, c_out: int, stride: int, normed: bool) -> nn.Module:
            has_norm_layer = normed and norm in ("batch", "instance")
            layer = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, bias=not has_norm_layer)
            if norm == "spectral":
                layer = spectral_norm(layer)
            return layer

        def stage(c_in: int, c_out: int, stride: int, normed: bool) -> nn.Sequential:
            layers = [conv(c_in, c_out, stride, normed)]
            if normed and norm in ("batch", "instance"):
                layers.append(make_norm(norm, c_out))
            layers.append(nn.LeakyReLU(0.2))
            return nn.Sequential(*layers)

        stages = [stage(in_nc, ndf, 2, normed=False)]
        c_prev = ndf
        for n in range(1, n_layers + 1):
            c_out = ndf * min(2**n, 8)
            stages.append(stage(c_prev, c_out, 2 if n < n_layers else 1, normed=True))
            c_prev = c_out
        stages.append(nn.Sequential(conv(c_prev, 1, 1, normed=False)))
        self.stages = nn.ModuleList(stages)
        init_weights(self)

    def features(
        self, labels: torch.Tensor, image: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Return every stage output; the last one is the logit map."""
        x = _pair(labels, image)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"PatchGANDiscriminator: input must be [B, {self.in_channels}, H, W] after "
                f"concatenation, got {list(x.shape)}"
            )
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        return self.features(labels, image)[-1]


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input at 1, 1/2, 1/4 ... scale (pix2pixHD / SPADE).

    Between scales the input is average-pooled (3x3, stride 2, padding 1,
    padding excluded from the mean).

    Parameters
    ----------
    in_nc : int
        Channels of the concatenated (labels, image) input.
    ndf : int, default 64
    n_layers : int, default 3
    num_d : int, default 2
        Number of scales (1-4 sensible).
    norm : {"batch", "instance", "spectral", "none"}, default "instance"

    Notes
    -----
    ``forward(labels, image=None)`` returns a list (one entry per scale, full
    scale first) of lists of intermediate features whose last element is that
    scale's logit map: feed it to :class:`~geogan.models.loss.GANLoss` and
    :func:`~geogan.models.loss.feature_matching_loss` as is.
    """

    def __init__(
        self, in_nc: int, ndf: int = 64, n_layers: int = 3, num_d: int = 2, norm: str = "instance"
    ):
        super().__init__()
        positive_int("MultiScaleDiscriminator", "num_d", num_d)
        self.in_channels = in_nc
        self.discriminators = nn.ModuleList(
            PatchGANDiscriminator(in_nc, ndf, n_layers, norm) for _ in range(num_d)
        )

    def forward(
        self, labels: torch.Tensor, image: torch.Tensor | None = None
    ) -> list[list[torch.Tensor]]:
        x = _pair(labels, image)
        results = []
        for i, disc in enumerate(self.discriminators):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(disc.features(x))
        return results
