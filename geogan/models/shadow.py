"""Texture + height training support: a small shadow generator and dihedral augmentation.

Aerial photos have sun shading baked in, but the generator should produce a
flat texture plus a height map. During training the generated texture and
height go through :class:`ShadowGenerator`, which learns to add the shading,
before the discriminator compares the result with real photos. A second route
flips/rotates texture and height together (:func:`random_flip_rotate`) before
shading: the light then comes from another side, so shading baked into the
texture no longer agrees with the shading computed from height, and the
discriminator can punish it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import positive_int
from .init import init_weights

__all__ = ["ShadowGenerator", "random_flip_rotate", "split_texture_height"]


def split_texture_height(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 4-channel generator output into texture ``[B,3,H,W]`` and height ``[B,1,H,W]``.

    Raises
    ------
    ValueError
        If ``output`` is not ``[B, 4, H, W]``.
    """
    if output.dim() != 4 or output.shape[1] != 4:
        raise ValueError(
            f"split_texture_height: expected [B, 4, H, W] (RGB + height), got {list(output.shape)}"
        )
    return output[:, :3], output[:, 3:4]


class ShadowGenerator(nn.Module):
    """Two convolutions from (texture RGB, height) to a shading term added to the texture.

    ``shaded = texture + conv2(leaky_relu(conv1(cat(texture, height))))``

    Parameters
    ----------
    hidden : int, default 16
        Channels between the two convolutions.
    kernel : int, default 3
        Odd kernel size; a 3x3 kernel sees the local height slope.

    relief_gain : float, optional
        Terrain mode: heights are ``height * relief_gain`` pixels (``height_scale_m / gsd_m``), and the
        texture is first lit by a Lambertian sun (``azimuth_deg``, ``altitude_deg``; 1 on flat ground)
        with learnable ambient/direct shares and gain, then the convolutions add their correction.

    Notes
    -----
    ``forward(texture, height)``: ``texture`` ``[B, 3, H, W]``, ``height``
    ``[B, 1, H, W]``, both in [-1, 1]; returns ``[B, 3, H, W]`` (not clamped).
    """

    def __init__(self, hidden: int = 16, kernel: int = 3, relief_gain: float | None = None,
                 azimuth_deg: float = 315.0, altitude_deg: float = 45.0):
        super().__init__()
        positive_int("ShadowGenerator", "hidden", hidden)
        positive_int("ShadowGenerator", "kernel", kernel)
        if kernel % 2 == 0:
            raise ValueError(f"ShadowGenerator: kernel must be odd, got {kernel}")
        pad = kernel // 2
        self.conv1 = nn.Conv2d(4, hidden, kernel, padding=pad, padding_mode="replicate")
        self.act = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(hidden, 3, kernel, padding=pad, padding_mode="replicate")
        init_weights(self)
        self.relief_gain = None if relief_gain is None else float(relief_gain)
        if self.relief_gain is not None:
            if not self.relief_gain > 0:
                raise ValueError(f"ShadowGenerator: relief_gain must be positive, got {relief_gain}")
            az, alt = math.radians(azimuth_deg), math.radians(altitude_deg)
            self.register_buffer("light", torch.tensor([math.sin(az) * math.cos(alt), math.cos(az) * math.cos(alt),
                                                        math.sin(alt)]), persistent=False)
            # learnable: log relief gain correction, ambient and direct share of the light
            self.log_gain = nn.Parameter(torch.zeros(()))
            self.ambient = nn.Parameter(torch.tensor(0.3))
            self.direct = nn.Parameter(torch.tensor(0.7))

    def _lambert(self, height: torch.Tensor, gain) -> torch.Tensor:
        """Lambertian shading of ``height * gain`` (pixels) relative to flat ground (1 = flat)."""
        z = torch.nn.functional.pad(height, (1, 1, 1, 1), mode="replicate") * gain
        dzdx = (z[..., 1:-1, 2:] - z[..., 1:-1, :-2]) / 2   # towards east
        dzdy = (z[..., :-2, 1:-1] - z[..., 2:, 1:-1]) / 2   # towards north (rows go south)
        lx, ly, lz = self.light
        return (-dzdx * lx - dzdy * ly + lz) / torch.sqrt(1 + dzdx ** 2 + dzdy ** 2) / lz

    def lambert(self, height: torch.Tensor) -> torch.Tensor:
        """Lambertian shading of ``height`` relative to flat ground (1 = flat), ``[B, 1, H, W]``."""
        return self._lambert(height, self.relief_gain * self.log_gain.exp())

    def prior_shading(self, height: torch.Tensor) -> torch.Tensor:
        """Terrain mode: the fixed physical prior ``0.3 + 0.7 * max(Lambert, 0)`` (no learned gain, ambient,
        direct share or correction), ``[B, 1, H, W]``; what ``geogan terrain-chips`` multiplies its albedo
        texture by, so ``image / prior_shading(real height)`` recovers the shadow-free texture target."""
        if self.relief_gain is None:
            raise ValueError("ShadowGenerator.prior_shading needs relief_gain (terrain mode)")
        return 0.3 + 0.7 * self._lambert(height, self.relief_gain).clamp(min=0)

    def forward(self, texture: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
        if texture.dim() != 4 or texture.shape[1] != 3:
            raise ValueError(
                f"ShadowGenerator: texture must be [B, 3, H, W], got {list(texture.shape)}"
            )
        if height.dim() != 4 or height.shape[1] != 1 or height.shape[2:] != texture.shape[2:]:
            raise ValueError(
                f"ShadowGenerator: height must be [B, 1, {texture.shape[2]}, {texture.shape[3]}], "
                f"got {list(height.shape)}"
            )
        shading = self.conv2(self.act(self.conv1(torch.cat([texture, height], dim=1))))
        if self.relief_gain is not None:
            # texture in [-1, 1] -> reflectance 0..1, times (ambient + direct * Lambert), back to [-1, 1]
            lit = (texture + 1) / 2 * (self.ambient + self.direct * self.lambert(height).clamp(min=0))
            texture = lit * 2 - 1
        return texture + shading


def random_flip_rotate(
    texture: torch.Tensor,
    height: torch.Tensor,
    *others: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """Apply one random flip / 90-degree rotation to texture, height (and ``others``).

    The same transform (one of the 8 symmetries of the square; for
    non-square tiles only the 4 that keep the shape) is applied to every
    tensor, over their last two axes, so the pair (and, say, the label map
    the discriminator also sees) stays aligned.

    Parameters
    ----------
    texture, height : torch.Tensor
        ``[..., H, W]`` tensors with the same ``H, W``.
    *others : torch.Tensor
        More tensors to transform the same way.
    generator : torch.Generator, optional
        Source of randomness, for reproducibility.

    Returns
    -------
    tuple of torch.Tensor
        ``(texture, height, *others)`` transformed.

    Raises
    ------
    ValueError
        If the spatial sizes differ.
    """
    tensors = (texture, height) + others
    size = tuple(texture.shape[-2:])
    for t in tensors:
        if tuple(t.shape[-2:]) != size:
            raise ValueError(
                f"random_flip_rotate: spatial sizes differ: {list(t.shape[-2:])} vs {list(size)}"
            )
    square = size[0] == size[1]
    draw = int(torch.randint(0, 8 if square else 4, (1,), generator=generator).item())
    if square:
        k, flip = draw % 4, draw >= 4
    else:
        k, flip = 2 * (draw % 2), draw >= 2
    out = []
    for t in tensors:
        if flip:
            t = torch.flip(t, dims=(-1,))
        if k:
            t = torch.rot90(t, k, dims=(-2, -1))
        out.append(t)
    return tuple(out)
