"""What the dream discriminator sees (real and generated one-hot class maps with instance noise) and the
generator's extra loss terms (mode seeking, class marginals)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.dcgan import DCGANGenerator

def _real_batch(tiles: torch.Tensor, batch: int, n_classes: int, smooth: float, gen: torch.Generator) -> torch.Tensor:
    """A batch of real tiles: random rotations/flips, one-hot, mixed with a random simplex point."""
    idx = torch.randint(0, tiles.shape[0], (batch,), generator=gen)
    rot = torch.randint(0, 4, (batch,), generator=gen)
    flip = torch.randint(0, 2, (batch,), generator=gen)
    ids = tiles[idx]
    ids = torch.stack([torch.rot90(t, int(k), (0, 1)).flip(1) if f else torch.rot90(t, int(k), (0, 1))
                       for t, k, f in zip(ids, rot, flip)])
    onehot = F.one_hot(ids.long(), n_classes).permute(0, 3, 1, 2).float()
    return _mix(onehot, smooth, gen)


def _mix(onehot: torch.Tensor, smooth: float, gen: torch.Generator) -> torch.Tensor:
    """Mix class maps with a random simplex point (instance noise), the same way for real and fake."""
    if smooth <= 0:
        return onehot
    s = smooth * torch.rand(onehot.shape[0], 1, 1, 1, generator=gen).to(onehot.device)
    u = torch.rand(onehot.shape, generator=gen).to(onehot.device) + 1e-6
    return (1 - s) * onehot + s * (u / u.sum(1, keepdim=True))


def _harden(probs: torch.Tensor) -> torch.Tensor:
    """Straight-through one-hot: hard classes forward (as the real maps are), softmax gradients backward.

    Without it the discriminator tells generated maps from real ones by their softness alone
    (its loss drops to ~0 within a few hundred steps and the generator learns nothing).
    """
    hard = F.one_hot(probs.argmax(1), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    return hard + probs - probs.detach()


#: How generated tiles are shown to the discriminator (see :func:`train_dream`).
FAKE_MODES = ("gumbel", "hard", "soft")


def _fake_maps(G: DCGANGenerator, z: torch.Tensor, mode: str,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the discriminator sees, the generator's softmax)."""
    logits = G.logits(z)
    probs = torch.softmax(logits, 1)
    if mode == "soft":
        return probs, probs
    if mode == "gumbel":
        u = torch.rand(logits.shape, generator=gen).to(logits.device).clamp_(1e-9, 1 - 1e-9)
        logits = logits - torch.log(-torch.log(u))
    return _harden(torch.softmax(logits, 1)), probs


def mode_seeking_loss(probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019): ``1 / (|G(z1) - G(z2)| / |z1 - z2| + eps)`` over
    the two halves of a batch, so a generator that ignores its latent is punished directly."""
    h = probs.shape[0] // 2
    if h == 0:
        return probs.new_zeros(())
    d_out = (probs[:h] - probs[h:2 * h]).abs().mean((1, 2, 3))
    d_z = (z[:h] - z[h:2 * h]).abs().mean(1)
    return 1.0 / ((d_out / d_z).mean() + 1e-5)


def class_marginal_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``KL(target || fake)`` between the real tiles' class fractions ``target`` ``[K]`` and the batch's
    argmax class fractions (straight-through: the value counts the one-hot argmax, the gradient flows
    through the softmax ``probs`` ``[B, K, H, W]``).

    The divergence weighs every class by its real share and grows without bound as a class present in
    the real tiles disappears, so a generator that drops thin, rare-looking classes (roads, paths: a
    few pixels wide, easy to lose in the argmax) is pushed back towards the real proportions.
    """
    fake = _harden(probs).mean((0, 2, 3)) + eps
    target = target.to(fake.dtype) + eps
    return (target * (target.log() - fake.log())).sum() - (target.sum() - fake.sum())
