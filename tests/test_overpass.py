"""Overpass client and big-extract clipper (geogan/overpass.py).

Every network test talks to a real HTTP server on 127.0.0.1 started by the
test (ThreadingHTTPServer on port 0 in a thread) that answers Overpass POSTs
with scripted responses built from synthetic OSM XML. Nothing leaves the host.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyogrio
import pytest

from geogan.classes import load_schema, parse_schema
from geogan.errors import GridError, SourceError
from geogan.overpass import (DEFAULT_OVERPASS_URL, MAX_RETRY_WAIT_S, build_query, cache_key, clip_large_osm,
                             default_cache_dir, fetch_osm, overpass_url, parse_retry_after, user_agent)
from geogan.sources import read_sources

from osm_factory import offset_lonlat, to_pbf, write_osm

LON, LAT = 8.0, 50.0
BBOX = (7.995, 49.995, 8.005, 50.005)


# ---------------------------------------------------------------- data
def _town_osm(path: Path) -> Path:
    """A building, a road and a forest multipolygon with a hole (all made up)."""
    nodes: dict[int, tuple] = {}

    def ring(first_id: int, half_m: float, cx: float = 0.0, cy: float = 0.0) -> list[int]:
        ids = []
        for i, (dx, dy) in enumerate([(-1, -1), (1, -1), (1, 1), (-1, 1)]):
            nodes[first_id + i] = offset_lonlat(LON, LAT, cx + dx * half_m, cy + dy * half_m)
            ids.append(first_id + i)
        return ids + [ids[0]]

    building = ring(1, 8.0)
    outer = ring(11, 150.0, cx=200.0)
    inner = ring(21, 40.0, cx=200.0)
    nodes[31] = offset_lonlat(LON, LAT, -300.0, -50.0)
    nodes[32] = offset_lonlat(LON, LAT, 300.0, -50.0)
    ways = [(1, building, {"building": "yes"}), (2, [31, 32], {"highway": "residential"}),
            (3, outer, {}), (4, inner, {})]
    relations = [(1, [("way", 3, "outer"), ("way", 4, "inner")], {"type": "multipolygon", "landuse": "forest"})]
    return write_osm(path, nodes, ways, relations, bounds=False)


def _overpass_body(tmp_path: Path, remark: str | None = None) -> bytes:
    """OSM XML as Overpass prints it: <note> and <meta> first, maybe a <remark>."""
    text = _town_osm(tmp_path / "town.osm").read_text(encoding="utf-8")
    xml_decl, osm_open, rest = text.split("\n", 2)
    extra = ('<note>The data included in this document is from www.openstreetmap.org.</note>\n'
             '<meta osm_base="2024-01-01T00:00:00Z"/>\n')
    if remark is not None:
        extra += f"<remark> {remark} </remark>\n"
        rest = "</osm>\n"
    return f"{xml_decl}\n{osm_open}\n{extra}{rest}".encode("utf-8")


# ---------------------------------------------------------------- the fake Overpass server
class FakeOverpass:
    """Scripted answers: each POST takes the next entry of ``script`` (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[dict] = []
        self.requests: list[dict] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "time": time.monotonic(),
                                      "query": form.get("data", [""])[0]})
                entry = fake.script[min(len(fake.requests) - 1, len(fake.script) - 1)]
                if entry.get("delay"):
                    if fake.release.wait(entry["delay"]):
                        return
                body = entry.get("body", b"")
                headers = dict(entry.get("headers", {}))
                if entry.get("gzip") and "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                self.send_response(entry.get("status", 200))
                headers.setdefault("Content-Type", entry.get("type", "application/osm3s+xml"))
                for k, v in headers.items():
                    self.send_header(k, v)
                if not entry.get("no_length"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/interpreter"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeOverpass":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path):
    """No proxies (127.0.0.1 must be reached directly), no user settings, no writes to $HOME."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "GEOGAN_OVERPASS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def server():
    with FakeOverpass() as fake:
        yield fake


def _files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


# ---------------------------------------------------------------- the query
def test_query_is_built_from_the_rules_and_the_bbox():
    schema = load_schema()
    q = build_query(schema, BBOX, timeout_s=90)
    assert q.startswith("[out:xml][timeout:90][bbox:49.9950000,7.9950000,50.0050000,8.0050000];")
    box = "(49.9950000,7.9950000,50.0050000,8.0050000)"
    for rule in schema.rules:
        for key, _ in rule.match:
            assert f'["{key}"' in q, key
    assert f'way["building"]{box};' in q
    assert 'way["highway"~"^(' in q and "|residential|" in q and "footway" in q  # line and area values merged
    assert f'relation["type"="multipolygon"]["landuse"~' in q  # areas with holes
    assert 'relation["type"="multipolygon"]["highway"~"^(footway|pedestrian)$"]' in q  # only area values
    assert "tree_row" not in q.split('relation["type"="multipolygon"]["natural"', 1)[1].split("\n")[0]
    assert q.rstrip().endswith("(._;>;);\nout body;")
    assert f'node["natural"="tree"]{box};' in q and f'way["natural"="coastline"]{box};' in q  # trees, the sea
    assert q.count(box) == q.count("way[") + q.count("relation[") + q.count("node[")


def test_query_quotes_values_and_keeps_multi_key_rules_together():
    schema = parse_schema({
        "classes": [{"id": 0, "name": "background", "color": [0, 0, 0], "priority": 0},
                    {"id": 1, "name": "odd", "color": [1, 2, 3], "priority": 1}],
        "rules": [{"class": "odd", "geometry": "line", "match": {"man_made": ["pier", 'a"b', "x.y"]}},
                  {"class": "odd", "geometry": "area", "match": {"amenity": "parking", "parking": "surface"}}],
    })
    q = build_query(schema, BBOX, timeout_s=0.2)
    assert "[timeout:1]" in q
    assert r'way["man_made"~"^(a\"b|pier|x\\.y)$"]' in q
    assert 'relation["type"="multipolygon"]["man_made"' not in q  # line rules need no relations
    assert 'way["amenity"="parking"]["parking"="surface"](' in q
    assert 'relation["type"="multipolygon"]["amenity"="parking"]["parking"="surface"](' in q


def test_bad_bbox_and_url_are_input_errors():
    with pytest.raises(GridError, match="antimeridian"):
        build_query(load_schema(), (10.0, 50.0, 9.0, 51.0))
    with pytest.raises(SourceError, match="not an http"):
        overpass_url("ftp://example.org/x")
    assert overpass_url() == DEFAULT_OVERPASS_URL


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("100000") == MAX_RETRY_WAIT_S
    now = time.time()
    assert 8.0 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10.5
    assert parse_retry_after(formatdate(now - 50, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# ---------------------------------------------------------------- fetching
def test_fetch_parses_with_gdal_and_is_cached(server, tmp_path, schema):
    server.script = [{"body": _overpass_body(tmp_path), "gzip": True}]
    cache = tmp_path / "cache"
    calls = []
    path = fetch_osm(BBOX, schema, url=server.url, cache_dir=cache, progress=lambda f, m: calls.append((f, m)))

    assert len(server.requests) == 1
    req = server.requests[0]
    assert req["path"] == "/api/interpreter"
    assert req["headers"]["User-Agent"] == user_agent()
    assert user_agent().startswith("geogan/") and "(+https://github.com/geogan/geogan)" in user_agent()
    assert req["query"] == build_query(schema, BBOX, 180)
    assert '["building"]' in req["query"] and "49.9950000,7.9950000,50.0050000,8.0050000" in req["query"]

    assert path == cache / "overpass" / f"{cache_key(server.url, req['query'])}.osm"
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["url"] == server.url and side["bbox"] == list(BBOX) and side["query"] == req["query"]
    assert "fetched_at" in side
    assert _files(cache) == [path.with_suffix(".json"), path]  # no .part left behind
    assert calls and any("downloaded" in m for _, m in calls)

    report = read_sources([path], BBOX)
    tags = [t for layer in report.layers for t in layer.tags]
    assert any(t.get("building") == "yes" for t in tags)
    assert any(t.get("highway") == "residential" for t in tags)
    forest = [g for layer in report.layers for g, t in zip(layer.geometries, layer.tags)
              if t.get("landuse") == "forest"]
    assert len(forest) == 1 and len(forest[0].geoms[0].interiors) == 1  # the relation's hole survived

    # a cache hit makes no request; use_cache=False downloads again and refreshes the cache
    assert fetch_osm(BBOX, schema, url=server.url, cache_dir=cache, timeout_s=60) == path
    assert len(server.requests) == 1
    assert fetch_osm(BBOX, schema, url=server.url, cache_dir=cache, use_cache=False) == path
    assert len(server.requests) == 2


def test_env_url_and_default_cache_dir(server, tmp_path, schema, monkeypatch):
    server.script = [{"body": _overpass_body(tmp_path)}]
    monkeypatch.setenv("GEOGAN_OVERPASS_URL", server.url)
    assert default_cache_dir() == tmp_path / "xdg-cache" / "geogan"
    path = fetch_osm(BBOX, schema)
    assert path.parent == tmp_path / "xdg-cache" / "geogan" / "overpass"
    assert len(server.requests) == 1


def test_429_retry_after_is_honoured(server, tmp_path, schema):
    server.script = [{"status": 429, "headers": {"Retry-After": "1"}, "type": "text/html",
                      "body": b"<html><body><p>rate_limited</p></body></html>"},
                     {"status": 504, "body": b"busy", "type": "text/plain"},  # no Retry-After: backoff
                     {"body": _overpass_body(tmp_path)}]
    path = fetch_osm(BBOX, schema, url=server.url, cache_dir=tmp_path / "c", backoff_s=0.05)
    times = [r["time"] for r in server.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.95
    assert path.is_file()


def test_timeout_gives_up_after_retries(server, tmp_path, schema):
    server.script = [{"delay": 5.0, "body": _overpass_body(tmp_path)}]
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        fetch_osm(BBOX, schema, url=server.url, cache_dir=tmp_path / "c", socket_timeout_s=0.3,
                  max_retries=1, backoff_s=0.05)
    assert time.monotonic() - start < 3.0
    assert len(server.requests) == 2
    msg = str(err.value)
    assert "timed out after 2 tries" in msg and "pass --osm FILE" in msg and "\n" not in msg
    assert err.value.exit_code == 2
    assert _files(tmp_path / "c") == []


@pytest.mark.parametrize("case, entry, expect, tries", [
    ("html", {"body": b"<!DOCTYPE html><html><body><p>Welcome to the hotel wifi</p></body></html>",
              "type": "text/html"}, "HTML page", 1),
    ("json", {"body": b'{"elements": []}', "type": "application/json"}, "JSON", 1),
    ("truncated", {"cut": True, "no_length": True}, "truncated OSM XML", 2),
    ("remark", {"remark": 'runtime error: Query timed out in "query" at line 3 after 2 seconds.'},
     "Query timed out", 1),
    ("http400", {"status": 400, "type": "text/html",
                 "body": b"<html><body><p><strong>Error</strong>: line 3: parse error: ']' expected</p>"
                         b"</body></html>"}, "HTTP 400: Error : line 3: parse error", 1),
])
def test_malformed_answers_fail_and_leave_no_cache(server, tmp_path, schema, case, entry, expect, tries):
    entry = dict(entry)
    if entry.pop("cut", False):
        entry["body"] = _overpass_body(tmp_path)[:-300]
    if "remark" in entry:
        entry["body"] = _overpass_body(tmp_path, remark=entry.pop("remark"))
    server.script = [entry]
    cache = tmp_path / "c"
    with pytest.raises(SourceError) as err:
        fetch_osm(BBOX, schema, url=server.url, cache_dir=cache, max_retries=1, backoff_s=0.01)
    msg = str(err.value)
    assert expect in msg and server.url in msg and "pass --osm FILE" in msg and "\n" not in msg, msg
    assert len(server.requests) == tries
    assert _files(cache) == []


def test_offline_fails_fast_with_one_line(tmp_path, schema):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    url = f"http://127.0.0.1:{port}/api/interpreter"
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        fetch_osm(BBOX, schema, url=url, cache_dir=tmp_path / "c", max_retries=4)
    assert time.monotonic() - start < 2.0  # no retries for a refused connection
    msg = str(err.value)
    assert msg == (f"could not fetch OSM data for bbox (7.995000, 49.995000, 8.005000, 50.005000) from {url} "
                   "(connection refused); pass --osm FILE with a local extract")
    assert _files(tmp_path / "c") == []


def test_dns_failure_is_one_line(tmp_path, schema, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(SourceError, match=r"cannot resolve host.*offline\?\); pass --osm FILE") as err:
        fetch_osm(BBOX, schema, url="https://overpass.invalid/api/interpreter", cache_dir=tmp_path / "c")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- clipping big extracts
def _region_pbf(tmp_path: Path) -> Path:
    """Ways inside, crossing, outside a 200 m bbox, and a forest multipolygon enclosing it."""
    nodes: dict[int, tuple] = {}

    def node(nid: int, e: float, n: float) -> int:
        nodes[nid] = offset_lonlat(LON, LAT, e, n)
        return nid

    inside = [node(1, -20, -20), node(2, 20, -20), node(3, 20, 20), node(4, -20, 20)]
    crossing = [node(10, -500, 0), node(11, -450, 0), node(12, 450, 0), node(13, 500, 0)]
    outside = [node(20, 2000, 2000), node(21, 2100, 2000)]
    # a big square ring around everything, in four untagged pieces whose boxes miss the bbox
    c = [node(30, -1000, -1000), node(31, 1000, -1000), node(32, 1000, 1000), node(33, -1000, 1000)]
    far_ring = [node(40, 3000, 3000), node(41, 3100, 3000), node(42, 3100, 3100), node(43, 3000, 3100)]
    nodes[50] = (*offset_lonlat(LON, LAT, 10, 60), {"natural": "tree"})  # a tree inside, one outside
    nodes[51] = (*offset_lonlat(LON, LAT, 900, 60), {"natural": "tree"})
    ways = [(1, inside + [inside[0]], {"building": "yes"}),
            (2, crossing, {"highway": "primary"}),
            (3, outside, {"highway": "primary"}),
            (4, [c[0], c[1]], {}), (5, [c[1], c[2]], {}), (6, [c[2], c[3]], {}), (7, [c[3], c[0]], {}),
            (8, far_ring + [far_ring[0]], {})]
    relations = [(1, [("way", w, "outer") for w in (4, 5, 6, 7)], {"type": "multipolygon", "landuse": "forest"}),
                 (2, [("way", 8, "outer")], {"type": "multipolygon", "natural": "water"})]
    osm = write_osm(tmp_path / "region.osm", nodes, ways, relations)
    return to_pbf(osm, tmp_path / "region.osm.pbf")


def test_clip_keeps_whole_ways_and_enclosing_multipolygons(tmp_path):
    pytest.importorskip("osmium")
    pbf = _region_pbf(tmp_path)
    w, s = offset_lonlat(LON, LAT, -100, -100)
    e, n = offset_lonlat(LON, LAT, 100, 100)
    bbox = (w, s, e, n)
    assert clip_large_osm(pbf, bbox, cache_dir=tmp_path / "c") == pbf  # small file: GDAL does it

    clip = clip_large_osm(pbf, bbox, cache_dir=tmp_path / "c", min_bytes=0)
    assert clip != pbf and clip.parent == tmp_path / "c" / "clips" and clip.name.endswith(".osm.pbf")
    lines = pyogrio.read_dataframe(clip, layer="lines")
    polys = pyogrio.read_dataframe(clip, layer="multipolygons")
    assert list(lines["osm_id"].astype(int)) == [2]  # the crossing road, not the far one
    assert len(lines.geometry[0].coords) == 4  # with its nodes outside the bbox
    assert sorted(polys["building"].dropna()) == ["yes"]
    forest = polys[polys["landuse"] == "forest"]
    assert len(forest) == 1 and forest.geometry.iloc[0].area > 1e-4  # the whole 2 km ring
    assert "water" not in set(polys["natural"].dropna())
    points = pyogrio.read_dataframe(clip, layer="points")
    assert list(points["osm_id"].astype(int)) == [50]  # the tree inside the bbox

    mtime = clip.stat().st_mtime_ns
    assert clip_large_osm(pbf, bbox, cache_dir=tmp_path / "c", min_bytes=0) == clip
    assert clip.stat().st_mtime_ns == mtime  # cache hit


def test_render_without_osm_fetches_the_bbox_through_the_api(server, tmp_path, tiny_model):
    """`geogan.render(bbox=...)` with no file uses the Overpass endpoint, then its cache."""
    import numpy as np
    import rasterio

    import geogan
    server.script = [{"body": _overpass_body(tmp_path)}]
    fetch = geogan.OsmFetch(url=server.url, cache_dir=tmp_path / "cache")
    bbox = (*offset_lonlat(LON, LAT, -60, -60), *offset_lonlat(LON, LAT, 60, 60))  # building + road at -50 m
    kw = dict(bbox=bbox, model=str(tiny_model), tile_px=128, overlap_px=32, osm_fetch=fetch)
    first = geogan.render(out_dir=tmp_path / "a", **kw)
    assert len(server.requests) == 1
    classes = rasterio.open(first.classes).read(1)
    assert (classes == 1).sum() > 100 and (classes == 2).sum() > 100  # the building and the road arrived
    second = geogan.render(out_dir=tmp_path / "b", **kw)
    assert len(server.requests) == 1  # second render of the same area: served from the cache
    assert np.array_equal(rasterio.open(second.aerial).read(), rasterio.open(first.aerial).read())
