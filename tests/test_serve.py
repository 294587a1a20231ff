"""geogan serve: XYZ tile maths, the tile service (cache, zooms, keys) and the real HTTP server on 127.0.0.1.

Renders use a tiny random model and a made-up ~120 m town: each tile render is a fraction of a second.
"""

from __future__ import annotations

from dataclasses import astuple

import io
import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from PIL import Image

from conftest import make_tiny_model
from osm_factory import offset_lonlat, write_osm

from geogan.xyz import (ORIGIN_M, TileId, TileRequestError, ground_resolution_m, native_zoom_range,
                        parse_tile_path, resolution_m, tile_bounds_lonlat, tile_bounds_m, tile_centre_lat,
                        tile_of_lonlat, tiles_in_box)

pytest.importorskip("waitress")

from geogan.serve import (ServeSettings, TileCache, TileService, downsample_children,  # noqa: E402
                          check_lonlat_box)
from geogan.serve_http import BackgroundServer, TileApp, etag_matches  # noqa: E402
from test_cli import geogan  # the in-process CLI runner

LON, LAT = 24.9400, 60.1700  # a made-up town here: zooms 17..18 for a 0.5 m model


# ---------------------------------------------------------------- tile maths (pure)
def test_zoom_0_is_the_whole_web_mercator_square():
    t = TileId(0, 0, 0)
    assert tile_bounds_m(t) == (-ORIGIN_M, -ORIGIN_M, ORIGIN_M, ORIGIN_M)
    w, s, e, n = tile_bounds_lonlat(t)
    assert (w, e) == (-180, 180) and n == pytest.approx(85.0511287798, abs=1e-9) and s == pytest.approx(-n)
    assert resolution_m(0) == pytest.approx(156543.03392804097)


def test_tiles_agree_with_proj_web_mercator():
    import pyproj

    to_m = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    for lon, lat, z in ((24.9414, 60.1710, 17), (-122.4194, 37.7749, 18), (151.2093, -33.8688, 12)):
        x_m, y_m = to_m.transform(lon, lat)
        t = tile_of_lonlat(lon, lat, z)
        xmin, ymin, xmax, ymax = tile_bounds_m(t)
        assert xmin <= x_m < xmax and ymin < y_m <= ymax
        assert xmax - xmin == pytest.approx(resolution_m(z) * 256)
        w, s, e, n = tile_bounds_lonlat(t)
        assert (w, s) == pytest.approx(to_m.transform(xmin, ymin, direction="INVERSE"), abs=1e-9)
        assert (e, n) == pytest.approx(to_m.transform(xmax, ymax, direction="INVERSE"), abs=1e-9)
        assert tile_centre_lat(t) == pytest.approx(to_m.transform(0, (ymin + ymax) / 2, direction="INVERSE")[1])
    assert ground_resolution_m(17, 60.0) == pytest.approx(resolution_m(17) / 2)


@given(st.integers(0, 24), st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True))
@hsettings(max_examples=200, deadline=None)
def test_tile_of_the_centre_of_a_tile_is_that_tile_and_children_tile_it(z, fx, fy):
    n = 1 << z
    tile = TileId(z, int(fx * n), int(fy * n))
    w, s, e, n_ = tile_bounds_lonlat(tile)
    assert tile_of_lonlat((w + e) / 2, tile_centre_lat(tile), z) == tile
    kids = tile.children()
    xs = sorted({tile_bounds_m(k)[0] for k in kids} | {tile_bounds_m(k)[2] for k in kids})
    assert xs[0] == pytest.approx(tile_bounds_m(tile)[0]) and xs[-1] == pytest.approx(tile_bounds_m(tile)[2])
    assert len(xs) == 3


def test_native_zooms_keep_the_ground_pixel_within_half_to_twice_the_gsd():
    assert native_zoom_range(0.5, 60.4) == (17, 18)  # 0.59 m and 0.30 m
    assert native_zoom_range(0.5, 0.0) == (18, 19)  # 0.60 m and 0.30 m
    for lat in (0.0, 33.3, 60.4, 78.0):
        low, high = native_zoom_range(0.3, lat)
        for z in range(low, high + 1):
            assert 0.15 <= ground_resolution_m(z, lat) <= 0.6
        assert ground_resolution_m(low - 1, lat) > 0.6 and ground_resolution_m(high + 1, lat) < 0.15


