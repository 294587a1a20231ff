"""Per-class colour transfer (geogan.colour_transfer): CIELAB conversions, per-class statistics, the transfer
itself (each class to the reference's colours, absent classes following the others, class edges blended), and
that it gives the same pixels whole or in strips."""

from __future__ import annotations

import numpy as np
import pytest

from geogan.colour_transfer import (ClassColours, class_colours, lab_to_srgb_u8, one_hot_weights, srgb_u8_to_lab,
                                    transfer_between)

GROUND, ROOF, ROAD = 0, 1, 2
LUT = np.zeros(256, np.uint8)
LUT[:3] = np.arange(3)


def _lab(rgb) -> np.ndarray:
    return srgb_u8_to_lab(np.array(rgb, np.uint8).reshape(3, 1))[:, 0]


def _scene(rng, colours: dict[int, tuple[int, int, int]], noise: float = 8.0, size: int = 96):
    """(rgb uint8 (3, size, size), class ids (size, size)): ground, two roofs, a road, each its colour + noise."""
    ids = np.full((size, size), GROUND, np.uint8)
    ids[10:40, 10:50] = ROOF
    ids[60:85, 50:90] = ROOF
    ids[:, 55:63] = ROAD
    rgb = np.zeros((3, size, size), np.float64)
    for k, c in colours.items():
        rgb[:, ids == k] = np.array(c, float)[:, None]
    rgb += rng.normal(0, noise, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), ids


def test_lab_round_trip_and_known_values():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 200, 300)).astype(np.uint8)
    assert np.array_equal(lab_to_srgb_u8(srgb_u8_to_lab(rgb)), rgb)
    np.testing.assert_allclose(_lab((255, 255, 255)), [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(_lab((255, 0, 0)), [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(_lab((0, 0, 0)), [0, 0, 0], atol=0.01)


def test_class_colours_are_weighted_means_and_spreads():
    rgb, ids = _scene(np.random.default_rng(1), {GROUND: (90, 120, 60), ROOF: (200, 60, 50), ROAD: (150, 150, 150)})
    stats = class_colours(rgb, one_hot_weights(ids, 4))
    lab = srgb_u8_to_lab(rgb)
    for k in range(3):
        np.testing.assert_allclose(stats.mean_lab[k], lab[:, ids == k].mean(1), atol=1e-3)
        np.testing.assert_allclose(stats.std_lab[k], lab[:, ids == k].std(1), atol=1e-3)
    assert stats.share[3] == 0 and abs(stats.share.sum() - 1) < 1e-6  # class 3 unseen
    soft = one_hot_weights(ids, 4) * 0.5  # halving every weight changes nothing
    np.testing.assert_allclose(class_colours(rgb, soft).mean_lab[:3], stats.mean_lab[:3], atol=1e-3)
    with pytest.raises(ValueError, match="one size"):
        class_colours(rgb, one_hot_weights(ids[:10], 4))


def test_each_class_takes_the_reference_colours():
    """A render with grey roofs and a reference whose roofs are red: the roofs come out red (mean and spread of
    the reference's roofs), the ground and the road take the reference's too; away from class edges exactly."""
    rng = np.random.default_rng(2)
    render, ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (120, 115, 110), ROAD: (160, 155, 145)})
    ref, ref_ids = _scene(rng, {GROUND: (70, 110, 50), ROOF: (190, 70, 50), ROAD: (100, 100, 105)}, noise=12)
    source, target = class_colours(render, one_hot_weights(ids, 3)), class_colours(ref, one_hot_weights(ref_ids, 3))
    out = transfer_between(source, target, LUT)(render, ids)
    got = class_colours(out, one_hot_weights(ids, 3))
    np.testing.assert_allclose(got.mean_lab, target.mean_lab, atol=2.0)  # edges blend, the gamut clips
    inner = np.zeros_like(ids, bool)  # pixels over the halo from any class edge: no blending there
    inner[15:35, 15:45] = inner[65:80, 68:85] = True
    inner_std = srgb_u8_to_lab(out)[:, inner].std(1)
    np.testing.assert_allclose(inner_std, target.std_lab[ROOF], rtol=0.15, atol=0.5)
    roof = out[:, 20:30, 20:40].reshape(3, -1).mean(1)
    assert roof[0] > 170 and roof[1] < 90  # red
    half = transfer_between(source, target, LUT, strength=0.5)(render, ids)
    half_mean = class_colours(half, one_hot_weights(ids, 3)).mean_lab
    np.testing.assert_allclose(half_mean, (source.mean_lab + target.mean_lab) / 2, atol=1.0)


def test_classes_the_reference_lacks_follow_the_others():
    """No road in the reference: the road shifts by the mean shift of the classes it shows (weighted by their
    share); a class under min_share counts as absent; with no class at all the map is the identity."""
    rng = np.random.default_rng(3)
    render, ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (120, 115, 110), ROAD: (160, 155, 145)})
    ref, ref_ids = _scene(rng, {GROUND: (70, 110, 50), ROOF: (190, 70, 50)})
    ref_ids[ref_ids == ROAD] = GROUND
    source, target = class_colours(render, one_hot_weights(ids, 3)), class_colours(ref, one_hot_weights(ref_ids, 3))
    assert target.share[ROAD] == 0
    out = class_colours(transfer_between(source, target, LUT)(render, ids), one_hot_weights(ids, 3))
    w = target.share[:2] / target.share[:2].sum()
    want_shift = w @ (target.mean_lab[:2] - source.mean_lab[:2])
    np.testing.assert_allclose(out.mean_lab[ROAD] - source.mean_lab[ROAD], want_shift, atol=1.0)
    np.testing.assert_allclose(out.std_lab[ROAD], source.std_lab[ROAD], rtol=0.1)
    nothing = ClassColours(target.mean_lab, target.std_lab, np.zeros(3, np.float32))
    assert np.array_equal(transfer_between(source, nothing, LUT)(render, ids), render)


