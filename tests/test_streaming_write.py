"""Streaming writes: strips of any height and order reach GDAL as whole rows of blocks, once each."""

import numpy as np
import pytest
import rasterio

from geogan.grid import grid_from_bbox
from geogan.write import OutputSet, RasterSpec, _BlockRows


def _grid(height_px: int, width_px: int):
    return grid_from_bbox((0, 0, width_px, height_px), "EPSG:3857", "EPSG:3857", 1.0)


def _strips(height: int, rng) -> list[tuple[int, int]]:
    cuts = sorted(set(rng.integers(1, height, size=12).tolist()))
    edges = [0, *cuts, height]
    return [(a, b - a) for a, b in zip(edges, edges[1:])]


@pytest.mark.parametrize("ordered", [True, False])
def test_block_rows_released_whole_and_once(ordered):
    rng = np.random.default_rng(0)
    height, width, block = 1100, 70, 256
    image = rng.integers(0, 255, size=(3, height, width), dtype=np.uint8)
    rows = _BlockRows(height, width, 3, "uint8", block)
    strips = _strips(height, rng)
    if not ordered:
        rng.shuffle(strips)
    released = []
    for row0, n in strips:
        released.extend(rows.add(row0, image[:, row0:row0 + n]))
    assert list(rows.leftovers()) == []
    tops = sorted(top for top, _ in released)
    assert tops == list(range(0, height, block))  # each block row exactly once, whole
    for top, values in released:
        assert values.shape[1] == min(block, height - top)
        assert np.array_equal(values, image[:, top:top + values.shape[1]])


def test_unwritten_rows_are_left_out():
    rows = _BlockRows(100, 5, 1, "float32", 64)
    assert list(rows.add(0, np.ones((1, 10, 5), np.float32))) == []
    assert list(rows.add(20, np.ones((1, 5, 5), np.float32))) == []
    assert [(top, v.shape[1]) for top, v in rows.leftovers()] == [(0, 10), (20, 5)]


def test_output_set_file_equals_the_strips(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    grid = _grid(700, 530)
    rgb = rng.integers(0, 255, size=(3, 700, 530), dtype=np.uint8)
    z = rng.normal(size=(700, 530)).astype(np.float32)
    specs = {"rgb": RasterSpec(tmp_path / "rgb.tif", 3, "uint8", photometric="RGB", predictor="2", deflate_level=3),
             "z": RasterSpec(tmp_path / "z.tif", 1, "float32", -9999.0)}
    windows = []
    write_rows = OutputSet._write_rows

    def spy(self, key, row0, rows):
        windows.append((key, row0, rows.shape[1]))
        write_rows(self, key, row0, rows)

    monkeypatch.setattr(OutputSet, "_write_rows", spy)
    strips = _strips(700, rng)
    rng.shuffle(strips)
    with OutputSet(grid, specs, block_px=256) as out:
        for row0, n in strips:
            out.write("rgb", row0, rgb[:, row0:row0 + n])
            out.write("z", row0, z[row0:row0 + n])
    assert sorted(windows) == sorted((k, r, min(256, 700 - r)) for k in ("rgb", "z") for r in (0, 256, 512))
    with rasterio.open(specs["rgb"].path) as ds:
        assert np.array_equal(ds.read(), rgb)  # lossless with the image predictor
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2" and ds.overviews(1) == [2, 4]  # down to one 256 px block
    with rasterio.open(specs["z"].path) as ds:
        assert np.array_equal(ds.read(1), z)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"  # floating-point predictor by default
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb.tif", "z.tif"]
