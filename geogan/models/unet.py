"""pix2pix U-Net generator (Isola et al. 2017), with optional noise injection."""

from __future__ import annotations

import torch
from torch import nn

from ._validate import check_generator_input, choice, positive_int
from .init import init_weights
from .normalization import NORM_KINDS, NoiseInjection, fold_batchnorm, make_norm, noise_pyramid
from .style import StyleEncoder, StyleFiLM, encode_style, style_latent

__all__ = ["NO_POSITION_CUE", "UNetGenerator", "unet_channels"]


def unet_channels(ngf: int, n_down: int) -> list[int]:
    """Encoder output channels per level: ``ngf * min(2**i, 8)``.

    For ``ngf=64, n_down=8`` this is the paper's C64-C128-C256-C512-C512-C512-C512-C512.
    """
    return [ngf * min(2**i, 8) for i in range(n_down)]


PADDING_MODES = ("zeros", "reflect")
UPSAMPLE_MODES = ("transpose", "resize")
#: the default model's U-Net options since session 7 (``geogan train --no-position-cue``): no feature can be tied
#: to a place in the tile; the outer transposed convolutions keep the decoder's cost at 1.33x the paper's
NO_POSITION_CUE = {"padding_mode": "reflect", "upsample": "resize", "resize_levels": 4}


def _up_conv(in_nc: int, out_nc: int, upsample: str, padding_mode: str, bias: bool) -> nn.Module:
    """Double the resolution: a 4x4 transposed convolution with stride 2 (the paper's), or nearest-neighbour
    resizing followed by a 3x3 convolution (Odena et al. 2016, "Deconvolution and checkerboard artifacts").

    With ``"resize"`` and reflect padding a spatially constant input gives a constant output, so the
    generator has no way to tell where in the tile a pixel lies: nothing can be painted at a fixed place of
    every tile. A transposed convolution gives border pixels fewer taps (and a 2-pixel pattern inside).
    """
    if upsample == "transpose":
        return nn.ConvTranspose2d(in_nc, out_nc, 4, stride=2, padding=1, bias=bias)
    return _ResizeConv(in_nc, out_nc, padding_mode, bias)


