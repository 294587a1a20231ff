"""Style latents shared by the generators: the VAE style encoder, sampling, and per-channel FiLM.

A style latent ``z`` ([B, z_dim]) describes the overall look of an aerial photo (colour, texture) and not its
layout. :class:`StyleEncoder` maps a reference image to ``(mu, logvar)``; :func:`style_latent` turns what a
caller gives a generator's ``forward`` (nothing, a latent, or an image) into one latent per tile; a
:class:`StyleFiLM` layer lets ``z`` scale and shift a feature map per channel, starting as the identity so a
style can be added to a trained generator without changing what it computes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._validate import positive_int
from .init import init_weights
from .normalization import make_norm

__all__ = ["StyleEncoder", "StyleFiLM", "encode_style", "reparameterize", "style_latent"]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, 1)``."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class StyleEncoder(nn.Module):
    """VAE encoder from a reference image to a style latent ``(mu, logvar)``.

    ``n_layers`` 3x3 stride-2 convolutions (instance norm, LeakyReLU 0.2) with
    ``nef * min(2**i, 8)`` channels, global average pooling, then two linear
    heads. Global pooling makes the latent describe the overall look (colour,
    texture) rather than the layout, and lets any image size through.

    Parameters
    ----------
    in_nc : int, default 3
        Image channels.
    z_dim : int, default 64
    nef : int, default 32
    n_layers : int, default 4
        The image should be at least ``2**(n_layers + 1)`` px on each side.
    """

    def __init__(self, in_nc: int = 3, z_dim: int = 64, nef: int = 32, n_layers: int = 4):
        super().__init__()
        owner = "StyleEncoder"
        positive_int(owner, "in_nc", in_nc)
        positive_int(owner, "z_dim", z_dim)
        positive_int(owner, "nef", nef)
        positive_int(owner, "n_layers", n_layers)
        self.in_channels = in_nc
        self.z_dim = z_dim
        layers: list[nn.Module] = []
        c_in = in_nc
        for i in range(n_layers):
            c_out = nef * min(2**i, 8)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                make_norm("instance", c_out),
                nn.LeakyReLU(0.2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(c_in, z_dim)
        self.fc_logvar = nn.Linear(c_in, z_dim)
        init_weights(self)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"StyleEncoder: image must be [B, {self.in_channels}, H, W], "
                f"got {list(image.shape)}"
            )
        feats = self.body(image).mean(dim=(2, 3))
        return self.fc_mu(feats), self.fc_logvar(feats)


def encode_style(
    owner: str, encoder: StyleEncoder | None, image: torch.Tensor, training: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode a reference image to ``(z, mu, logvar)``: ``z`` reparameterised in train mode, ``mu`` in eval.

    Use ``mu``/``logvar`` for the KL term (:func:`geogan.models.loss.kld_loss`).

    Raises
    ------
    ValueError
        If there is no encoder.
    """
    if encoder is None:
        raise ValueError(f"{owner}: no style encoder; build with use_style_encoder=True and z_dim > 0")
    mu, logvar = encoder(image)
    z = reparameterize(mu, logvar) if training else mu
    return z, mu, logvar


class StyleFiLM(nn.Module):
    """``x * (1 + scale(z)) + shift(z)`` per channel, from a style latent; zero-initialised (the identity).

    Parameters
    ----------
    z_dim : int
        Latent size.
    channels : int
        Channels of the feature map it modulates.
    """

    def __init__(self, z_dim: int, channels: int):
        super().__init__()
        positive_int("StyleFiLM", "z_dim", z_dim)
        positive_int("StyleFiLM", "channels", channels)
        self.linear = nn.Linear(z_dim, 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(z.to(x.dtype))[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


def style_latent(
    owner: str,
    z_dim: int,
    labels: torch.Tensor,
    style: torch.Tensor | None,
    training: bool,
    encode: Callable[[torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor | None:
    """One style latent per tile of ``labels`` ([B, z_dim]), or None for a generator without one.

    ``style`` None: drawn from N(0, 1) in train mode, the prior mean 0 in eval mode (tiles rendered
    separately then share a look). A latent ``[1 or B, z_dim]`` is broadcast over the batch; an image
    ``[1 or B, C, h, w]`` is encoded with ``encode`` (the generator's style encoder).

    Raises
    ------
    ValueError
        A style for a generator with ``z_dim`` 0, an image without an encoder, or a wrong shape.
    """
    batch = labels.shape[0]
    if z_dim == 0:
        if style is not None:
            raise ValueError(f"{owner}: style given but z_dim is 0; build with z_dim > 0")
        return None
    if style is None:
        shape = (batch, z_dim)
        if training:
            return torch.randn(shape, device=labels.device, dtype=labels.dtype)
        return torch.zeros(shape, device=labels.device, dtype=labels.dtype)
    if style.dim() == 4:
        if encode is None:
            raise ValueError(f"{owner}: a style image needs a style encoder; build with use_style_encoder=True")
        if style.shape[0] not in (1, batch):
            raise ValueError(
                f"{owner}: style image batch {style.shape[0]} does not match "
                f"labels batch {batch}; give 1 or {batch} images"
            )
        return encode(style).expand(batch, -1)
    if style.dim() == 2 and style.shape[1] == z_dim and style.shape[0] in (1, batch):
        return style.to(dtype=labels.dtype).expand(batch, -1)
    raise ValueError(
        f"{owner}: style must be [B, {z_dim}] or an image [B, C, H, W], "
        f"got {list(style.shape)}"
    )