def test_strips_with_a_halo_give_the_whole_image():
    """The transfer is a function of each pixel's colour and the classes within its halo: strips and tiles
    given their class ids with the halo match the whole image exactly; without a halo, they match wherever no
    class edge lies within the halo of the cut."""
    rng = np.random.default_rng(4)
    render, ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (120, 115, 110), ROAD: (160, 155, 145)})
    ref, ref_ids = _scene(rng, {GROUND: (70, 110, 50), ROOF: (190, 70, 50), ROAD: (100, 100, 105)})
    t = transfer_between(class_colours(render, one_hot_weights(ids, 3)),
                         class_colours(ref, one_hot_weights(ref_ids, 3)), LUT)
    whole = t(render, ids)
    h = t.halo_px
    padded = np.pad(ids, h, mode="edge")
    for r0, r1, c0, c1 in ((0, 37, 0, 96), (37, 96, 0, 96), (20, 70, 30, 80), (0, 1, 0, 96)):
        part = t(render[:, r0:r1, c0:c1], padded[r0:r1 + 2 * h, c0:c1 + 2 * h])
        assert np.array_equal(part, whole[:, r0:r1, c0:c1]), (r0, r1, c0, c1)
    top = t(render[:, :50], ids[:50])  # no halo: the cut at row 50 is more than h rows from any class edge
    assert np.array_equal(top, whole[:, :50])
    with pytest.raises(ValueError, match="halo"):
        t(render, ids[:-1])
    import pickle  # it travels to Dask workers as it is
    assert np.array_equal(pickle.loads(pickle.dumps(t))(render, ids), whole)


def test_class_edges_blend_by_colour_within_the_halo():
    """A roof-coloured pixel the generator painted just past the roof's class edge takes the roof's map (no
    hard outline along the class map); the same colour far from any roof keeps the ground's map."""
    rng = np.random.default_rng(5)
    render, ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (120, 115, 110), ROAD: (160, 155, 145)}, noise=4)
    ref, ref_ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (190, 70, 50), ROAD: (160, 155, 145)}, noise=4)
    t = transfer_between(class_colours(render, one_hot_weights(ids, 3)),
                         class_colours(ref, one_hot_weights(ref_ids, 3)), LUT)
    roof_grey = np.array([120, 115, 110], np.uint8)
    render[:, 40, 20] = roof_grey  # ground pixel right below the first roof (rows 10..39)
    render[:, 50, 5] = roof_grey  # ground pixel far from any roof
    out = t(render, ids)
    assert out[0, 40, 20] > 170 and out[1, 40, 20] < 100  # turned red like the roof
    assert abs(int(out[0, 50, 5]) - 120) < 6  # stays grey: the ground's map is about the identity


def test_a_class_with_two_percent_of_the_reference_moves_all_the_way():
    """Roofs on 2.5 % of the reference (a few houses in a photo of fields) are enough to measure: the render's
    roofs take the reference's roof colour in full, not part of the way (5 % was needed before)."""
    rng = np.random.default_rng(6)
    render, ids = _scene(rng, {GROUND: (110, 120, 80), ROOF: (120, 115, 110), ROAD: (160, 155, 145)})
    ref_ids = np.full((160, 160), GROUND, np.uint8)
    ref_ids[20:36, 20:60] = ROOF  # 640 px = 2.5 %
    ref_ids[:, 100:110] = ROAD
    colours = np.array([(70, 110, 50), (190, 70, 50), (100, 100, 105)], float)
    ref = np.moveaxis(np.clip(colours[ref_ids] + rng.normal(0, 8, (160, 160, 3)), 0, 255).astype(np.uint8), -1, 0)
    source, target = class_colours(render, one_hot_weights(ids, 3)), class_colours(ref, one_hot_weights(ref_ids, 3))
    assert 0.02 < target.share[ROOF] < 0.03
    out = class_colours(transfer_between(source, target, LUT)(render, ids), one_hot_weights(ids, 3))
    moved = (out.mean_lab[ROOF] - source.mean_lab[ROOF]) @ (target.mean_lab[ROOF] - source.mean_lab[ROOF])
    assert moved / np.sum((target.mean_lab[ROOF] - source.mean_lab[ROOF]) ** 2) > 0.9
