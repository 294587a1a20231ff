"""DCGAN (Radford et al. 2016) for unconditional class-map tiles."""

from __future__ import annotations

import torch
from torch import nn

from ._validate import positive_int
from .init import init_weights

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "MinibatchStdDev"]


def _check_size(owner: str, size) -> int:
    positive_int(owner, "size", size, minimum=8)
    if size & (size - 1):
        raise ValueError(f"{owner}: size must be a power of two >= 8, got {size}")
    return size


class DCGANGenerator(nn.Module):
    """Latent vector to a class-probability map ``[B, n_classes, size, size]``.

    A 4x4 transposed convolution from ``z`` then ``log2(size) - 3`` stride-2
    transposed convolutions (batch norm, ReLU) halving the channels from
    ``ngf * min(2**(n-1), 8)`` down to ``ngf``, and a last one to
    ``n_classes`` logits.

    Parameters
    ----------
    z_dim : int, default 100
    n_classes : int, default 12
    ngf : int, default 64
    size : int, default 64
        Output side in px, a power of two >= 8.
    blur : bool, default False
        A fixed 3x3 binomial low-pass on the logits (no weights): removes the checkerboard pattern of
        the stride-2 transposed convolutions (Odena et al. 2016), which the per-pixel argmax of a class
        map would otherwise turn into salt-and-pepper speckle.

    Notes
    -----
    ``forward(z)`` (``z`` ``[B, z_dim]`` or ``[B, z_dim, 1, 1]``) returns the
    softmax over classes, comparable with one-hot real tiles;
    :meth:`logits` returns the raw class scores (``argmax`` gives a class map).
    """

    def __init__(self, z_dim: int = 100, n_classes: int = 12, ngf: int = 64, size: int = 64, blur: bool = False):
        super().__init__()
        owner = "DCGANGenerator"
        self.blur = bool(blur)
        self.z_dim = positive_int(owner, "z_dim", z_dim)
        self.n_classes = positive_int(owner, "n_classes", n_classes)
        positive_int(owner, "ngf", ngf)
        self.size = _check_size(owner, size)
        n_up = size.bit_length() - 1 - 2  # stride-2 layers after the 4x4 start
        chans = [ngf * min(2 ** (n_up - 1 - i), 8) for i in range(n_up)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, chans[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers.append(nn.ConvTranspose2d(chans[-1], n_classes, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, n_classes, size, size]``."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1] != self.z_dim or z.shape[2:] != (1, 1):
            raise ValueError(f"DCGANGenerator: z must be [B, {self.z_dim}], got {list(z.shape)}")
        out = self.net(z)
        if self.blur:
            k = torch.tensor([1.0, 2.0, 1.0], dtype=out.dtype, device=out.device)
            k = (k[:, None] * k[None, :] / 16.0).expand(self.n_classes, 1, 3, 3)
            out = nn.functional.conv2d(nn.functional.pad(out, (1, 1, 1, 1), mode="replicate"), k,
                                       groups=self.n_classes)
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(z), dim=1)


class MinibatchStdDev(nn.Module):
    """Append the mean feature standard deviation over groups of ``group`` samples as one channel.

    Karras et al. 2018 (ProGAN): a batch of near-identical fakes has a tell-tale low spread, so the
    discriminator can punish mode collapse. A batch not divisible by ``group`` is one group.
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = positive_int("MinibatchStdDev", "group", group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        if b % g:
            g = b
        y = x.reshape(g, b // g, c, h, w)
        std = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((1, 2, 3))  # [b // g]
        feat = std.repeat(g)[:, None, None, None].expand(b, 1, h, w)
        return torch.cat([x, feat], 1)


class DCGANDiscriminator(nn.Module):
    """Class map ``[B, n_classes, size, size]`` to one real/fake logit per tile.

    Stride-2 4x4 convolutions (LeakyReLU 0.2, batch norm except the first)
    from ``ndf`` channels doubling (capped at ``8 * ndf``) down to 4x4, then
    a 4x4 convolution to one logit.

    Parameters
    ----------
    n_classes : int, default 12
    ndf : int, default 64
    size : int, default 64
        Input side in px, a power of two >= 8.
    spectral : bool, default False
        Spectral normalisation (Miyato et al. 2018) on every convolution instead of batch norm:
        a 1-Lipschitz discriminator that cannot saturate and starve the generator of gradients.
    mbstd : int, default 0
        When > 0, a :class:`MinibatchStdDev` channel (groups of ``mbstd`` samples) before the last
        convolution, so the discriminator sees a batch's diversity.

    Notes
    -----
    ``forward(x)`` returns logits ``[B]``.
    """

    def __init__(self, n_classes: int = 12, ndf: int = 64, size: int = 64, spectral: bool = False,
                 mbstd: int = 0):
        super().__init__()
        owner = "DCGANDiscriminator"
        self.n_classes = positive_int(owner, "n_classes", n_classes)
        positive_int(owner, "ndf", ndf)
        self.size = _check_size(owner, size)
        self.spectral, self.mbstd = bool(spectral), int(mbstd)
        n_down = size.bit_length() - 1 - 2
        chans = [ndf * min(2**i, 8) for i in range(n_down)]
        layers: list[nn.Module] = [nn.Conv2d(n_classes, chans[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            if self.spectral:
                layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            else:
                layers += [
                    nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.LeakyReLU(0.2),
                ]
        if self.mbstd > 0:
            layers.append(MinibatchStdDev(self.mbstd))
        layers.append(nn.Conv2d(chans[-1] + (1 if self.mbstd > 0 else 0), 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        init_weights(self)
        if self.spectral:
            for m in self.net:
                if isinstance(m, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.n_classes, self.size, self.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DCGANDiscriminator: input must be [B, {', '.join(map(str, expected))}], "
                f"got {list(x.shape)}"
            )
        return self.net(x).flatten()
