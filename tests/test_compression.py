"""render(compression=...): DEFLATE, ZSTD or JPEG aerial COGs; heights and classes never lossy."""

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

import geogan
from geogan.api import sample_osm_path
from geogan.classes import load_schema
from geogan.errors import InputError
from geogan.pipeline import COMPRESSIONS, OutputPaths, output_specs
from geogan.sources import osm_file_bounds
from geogan.write import cog_compression

SAMPLE = sample_osm_path()
NAMES = ("aerial", "height", "classes", "hillshade")
# JPEG quality 90 with GDAL's YCbCr 4:2:0 on this render: mean absolute difference 3.3 grey levels over the
# aerial's bands (blue 4.3: chroma subsampling; 2.9 at quality 95), 0.5 on the hillshade
JPEG_MAX_MEAN_ABS_DIFF = 5.0


def _bbox(frac=0.25):
    """The town centre, about 600 x 450 px at 0.5 m: big enough for one overview level."""
    x0, y0, x1, y1 = osm_file_bounds(SAMPLE)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - (x1 - x0) * frac / 2, cy - (y1 - y0) * frac / 2, cx + (x1 - x0) * frac / 2, cy + (y1 - y0) * frac / 2)


def _kw(model):
    return dict(osm=SAMPLE, bbox=_bbox(), gsd_m=0.5, model=str(model), tile_px=128, overlap_px=32, seed=2,
                hillshade=True)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """One render of the same area per compression: {compression: {output name: path}}.

    The shipped default model, not a tiny random one: JPEG's error is judged on an aerial-like image, not
    on the pixel noise of random weights (where chroma subsampling alone costs tens of grey levels).
    """
    out = tmp_path_factory.mktemp("compression")
    return {c: geogan.render(out_dir=out / c, compression=c, **_kw("default")).paths for c in COMPRESSIONS}


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def test_codec_per_output(renders):
    expected = {"deflate": ("deflate", "deflate"), "zstd": ("zstd", "zstd"), "jpeg": ("jpeg", "deflate")}
    for compression, paths in renders.items():
        image, data = expected[compression]
        for name in NAMES:
            with rasterio.open(paths[name]) as ds:
                want = image if name in ("aerial", "hillshade") else data
                assert ds.compression.name == want, (compression, name, ds.compression)
                structure = ds.tags(ns="IMAGE_STRUCTURE")
                if want == "jpeg":
                    assert structure.get("JPEG_QUALITY") == "90" and "PREDICTOR" not in structure
                    if name == "aerial":  # GDAL's COG driver stores RGB JPEG as YCbCr; reading gives RGB back
                        assert ds.photometric.name == "ycbcr" and ds.count == 3
                else:
                    predictor = {"aerial": "2", "hillshade": "2", "height": "3", "classes": None}[name]
                    assert structure.get("PREDICTOR") == predictor, (compression, name, structure)


def test_lossless_outputs_are_identical_and_jpeg_is_close(renders):
    for name in ("height", "classes"):
        ref = _read(renders["deflate"][name])
        for compression in ("zstd", "jpeg"):
            assert np.array_equal(_read(renders[compression][name]), ref), (compression, name)
    for name in ("aerial", "hillshade"):
        ref = _read(renders["deflate"][name])
        assert np.array_equal(_read(renders["zstd"][name]), ref), name
        jpeg = _read(renders["jpeg"][name])
        assert jpeg.shape == ref.shape and ref.std() > 1
        assert np.abs(jpeg.astype(int) - ref.astype(int)).mean() < JPEG_MAX_MEAN_ABS_DIFF, name


def test_cog_layout_is_kept(renders):
    for compression, paths in renders.items():
        for name in NAMES:
            valid, errors, _ = cog_validate(str(paths[name]))
            assert valid, (compression, name, errors)
            with rasterio.open(paths[name]) as ds, rasterio.open(renders["deflate"][name]) as ref:
                assert ds.overviews(1) == ref.overviews(1) != []
                assert ds.block_shapes == ref.block_shapes and ds.transform == ref.transform
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            with rasterio.open(paths[name], overview_level=0) as ds, \
                    rasterio.open(renders["deflate"][name], overview_level=0) as ref:
                a, b = ds.read().astype(int), ref.read().astype(int)
                lossy = compression == "jpeg" and name in ("aerial", "hillshade")
                assert np.abs(a - b).mean() < (JPEG_MAX_MEAN_ABS_DIFF if lossy else 1e-9), (compression, name)


