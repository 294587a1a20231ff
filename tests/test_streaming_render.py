"""The render pipeline's background writers: same strips as the blender, errors surface, nothing left behind."""

import importlib

import numpy as np
import pytest

import geogan
from geogan.api import sample_osm_path
from geogan.blend import StripBlender
from geogan.errors import RenderError
from geogan.grid import grid_from_bbox
from geogan.pipeline import strip_rows
from geogan.sources import osm_file_bounds
from geogan.tiles import TileSpec, tile_rows


@pytest.mark.parametrize("height", [50, 128, 129, 300, 1000])
def test_surface_strips_are_the_blender_strips(height):
    """Class map and heights are cut like the aerial strips, so local and Dask renders compute the same rows."""
    grid = grid_from_bbox((0, 0, 77, height), "EPSG:3857", "EPSG:3857", 1.0)
    spec = TileSpec(128, 32)
    rows = tile_rows(grid.shape_yx, spec)
    blender = StripBlender(grid.shape_yx, 1, spec.tile_px, spec.overlap_px)
    released = []
    for r, row in enumerate(rows):
        for tile in row:
            blender.add(tile.row0, tile.col0, np.zeros((1, 128, 128), np.float32))
        released += [(row0, strip.shape[1]) for row0, strip in blender.finish_row(last=r == len(rows) - 1)]
    assert strip_rows(grid, spec) == released


def test_a_failing_background_writer_stops_the_render_and_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    def broken(*args, **kwargs):
        raise RenderError("disk full (simulated)")

    monkeypatch.setattr(importlib.import_module("geogan.pipeline"), "write_surface", broken)
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    with pytest.raises(RenderError, match="simulated"):
        geogan.render(osm=sample_osm_path(), bbox=(cx - 0.002, cy - 0.001, cx + 0.002, cy + 0.001),
                      out_dir=tmp_path / "out", model=str(tiny_model), tile_px=128, overlap_px=32)
    assert list((tmp_path / "out").iterdir()) == []
