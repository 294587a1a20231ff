"""Issue 28: a render gives the memory its threads freed back to the system as it goes (geogan.runtime
.return_free_heap after every strip), so its peak RSS follows what it uses, not how long it ran: glibc kept the
freed pages of the quilting, warping and writing threads in their arenas and a 16 km2 texture-bank render peaked
at 1.3x a 1 km2 render's RSS."""

from __future__ import annotations

import numpy as np
import pytest

import geogan
from geogan import pipeline, runtime
from test_anchor import SAMPLE, _centre_box


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(runtime._malloc_trim() is None, reason="the C library has no malloc_trim (glibc only)")
def test_freed_arena_memory_goes_back_to_the_system():
    big = np.ones(24 << 20, np.uint8)  # a large array freed: glibc now serves arrays up to 24 MB from its arena
    del big
    kept, pins = [], []
    for _ in range(160):  # 160 MB of 1 MB arrays, each followed by a live one (freed, they stay in the arena)
        kept.append(np.ones(1 << 20, np.uint8))
        pins.append(np.ones(200 << 10, np.uint8))
    before = _rss_mb()
    del kept
    freed = _rss_mb()
    runtime.return_free_heap()
    assert before - freed < 20 and freed - _rss_mb() > 100  # most of the 160 MB, only when given back
    assert len(pins) == 160


def test_the_render_loop_gives_freed_memory_back_every_strip(tiny_model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "return_free_heap", lambda: calls.append(1))
    res = geogan.render(osm=SAMPLE, bbox=_centre_box(200, 300), model=str(tiny_model), out_dir=tmp_path / "r",
                        tile_px=64, overlap_px=16)
    strips = len(pipeline.strip_rows(res.grid, pipeline.TileSpec(64, 16)))
    assert len(calls) >= strips > 2  # after each generator strip and each warp
