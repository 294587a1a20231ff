"""Worker-written Dask output (geogan.blocks): a real LocalCluster of 2 worker processes writes the blocks' COGs,
the client only the index (VRTs + a STAC ItemCollection); the mosaic equals the local render bit for bit."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio

import geogan
from geogan import blocks as blocks_mod
from geogan.api import sample_osm_path
from geogan.errors import InputError, OutputError
from geogan.sources import osm_file_bounds

from conftest import make_tiny_model

distributed = pytest.importorskip("dask.distributed")

BLOCK_ROWS = 200  # generator rows per block: the small area below becomes several blocks


@pytest.fixture(scope="module")
def scheduler():
    """One LocalCluster (2 one-thread worker processes) for the module: its address, as --scheduler takes."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(blocks_mod, "BLOCK_CANONICAL_ROWS", BLOCK_ROWS)


def _request(tiny_model) -> dict:
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return dict(osm=sample_osm_path(), bbox=(cx - 0.002, cy - 0.0015, cx + 0.002, cy + 0.0015), gsd_m=0.5,
                model=str(tiny_model), tile_px=128, overlap_px=32, seed=5)


@pytest.fixture(scope="module", params=["rgb-model-sloping-dem", "rgb+height-model-hillshade",
                                        "partly-outside-the-data-jpeg"])
def rendered(request, tmp_path_factory, tiny_model, scheduler):
    """A local render and a worker-written render of the same request (with a model whose generated terrain
    goes through the warp with the pixels, and a hillshade, whose rows look one row past their strip; a DEM the
    workers open themselves; and an area reaching past the OSM file's bounds: nodata there, the aerial's alpha
    an internal mask with JPEG)."""
    tmp = tmp_path_factory.mktemp("blocks")
    mp = pytest.MonkeyPatch()
    mp.setattr(blocks_mod, "BLOCK_CANONICAL_ROWS", BLOCK_ROWS)
    try:
        kw = _request(tiny_model)
        if request.param.endswith("dem"):
            kw.update(dem=_sloping_dem(tmp / "dem.tif", kw["bbox"]))
        if request.param.startswith("rgb+height"):
            kw.update(model=str(make_tiny_model(tmp / "height_model", height_scale_m=20.0)), hillshade=True)
        if request.param.startswith("partly-outside"):
            west, south, east, north = osm_file_bounds(sample_osm_path())
            kw.update(bbox=(east - 0.003, south + 0.001, east + 0.001, south + 0.004), compression="jpeg")
        local = geogan.render(out_dir=tmp / "local", **kw)
        dask = geogan.render(out_dir=tmp / "index", scheduler=scheduler, blocks_out=tmp / "blocks", **kw)
    finally:
        mp.undo()
    return local, dask, tmp, kw["bbox"]


def _sloping_dem(path: Path, bbox) -> Path:
    """A DEM in UTM 35N rising 1 m per 10 m eastwards, covering ``bbox`` (lon/lat) with a margin."""
    import pyproj
    from rasterio.transform import from_origin

    x0, y0, x1, y1 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform_bounds(*bbox)
    x0, y0, x1, y1 = x0 - 200, y0 - 200, x1 + 200, y1 + 200
    nx, ny = int((x1 - x0) / 5), int((y1 - y0) / 5)
    dem = np.tile(((np.arange(nx) + 0.5) / 2 + 100).astype(np.float32), (ny, 1))
    with rasterio.open(path, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="float32", crs="EPSG:32635",
                       transform=from_origin(x0, y1, 5, 5)) as ds:
        ds.write(dem, 1)
    return path


def test_vrt_mosaic_equals_the_local_render(rendered):
    local, dask, tmp, _ = rendered
    assert dask.aerial == tmp / "index" / "aerial.vrt"
    assert not list((tmp / "index").glob("*.tif"))  # the client wrote no pixels
    assert len(list((tmp / "blocks").glob("block_*/aerial.tif"))) >= 3  # several blocks, by the workers
    assert local.paths.keys() == dask.paths.keys()
    for name in local.paths:
        with rasterio.open(local.paths[name]) as a, rasterio.open(dask.paths[name]) as b:
            assert (a.width, a.height, a.count, a.dtypes) == (b.width, b.height, b.count, b.dtypes), name
            assert a.transform.almost_equals(b.transform) and a.crs == b.crs, name
            assert a.nodata == b.nodata and a.descriptions == b.descriptions, name
            assert np.array_equal(a.read(), b.read()), name
            assert np.array_equal(a.read_masks(), b.read_masks()), name
    with rasterio.open(local.classes) as a, rasterio.open(dask.classes) as b:
        assert a.colormap(1)[3] == b.colormap(1)[3]  # the class palette came along
    assert (tmp / "index" / "classes.vrt.aux.xml").is_file()


