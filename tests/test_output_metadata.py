"""Outputs carry their provenance (GDAL tags) and class names (sidecars committed with the set)."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geogan.classes import load_schema
from geogan.grid import Grid, parse_crs
from geogan.provenance import write_class_names
from geogan.write import OutputSet, RasterSpec


def _write(folder, tags=None, sidecars=None):
    grid = Grid(parse_crs("EPSG:32635"), from_origin(0, 64, 1, 1), (64, 64))
    spec = RasterSpec(folder / "classes.tif", 1, "uint8", tags=tags, sidecars=sidecars)
    with OutputSet(grid, {"classes": spec}) as out:
        out.write("classes", 0, np.ones((64, 64), np.uint8))


def test_tags_reach_the_cog_and_sidecars_are_committed_with_it(tmp_path):
    schema = load_schema(None)
    _write(tmp_path, {"SYNTHETIC": "YES", "TIFFTAG_SOFTWARE": "geogan test"}, lambda p: write_class_names(p, schema))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.qml", "classes.tif", "classes.tif.aux.xml"]
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.tags()["SYNTHETIC"] == "YES" and ds.tags()["TIFFTAG_SOFTWARE"] == "geogan test"
    aux = (tmp_path / "classes.tif.aux.xml").read_text()
    assert "building" in aux and "<Category>" in aux
    assert "building" in (tmp_path / "classes.qml").read_text()


def test_a_failing_sidecar_leaves_no_output(tmp_path):
    def broken(path):
        raise OSError(28, "No space left on device")

    try:
        _write(tmp_path, sidecars=broken)
    except Exception as exc:  # a one-line RenderError naming the disk
        assert "space" in str(exc).lower()
    else:
        raise AssertionError("the failing sidecar was not reported")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
