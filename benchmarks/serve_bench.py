"""Latency of ``geogan serve`` tiles over real HTTP on 127.0.0.1: uncached z18 renders and cached answers.

Starts the tile service (one loaded model) over the bundled sample town with a fresh tile cache, renders
one warm-up tile, then times over HTTP (one keep-alive connection, as a map client does):

* ``render``: each of ``--tiles`` distinct uncached z18 tiles (request to last byte: the render through
  geogan.api, PNG encoding, the cache write and HTTP);
* ``cached``: ``--repeats`` requests for tiles already in the cache (read from disk each time);
* ``revalidate``: the same with ``If-None-Match`` (304, no body);
* ``join`` (issue 21's targets for served tiles): a 2 x 2 block of z18 tiles against one render of their
  union (mean and max |difference| in grey levels), and a 3 x 3 mosaic's seams (mean |step| across the
  tile borders over the mean step between other neighbouring pixel columns/rows; 1.0 = no seam).

    .venv/bin/python benchmarks/serve_bench.py [--model default] [--tiles 8] [--repeats 200] [--json out.json]

Prints one JSON document (medians, p95, each render) and writes it to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image

from geogan.inputs import sample_osm_path
from geogan.serve import ServeSettings, TileService
from geogan.serve_http import BackgroundServer, TileApp
from geogan.xyz import TILE_PX, TileId, ground_resolution_m, tile_bounds_m, tile_of_lonlat, tiles_in_box


def _timed_get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None) -> tuple[float, int, str]:
    """Seconds from request to the last byte, the status and the X-Geogan-Tile header."""
    start = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - start, response.status, response.getheader("X-Geogan-Tile", "")


def _summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"n": len(ordered), "median_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_ms": round(1000 * ordered[-1], 2)}


def _mosaic(service, tiles: list, side: int) -> np.ndarray:
    """``side`` x ``side`` tiles (row by row) as one float RGB image, from the service (cache or render)."""
    rows = []
    for r in range(side):
        rows.append(np.hstack([np.asarray(Image.open(io.BytesIO(service.get(t).png)).convert("RGB"))
                               for t in tiles[r * side:(r + 1) * side]]))
    return np.vstack(rows).astype(np.float64)


def _seam_ratio(image: np.ndarray) -> float:
    """Mean |step| between pixel columns and rows at tile borders over the mean |step| elsewhere."""
    grey = image.mean(axis=2)
    steps = [np.abs(np.diff(grey, axis=1)).mean(axis=0), np.abs(np.diff(grey, axis=0)).mean(axis=1)]
    border = [i for i in range(len(steps[0])) if (i + 1) % TILE_PX == 0]
    at = np.mean([s[border].mean() for s in steps])
    inside = np.mean([np.delete(s, border).mean() for s in steps])
    return float(at / inside)


def join_metrics(service) -> dict:
    """2 x 2 tiles vs the render of their union, and the seams of a 3 x 3 mosaic (all z18)."""
    w, s, e, n = service.area.box
    c = tile_of_lonlat((w + e) / 2, (s + n) / 2, 18)
    block = [TileId(18, c.x + dx, c.y + dy) for dy in (0, 1) for dx in (0, 1)]
    tiles = _mosaic(service, block, 2)
    (x0, _, _, y1), (_, y0, x1, _) = tile_bounds_m(block[0]), tile_bounds_m(block[3])
    lat = math.degrees(math.atan(math.sinh((y0 + y1) / 2 / 6378137.0)))
    with tempfile.TemporaryDirectory(prefix="geogan-join-") as tmp:
        result = service.renderer.render(osm=[str(p) for p in service.area.paths], bbox=(x0, y0, x1, y1),
                                         bbox_crs="EPSG:3857", crs="EPSG:3857", out_dir=tmp, overwrite=True,
                                         gsd_m=ground_resolution_m(18, lat), seed=service.settings.seed)
        with rasterio.open(result.aerial) as ds:
            union = ds.read(indexes=[1, 2, 3]).transpose(1, 2, 0).astype(np.float64)
    diff = np.abs(tiles - union)
    nine = [TileId(18, c.x + dx, c.y + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return {"union_px": list(union.shape[:2]), "block_vs_union_mean_abs": round(float(diff.mean()), 2),
            "block_vs_union_max_abs": int(diff.max()), "seam_ratio_3x3": round(_seam_ratio(_mosaic(service, nine, 3)), 3)}


def run(model: str, n_tiles: int, repeats: int, cache_dir: Path) -> dict:
    settings = ServeSettings(osm=(sample_osm_path(),), model=model, device="cpu", cache_dir=cache_dir)
    started = time.perf_counter()
    service = TileService(settings)
    load_s = time.perf_counter() - started
    tiles = tiles_in_box(service.area.box, 18)
    middle = len(tiles) // 2
    chosen = tiles[middle:middle + n_tiles + 1]
    with BackgroundServer(TileApp(service), threads=4) as server:
        conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=120)
        _timed_get(conn, f"/{chosen[0]}.png")  # warm-up: first render pays one-off costs
        renders = []
        for tile in chosen[1:]:
            seconds, status, source = _timed_get(conn, f"/{tile}.png")
            assert status == 200 and source == "rendered", (tile, status, source)
            renders.append(seconds)
        cached, revalidated = [], []
        for i in range(repeats):
            tile = chosen[1 + i % n_tiles]
            seconds, status, source = _timed_get(conn, f"/{tile}.png")
            assert status == 200 and source == "hit"
            cached.append(seconds)
            seconds, status, _ = _timed_get(conn, f"/{tile}.png", {"If-None-Match": service.etag(tile)})
            assert status == 304
            revalidated.append(seconds)
        conn.close()
    return {"model": model, "gsd_m": service.policy.gsd_m, "zoom": 18, "tiles": [str(t) for t in chosen[1:]],
            "model_load_s": round(load_s, 2), "render": _summary(renders),
            "render_each_s": [round(s, 3) for s in renders], "cached": _summary(cached),
            "revalidate_304": _summary(revalidated), "join": join_metrics(service), "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tiles", type=int, default=8, help="uncached z18 tiles to time")
    ap.add_argument("--repeats", type=int, default=200, help="cached requests to time")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="geogan-serve-bench-") as tmp:
        result = run(args.model, args.tiles, args.repeats, Path(tmp))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