def test_stac_item_collection_lists_every_block(rendered):
    _, dask, tmp, (west, south, east, north) = rendered
    stac_path = tmp / "index" / "stac.json"
    collection = json.loads(stac_path.read_text())
    assert collection["type"] == "FeatureCollection"
    items = collection["features"]
    assert len(items) == len(list((tmp / "blocks").glob("block_*"))) >= 3
    rows = 0
    for item in items:
        assert item["type"] == "Feature" and item["stac_version"] == "1.0.0" and item["id"].startswith("block_")
        assert any("projection" in ext for ext in item["stac_extensions"])
        props = item["properties"]
        assert props["datetime"].endswith("Z") and props["proj:epsg"] == 3857
        h, w = props["proj:shape"]
        assert w == dask.grid.width and props["geogan:rows"] == [rows, rows + h]
        assert len(props["proj:transform"]) == 6
        rows += h
        ring = item["geometry"]["coordinates"][0]
        assert item["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
        area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
        assert area2 > 0  # counterclockwise, as GeoJSON (RFC 7946) wants exterior rings
        bw, bs, be, bn = item["bbox"]
        assert west - 1e-4 < bw < be < east + 1e-4 and south - 1e-4 < bs < bn < north + 1e-4
        assert set(item["assets"]) == set(dask.paths)
        for asset in item["assets"].values():
            href = Path(asset["href"])
            assert (href if href.is_absolute() else stac_path.parent / href).is_file()
            assert "cloud-optimized" in asset["type"]
    assert rows == dask.grid.height  # the blocks tile the output once


def test_a_block_a_worker_cannot_write_fails_cleanly_and_leaves_no_index(tmp_path, tiny_model, scheduler,
                                                                         small_blocks):
    kw = _request(tiny_model)
    out, shared = tmp_path / "index", tmp_path / "blocks"
    geogan.render(out_dir=out, scheduler=scheduler, blocks_out=shared, **kw)
    assert (out / "stac.json").is_file()
    with pytest.raises(OutputError, match="block_00000/aerial.tif' already exists; pass --overwrite to replace the "
                                          "blocks or choose another --blocks-out"):
        geogan.render(out_dir=tmp_path / "other", scheduler=scheduler, blocks_out=shared, **kw)
    (shared / "block_00001").rename(tmp_path / "moved")
    (shared / "block_00001").write_text("a file where the block's folder goes")  # that block cannot be written
    with pytest.raises(OutputError) as err:
        geogan.render(out_dir=out, scheduler=scheduler, blocks_out=shared, overwrite=True, **kw)
    message = str(err.value)
    assert "\n" not in message and "block 1 " in message and "no index was written" in message
    assert not [p.name for p in out.iterdir() if not p.name.startswith(".geogan.lock")]  # the old index is gone too
    assert not list(shared.glob("**/.geogan-*.partial"))  # no half-written block left


def test_blocks_out_needs_dask_workers(tmp_path, tiny_model):
    with pytest.raises(InputError, match="--workers"):
        geogan.render(out_dir=tmp_path / "o", blocks_out=tmp_path / "b", **_request(tiny_model))
    with pytest.raises(InputError, match="out_dir"):
        geogan.render(out_dir=None, workers=2, blocks_out=tmp_path / "b", **_request(tiny_model))


HANG_S = 240  # a wait in these tests that takes longer than this has hung (a render here takes seconds)

# One client process of the two-processes test: it renders once with the pixels sent to it and once with the
# workers writing the blocks, starting when the test says go (both processes then render at the same time).
_CLIENT_SCRIPT = """
import json, sys, time
from pathlib import Path
import geogan
from geogan import blocks
args = json.loads(sys.argv[1])
blocks.BLOCK_CANONICAL_ROWS = args["block_rows"]
Path(args["ready"]).touch()
deadline = time.monotonic() + args["wait_s"]
while not Path(args["go"]).exists():
    if time.monotonic() > deadline:
        sys.exit("no go from the test")
    time.sleep(0.05)
out = Path(args["out"])
geogan.render(out_dir=out / "pixels", scheduler=args["scheduler"], **args["request"])
geogan.render(out_dir=out / "index", scheduler=args["scheduler"], blocks_out=out / "blocks", **args["request"])
"""


def _client_process(tmp_path: Path, name: str, scheduler: str, request: dict) -> tuple:
    args = dict(block_rows=BLOCK_ROWS, ready=str(tmp_path / f"{name}.ready"), go=str(tmp_path / "go"), wait_s=HANG_S,
                out=str(tmp_path / name), scheduler=scheduler, request={**request, "osm": str(request["osm"])})
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT_SCRIPT, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, Path(args["ready"])


def _finish(procs: list) -> None:
    """Wait (at most ``HANG_S`` each) for the client processes; kill them all and fail if one hangs or fails."""
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=HANG_S)
            assert proc.returncode == 0, out[-3000:]
    except subprocess.TimeoutExpired:
        pytest.fail(f"a client process still renders after {HANG_S} s: hung")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_two_renders_at_once_on_one_scheduler_keep_their_own_blocks(tmp_path, tiny_model, scheduler, small_blocks):
    """Task keys carry a token of the render: two client processes rendering other seeds on one scheduler at the
    same time each get their own blocks (keys named by tile rows alone were shared: the second got the first's
    pixels). Each dask render, pixels to the client and worker-written, equals the local render of its seed."""
    requests = {f"seed{seed}": {**_request(tiny_model), "seed": seed} for seed in (1, 2)}
    procs, ready = zip(*(_client_process(tmp_path, name, scheduler, kw) for name, kw in requests.items()))
    try:
        deadline = time.monotonic() + HANG_S
        while not all(path.exists() for path in ready) and all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, f"the client processes did not start in {HANG_S} s"
            time.sleep(0.05)
        (tmp_path / "go").touch()  # both are connected-ready: they render at the same time
    finally:
        _finish(list(procs))
    for name, kw in requests.items():
        local = geogan.render(out_dir=tmp_path / f"local-{name}", **kw)
        with rasterio.open(local.aerial) as expected:
            pixels = expected.read()
        for dask_aerial in (tmp_path / name / "pixels" / "aerial.tif", tmp_path / name / "index" / "aerial.vrt"):
            with rasterio.open(dask_aerial) as got:
                assert np.array_equal(got.read(), pixels), dask_aerial
    with rasterio.open(tmp_path / "local-seed1" / "aerial.tif") as a, \
            rasterio.open(tmp_path / "local-seed2" / "aerial.tif") as b:
        assert not np.array_equal(a.read(), b.read())  # the seeds make other pixels


