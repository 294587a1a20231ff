"""Issue 27, defects 5-8 and two of 9: faults that ended in a wrong "success" or a raw exception.

* the Overpass cache: empty, malformed and huge answers from a real HTTP server on 127.0.0.1 are never
  cached, cache entries are checked before use, and a rerun gets the healthy data;
* memory: the estimate of every large buffer refuses the renders that grew to 22 GB, without allocating;
* CRSs: only horizontal 2-D CRSs; areas of use across 180 degrees work;
* the Python API: wrong types give one-line GeoganErrors; seeds of any size; ``--workers 0``.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
from shapely.geometry import box

import geogan
from geogan.api import generator_seed
from geogan.classes import load_schema
from geogan.errors import GeoganError, GridError, InputError, SourceError, TooLargeError
from geogan.grid import grid_from_bbox, lon_range_within
from geogan.infer import load_model
from geogan.memory import RenderSize, estimate, generator_bytes_per_px
from geogan.overpass import fetch_osm, overpass_cache_path, build_query
from geogan.pipeline import auto_tile_spec, check_size, plan_tiles, quick_estimate
from geogan.sources import read_sources
from geogan.tiles import TileSpec

from osm_factory import offset_lonlat
from test_overpass import BBOX, FakeOverpass, _overpass_body

GB = 1e9


# ---------------------------------------------------------------- the Overpass cache
@pytest.fixture
def server(monkeypatch, tmp_path):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "GEOGAN_OVERPASS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with FakeOverpass() as fake:
        yield fake


EMPTY = b'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="Overpass API"/>\n'
# head and tail look like OSM XML; the middle is not well-formed
MALFORMED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n<node id="1" lat="50.0" lon="8.0">\n'
             b'<way id="2"><nd ref="1"/></node>\n</osm>\n')


def _tags(path: Path) -> list[dict]:
    return [t for layer in read_sources([path], BBOX).layers for t in layer.tags]


def _fetch(server, tmp_path, schema, **kw):
    return fetch_osm(BBOX, schema, url=server.url, cache_dir=tmp_path / "c", backoff_s=0.01, **kw)


def test_empty_answer_is_used_but_not_cached_and_the_rerun_gets_healthy_data(server, tmp_path, schema, caplog):
    server.script = [{"body": EMPTY}, {"body": _overpass_body(tmp_path)}]
    target = overpass_cache_path(server.url, build_query(schema, BBOX), tmp_path / "c")
    first = _fetch(server, tmp_path, schema)
    assert first != target and not target.exists()  # not cached
    assert "no OSM nodes, ways or relations" in caplog.text and "not cached" in caplog.text
    second = _fetch(server, tmp_path, schema)
    assert len(server.requests) == 2  # the rerun asked the server again instead of trusting the cache
    assert second == target and any(t.get("building") == "yes" for t in _tags(second))
    assert not first.exists()  # the healthy answer replaced the uncached one
    assert _fetch(server, tmp_path, schema) == target and len(server.requests) == 2  # now a cache hit


def test_malformed_answer_is_never_cached_and_the_rerun_gets_healthy_data(server, tmp_path, schema):
    server.script = [{"body": MALFORMED}, {"body": _overpass_body(tmp_path)}]
    with pytest.raises(SourceError) as err:
        _fetch(server, tmp_path, schema, max_retries=0)
    msg = str(err.value)
    assert "malformed OSM XML" in msg and "pass --osm FILE" in msg and "\n" not in msg, msg
    assert not any(p.suffix == ".osm" for p in (tmp_path / "c").rglob("*"))
    path = _fetch(server, tmp_path, schema)
    assert any(t.get("highway") == "residential" for t in _tags(path))


def test_malformed_answer_is_retried(server, tmp_path, schema):
    server.script = [{"body": MALFORMED}, {"body": _overpass_body(tmp_path)}]
    path = _fetch(server, tmp_path, schema, max_retries=1)
    assert len(server.requests) == 2 and any(t.get("building") == "yes" for t in _tags(path))


def test_huge_answer_is_used_but_not_cached(server, tmp_path, schema, caplog):
    body = _overpass_body(tmp_path)
    server.script = [{"body": body}]
    cap = len(body) - 1  # "huge": over the cache limit (64 MB by default)
    target = overpass_cache_path(server.url, build_query(schema, BBOX), tmp_path / "c")
    first = _fetch(server, tmp_path, schema, max_cache_bytes=cap)
    assert first != target and not target.exists()
    assert any(t.get("building") == "yes" for t in _tags(first))  # the data is used for this run
    assert "over the 0 MB cache limit" in caplog.text and "local extract" in caplog.text
    _fetch(server, tmp_path, schema, max_cache_bytes=cap)
    assert len(server.requests) == 2  # a rerun downloads it again
    assert _fetch(server, tmp_path, schema) == target and len(server.requests) == 3  # under the default cap: cached


@pytest.mark.parametrize("bad", [EMPTY, MALFORMED, b"", b"<html><body>proxy error</body></html>",
                                 b'<?xml version="1.0"?>\n<osm version="0.6">\n<node id="1" lat="50" lon="8"/>\n'],
                         ids=["empty osm", "malformed", "zero bytes", "html", "truncated"])
def test_poisoned_cache_entry_is_deleted_and_fetched_again(server, tmp_path, schema, bad, caplog):
    """An entry an older geogan cached (or a damaged file) is checked before use, not trusted."""
    server.script = [{"body": _overpass_body(tmp_path)}]
    target = overpass_cache_path(server.url, build_query(schema, BBOX), tmp_path / "c")
    target.parent.mkdir(parents=True)
    target.write_bytes(bad)
    path = _fetch(server, tmp_path, schema)
    assert path == target and len(server.requests) == 1
    assert any(t.get("building") == "yes" for t in _tags(path))
    assert f"cached Overpass answer {target} is unusable" in caplog.text


def test_cache_entry_that_cannot_be_deleted_names_the_file_and_no_cache(server, tmp_path, schema, monkeypatch):
    server.script = [{"body": _overpass_body(tmp_path)}]
    target = overpass_cache_path(server.url, build_query(schema, BBOX), tmp_path / "c")
    target.parent.mkdir(parents=True)
    target.write_bytes(EMPTY)
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(SourceError) as err:
        _fetch(server, tmp_path, schema)
    msg = str(err.value)
    assert str(target) in msg and "--no-cache" in msg and "\n" not in msg, msg
    assert not server.requests
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert _fetch(server, tmp_path, schema, use_cache=False) == target  # what the message advises works
    assert any(t.get("building") == "yes" for t in _tags(target))


# ---------------------------------------------------------------- memory
def _area(lon: float, lat: float, side_m: float) -> tuple[float, float, float, float]:
    return (*offset_lonlat(lon, lat, 0, 0), *offset_lonlat(lon, lat, side_m, side_m))


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_model(str(tiny_model), load_schema(), "cpu")


def _size(model, bbox, gsd_m, tile_px=None):
    grid = grid_from_bbox(bbox, "EPSG:4326", "EPSG:3857", gsd_m)
    spec = auto_tile_spec(model, gsd_m) if tile_px is None else TileSpec(tile_px, tile_px // 4)
    return grid, spec, plan_tiles(grid, spec, model)


def test_estimates_of_the_issue_cases_without_allocating():
    """The sizes from the issue: 27,689 x 33,396 px (--gsd 0.01 on 0.09 km2, automatic 12,800 px tiles of
    256 model px) and a 19,584 px square model input (--gsd 5000 on 300 m), default model (238 B/px)."""
    bpp = generator_bytes_per_px({"arch": "unet", "arch_params": {"in_nc": 5, "out_nc": 3, "ngf": 16}})
    assert bpp == 238
    fine = estimate(RenderSize(27_689, 33_396, 12_800, 3_200, 256, bpp, batch_tiles=3))
    assert sum(fine.values()) > 20 * GB  # the kernel killed it at 22 GB
    assert fine["blending strips"] == 4 * 4 * 12_800 * 27_689 + 12_800 ** 2 * 4  # sums, weight sums, weights
    coarse = estimate(RenderSize(1, 1, 32, 8, 19_584, bpp, batch_tiles=1))
    assert coarse["model inputs and outputs"] > 200 * GB
    ordinary = estimate(RenderSize(2_000, 2_000, 256, 64, 256, bpp))  # 1 km2 at 0.5 m
    assert sum(ordinary.values()) < 0.5 * GB
    assert estimate(RenderSize(2_000, 2_000, 256, 64, 256, bpp, in_memory=True))["the in-memory result"] == \
        2_000 * 2_000 * 8


def test_fine_gsd_is_refused_with_the_estimate_and_a_tile_size_that_fits(tiny):
    grid, spec, plan = _size(tiny, _area(8.0, 50.0, 300), 0.01)
    assert grid.width > 25_000 and spec.tile_px == 12_800
    with pytest.raises(TooLargeError) as err:
        check_size(plan, tiny, False, grid=grid, spec=spec, budget_bytes=8 * GB)
    msg = str(err.value)
    assert "GB of memory" in msg and "8.0 GB" in msg and "--tile-size" in msg and "\n" not in msg, msg
    assert err.value.exit_code == 2
    tile = int(msg.split("--tile-size ")[1].split()[0])
    grid, spec, plan = _size(tiny, _area(8.0, 50.0, 300), 0.01, tile_px=tile)
    check_size(plan, tiny, False, grid=grid, spec=spec, budget_bytes=8 * GB)  # the advice fits
    check_size(quick_estimate(grid, spec, tiny), tiny, True, grid=grid, spec=spec, budget_bytes=1)  # --force


def test_coarse_gsd_is_refused_with_the_model_input_and_a_gsd_that_fits(tiny):
    grid, spec, plan = _size(tiny, _area(8.0, 50.0, 300), 5000)
    assert max(plan.model_px_by_row) > 15_000  # a 32 px tile of ~300 m pixels at the model's 0.5 m
    with pytest.raises(TooLargeError) as err:
        check_size(quick_estimate(grid, spec, tiny), tiny, False, grid=grid, spec=spec)  # this machine's budget
    msg = str(err.value)
    assert "model input per tile" in msg and "use --gsd" in msg and "\n" not in msg, msg
    gsd = float(msg.split("use --gsd ")[1].split()[0])
    grid, spec, plan = _size(tiny, _area(8.0, 50.0, 300), gsd)
    check_size(plan, tiny, False, grid=grid, spec=spec)


def test_ordinary_render_passes(tiny):
    grid, spec, plan = _size(tiny, _area(8.0, 50.0, 1000), 0.5)
    assert 1900 < grid.width < 2200
    check_size(plan, tiny, False, grid=grid, spec=spec, budget_bytes=1 * GB)
    check_size(plan, tiny, False, grid=grid, spec=spec, hillshade=True, in_memory=True, budget_bytes=1 * GB)


def test_render_refuses_before_reading_or_writing_anything(tmp_path, tiny_model):
    # the generator runs at its native GSD on the canonical grid (geogan.anchor): a coarse --gsd on 300 m is a
    # small render now; 400 km at --gsd 5000 is still 800,000 px square for the model
    out = tmp_path / "out"
    with pytest.raises(TooLargeError, match="native 0.5 m whatever --gsd, so shrink the bbox"):
        geogan.render(osm=tmp_path / "never-read.osm", bbox=_area(8.0, 50.0, 400_000), gsd_m=5000, out_dir=out,
                      model=str(tiny_model))
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- CRSs
@pytest.mark.parametrize("bbox_crs, crs, words", [
    ("EPSG:4326", "EPSG:4978", ("--crs EPSG:4978", "geocentric")),
    ("EPSG:4978", "EPSG:3857", ("--bbox-crs EPSG:4978", "geocentric")),
    ("EPSG:5703", "EPSG:3857", ("--bbox-crs EPSG:5703", "vertical")),
    ("EPSG:4326", "EPSG:5703", ("--crs EPSG:5703", "vertical")),
])
def test_only_horizontal_crs_are_accepted(bbox_crs, crs, words):
    with pytest.raises(GridError) as err:
        grid_from_bbox((8.0, 50.0, 8.01, 50.01), bbox_crs, crs, 1.0)
    msg = str(err.value)
    assert "not a horizontal 2-D CRS" in msg and "antimeridian" not in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


def test_compound_and_3d_crs_count_as_their_horizontal_part():
    assert grid_from_bbox((5.0, 52.0, 5.01, 52.01), "EPSG:4326", "EPSG:7415", 1.0).crs.to_epsg() == 28992
    assert grid_from_bbox((5.0, 52.0, 5.01, 52.01), "EPSG:4979", "EPSG:4979", 1.0).crs.to_epsg() == 4326


def test_geocentric_crs_is_refused_by_render_before_any_work(tmp_path):
    with pytest.raises(GridError, match="geocentric"):
        geogan.render(crs="EPSG:4978", out_dir=tmp_path / "o", model=str(tmp_path / "no-model.json"))


def _m(crs: str, lon: float, lat: float) -> tuple[float, float]:
    return pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)


def test_areas_of_use_across_the_antimeridian():
    anchorage = grid_from_bbox((-149.95, 61.15, -149.85, 61.25), "EPSG:4326", "EPSG:3338", 5.0)
    assert anchorage.crs.to_epsg() == 3338 and anchorage.width > 500
    for lon in (178.4, -179.9):  # Fiji on both sides of 180 degrees
        assert grid_from_bbox((lon, -18.2, lon + 0.05, -18.15), "EPSG:4326", "EPSG:3832", 10.0).width > 400
    x0, y0 = _m("EPSG:3832", 179.95, -16.8)  # a bbox in EPSG:3832 metres across 180 degrees
    x1, y1 = _m("EPSG:3832", -179.95, -16.7)
    assert x0 < x1
    assert grid_from_bbox((x0, y0, x1, y1), "EPSG:3832", "EPSG:3832", 10.0).width > 1000
    with pytest.raises(GridError, match="far outside EPSG:3338's area"):
        grid_from_bbox((8.0, 60.0, 8.01, 60.01), "EPSG:4326", "EPSG:3338", 1.0)
    with pytest.raises(GridError, match="far outside EPSG:3832's area"):
        grid_from_bbox((0.0, 0.0, 0.01, 0.01), "EPSG:4326", "EPSG:3832", 1.0)


def test_lon_range_within():
    assert lon_range_within(-150, -149, 169.42, 169.42 + 57.59 + 6)  # Alaska with margins
    assert lon_range_within(179, -179, 170, 190)  # a range across 180 inside one across 180
    assert not lon_range_within(8, 9, 169.42, 233.0)
    assert not lon_range_within(10, 20, 0, 15)
    assert lon_range_within(-180, 180, -180, 180) and lon_range_within(10, 20, -200, 200)


# ---------------------------------------------------------------- the Python API
def _scene():
    x, y = 386_000.0, 6_697_000.0
    building = gpd.GeoDataFrame({"class": ["building"]}, geometry=[box(x + 10, y + 10, x + 30, y + 30)],
                                crs="EPSG:32635")
    water = gpd.GeoDataFrame({"class": ["water"]}, geometry=[box(x + 40, y, x + 64, y + 64)],
                             crs="EPSG:32635").to_crs("EPSG:4326")
    return [building, water], (x, y, x + 64, y + 64)


@pytest.mark.parametrize("kwargs, words", [
    ({"osm": pd.DataFrame({"class": ["building"], "x": [1.0]})}, ("pandas DataFrame", "GeoDataFrame")),
    ({"osm": [pd.DataFrame({"a": [1]})]}, ("osm[0]", "pandas DataFrame")),
    ({"osm": 5}, ("osm is a int", "GeoDataFrame")),
    ({"gsd_m": "1"}, ("gsd_m='1'", "not a number")),
    ({"seed": 1.5}, ("seed=1.5", "whole number")),
    ({"seed": "abc"}, ("seed='abc'", "whole number")),
    ({"seed": -1}, ("seed=-1", "0 or more")),
    ({"progress": 5}, ("progress=5", "not callable")),
    ({"cancel": "no"}, ("cancel='no'", "not callable")),
    ({"workers": 0}, ("workers=0", "1 or more", "render in this process")),
    ({"workers": -2}, ("workers=-2", "1 or more")),
    ({"tile_px": "256"}, ("tile_px='256'", "whole number")),
])
def test_bad_api_arguments_are_one_line_geogan_errors(tmp_path, kwargs, words):
    kwargs = {"out_dir": tmp_path / "o", "model": str(tmp_path / "no-model.json"), **kwargs}
    with pytest.raises(GeoganError) as err:  # before the (missing) model is even looked at
        geogan.render(**kwargs)
    msg = str(err.value)
    assert isinstance(err.value, InputError) and err.value.exit_code == 2 and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    assert not (tmp_path / "o").exists()


def test_a_list_of_geodataframes_renders(tmp_path, tiny_model):
    frames, bbox = _scene()
    res = geogan.render(osm=frames, bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5,
                        out_dir=tmp_path / "o", model=str(tiny_model), tile_px=128, overlap_px=32)
    with rasterio.open(res.classes) as ds:
        classes = ds.read(1)
    assert (classes == 1).sum() == pytest.approx(1600, rel=0.05)  # the 20 m building at 0.5 m
    assert (classes == 5).sum() > 3000  # the water, from the second frame (another CRS)


def test_seeds_of_any_size_and_no_repeat_every_2_32(tmp_path, tiny_model):
    assert [generator_seed(s) for s in (0, 7, 2**32 - 1)] == [0, 7, 2**32 - 1]  # old renders stay the same
    big = [generator_seed(s) for s in (2**32, 2**32 + 1, 2**33, 2**64, 2**70, 10**40)]
    assert len(set(big)) == len(big) and 0 not in big and 1 not in big
    assert all(0 <= s < 2**32 for s in big) and generator_seed(2**70) == generator_seed(2**70)
    frames, bbox = _scene()
    kw = dict(osm=frames[0], bbox=bbox, bbox_crs="EPSG:32635", crs="EPSG:32635", gsd_m=0.5, model=str(tiny_model),
              tile_px=128, overlap_px=32)
    images = {}
    for seed in (0, 2**32, 2**70):
        res = geogan.render(out_dir=tmp_path / str(seed), seed=seed, **kw)
        with rasterio.open(res.aerial) as ds:
            images[seed] = ds.read()
    assert not np.array_equal(images[0], images[2**32])  # seed 2**32 used to give seed 0's render
    assert not np.array_equal(images[2**32], images[2**70])


def test_cli_workers_zero_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from geogan.cli import app
    result = CliRunner().invoke(app, ["render", "--workers", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    text = result.stderr
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "workers=0" in errors[0] and "Traceback" not in text, text
    assert not (tmp_path / "o").exists()