@pytest.mark.parametrize("path, message", [
    ("/18/abc/1.png", "is not a tile path"), ("/18/1/1.jpg", "is not a tile path"), ("/-1/0/0.png", "not a tile"),
    ("/31/0/0.png", "zoom 31 does not exist"), ("/2/4/0.png", "tile x 4 does not exist at zoom 2; it must be 0..3"),
    ("/2/0/9.png", "tile y 9 does not exist"),
])
def test_malformed_tile_paths_are_400_with_one_line(path, message):
    with pytest.raises(TileRequestError, match=message) as info:
        parse_tile_path(path)
    assert info.value.status == 400 and "\n" not in str(info.value)


def test_parse_and_box_tiles():
    assert parse_tile_path("/17/74848/37937.png") == TileId(17, 74848, 37937)
    tiles = tiles_in_box((24.93, 60.16, 24.95, 60.18), 15)
    assert tiles and all(t.z == 15 for t in tiles) and len(set(tiles)) == len(tiles)


def test_bad_bbox_and_overview_levels_are_input_errors():
    from geogan.errors import InputError

    with pytest.raises(InputError, match="west < east"):
        check_lonlat_box((10, 50, 9, 51))
    with pytest.raises(InputError, match="-85.05..85.05"):
        check_lonlat_box((10, 50, 11, 89))
    with pytest.raises(InputError, match="overview-levels 9 must be a whole number 0..6"):
        ServeSettings(overview_levels=9)


def test_downsample_children_averages_and_keeps_missing_children_transparent():
    rng = np.random.default_rng(0)
    kids = [np.dstack([rng.integers(0, 256, (256, 256, 3)), np.full((256, 256), 255)]).astype(np.uint8)
            for _ in range(4)]
    parent = downsample_children(kids)
    assert parent.shape == (256, 256, 3)
    expect = kids[3][:, :, :3].astype(float).reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    assert np.abs(parent[128:, 128:].astype(float) - expect).max() <= 0.5
    holey = downsample_children([kids[0], None, kids[2], kids[3]])
    assert holey.shape == (256, 256, 4) and (holey[:128, 128:, 3] == 0).all() and (holey[:, :128, 3] == 255).all()
    # a child that is itself partly transparent keeps its transparency in the parent
    assert downsample_children([holey, kids[1], kids[2], kids[3]]).shape == (256, 256, 4)


def test_etag_matching():
    assert etag_matches('"a-1"', '"a-1"') and etag_matches('W/"a-1", "b"', '"a-1"') and etag_matches("*", '"x"')
    assert not etag_matches('"a-2"', '"a-1"') and not etag_matches(None, '"a-1"')


# ---------------------------------------------------------------- the service and the server
def _town(path: Path) -> Path:
    """Four buildings, a road and a wood in about 120 m x 120 m."""
    nodes, ways, nid = {}, [], 1

    def ring(east_m, north_m, size_m):
        nonlocal nid
        ids = []
        for dx, dy in ((0, 0), (size_m, 0), (size_m, size_m), (0, size_m)):
            nodes[nid] = offset_lonlat(LON, LAT, east_m + dx, north_m + dy)
            ids.append(nid)
            nid += 1
        return ids + [ids[0]]

    for i, (e, n) in enumerate(((-50, -50), (-20, -50), (-50, 10), (20, 20))):
        ways.append((i + 1, ring(e, n, 18), {"building": "yes"}))
    ways.append((10, ring(-60, 40, 40), {"landuse": "forest"}))
    a, b = nid, nid + 1
    nodes[a], nodes[b] = offset_lonlat(LON, LAT, -60, -5), offset_lonlat(LON, LAT, 60, -5)
    ways.append((20, [a, b], {"highway": "residential"}))
    return write_osm(path, nodes, ways)


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Path:
    return _town(tmp_path_factory.mktemp("serve") / "town.osm")