def _in_thread(fn):
    """``fn()`` in a daemon thread, waited on for at most ``HANG_S``: a hang fails the test instead of stopping it."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    if thread.is_alive():
        pytest.fail(f"still waiting after {HANG_S} s: hung")
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.mark.parametrize("worker_written", [False, True], ids=["pixels-to-client", "worker-written"])
def test_a_render_waits_for_its_blocks_on_its_own_client(tmp_path, tiny_model, scheduler, small_blocks,
                                                          worker_written):
    """The render waits for its blocks in its own client's event loop. ``as_completed`` (and ``wait``) without one
    wait in the loop of the process's current or default client: with renders in threads (QGIS tasks) another
    render's client, and once that one closed the blocks registered with its loop were never reported: the render
    waited forever with idle workers (dask/distributed#4317; two renders in threads hung so). Here the other client
    is current and already closed, so the old code hangs every time."""
    other = distributed.Client(scheduler, set_as_default=False)
    other.close()
    kw = _request(tiny_model)
    if worker_written:
        kw["blocks_out"] = tmp_path / "blocks"

    def render():
        with other.as_current():
            return geogan.render(out_dir=tmp_path / "out", scheduler=scheduler, **kw)

    assert _in_thread(render).aerial.is_file()


def test_the_render_client_is_nobody_elses_default(scheduler):
    """geogan's client is not made the process's default client nor dask's scheduler: a render in one thread
    does not redirect another thread's (or the user's) dask work to itself."""
    from geogan.distributed import get_client

    before = dask.config.get("scheduler", None)
    client = get_client(scheduler, None)
    try:
        assert dask.config.get("scheduler", None) == before
        with contextlib.suppress(ValueError):  # no client at all: none is the default
            assert distributed.Client.current() is not client
    finally:
        client.close()