def test_default_is_todays_deflate(tmp_path):
    """compression="deflate" (the default) passes the COG driver exactly the options it always got."""
    specs = output_specs(OutputPaths.in_dir(tmp_path, hillshade=True), load_schema())
    assert specs == output_specs(OutputPaths.in_dir(tmp_path, hillshade=True), load_schema(), "deflate")
    assert {k: cog_compression(s) for k, s in specs.items()} == {
        "aerial": {"COMPRESS": "DEFLATE", "LEVEL": 1, "PREDICTOR": "2"},
        "height": {"COMPRESS": "DEFLATE", "LEVEL": 3, "PREDICTOR": "YES"},
        "classes": {"COMPRESS": "DEFLATE", "LEVEL": 6, "PREDICTOR": "NO"},
        "hillshade": {"COMPRESS": "DEFLATE", "LEVEL": 3, "PREDICTOR": "2"},
    }
    zstd = output_specs(OutputPaths.in_dir(tmp_path, hillshade=True), load_schema(), "zstd")
    assert {k: cog_compression(s)["LEVEL"] for k, s in zstd.items()} == \
        {"aerial": 1, "height": 3, "classes": 3, "hillshade": 1}
    jpeg = output_specs(OutputPaths.in_dir(tmp_path, hillshade=True), load_schema(), "jpeg")
    assert cog_compression(jpeg["aerial"]) == {"COMPRESS": "JPEG", "QUALITY": 90, "OVERVIEW_QUALITY": 90}
    assert jpeg["classes"] == specs["classes"] and jpeg["height"] == specs["height"]  # never lossy


def test_bad_value_is_refused_before_any_work(tmp_path, tiny_model):
    with pytest.raises(InputError, match="deflate, zstd or jpeg") as info:
        geogan.render(out_dir=tmp_path / "o", compression="lzw", **_kw(tiny_model))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_codec_missing_from_gdal_is_one_line(tmp_path, tiny_model, monkeypatch):
    import geogan.write

    monkeypatch.setattr(geogan.write, "codec_available", lambda codec: codec != "ZSTD")
    with pytest.raises(InputError, match="cannot write ZSTD-compressed.*--compress deflate") as info:
        geogan.render(out_dir=tmp_path / "o", compression="zstd", **_kw(tiny_model))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_cli_bad_value_is_one_line_error(tmp_path, tiny_model):
    env = dict(os.environ, COLUMNS="200")
    p = subprocess.run([sys.executable, "-m", "geogan.cli", "render", "--out", str(tmp_path / "o"), "--model",
                        str(tiny_model), "--compress", "lzw"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, (p.stdout, p.stderr)
    errors = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: unknown compression 'lzw'"), p.stderr
    assert "--compress deflate, zstd or jpeg" in errors[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


# in-process workers rasterize in threads whose warning filters skip geogan.rasterizer's (a known rasterio race)
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_dask_render_writes_the_same_files(renders, tmp_path):
    """The Dask driver writes with the same specs: each compression gives the local render's pixels and tags."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        for compression in ("zstd", "jpeg"):
            res = geogan.render(out_dir=tmp_path / compression, compression=compression,
                                scheduler=cluster.scheduler_address, **_kw("default"))
            for name in NAMES:
                with rasterio.open(res.paths[name]) as a, rasterio.open(renders[compression][name]) as b:
                    assert a.compression == b.compression and a.photometric == b.photometric, (compression, name)
                    assert np.array_equal(a.read(), b.read()), (compression, name)


def test_rasterize_takes_lossless_compression_only(tmp_path):
    from geogan.api import rasterize
    bbox = _bbox()
    pixels = {}
    for compression in COMPRESSIONS:
        out = rasterize(osm=SAMPLE, bbox=bbox, gsd_m=1.0, out=tmp_path / f"{compression}.tif", compression=compression)
        with rasterio.open(out) as ds:
            pixels[compression] = ds.read()
            assert ds.compression.name == ("zstd" if compression == "zstd" else "deflate")
    assert np.array_equal(pixels["deflate"], pixels["zstd"]) and np.array_equal(pixels["deflate"], pixels["jpeg"])
    with pytest.raises(InputError, match="choose --compress"):
        rasterize(osm=SAMPLE, bbox=bbox, gsd_m=1.0, out=tmp_path / "bad.tif", compression="lzw")
    assert not (tmp_path / "bad.tif").exists()
