"""Square pixels for the QGIS plugin's renders (qgis_plugin/geogan_qgis/worker_grid.py, run in geogan's Python).

geogan's grid covers a box exactly, so its pixels are a little off square; the plugin grows the box to whole
pixels of one size in CRS units first. No QGIS needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from geogan.grid import grid_from_bbox

PLUGIN = Path(__file__).resolve().parents[1] / "qgis_plugin" / "geogan_qgis"
BBOX_LONLAT = (10.0, 50.0, 10.0013, 50.0011)  # about 93 m x 122 m


def _worker_grid():
    spec = importlib.util.spec_from_file_location("worker_grid", PLUGIN / "worker_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("crs, gsd_m, pixel", [("EPSG:32632", 0.5, 0.4998), ("EPSG:32632", 1.0, 0.9997),
                                               ("EPSG:3857", 0.5, 0.7779)])
def test_grid_pixels_are_square_in_crs_units(crs, gsd_m, pixel):
    wg = _worker_grid()
    before = grid_from_bbox(BBOX_LONLAT, "EPSG:4326", crs, gsd_m)
    assert before.res_xy[0] != pytest.approx(before.res_xy[1], rel=1e-6)  # what the plugin used to get

    logged = []
    kwargs = wg.squared({"crs": crs, "osm": [], "bbox": list(BBOX_LONLAT), "bbox_crs": "EPSG:4326"}, gsd_m,
                        logged.append)
    grid = grid_from_bbox(tuple(kwargs["bbox"]), kwargs["bbox_crs"], crs, kwargs["gsd_m"])
    assert grid.res_xy[0] == pytest.approx(pixel, rel=1e-9) and grid.res_xy[1] == pytest.approx(pixel, rel=1e-9)
    centre = ((grid.bounds[0] + grid.bounds[2]) / 2, (grid.bounds[1] + grid.bounds[3]) / 2)
    old_centre = ((before.bounds[0] + before.bounds[2]) / 2, (before.bounds[1] + before.bounds[3]) / 2)
    assert centre == pytest.approx(old_centre, abs=1e-6)  # grown around the centre, by under a pixel
    assert abs(grid.width - before.width) <= 1 and abs(grid.height - before.height) <= 1
    assert logged == [f"pixels {pixel:g} x {pixel:g} {crs} units (ground pixel size {gsd_m:g} m at the centre, "
                      "rounded to 4 digits)"]


def test_lonlat_output_keeps_ground_square_pixels_and_says_so():
    wg = _worker_grid()
    logged = []
    kwargs = wg.squared({"crs": "EPSG:4326", "osm": [], "bbox": list(BBOX_LONLAT), "bbox_crs": "EPSG:4326"}, 0.5,
                        logged.append)
    assert kwargs["bbox"] == list(BBOX_LONLAT) and kwargs["gsd_m"] == 0.5
    assert logged and "EPSG:4326 scales x and y differently here" in logged[0]


def test_round_significant():
    wg = _worker_grid()
    assert wg.round_significant(0.499817) == 0.4998
    assert wg.round_significant(1.000043) == 1.0
    assert wg.round_significant(30.12345) == 30.12


def test_tap_hands_the_rounded_pixel_size_to_geogan_as_res():
    """With TAP and no RES the rounded size goes to geogan as ``res``, which snaps the grid to its multiples."""
    wg = _worker_grid()
    kwargs = wg.squared({"crs": "EPSG:32632", "osm": [], "bbox": list(BBOX_LONLAT), "bbox_crs": "EPSG:4326",
                         "tap": True}, 0.5, lambda _: None)
    assert kwargs["res"] == 0.4998 and "gsd_m" not in kwargs and kwargs["tap"]
    grid = grid_from_bbox(tuple(kwargs["bbox"]), kwargs["bbox_crs"], "EPSG:32632", res=kwargs["res"], tap=True)
    assert grid.res_xy == (0.4998, 0.4998)
    assert all(abs(v / 0.4998 - round(v / 0.4998)) < 1e-6 for v in grid.bounds)
