"""GAN, feature-matching, KL, lattice-spectrum and VGG perceptual losses."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import VGG19Features, load_vgg19_state

__all__ = [
    "DIVERSITY_CAP",
    "DIVERSITY_POOL_PX",
    "diversity_loss",
    "GAN_MODES",
    "GANLoss",
    "feature_matching_loss",
    "kld_loss",
    "lattice_share",
    "lattice_loss",
    "LATTICE_PERIODS_PX",
    "lattice_periods",
    "shift_equivariance_loss",
    "fixed_pattern_loss",
    "VGGPerceptualLoss",
    "maybe_vgg_loss",
]

#: Modes accepted by :class:`GANLoss`.
GAN_MODES = ("hinge", "vanilla", "lsgan")


def _logit_maps(pred) -> list[torch.Tensor]:
    """Normalise discriminator output to a list of logit maps.

    Accepts a tensor, a list of tensors (one per scale) or a list of feature
    lists (multi-scale discriminator; the last feature of each is the logits).
    """
    if isinstance(pred, torch.Tensor):
        return [pred]
    maps = []
    for item in pred:
        maps.append(item[-1] if isinstance(item, (list, tuple)) else item)
    if not maps:
        raise ValueError("GANLoss: empty discriminator output")
    return maps


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits.

    Parameters
    ----------
    mode : {"hinge", "vanilla", "lsgan"}
        ``"vanilla"``: binary cross-entropy with logits; ``"lsgan"``: mean
        squared error to the target; ``"hinge"``: for the discriminator
        ``mean(relu(1 - D(real)))`` / ``mean(relu(1 + D(fake)))``, for the
        generator ``-mean(D(fake))``.
    real_label, fake_label : float, default 1.0 and 0.0
        Targets of the vanilla and lsgan modes.

    Raises
    ------
    ValueError
        For an unknown mode.

    Notes
    -----
    ``forward(pred, target_is_real, for_discriminator=True)``: ``pred`` is a
    logit tensor, a list of them, or the list of feature lists of a
    :class:`~geogan.models.discriminator.MultiScaleDiscriminator`; the loss is
    averaged over scales. The generator loss is ``forward(D(fake), True,
    for_discriminator=False)``.
    """

    def __init__(self, mode: str = "hinge", real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"GANLoss: unknown mode {mode!r}; use one of {', '.join(GAN_MODES)}")
        self.mode = mode
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def _single(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool):
        if self.mode == "hinge":
            if for_discriminator:
                if target_is_real:
                    return F.relu(1.0 - logits).mean()
                return F.relu(1.0 + logits).mean()
            if not target_is_real:
                raise ValueError("GANLoss: the hinge generator loss needs target_is_real=True")
            return -logits.mean()
        target = torch.full_like(logits, self.real_label if target_is_real else self.fake_label)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)

    def forward(self, pred, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        maps = _logit_maps(pred)
        total = sum(self._single(m, target_is_real, for_discriminator) for m in maps)
        return total / len(maps)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def feature_matching_loss(real_feats: Sequence, fake_feats: Sequence) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between discriminator features of real and fake.

    Parameters
    ----------
    real_feats, fake_feats : list
        Output of a multi-scale discriminator (list of per-scale feature
        lists) or of ``PatchGANDiscriminator.features`` (one feature list).
        The last entry of each list is the logit map and is skipped.

    Returns
    -------
    torch.Tensor
        Sum over layers of the mean absolute difference, averaged over
        scales. Real features are detached (no gradient to the real branch).

    Raises
    ------
    ValueError
        If the two structures differ in length.
    """
    if real_feats and isinstance(real_feats[0], torch.Tensor):
        real_feats, fake_feats = [real_feats], [fake_feats]
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(
            f"feature_matching_loss: {len(real_feats)} real vs {len(fake_feats)} fake scales"
        )
    total = None
    for real_scale, fake_scale in zip(real_feats, fake_feats):
        if len(real_scale) != len(fake_scale):
            raise ValueError(
                f"feature_matching_loss: {len(real_scale)} real vs {len(fake_scale)} fake layers"
            )
        for real, fake in zip(real_scale[:-1], fake_scale[:-1]):
            term = F.l1_loss(fake, real.detach())
            total = term if total is None else total + term
    if total is None:  # only logit maps given
        return fake_feats[0][-1].new_zeros(())
    return total / len(real_feats)


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, 1)``, summed over z, mean over batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def lattice_share(images: torch.Tensor, period_px: int = 32) -> torch.Tensor:
    """Per image, the share of the grey image's spectral power (DC excluded) on the frequencies of a
    ``period_px`` lattice (both frequency indices multiples of ``size / period_px``): ``[B]``.

    Strided transposed convolutions draw patterns that repeat every 2**k pixels from the tile corner
    (the "dot lattice"). White noise puts (period / size) ** 2 of its power there. Measured at 32 px on 40
    LandCover.ai validation photos: 0.013 for the real photos, 0.40 for the shipped U-Net at training step
    3,034. Both sizes must be multiples of the period.
    """
    h, w = images.shape[-2:]
    if h % period_px or w % period_px:
        raise ValueError(f"lattice_share: image {h}x{w} is not a multiple of the {period_px} px period")
    grey = images.float().mean(1)
    grey = grey - grey.mean((1, 2), keepdim=True)
    power = torch.fft.rfft2(grey).abs().pow(2)
    ky = torch.arange(h, device=images.device)[:, None]
    kx = torch.arange(w // 2 + 1, device=images.device)[None]
    mask = (ky % (h // period_px) == 0) & (kx % (w // period_px) == 0)
    mask[0, 0] = False
    return (power * mask).sum((1, 2)) / power.sum((1, 2)).clamp_min(1e-8)


LATTICE_PERIODS_PX = (32, 64, 128)


def lattice_periods(h: int, w: int, periods_px=LATTICE_PERIODS_PX) -> list[int]:
    """The periods an ``h`` x ``w`` image holds at least twice in each direction, as whole multiples."""
    return [p for p in periods_px if h % p == 0 and w % p == 0 and min(h, w) >= 2 * p]


def lattice_loss(fake: torch.Tensor, real: torch.Tensor, periods_px=LATTICE_PERIODS_PX) -> torch.Tensor:
    """How much more of the generated images' spectral power sits on the lattices of ``periods_px`` than of
    the real ones' (per pair and period, zero where the fake has no excess; summed over periods, mean over
    the batch). A spectral regulariser against the up-convolution artefacts of Durall et al. (CVPR 2020),
    aimed at the periodic patterns that strided transposed convolutions draw from the tile corner.

    Each period's lattice contains the finer ones' (a 64 px lattice has every second harmonic of 128), so
    the finest, most visible dots weigh most. With only the 32 px term, the default U-Net moved its
    pattern to 64 and 128 px (shares 0.33 and 0.57 against the real photos' 0.06 and 0.24).
    """
    total = fake.new_zeros(())
    h, w = fake.shape[-2:]
    for period in lattice_periods(h, w, periods_px):
        total = total + F.relu(lattice_share(fake, period) - lattice_share(real, period).detach()).mean()
    return total


def shift_equivariance_loss(out: torch.Tensor, out_shifted: torch.Tensor, shift_yx: tuple[int, int],
                            margin_px: int = 32) -> torch.Tensor:
    """Mean L1 between ``roll(out, shift)`` and the output for the rolled input, away from the tile borders
    and the roll's wrap-around seam (``margin_px`` on each side of both).

    A generator whose picture depends on the position inside its tile (the default U-Net drew one dark
    tree about 90 px from every tile corner on open ground, so renders showed a tree at every tile) is
    not shift-equivariant; photos have no such position. ``out_shifted`` must come from the input (and
    noise) rolled by ``shift_yx`` along the last two axes.
    """
    sy, sx = (int(v) for v in shift_yx)
    h, w = out.shape[-2:]
    rolled = torch.roll(out, shifts=(sy, sx), dims=(-2, -1))

    def keep(n: int, s: int) -> torch.Tensor:
        i = torch.arange(n, device=out.device)  # position in the shifted tile
        j = (i - s) % n  # where it came from in the original tile (its borders there are the roll's seam)
        return (i >= margin_px) & (i < n - margin_px) & (j >= margin_px) & (j < n - margin_px)

    mask = keep(h, sy)[:, None] & keep(w, sx)[None, :]
    if not bool(mask.any()):
        return out.new_zeros(())
    return (rolled - out_shifted).abs()[..., mask].mean()


#: Cap of :func:`diversity_loss` (mean L1 between two samples pooled to ``DIVERSITY_POOL_PX`` cells, [-1, 1]
#: units): beyond it the generator gains nothing from differing more, so the loss cannot pull the picture
#: away from the photo.
DIVERSITY_CAP = 0.05
#: Cell size over which :func:`diversity_loss` compares samples: differences of single pixels (noise) do not
#: count, differences of trees and bushes (several metres) do. Measured: without pooling, 200 steps at weight
#: 10 turned the default model's open ground into speckle.
DIVERSITY_POOL_PX = 8


def diversity_loss(out_a: torch.Tensor, out_b: torch.Tensor, cap: float = DIVERSITY_CAP,
                   pool_px: int = DIVERSITY_POOL_PX) -> torch.Tensor:
    """Diversity-sensitive loss (after Yang et al. 2019, "DSGAN"): ``-min(mean |pool(out_a) - pool(out_b)|,
    cap)`` for two outputs of the same input under two different noise maps, averaged over
    ``pool_px``-pixel cells.

    A generator that ignores its noise draws the same picture for the same input: on uniform open ground
    every tile is alike, so a feature it likes there repeats at the tile stride (the default U-Net's one
    dark tree per tile). Rewarding samples that differ at the scale of such features makes the noise
    decide where they go; pooling keeps pixel speckle from being the cheap way to differ.
    """
    if pool_px > 1:
        out_a, out_b = F.avg_pool2d(out_a, pool_px), F.avg_pool2d(out_b, pool_px)
    return -torch.clamp((out_a - out_b).abs().mean(), max=float(cap))


#: Cell size over which :func:`fixed_pattern_loss` compares samples: trees and bushes (8 m at 0.5 m/px), not the
#: fine texture of grass or water (at 8 px cells, 260 steps at weight 2,000 flattened both).
FIXED_PATTERN_POOL_PX = 16


def fixed_pattern_loss(samples: torch.Tensor, pool_px: int = FIXED_PATTERN_POOL_PX) -> torch.Tensor:
    """The variance of the picture that ``samples`` (``K >= 2`` outputs for one uniform input under K
    independent noise maps, ``[K, C, H, W]``) share at the same place: the mean covariance, over all pairs of
    samples, of their deviations from their own spatial mean (pooled to ``pool_px`` cells). Its square root
    is the standard deviation of the shared pattern in [-1, 1] units.

    On a uniform input (one class everywhere) nothing but the position inside the tile and the noise can
    place a feature. Features drawn by the noise are independent between samples, so their covariance is
    zero in expectation whatever their contrast: the estimate is unbiased (it can come out negative for one
    draw) and its gradient asks nothing of the random part, unlike :func:`diversity_loss`; it only removes
    the part every sample shares (the default U-Net's one dark tree at the same place of every open-ground
    tile). ``benchmarks/fixed_pattern.py`` measures the same thing on the finished model.
    """
    k = samples.shape[0]
    if k < 2:
        raise ValueError(f"fixed_pattern_loss needs at least 2 samples of one input, got {k}")
    x = F.avg_pool2d(samples, pool_px) if pool_px > 1 else samples
    d = (x - x.mean(dim=(-2, -1), keepdim=True)).flatten(1)  # [K, C*cells]
    total = d.sum(0)
    # the sum over ordered pairs i != j of <d_i, d_j> is |sum_i d_i|^2 - sum_i |d_i|^2
    pair_sum = (total * total).sum() - (d * d).sum()
    return pair_sum / (k * (k - 1) * d.shape[1])


class VGGPerceptualLoss(nn.Module):
    """Perceptual loss: weighted L1 between VGG19 relu1_1 ... relu5_1 activations.

    Parameters
    ----------
    weights_path : str or os.PathLike
        Local VGG19 weights (``.safetensors``, or a torch state dict read with
        ``weights_only=True``). Nothing is downloaded.
    layer_weights : sequence of 5 floats, default (1/32, 1/16, 1/8, 1/4, 1)
        Weights of the five layers (pix2pixHD's choice).

    Raises
    ------
    ModelError
        If the weights file is missing or unusable.
    ValueError
        If ``layer_weights`` does not hold 5 numbers.

    Notes
    -----
    ``forward(fake, real)`` takes images in [-1, 1] with RGB in channels 0-2
    (extra channels such as height are ignored), maps them to ImageNet
    normalisation, and returns a scalar. Gradients flow to ``fake`` only; the
    VGG parameters are frozen. Move the module to the images' device yourself.
    Memory: roughly 30 MB of weights plus VGG activations at the image size.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike,
        layer_weights: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
    ):
        super().__init__()
        layer_weights = tuple(float(w) for w in layer_weights)
        if len(layer_weights) != 5:
            raise ValueError(
                f"VGGPerceptualLoss: layer_weights needs 5 values, got {len(layer_weights)}"
            )
        self.layer_weights = layer_weights
        self.vgg = VGG19Features()
        self.vgg.load_state_dict(load_vgg19_state(weights_path))
        self.vgg.eval()
        for param in self.vgg.parameters():
            param.requires_grad_(False)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()  # frozen feature net: keep it in eval mode
        return self

    def _prep(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] < 3:
            raise ValueError(
                f"VGGPerceptualLoss: images must be [B, >=3, H, W], got {list(image.shape)}"
            )
        rgb = (image[:, :3] + 1.0) * 0.5
        return (rgb - self.mean) / self.std

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_taps = self.vgg(self._prep(fake))
        with torch.no_grad():
            real_taps = self.vgg(self._prep(real))
        total = None
        for weight, f_tap, r_tap in zip(self.layer_weights, fake_taps, real_taps):
            term = weight * F.l1_loss(f_tap, r_tap)
            total = term if total is None else total + term
        return total


def maybe_vgg_loss(path: str | os.PathLike | None) -> VGGPerceptualLoss | None:
    """Build a :class:`VGGPerceptualLoss` if ``path`` names an existing file.

    Returns None, issuing one ``UserWarning``, when ``path`` is None or the
    file does not exist, so training can go on without the perceptual term.

    Raises
    ------
    ModelError
        If the file exists but is not usable VGG19 weights.
    """
    if path is None:
        warnings.warn(
            "no VGG19 weights given: training without the perceptual loss; "
            "pass a local vgg19 .safetensors path to enable it",
            UserWarning,
            stacklevel=2,
        )
        return None
    if not Path(path).is_file():
        warnings.warn(
            f"VGG19 weights {path} not found: training without the perceptual loss; "
            f"pass an existing local file to enable it",
            UserWarning,
            stacklevel=2,
        )
        return None
    return VGGPerceptualLoss(path)
