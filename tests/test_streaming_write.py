"""Streaming writes: strips of any height and order reach GDAL as whole rows of blocks, once each."""

import numpy as np
import pytest
import rasterio

from geogan.grid import grid_from_bbox
from geogan.write import OutputSet, RasterSpec, _BlockRows, reduce_2x


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
    assert list(rows.leftovers(0)) == []
    tops = sorted(top for top, _ in released)
    assert tops == list(range(0, height, block))  # each block row exactly once, whole
    for top, values in released:
        assert values.shape[1] == min(block, height - top)
        assert np.array_equal(values, image[:, top:top + values.shape[1]])


def test_unwritten_rows_are_filled():
    rows = _BlockRows(100, 5, 1, "float32", 64)
    assert list(rows.add(0, np.ones((1, 10, 5), np.float32))) == []
    assert list(rows.add(20, np.ones((1, 5, 5), np.float32))) == []
    (top, values), = rows.leftovers(-9.0)
    assert top == 0 and values.shape == (1, 64, 5) and rows.empty
    assert (values[0, :10] == 1).all() and (values[0, 10:20] == -9).all() and (values[0, 20:25] == 1).all()
    assert (values[0, 25:] == -9).all()


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


def _mean_of_available(image: np.ndarray, nodata=None) -> np.ndarray:
    """Reference 2x overview: the mean of each 2x2 cell's pixels inside the image and not nodata (float64)."""
    bands, h, w = image.shape
    padded = np.full((bands, h + h % 2, w + w % 2), np.nan)
    padded[:, :h, :w] = image
    if nodata is not None:
        padded[padded == nodata] = np.nan
    cells = padded.reshape(bands, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
    count = (~np.isnan(cells)).sum(axis=(2, 4))
    mean = np.nansum(cells, axis=(2, 4)) / np.maximum(count, 1)
    return np.where(count > 0, mean, nodata if nodata is not None else np.nan)


def test_reduce_2x_averages_what_is_inside_the_raster():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(3, 7, 9), dtype=np.uint8)  # odd rows and columns
    got = reduce_2x(rgb, "average")
    assert got.shape == (3, 4, 5) and got.dtype == np.uint8
    assert np.array_equal(got, np.floor(_mean_of_available(rgb) + 0.5).astype(np.uint8))
    z = rng.normal(size=(1, 5, 6)).astype(np.float32)
    z[0, 0, :2] = -9999.0
    z[0, 2:4, 2:4] = -9999.0  # a whole cell of nodata stays nodata
    got = reduce_2x(z, "average", -9999.0)
    assert np.allclose(got, _mean_of_available(z, -9999.0), atol=1e-6) and got[0, 1, 1] == -9999.0
    classes = rng.integers(0, 9, size=(1, 5, 5), dtype=np.uint8)
    assert np.array_equal(reduce_2x(classes, "nearest"), classes[:, ::2, ::2])


def test_cog_overviews_are_built_while_streaming(tmp_path):
    """Strips in any order; every overview level of the COG matches the reference mean of its cells."""
    rng = np.random.default_rng(4)
    h, w = 1037, 1101  # three overview levels at 128 px blocks, odd sizes at every level
    grid = _grid(h, w)
    smooth = rng.integers(0, 256, size=(3, h // 8 + 1, w // 8 + 1)).repeat(8, 1).repeat(8, 2)[:, :h, :w]
    rgb = np.clip(smooth + rng.integers(-20, 21, size=(3, h, w)), 0, 255).astype(np.uint8)
    z = rng.normal(10, 3, size=(h, w)).astype(np.float32)
    z[100:300, 50:90] = -9999.0
    cls = rng.integers(0, 9, size=(h, w), dtype=np.uint8)
    specs = {"rgb": RasterSpec(tmp_path / "rgb.tif", 3, "uint8", photometric="RGB", predictor="2"),
             "z": RasterSpec(tmp_path / "z.tif", 1, "float32", -9999.0),
             "cls": RasterSpec(tmp_path / "cls.tif", 1, "uint8", overview_resampling="nearest")}
    strips = _strips(h, rng)
    rng.shuffle(strips)
    with OutputSet(grid, specs, block_px=128) as out:
        for row0, n in strips:
            out.write("rgb", row0, rgb[:, row0:row0 + n])
            out.write("z", row0, z[row0:row0 + n])
            out.write("cls", row0, cls[row0:row0 + n])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls.tif", "rgb.tif", "z.tif"]  # no temporaries left
    with rasterio.open(specs["rgb"].path) as ds:
        factors = ds.overviews(1)
        assert factors == [2, 4, 8, 16]
        assert ds.colorinterp[0].name == "red"
    # the first level is the mean of each 2x2 cell inside the raster, each further level the same step
    # from the level above (GDAL's cascade); nearest keeps the top-left pixel of each cell
    above = {"rgb": rgb, "z": z[None], "cls": cls[None]}
    for level, f in enumerate(factors):
        for key, how in (("rgb", "average"), ("z", "average"), ("cls", "nearest")):
            with rasterio.open(specs[key].path, overview_level=level) as ds:
                got = ds.read()
            assert got.shape[1:] == (-(-h // f), -(-w // f))
            assert np.array_equal(got, reduce_2x(above[key], how, specs[key].nodata))
            if level == 0 and key == "rgb":
                assert np.array_equal(got, np.floor(_mean_of_available(rgb) + 0.5))
            if level == 0 and key == "z":
                assert np.allclose(got, _mean_of_available(z[None], -9999.0), atol=1e-5)
                assert (got[0, 50:150, 25:45] == -9999.0).all()
            above[key] = got
        assert np.array_equal(above["cls"][0], cls[::f, ::f])
    with rasterio.open(specs["rgb"].path) as ds:
        assert np.array_equal(ds.read(), rgb)