class _ResizeConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 convolution (``conv``: foldable with a following norm)."""

    def __init__(self, in_nc: int, out_nc: int, padding_mode: str, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_nc, out_nc, 3, padding=1, padding_mode=padding_mode, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class _Down(nn.Module):
    """Encoder block: [LeakyReLU(0.2)] -> Conv4x4/2 -> [norm]."""

    def __init__(self, in_nc: int, out_nc: int, activate: bool, norm: str | None, padding_mode: str = "zeros"):
        super().__init__()
        layers: list[nn.Module] = []
        if activate:
            layers.append(nn.LeakyReLU(0.2))
        # A bias in front of a normalisation layer is cancelled by it: leave it out.
        layers.append(nn.Conv2d(in_nc, out_nc, 4, stride=2, padding=1, bias=norm is None, padding_mode=padding_mode))
        if norm is not None:
            layers.append(make_norm(norm, out_nc))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _Up(nn.Module):
    """Decoder block: ReLU -> x2 up-convolution -> norm -> [style FiLM] -> [noise] -> [dropout 0.5]."""

    def __init__(self, in_nc: int, out_nc: int, norm: str, noise: bool, dropout: bool, z_dim: int = 0,
                 upsample: str = "transpose", padding_mode: str = "zeros"):
        super().__init__()
        self.act = nn.ReLU()
        self.conv = _up_conv(in_nc, out_nc, upsample, padding_mode, bias=False)
        self.norm = make_norm(norm, out_nc)
        self.style_film = StyleFiLM(z_dim, out_nc) if z_dim else None
        self.noise = NoiseInjection(out_nc) if noise else None
        self.dropout = nn.Dropout(0.5) if dropout else None

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None, z: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.conv(self.act(x)))
        if self.style_film is not None and z is not None:
            x = self.style_film(x, z)
        if self.noise is not None:
            x = self.noise(x, noise)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class UNetGenerator(nn.Module):
    """pix2pix U-Net: an encoder-decoder with skip connections between mirrored levels.

    Encoder (``n_down`` levels, 4x4 convolutions with stride 2, LeakyReLU 0.2):
    ``C{c0} - C{c1} - ...`` with ``c_i = ngf * min(2**i, 8)``; no normalisation
    on the first level (as in the paper) nor on the innermost one, whose output
    is 1x1 at a tile of ``2**n_down`` px (batch/instance statistics of a single
    pixel are degenerate). The decoder mirrors it with ReLU, 4x4 transposed
    convolutions and normalisation; each decoder level after the first takes the
    concatenation of the previous decoder output and the matching encoder
    output. Dropout 0.5 sits on the first three decoder blocks; the last
    block maps to ``out_nc`` channels through tanh.

    Parameters
    ----------
    in_nc : int
        Input channels (one-hot label classes).
    out_nc : int, default 3
        Output channels: 3 for RGB, 4 for RGB + height.
    ngf : int, default 64
        Channels of the first encoder level.
    n_down : int, default 8
        Number of stride-2 levels (>= 2). Tiles must be multiples of
        ``2**n_down`` px (``size_multiple``).
    dropout : bool, default True
        Dropout 0.5 on the first three decoder blocks (active in train mode only).
    noise : bool, default False
        Add a :class:`NoiseInjection` to every decoder block but the last,
        fed from the ``noise`` map given to ``forward``.
    norm : {"batch", "instance"}, default "batch"
    z_dim : int, default 0
        Style latent size; 0 disables it. The latent scales and shifts every decoder block's
        normalised features per channel (:class:`~geogan.models.style.StyleFiLM`, zero-initialised,
        so a trained U-Net given a style starts out computing exactly what it did).
    use_style_encoder : bool, default False
        Build a :class:`~geogan.models.style.StyleEncoder` (needs ``z_dim > 0``) so a reference
        photo can set the look (``render --style-ref``).
    style_nc : int, default 3
        Channels of reference images given to the style encoder.
    padding_mode : {"zeros", "reflect"}, default "zeros"
        Padding of every convolution. upsample : {"transpose", "resize"}, default "transpose"
        The decoder's x2 steps: the paper's 4x4 transposed convolutions, or nearest-neighbour resizing +
        3x3 convolution (2.25x the FLOPs per step). ``reflect`` + ``resize`` make a uniform input give a
        uniform output, so noise alone places texture (no feature painted at the same spot of every tile).
    resize_levels : int, optional
        With ``upsample="resize"``: only the innermost ``resize_levels`` decoder steps resize, the outer
        ones stay transposed convolutions (default: all resize). :data:`NO_POSITION_CUE` resizes the inner 4,
        where every pixel is near the tile border; the outer transposed convolutions then leave only a short
        period inside the tile (8 px at 7 levels) and effects within a few pixels of its edge.

    Attributes
    ----------
    in_channels, out_channels, size_multiple, z_dim : int

    Notes
    -----
    ``forward(labels, noise=None, style=None)`` takes ``labels`` ``[B, in_nc, H, W]``,
    optional full-resolution noise ``[B, 1, H, W]`` and, with ``z_dim > 0``, an optional
    style (a latent ``[B or 1, z_dim]`` or a reference image; see
    :func:`~geogan.models.style.style_latent`) and returns ``[B, out_nc, H, W]`` in [-1, 1]. Memory grows with ``H*W*ngf``; the full
    ``ngf=64, n_down=8`` network has about 54.4 M parameters.
    """

    def __init__(
        self,
        in_nc: int,
        out_nc: int = 3,
        ngf: int = 64,
        n_down: int = 8,
        dropout: bool = True,
        noise: bool = False,
        norm: str = "batch",
        z_dim: int = 0,
        use_style_encoder: bool = False,
        style_nc: int = 3,
        padding_mode: str = "zeros",
        upsample: str = "transpose",
        resize_levels: int | None = None,
    ):
        super().__init__()
        owner = "UNetGenerator"
        positive_int(owner, "in_nc", in_nc)
        positive_int(owner, "out_nc", out_nc)
        positive_int(owner, "ngf", ngf)
        positive_int(owner, "n_down", n_down, minimum=2)
        choice(owner, "norm", norm, NORM_KINDS)
        choice(owner, "padding_mode", padding_mode, PADDING_MODES)
        choice(owner, "upsample", upsample, UPSAMPLE_MODES)
        if resize_levels is not None:
            positive_int(owner, "resize_levels", resize_levels, minimum=0)
        positive_int(owner, "z_dim", z_dim, minimum=0)
        positive_int(owner, "style_nc", style_nc)
        for name, flag in (("dropout", dropout), ("noise", noise), ("use_style_encoder", use_style_encoder)):
            if not isinstance(flag, bool):
                raise ValueError(f"{owner}: {name} must be a bool, got {flag!r}")
        if use_style_encoder and z_dim == 0:
            raise ValueError(f"{owner}: use_style_encoder=True needs z_dim > 0")
        self.in_channels = in_nc
        self.z_dim = z_dim
        self.out_channels = out_nc
        self.size_multiple = 2**n_down
        self.use_noise = noise

        chans = unet_channels(ngf, n_down)
        self.down = nn.ModuleList()
        for i, c_out in enumerate(chans):
            first, innermost = i == 0, i == n_down - 1
            c_in = in_nc if first else chans[i - 1]
            self.down.append(
                _Down(c_in, c_out, activate=not first, norm=None if first or innermost else norm,
                      padding_mode=padding_mode)
            )
        # the innermost `resize_levels` decoder steps resize (all of them by default) when upsample="resize"
        n_resize = (n_down if resize_levels is None else resize_levels) if upsample == "resize" else 0
        self.up = nn.ModuleList()
        for j in range(n_down - 1):
            level = n_down - 1 - j  # encoder level whose output this block receives
            c_in = chans[level] if j == 0 else 2 * chans[level]
            self.up.append(
                _Up(c_in, chans[level - 1], norm, noise=noise, dropout=dropout and j < 3, z_dim=z_dim,
                    upsample="resize" if j < n_resize else "transpose", padding_mode=padding_mode)
            )
        self.out = nn.Sequential(
            nn.ReLU(),
            _up_conv(2 * chans[0], out_nc, "resize" if n_resize >= n_down else "transpose", padding_mode,
                     bias=True),
            nn.Tanh(),
        )
        self.style_encoder = StyleEncoder(style_nc, z_dim) if use_style_encoder else None
        init_weights(self)
        for sub in self.modules():  # init_weights re-drew every Linear: style FiLM starts as the identity again
            if isinstance(sub, StyleFiLM):
                nn.init.zeros_(sub.linear.weight)
                nn.init.zeros_(sub.linear.bias)

    def encode_style(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a reference image to ``(z, mu, logvar)`` (:func:`geogan.models.style.encode_style`)."""
        return encode_style("UNetGenerator", self.style_encoder, image, self.training)

    def forward(
        self, labels: torch.Tensor, noise: torch.Tensor | None = None, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_generator_input(
            "UNetGenerator", labels, self.in_channels, self.size_multiple, noise
        )
        encode = (lambda image: self.encode_style(image)[0]) if self.style_encoder is not None else None
        z = style_latent("UNetGenerator", self.z_dim, labels, style, self.training, encode)
        x = labels
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        # decoder block j outputs 1/2**(n_up - j) of the tile size: its noise is pyramid level n_up - 1 - j
        n_up = len(self.up)
        pyramid = noise_pyramid(noise, n_up) if self.use_noise and noise is not None else None
        for j, block in enumerate(self.up):
            if j > 0:
                x = torch.cat([x, skips[-1 - j]], dim=1)
            x = block(x, pyramid[n_up - 1 - j] if pyramid is not None else None, z)
        return self.out(torch.cat([x, skips[0]], dim=1))

    def fold_batchnorm_(self) -> "UNetGenerator":
        """Merge every (eval-mode) batch norm into the convolution before it, in place; for inference only.

        Outputs change by float rounding only (see ``tests/test_streaming_generator.py``
        for the tolerance); the module can no longer be trained or saved as a checkpoint.
        """
        for block in self.down:
            layers = list(block.block)
            for i, layer in enumerate(layers):
                if isinstance(layer, nn.BatchNorm2d):
                    layers[i - 1], layers[i] = fold_batchnorm(layers[i - 1], layer), nn.Identity()
            block.block = nn.Sequential(*layers)
        for block in self.up:
            if isinstance(block.norm, nn.BatchNorm2d):
                if isinstance(block.conv, _ResizeConv):
                    block.conv.conv = fold_batchnorm(block.conv.conv, block.norm)
                else:
                    block.conv = fold_batchnorm(block.conv, block.norm)
                block.norm = nn.Identity()
        return self
