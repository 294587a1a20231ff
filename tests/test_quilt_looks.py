"""Looks of a texture bank (geogan.quilt_looks): every look can draw every class."""

from __future__ import annotations

import numpy as np

from geogan.quilt import TextureBank, look_pool
from geogan.quilt_looks import SHARED, look_clusters

BACKGROUND, BUILDING, WOODLAND, WATER = 0, 1, 2, 3


def photos(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three flights of town photos (dark, mid, bright), lake photos, and bright photos of fields with no
    building: without care the lakes and the field photos each make a look."""
    labels, images = [], []
    for tone, n, with_buildings in ((60, 6, True), (120, 6, True), (200, 6, True), (215, 6, False)):
        for _ in range(n):
            lab = np.zeros((32, 32), np.uint8)
            lab[:, 20:] = WOODLAND
            if with_buildings:
                lab[4:12, 4:12] = BUILDING
            labels.append(lab)
            images.append(np.clip(tone + rng.normal(0, tone / 12, (32, 32, 3)), 0, 255))  # brighter: more contrast
    for _ in range(6):
        labels.append(np.full((32, 32), WATER, np.uint8))
        images.append(np.clip(30 + rng.normal(0, 2, (32, 32, 3)), 0, 255))
    return np.stack(images).astype(np.uint8), np.stack(labels)


def test_lakes_join_every_look_and_each_look_holds_every_land_class():
    images, labels = photos(np.random.default_rng(0))
    looks = look_clusters(images, labels, 4, shared=[WATER])
    assert (looks[-6:] == SHARED).all()  # lake photos: in every look
    assert (looks[:-6] >= 0).all()
    for k in np.unique(looks[looks >= 0]):
        held = np.unique(labels[looks == k])
        assert {BACKGROUND, BUILDING, WOODLAND} <= set(held.tolist()), (k, held)
    assert len(np.unique(looks[looks >= 0])) == 3  # the field photos joined the bright town's look
    assert len(set(looks[12:18]) | set(looks[18:24])) == 1
    bank = TextureBank(images, labels, looks, ("background", "building", "woodland", "water"))
    for k in range(bank.n_looks):  # every look's pool draws water from the lake photos
        assert (bank.pure[look_pool(bank, k)] == WATER).any()


def test_a_bank_of_lakes_only_is_one_look():
    images, labels = photos(np.random.default_rng(1))
    looks = look_clusters(images[-6:], labels[-6:], 3, shared=[WATER])
    assert (looks == 0).all()
