"""Looks of a texture bank: groups of photos of similar colour (one flight, one season) that a render draws from.

A render takes all its patches from one look so that its radiometry is that of one survey. A look must be able
to draw every class: a look made of lake photos (dark, uniform) would draw a town as water, and one without
building pixels would draw roofs from whatever matched their outline. So:

* photos are grouped by the colour of their *land* (mean and spread of the pixels not of a ``shared`` class
  such as water, whose colour says little about the flight);
* photos that are mostly of shared classes (less than ``min_land_share`` land) belong to every look (look -1);
* a look that holds too little of some class (less than ``min_class_ratio`` of the share the whole bank holds)
  is merged into the look of nearest colour, until every look holds every class.

Pure functions over numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHARED = -1  # the look of photos every look draws from


def land_colour(images: np.ndarray, labels: np.ndarray, shared: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(float (N, 6) mean and std of each photo's land pixels, float (N,) land share of each photo)."""
    land = ~np.isin(labels, list(shared))
    share = land.mean((1, 2))
    feats = np.zeros((len(images), 6))
    for k, (img, mask) in enumerate(zip(images, land)):
        px = img[mask] if mask.any() else img.reshape(-1, 3)
        feats[k] = np.concatenate([px.mean(0), px.std(0)])
    return feats, share


def kmeans(feats: np.ndarray, k: int, seed: int = 0, rounds: int = 50) -> np.ndarray:
    """int (N,): k-means clusters of the standardised ``feats``, started from farthest-point centres (a seeded
    first one, then each the photo farthest from those chosen)."""
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    first = int(np.random.default_rng(seed).integers(len(z)))
    picked, dist = [first], ((z - z[first]) ** 2).sum(1)
    for _ in range(k - 1):
        picked.append(int(dist.argmax()))
        dist = np.minimum(dist, ((z - z[picked[-1]]) ** 2).sum(1))
    centres = z[picked]
    for _ in range(rounds):
        assign = ((z[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([z[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
    return assign


def class_ratios(labels: np.ndarray, assign: np.ndarray, n_classes: int) -> np.ndarray:
    """float (L, C): each look's share of each class divided by the share all clustered photos hold."""
    looks = np.unique(assign)
    total = np.bincount(labels.ravel(), minlength=n_classes) / labels.size
    shares = np.stack([np.bincount(labels[assign == j].ravel(), minlength=n_classes) / labels[assign == j].size
                       for j in looks])
    return np.where(total > 0, shares / np.maximum(total, 1e-12), 1.0)


def merge_thin_looks(feats: np.ndarray, labels: np.ndarray, assign: np.ndarray, n_classes: int,
                     shared: Sequence[int], min_class_ratio: float) -> np.ndarray:
    """``assign`` with every look lacking a (non-shared) class merged into the look of nearest mean colour."""
    assign = assign.copy()
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    keep = [c for c in range(n_classes) if c not in shared]
    while len(np.unique(assign)) > 1:
        looks = np.unique(assign)
        worst = class_ratios(labels, assign, n_classes)[:, keep].min(1)
        if worst.min() >= min_class_ratio:
            break
        thin = looks[worst.argmin()]
        centres = {j: z[assign == j].mean(0) for j in looks}
        others = [j for j in looks if j != thin]
        assign[assign == thin] = min(others, key=lambda j: ((centres[j] - centres[thin]) ** 2).sum())
    return assign


def look_clusters(images: np.ndarray, labels: np.ndarray, n_looks: int, *, shared: Sequence[int] = (),
                  seed: int = 0, min_land_share: float = 0.25, min_class_ratio: float = 0.25) -> np.ndarray:
    """int (N,): the look of each photo, 0 = the largest, ``SHARED`` (-1) for photos every look draws from
    (less than ``min_land_share`` of them outside the ``shared`` classes). At most ``n_looks`` looks; fewer
    where a look would hold less than ``min_class_ratio`` of the bank's share of some class."""
    feats, land_share = land_colour(images, labels, shared)
    clustered = np.flatnonzero(land_share >= min_land_share)
    out = np.full(len(images), SHARED, np.int64)
    if not len(clustered):
        return np.zeros(len(images), np.int64)
    assign = kmeans(feats[clustered], min(n_looks, len(clustered)), seed)
    assign = merge_thin_looks(feats[clustered], labels[clustered], assign, int(labels.max()) + 1, shared,
                              min_class_ratio)
    looks, counts = np.unique(assign, return_counts=True)
    rank = {j: r for r, j in enumerate(looks[np.argsort(-counts, kind="stable")])}
    out[clustered] = [rank[j] for j in assign]
    return out