@pytest.fixture(scope="module")
def served(town, tiny_model, tmp_path_factory):
    """The service over the town (one overview level) and its HTTP server on a free port."""
    settings = ServeSettings(osm=(town,), model=str(tiny_model), device="cpu",
                             cache_dir=tmp_path_factory.mktemp("tiles"), overview_levels=1)
    service = TileService(settings)
    with BackgroundServer(TileApp(service), threads=4) as server:
        yield service, server


def _get(url: str, headers: dict | None = None):
    """(status, headers, body) of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _town_tiles(service, z: int) -> list[TileId]:
    return tiles_in_box(service.area.box, z)


def test_concurrent_tiles_render_once_then_come_from_the_cache(served, tmp_path):
    import dataclasses

    shared, _ = served
    service = TileService(dataclasses.replace(shared.settings, cache_dir=tmp_path), renderer=shared.renderer)
    tiles = _town_tiles(service, 18)
    assert 4 <= len(tiles) <= 16
    with BackgroundServer(TileApp(service), threads=4) as server, ThreadPoolExecutor(4) as pool:
        urls = [f"{server.url}/{t}.png" for t in tiles] * 2  # every tile asked for twice at once
        answers = list(pool.map(_get, urls))
        again = _get(urls[0])
    assert [a[0] for a in answers] == [200] * len(urls)
    assert service.counts["rendered"] == len(tiles)  # two requests for one tile: one render
    for status, headers, body in answers:
        assert headers["Content-Type"] == "image/png" and headers["ETag"].startswith(f'"{service.key}-18-')
        image = np.asarray(Image.open(io.BytesIO(body)))
        assert image.shape[:2] == (256, 256) and image.shape[2] in (3, 4) and image[..., :3].std() > 5  # decodes, 256 px, not blank (alpha: transparent beyond the data)
    status, headers, body = again
    assert status == 200 and headers["X-Geogan-Tile"] == "hit" and body == answers[0][2]
    assert service.cache.path(tiles[0]).is_file()


def test_if_none_match_gives_304_and_a_changed_etag_gives_the_tile(served):
    service, server = served
    url = f"{server.url}/{_town_tiles(service, 18)[0]}.png"
    status, headers, _ = _get(url)
    assert status == 200 and "no-cache" in headers["Cache-Control"]
    status, headers304, body = _get(url, {"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b"" and headers304["ETag"] == headers["ETag"]
    assert _get(url, {"If-None-Match": '"another-model-18-1-1"'})[0] == 200


def test_bad_and_unserved_tiles_are_400_or_404_with_one_line(served):
    service, server = served
    w, s, e, n = service.area.box
    fine, coarse = (tile_of_lonlat((w + e) / 2, (s + n) / 2, z) for z in (19, 15))
    cases = {
        "/18/abc/1.png": (400, "is not a tile path"),
        "/2/9/1.png": (400, "tile x 9 does not exist at zoom 2"),
        "/18/1/1.png": (404, "is outside the served area"),
        f"/{fine}.png": (404, "zoom 19 is finer than this server's zooms 16..18"),
        f"/{coarse}.png": (404, "zoom 15 is coarser than this server's zooms 16..18"),
        "/nothing": (404, "no page '/nothing'"),
    }
    for path, (code, text) in cases.items():
        status, headers, body = _get(server.url + path)
        assert status == code, path
        assert text in body.decode() and body.decode().count("\n") == 1, body
        assert headers["Content-Type"].startswith("text/plain")


def test_a_coarser_zoom_is_the_average_of_its_four_children(served):
    service, server = served
    parent = _town_tiles(service, 16)[0]
    status, headers, body = _get(f"{server.url}/{parent}.png")
    assert status == 200 and headers["X-Geogan-Tile"] in ("built", "hit")
    got = np.asarray(Image.open(io.BytesIO(body)))
    kids = []
    for child in parent.children():
        status, _, png = _get(f"{server.url}/{child}.png")
        kids.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")) if status == 200 else None)
    assert any(k is not None for k in kids)
    expected = downsample_children(kids)
    assert got.shape == expected.shape and (got == expected).all()


def test_tilejson_is_valid_and_its_url_serves_tiles(served):
    service, server = served
    status, headers, body = _get(server.url + "/tilejson.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    tj = json.loads(body)
    assert tj["tilejson"] == "3.0.0" and tj["scheme"] == "xyz"
    assert (tj["minzoom"], tj["maxzoom"]) == (16, 18)
    w, s, e, n = tj["bounds"]
    assert w < tj["center"][0] < e and s < tj["center"][1] < n and tj["minzoom"] <= tj["center"][2] <= tj["maxzoom"]
    assert all(isinstance(tj[k], str) and tj[k] for k in ("name", "description", "attribution", "version"))
    t = tile_of_lonlat(tj["center"][0], tj["center"][1], 18)
    url = tj["tiles"][0].format(z=t.z, x=t.x, y=t.y)
    assert url.startswith(server.url) and _get(url)[0] == 200


def test_the_cache_key_follows_the_model_and_seed_and_survives_a_restart(served, town, tiny_model, tmp_path):
    service, _ = served
    tile = _town_tiles(service, 18)[0]
    same = TileService(service.settings, renderer=service.renderer)
    assert same.key == service.key and same.get(tile).source == "hit"  # a restart serves the cached tiles
    other = make_tiny_model(tmp_path / "other", seed=1)
    for changed in (ServeSettings(osm=(town,), model=str(other), device="cpu", cache_dir=service.settings.cache_dir),
                    ServeSettings(osm=(town,), model=str(tiny_model), device="cpu", seed=7,
                                  cache_dir=service.settings.cache_dir)):
        fresh = TileService(changed, renderer=None if changed.model != str(tiny_model) else service.renderer)
        assert fresh.key != service.key and fresh.etag(tile) != service.etag(tile)
        assert fresh.cache.root != service.cache.root and fresh.cache.read(tile) is None


def test_a_cut_short_cache_file_is_rendered_again(served):
    service, _ = served
    tile = _town_tiles(service, 17)[0]
    service.get(tile)
    path = service.cache.path(tile)
    path.write_bytes(path.read_bytes()[:100])  # e.g. a crash of a writer without atomic rename
    assert service.cache.read(tile) is None
    assert service.get(tile).source == "rendered" and service.cache.read(tile) is not None
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_cache_write_is_atomic_on_failure(tmp_path, monkeypatch):
    cache = TileCache(tmp_path)
    tile = TileId(3, 1, 2)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("geogan.serve.os.replace", boom)
    with pytest.raises(OSError):
        cache.write(tile, b"\x89PNG\r\n\x1a\n...")
    assert not cache.path(tile).exists() and list(cache.path(tile).parent.iterdir()) == []


def test_serve_needs_a_source(tiny_model):
    from geogan.errors import InputError, SourceError

    with pytest.raises(InputError, match="needs --osm FILE, or --bbox"):
        TileService(ServeSettings(model=str(tiny_model), device="cpu"))
    with pytest.raises(SourceError, match="does not exist"):
        TileService(ServeSettings(osm=(Path("/nonexistent/x.osm"),), model=str(tiny_model), device="cpu"))


def _wsgi(app, path: str, method: str = "GET"):
    """(status line, headers, body) of ``app`` called in this process."""
    got = {}

    def start_response(status, headers):
        got.update(status=status, headers=dict(headers))

    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": "127.0.0.1:1",
                         "wsgi.url_scheme": "http"}, start_response))
    return got["status"], got["headers"], body


def test_a_failed_render_is_a_500_line_and_caches_nothing(served, tmp_path):
    import dataclasses
    import types

    from geogan.errors import RenderError

    service, _ = served
    broken = TileService(dataclasses.replace(service.settings, cache_dir=tmp_path), renderer=service.renderer)

    def fail(**kwargs):
        raise RenderError("model 'tiny' produced NaN/inf values in fp32 on cpu; its weights are broken")

    broken.renderer = types.SimpleNamespace(render=fail, loaded=service.renderer.loaded)
    w, s, e, n = service.area.box
    tile = tile_of_lonlat((w + e) / 2, (s + n) / 2, 18)
    status, headers, body = _wsgi(TileApp(broken), f"/{tile}.png")
    assert status.startswith("500") and body.count(b"\n") == 1 and headers["Cache-Control"] == "no-store"
    assert body.startswith(f"/{tile}.png could not be made: model 'tiny' produced NaN".encode())
    assert broken.cache.read(tile) is None


def test_head_answers_headers_without_a_body(served):
    service, _ = served
    w, s, e, n = service.area.box
    tile = tile_of_lonlat((w + e) / 2, (s + n) / 2, 18)
    app = TileApp(service)
    _, get_headers, png = _wsgi(app, f"/{tile}.png")
    status, headers, body = _wsgi(app, f"/{tile}.png", "HEAD")
    assert status.startswith("200") and body == b"" and headers["Content-Length"] == str(len(png))
    assert _wsgi(app, f"/{tile}.png", "POST")[0].startswith("405")


def test_the_start_renders_the_centre_tile_so_a_broken_setting_is_refused_at_once(served, tmp_path):
    import dataclasses

    from geogan.errors import SourceError

    service, _ = served
    layer = tmp_path / "drawn.geojson"
    w, s, e, n = service.area.box
    square = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"class": "building"},
        "geometry": {"type": "Polygon", "coordinates": [square]}}]}))
    settings = dataclasses.replace(service.settings, osm=(layer,), bbox=service.area.box, class_field="nosuch",
                                   cache_dir=tmp_path / "tiles")
    with pytest.raises(SourceError, match="has no field 'nosuch'"):
        TileService(settings, renderer=service.renderer).warm_up()  # not a 500 on every tile later
    fine = TileService(dataclasses.replace(settings, class_field="class"), renderer=service.renderer)
    assert fine.warm_up().source == "rendered" and fine.centre_tile().z == 17


def test_serve_without_waitress_says_how_to_install_it(monkeypatch):
    from geogan.errors import InputError
    from geogan.serve_http import create_server

    monkeypatch.setitem(sys.modules, "waitress", None)  # as if not installed
    with pytest.raises(InputError, match=r"needs the waitress package: pip install 'geogan\[serve\]'"):
        create_server(lambda environ, start_response: [], port=0)


def test_a_large_osm_file_needs_a_bbox(town, tiny_model, monkeypatch):
    from geogan.errors import InputError

    monkeypatch.setattr("geogan.overpass.CLIP_MIN_BYTES", 100)  # the town stands for a 300 MB extract
    with pytest.raises(InputError, match="every tile would parse all of it; give --bbox"):
        TileService(ServeSettings(osm=(town,), model=str(tiny_model), device="cpu"))


def test_cli_refuses_bad_settings_in_one_line(town, tiny_model):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ((), "needs --osm FILE, or --bbox west,south,east,north"),
            (("--osm", town, "--threads", 0), "--threads 0 must be 1..64"),
            (("--osm", town, "--bbox", "10,50,9,51"), "west < east"),
            (("--osm", town, "--overview-levels", 9), "--overview-levels 9 must be a whole number 0..6"),
            (("--osm", town, "--seed", -1), "seed=-1 must be 0 or more"),
            (("--osm", town, "--model", tiny_model, "--port", port), f"cannot listen on 127.0.0.1:{port}"),
        ]
        for args, message in cases:
            code, out, err = astuple(geogan("serve", *args))
            errors = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], err


# ---------------------------------------------------------------- a browser and a real process
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/install_browser.sh, run by "
                                             "scripts/setup.sh --dev as root)")
def test_headless_chromium_shows_tiles_in_the_viewer(served, tmp_path):
    service, server = served
    shot = tmp_path / "viewer.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=800,600", "--virtual-time-budget=30000", server.url + "/"]
    subprocess.run(cmd, capture_output=True, timeout=180, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    image = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    centre = image[200:400, 250:550]  # the map's middle (the town is fitted into the view)
    assert centre.std() > 8  # imagery, not a flat page
    background = np.array([0x2B, 0x2B, 0x2B])  # the page behind the map
    assert (np.abs(centre - background).sum(axis=2) > 30).mean() > 0.9  # tiles cover the middle
    assert service.counts["rendered"] + service.counts["hit"] > 0


def test_geogan_serve_process_serves_and_stops_on_ctrl_c(town, tiny_model, tmp_path):
    cmd = [sys.executable, "-m", "geogan.cli", "serve", "--osm", str(town), "--model", str(tiny_model), "--device", "cpu",
           "--port", "0", "--tile-cache", str(tmp_path / "tiles"), "--overview-levels", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("serving model 'tiny'") and "zooms 17..18" in lines[0], lines
        url = lines[1].split()[1].rstrip("/")
        assert lines[1].strip().endswith("/{z}/{x}/{y}.png")
        tj = json.loads(_get(url + "/tilejson.json")[2])
        t = tile_of_lonlat(tj["center"][0], tj["center"][1], 17)
        assert _get(f"{url}/{t}.png")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a server behind
            raise
    assert proc.returncode == 0, err
    assert "stopped: 1 tiles rendered" in out


# ---------------------------------------------------------------- the resolution pyramid's zooms
@pytest.fixture
def family_zoo(tmp_path, monkeypatch) -> Path:
    """A zoo folder with a model 'fam' (0.5 m) and its 8 m pyramid member 'fam_8m' (tiny random U-Nets)."""
    import json as json_

    make_tiny_model(tmp_path / "fam", gsd_m=0.5)
    card_path = make_tiny_model(tmp_path / "fam_8m", gsd_m=8.0, seed=8)
    card = json_.loads(card_path.read_text())
    card.update(pyramid_of="fam", gsd_range_m=[8.0, None])
    card_path.write_text(json_.dumps(card))
    monkeypatch.setenv("GEOGAN_MODEL_DIR", str(tmp_path))
    return tmp_path


def test_low_zooms_render_with_the_coarse_pyramid_member(town, family_zoo, tmp_path):
    from geogan.api import render

    service = TileService(ServeSettings(osm=(town,), model="fam", device="cpu", cache_dir=tmp_path / "tiles",
                                        overview_levels=1))
    coarse = tile_of_lonlat(LON, LAT, 13)  # 9.5 m ground pixels at 60.17 N: the 8 m member's own zoom
    assert service.check(coarse) == "render" and service.renderer_for(coarse).model_name == "fam_8m"
    fine = tile_of_lonlat(LON, LAT, 17)
    assert service.check(fine) == "render" and service.renderer_for(fine) is service.renderer  # 0.6 m: 'fam'
    assert service.check(tile_of_lonlat(LON, LAT, 12)) == "overview"  # built from the member's zoom 13
    with pytest.raises(TileRequestError, match="zoom 14 is in a gap of this server's zooms 12..18 .*pyramid "
                                               "zooms 13"):
        service.check(tile_of_lonlat(LON, LAT, 14))  # 4.8 m: the 0.5 m model's, 3 levels below its zooms
    assert service.policy.served_range() == (12, 18)
    tile = service.get(coarse)
    assert tile.source == "rendered"
    gsd_m = ground_resolution_m(13, tile_centre_lat(coarse))
    direct = render(osm=[str(town)], bbox=tile_bounds_m(coarse), bbox_crs="EPSG:3857", crs="EPSG:3857", gsd_m=gsd_m,
                    out_dir=tmp_path / "direct", model="fam_8m")
    import rasterio

    with rasterio.open(direct.aerial) as ds:  # the tile is the member's render of its bounds, pixel for pixel
        assert np.array_equal(Image.open(io.BytesIO(tile.png)).convert("RGB"), ds.read([1, 2, 3]).transpose(1, 2, 0))
    without = TileService(ServeSettings(osm=(town,), model=str(family_zoo / "fam.json"), device="cpu",
                                        cache_dir=tmp_path / "tiles", overview_levels=1))
    assert without.key != service.key  # the member's files are in the key


def test_tiles_reaching_past_the_data_are_transparent_there(served):
    """Outside the input's coverage a render is nodata (alpha 0): served tiles keep it as transparency
    instead of painting it black."""
    from geogan.serve import decode_png

    service, server = served
    alphas = [decode_png(_get(f"{server.url}/{t}.png")[2])[..., 3] for t in _town_tiles(service, 18)]
    assert any((a == 0).any() for a in alphas), "no tile shows the data's edge"
    assert any((a == 255).any() for a in alphas)
