"""join_streets: dashes become streets along their own direction; unrelated pieces stay apart; specks go."""

import numpy as np

from geogan.dream import line_stats
from geogan.streets import join_streets, label_components

ROAD, FIELD, HOUSE = 2, 8, 1


def test_label_components_is_8_connected():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True  # diagonal neighbours: one piece
    m[4, 4] = m[4, 5] = True
    labels, n = label_components(m)
    assert n == 2
    assert labels[0, 0] == labels[1, 1] != labels[4, 4] == labels[4, 5]
    assert (labels[~m] == 0).all()


def test_dashes_are_joined_into_one_street_and_fields_keep_the_rest():
    cm = np.full((40, 80), FIELD, np.uint8)
    cm[:, 60:] = HOUSE
    for x0 in range(2, 76, 10):  # 6 px dashes, 4 px gaps, along row 20
        cm[20, x0:x0 + 6] = ROAD
    before = line_stats(cm, [ROAD], long_px=40)
    out = join_streets(cm, ROAD, max_gap_px=6, min_length_px=0)
    labels, n = label_components(out == ROAD)
    assert n == 1 and before["long_share"] == 0.0 and line_stats(out, [ROAD], long_px=40)["long_share"] == 1.0
    assert (out[20, 2:78] == ROAD).all()
    changed = out != cm
    assert changed.sum() == (cm[20, 2:78] != ROAD).sum()  # only the gaps were painted
    assert set(np.unique(out[np.arange(40) != 20])) == {FIELD, HOUSE}


def test_pieces_out_of_line_or_too_far_stay_apart():
    cm = np.full((60, 60), FIELD, np.uint8)
    cm[10, 5:25] = ROAD   # horizontal street ...
    cm[30:50, 40] = ROAD  # ... and a vertical one well off its line
    cm[10, 45:55] = ROAD  # in line with the first but 20 px away
    out = join_streets(cm, ROAD, max_gap_px=8, min_length_px=0)
    assert np.array_equal(out, cm)


def test_specks_go_back_to_their_surroundings_but_joined_pieces_stay():
    cm = np.full((30, 30), FIELD, np.uint8)
    cm[5:7, 5:7] = ROAD       # a 2x2 speck in a field: given back to the field
    cm[20, 3:7] = ROAD        # two short dashes in line: joined, long enough together
    cm[20, 9:13] = ROAD
    out = join_streets(cm, ROAD, max_gap_px=4, min_length_px=6)
    assert (out[5:7, 5:7] == FIELD).all()
    assert (out[20, 3:13] == ROAD).all()


def test_same_map_same_streets():
    rng = np.random.default_rng(0)
    cm = np.where(rng.random((64, 64)) < 0.08, ROAD, FIELD).astype(np.uint8)
    a = join_streets(cm, ROAD)
    assert np.array_equal(a, join_streets(cm, ROAD))
    assert a.dtype == np.uint8 and set(np.unique(a)) <= {ROAD, FIELD}
