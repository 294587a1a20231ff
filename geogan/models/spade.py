"""SPADE (GauGAN) generator with per-block noise injection and an optional style encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_generator_input, choice, positive_int
from .init import init_weights
from .normalization import NORM_KINDS, SPADE, NoiseInjection, resize_labels
from .style import StyleEncoder, encode_style, style_latent

__all__ = ["SPADEResBlock", "SPADEGenerator"]


class SPADEResBlock(nn.Module):
    """Residual block whose normalisations are SPADE layers.

    ``x_s + conv_1(act(SPADE_1(noise(conv_0(act(SPADE_0(x)))))))`` where the
    shortcut ``x_s`` is ``x`` when ``fin == fout`` and otherwise a learned
    ``SPADE -> 1x1 conv``.

    Parameters
    ----------
    fin, fout : int
        Input and output channels.
    label_nc : int
        Label channels fed to the SPADE layers.
    hidden_nc : int, default 128
        Hidden channels of each SPADE layer.
    noise : bool, default True
        Inject noise after the first convolution.
    param_free_norm : {"batch", "instance"}, default "batch"
    style_nc : int, default 0
        Style latent size fed to every SPADE layer (see :class:`SPADE`); 0: none.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        hidden_nc: int = 128,
        noise: bool = True,
        param_free_norm: str = "batch",
        style_nc: int = 0,
    ):
        super().__init__()
        positive_int("SPADEResBlock", "fin", fin)
        positive_int("SPADEResBlock", "fout", fout)
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        # conv_0 feeds a normalisation, which would cancel its bias.
        self.conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1, bias=False)
        self.conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        self.norm_0 = SPADE(fin, label_nc, hidden_nc, param_free_norm=param_free_norm, style_nc=style_nc)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden_nc, param_free_norm=param_free_norm, style_nc=style_nc)
        self.noise_0 = NoiseInjection(fmiddle) if noise else None
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden_nc, param_free_norm=param_free_norm, style_nc=style_nc)
        self.act = nn.LeakyReLU(0.2)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, labels, style)) if self.learned_shortcut else x
        dx = self.conv_0(self.act(self.norm_0(x, labels, style)))
        if self.noise_0 is not None:
            dx = self.noise_0(dx, noise)
        dx = self.conv_1(self.act(self.norm_1(dx, labels, style)))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """SPADE / GauGAN generator (Park et al. 2019) with StyleGAN-like noise.

    Starts from the label map area-downsampled by ``2**n_up`` (SPADE's no-VAE
    mode), optionally concatenated with a style latent ``z`` broadcast over
    space, maps it to ``16 * ngf`` channels with a 3x3 convolution, then runs
    two SPADE residual blocks at that scale and ``n_up`` (upsample x2, SPADE
    residual block) stages with ``ngf * min(16, 2**(n_up - 1 - i))`` output
    channels, then LeakyReLU, a 3x3 convolution to ``out_nc`` and tanh. With
    ``n_up=5`` the block layout equals NVlabs' "normal" generator.

    Parameters
    ----------
    label_nc : int
        Input label channels.
    out_nc : int, default 3
        Output channels (3 = RGB, 4 = RGB + height).
    ngf : int, default 64
        Width multiplier. Cost is roughly proportional to ``ngf**2``; use 16-32 on CPU.
    n_up : int, default 5
        Upsampling stages; tiles must be multiples of ``2**n_up`` px (``size_multiple``).
    z_dim : int, default 0
        Style latent size; 0 disables the latent.
    noise : bool, default True
        Per-block :class:`NoiseInjection`.
    use_style_encoder : bool, default False
        Build a :class:`StyleEncoder` (needs ``z_dim > 0``) so a reference
        image can set the look.
    hidden_nc : int, default 128
        Hidden channels of every SPADE layer.
    norm : {"batch", "instance"}, default "batch"
        Parameter-free normalisation inside SPADE. "batch" uses running
        statistics at inference, so a pixel's output does not depend on the
        rest of its tile (seamless tiling). "instance" needs at least 2x2 px
        at the start scale, i.e. tiles of ``2 * size_multiple`` px or more.
    style_nc : int, default 3
        Channels of reference images given to the style encoder.
    style_film : bool, default False
        Also feed ``z`` to every SPADE layer, which scales and shifts its hidden layer per channel
        (FiLM). With ``z`` only at the start, the generator learned to ignore it (the labels alone
        predict the mean look): after 1,000 steps on LandCover.ai + Recife a Recife and a Polish
        reference gave the same colours to within 0.1 grey levels.

    Attributes
    ----------
    in_channels, out_channels, size_multiple, z_dim : int

    Notes
    -----
    ``forward(labels, noise=None, style=None)``: ``style`` is None, a latent
    ``[B or 1, z_dim]`` or a reference image ``[B, style_nc, h, w]``. With
    ``z_dim > 0`` and no style, ``z`` is drawn from N(0, 1) in train mode and
    is 0 (the prior mean) in eval mode, so tiles rendered separately share a
    look. Image styles are encoded with :meth:`encode_style` (the mean in eval mode).
    """

    def __init__(
        self,
        label_nc: int,
        out_nc: int = 3,
        ngf: int = 64,
        n_up: int = 5,
        z_dim: int = 0,
        noise: bool = True,
        use_style_encoder: bool = False,
        hidden_nc: int = 128,
        norm: str = "batch",
        style_nc: int = 3,
        style_film: bool = False,
    ):
        super().__init__()
        owner = "SPADEGenerator"
        positive_int(owner, "label_nc", label_nc)
        positive_int(owner, "out_nc", out_nc)
        positive_int(owner, "ngf", ngf)
        positive_int(owner, "n_up", n_up)
        positive_int(owner, "z_dim", z_dim, minimum=0)
        positive_int(owner, "hidden_nc", hidden_nc)
        positive_int(owner, "style_nc", style_nc)
        choice(owner, "norm", norm, NORM_KINDS)
        for name, flag in (("noise", noise), ("use_style_encoder", use_style_encoder), ("style_film", style_film)):
            if not isinstance(flag, bool):
                raise ValueError(f"{owner}: {name} must be a bool, got {flag!r}")
        if use_style_encoder and z_dim == 0:
            raise ValueError(f"{owner}: use_style_encoder=True needs z_dim > 0")
        if style_film and z_dim == 0:
            raise ValueError(f"{owner}: style_film=True needs z_dim > 0")
        self.in_channels = label_nc
        self.out_channels = out_nc
        self.size_multiple = 2**n_up
        self.z_dim = z_dim
        self.n_up = n_up

        top = 16 * ngf
        self.fc = nn.Conv2d(label_nc + z_dim, top, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, label_nc, hidden_nc, noise=noise, param_free_norm=norm,
                                 style_nc=z_dim if style_film else 0)

        self.head = nn.ModuleList([block(top, top), block(top, top)])
        self.ups = nn.ModuleList()
        c_in = top
        for i in range(n_up):
            c_out = ngf * min(16, 2 ** (n_up - 1 - i))
            self.ups.append(block(c_in, c_out))
            c_in = c_out
        self.conv_img = nn.Conv2d(c_in, out_nc, 3, padding=1)
        self.style_encoder = (
            StyleEncoder(style_nc, z_dim) if use_style_encoder else None
        )
        init_weights(self)
        for sub in self.modules():  # style FiLM starts as the identity (a warm start keeps the function)
            if isinstance(sub, SPADE) and sub.style_film is not None:
                nn.init.zeros_(sub.style_film.weight)
                nn.init.zeros_(sub.style_film.bias)

    def encode_style(
        self, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a reference image to ``(z, mu, logvar)`` (:func:`geogan.models.style.encode_style`)."""
        return encode_style("SPADEGenerator", self.style_encoder, image, self.training)

    def _latent(self, labels: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor | None:
        encode = (lambda image: self.encode_style(image)[0]) if self.style_encoder is not None else None
        return style_latent("SPADEGenerator", self.z_dim, labels, style, self.training, encode)

    def forward(
        self,
        labels: torch.Tensor,
        noise: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_generator_input(
            "SPADEGenerator", labels, self.in_channels, self.size_multiple, noise
        )
        z = self._latent(labels, style)
        h0, w0 = labels.shape[2] // self.size_multiple, labels.shape[3] // self.size_multiple
        x = resize_labels(labels, (h0, w0))
        if z is not None:
            x = torch.cat([x, z[:, :, None, None].expand(-1, -1, h0, w0)], dim=1)
        x = self.fc(x)
        for blk in self.head:
            x = blk(x, labels, noise, z)
        for blk in self.ups:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = blk(x, labels, noise, z)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
