"""geogan.coastline: the sea of an area from directed coastline pieces (planar shapes, no files).

OSM convention: land on the LEFT of a coastline way, water on the RIGHT; closed rings are islands.
The area here is the 10 x 10 box; areas are exact, so the expected sea is computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from geogan.coastline import directed_lines, join_chains, sea_polygon

AREA = shapely.box(0, 0, 10, 10)


def line(*xy):
    return shapely.LineString(xy)


@pytest.mark.parametrize("coast, sea_box", [
    (line((-1, 5), (11, 5)), (0, 0, 10, 5)),    # running east: land north (left), sea south
    (line((11, 5), (-1, 5)), (0, 5, 10, 10)),   # running west: sea north
    (line((5, -1), (5, 11)), (5, 0, 10, 10)),   # running north: sea east
    (line((5, 11), (5, -1)), (0, 0, 5, 10)),    # running south: sea west
])
def test_straight_coast_sea_on_the_right(coast, sea_box):
    found = sea_polygon([coast], AREA)
    assert found.sea.equals(shapely.box(*sea_box)) and found.chains == 1 and found.open_ends == 0


def test_island_in_the_sea_either_way_round_and_as_a_polygon():
    ccw = line((4, 4), (6, 4), (6, 6), (4, 6), (4, 4))
    cw = line((4, 4), (4, 6), (6, 6), (6, 4), (4, 4))
    polygon = shapely.Polygon([(4, 4), (4, 6), (6, 6), (6, 4)])  # a closed way a reader made an area
    for coast in (ccw, cw, polygon):
        found = sea_polygon([coast], AREA)
        assert found.sea.area == pytest.approx(96.0)
        assert not found.sea.contains(shapely.Point(5, 5)) and found.sea.contains(shapely.Point(1, 1))


def test_pieces_join_and_a_bay_a_peninsula_and_an_island():
    # the coast runs west along y=5 (sea north) in three ways, with a bay dipping to y=2 and a
    # peninsula reaching up to y=8; an island sits in the sea
    west_part = line((3, 5), (2, 5), (2, 8), (1, 8), (1, 5), (-1, 5))  # peninsula x 1..2
    middle = line((7, 5), (7, 2), (4, 2), (4, 5), (3, 5))              # bay x 4..7 down to y 2
    east = line((11, 5), (7, 5))
    island = line((8, 7), (9, 7), (9, 8), (8, 8), (8, 7))
    found = sea_polygon([middle, island, east, west_part], AREA)
    expected = shapely.box(0, 5, 10, 10).union(shapely.box(4, 2, 7, 5)).difference(
        shapely.box(1, 5, 2, 8)).difference(shapely.box(8, 7, 9, 8))
    assert found.chains == 2  # the coast, joined, and the island
    assert found.sea.symmetric_difference(expected).area < 1e-9


def test_coast_leaving_and_reentering_the_area_several_times():
    # a meander: in at the west, out the top, back in, out the bottom, in again ... out the east
    coast = line((-1, 2), (3, 2), (3, 12), (5, 12), (5, 2), (7, 2), (7, 12), (8, 12), (8, -3))
    found = sea_polygon([coast], AREA)
    # right-hand side: south of y=2 west of x=8, the strips 3..5 and 7..8 above it
    expected = shapely.box(0, 0, 8, 2).union(shapely.box(3, 2, 5, 10)).union(shapely.box(7, 2, 8, 10))
    assert found.sea.symmetric_difference(expected).area < 1e-9


def test_two_coasts_facing_each_other_a_strait():
    north_shore = line((-1, 7), (11, 7))   # running east: land north of it
    south_shore = line((11, 3), (-1, 3))   # running west: land south of it
    found = sea_polygon([south_shore, north_shore], AREA)
    assert found.sea.equals(shapely.box(0, 3, 10, 7))


def test_an_end_inside_the_area_is_carried_on_to_its_edge():
    found = sea_polygon([line((-1, 5), (5, 5))], AREA)  # a cut extract: the coast stops at x=5
    assert found.open_ends == 1
    assert found.sea.symmetric_difference(shapely.box(0, 0, 10, 5)).area < 1e-9


def test_duplicate_pieces_count_once():
    coast = line((11, 5), (-1, 5))
    assert len(directed_lines([coast, coast, shapely.MultiLineString([coast.coords])])) == 1
    assert sea_polygon([coast, coast], AREA).sea.equals(shapely.box(0, 5, 10, 10))


def test_no_coastline_is_land_unless_said_otherwise():
    assert sea_polygon([], AREA).sea.is_empty
    assert sea_polygon([line((20, 20), (30, 20))], AREA).sea.is_empty  # far away: it does not cross the area
    assert sea_polygon([], AREA, sea_without_coast=True).sea.equals(AREA)


def test_closed_chains_made_of_pieces_are_islands():
    chains = join_chains(directed_lines([line((4, 4), (4, 6), (6, 6)), line((6, 6), (6, 4), (4, 4))]))
    assert len(chains) == 1 and chains[0].is_closed
    assert shapely.LinearRing(chains[0].coords).is_ccw  # a clockwise ring is turned round (osmcoastline)


def test_votes_are_exact_in_lon_lat_sized_coordinates():
    # a 1 km area at 10 E 54 N in degrees: the same result as in the unit box
    scale, x0, y0 = 0.015, 10.0, 54.0
    area = shapely.box(x0, y0, x0 + scale, y0 + scale)
    coast = shapely.affinity.affine_transform(line((11, 5), (7, 5), (7, 2), (4, 2), (4, 5), (-1, 5)),
                                              [scale / 10, 0, 0, scale / 10, x0, y0])
    found = sea_polygon([coast], area)
    expected = shapely.affinity.affine_transform(shapely.box(0, 5, 10, 10).union(shapely.box(4, 2, 7, 5)),
                                                 [scale / 10, 0, 0, scale / 10, x0, y0])
    assert found.sea.symmetric_difference(expected).area / expected.area < 1e-9
    assert np.isclose(found.sea.area, expected.area)
