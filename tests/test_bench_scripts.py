"""benchmarks/ab_render.py runs end to end (one tiny round against HEAD): the numbers mean nothing here; the
large benchmark area of benchmarks/bench.py is a real town of that size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout (compares with a git revision)")
def test_ab_render_smoke(tmp_path):
    out = tmp_path / "ab.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab_render.py"), "--base", "HEAD", "--rounds", "1",
                        "--warm", "1", "--km2", "0.05", "--gen-reps", "1", "--json", str(out),
                        "--new-kw", "compression=zstd,seed=5"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    base, new = res["rounds"]["base"][0], res["rounds"]["new"][0]
    assert res["base_kw"] == {} and res["new_kw"] == {"compression": "zstd", "seed": 5}
    assert "geogan-ab-" in base["tree"] and Path(new["tree"]).resolve().is_relative_to(ROOT)  # each tree imported
    for r in (base, new):
        assert r["cold_s"] > 0 and r["warm_s"] > 0 and 0 < r["warm_ratio"] and r["generator_s"] > 0
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "geogan-ab-" not in listed  # the temporary worktree is removed again


def test_ab_render_keywords_parse():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ab_render import _render_kw
    assert _render_kw("compression=zstd, seed=3,gsd_m=0.5") == {"compression": "zstd", "seed": 3, "gsd_m": 0.5}
    assert _render_kw("") == {}
    with pytest.raises(Exception, match="not KEY=VALUE"):
        _render_kw("zstd")


def test_synthetic_town_is_copies_of_the_sample_side_by_side(tmp_path):
    """The 16 km2 benchmark area holds the sample town repeated over it (every copy read by GDAL, ids unique),
    not one town amid open ground."""
    import shapely

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import _synthetic_town, _town_bbox
    from geogan.api import sample_osm_path
    from geogan.sources import read_sources
    one = read_sources([sample_osm_path()], None)
    many = read_sources([_synthetic_town(4.0, tmp_path / "town4.osm")], None)
    count = {layer.source.split(":")[1]: len(layer.geometries) for layer in one.layers}
    counts = {layer.source.split(":")[1]: len(layer.geometries) for layer in many.layers}
    copies = counts["multipolygons"] // count["multipolygons"]
    assert copies >= 4 and counts == {k: v * copies for k, v in count.items()}
    x0, y0, x1, y1 = _town_bbox(4.0)
    polys = next(layer for layer in many.layers if layer.source.endswith("multipolygons")).geometries
    bx0, by0, bx1, by1 = shapely.total_bounds(polys)
    assert bx0 < x0 + 0.2 * (x1 - x0) and bx1 > x1 - 0.2 * (x1 - x0)  # spread over the whole area
    assert by0 < y0 + 0.2 * (y1 - y0) and by1 > y1 - 0.2 * (y1 - y0)


def test_pix2pix_reference_model_renders(tmp_path):
    """bench.py's reference generator (the paper's pix2pix, ngf 64, random weights) is a model geogan renders
    with: the default model's classes, GSD and noise input with the pix2pix architecture."""
    import rasterio

    import geogan
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import _town_bbox, pix2pix_model
    from geogan.api import sample_osm_path
    from geogan.classes import load_schema
    from geogan.infer import load_model
    card = pix2pix_model(tmp_path / "p2p")
    model = load_model(str(card), load_schema(), "cpu")
    assert model.card["arch"] == "pix2pix" and model.card["arch_params"]["noise"] is True
    assert sum(p.numel() for p in model.module.parameters()) > 20_000_000  # ngf 64, eight levels: the paper's size
    res = geogan.render(osm=sample_osm_path(), bbox=_town_bbox(0.01), out_dir=tmp_path / "out", model=str(card))
    with rasterio.open(res.aerial) as ds:
        assert ds.count == 3 and ds.read().std() > 0


def test_recorded_quilt_calls_are_spooled_to_disk_and_replay(tmp_path):
    """bench.py's paired ratio for a texture bank replays the render's quilt_strip calls: their class maps are
    kept in files, not in the list (recording a 16 km2 render held them all and doubled its peak RSS)."""
    import numpy as np

    import geogan
    import geogan.quilt_model as qm
    from test_anchor import SAMPLE, _centre_box

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import capture_quilt_calls, replay_quilt_seconds
    original = qm.quilt_strip
    try:
        calls = capture_quilt_calls()
        geogan.render(osm=SAMPLE, bbox=_centre_box(120, 90), out_dir=tmp_path / "r", model="default")
    finally:
        qm.quilt_strip = original
    assert calls and all(isinstance(c[1], Path) and c[1].is_file() for c in calls)
    assert not any(isinstance(a, np.ndarray) for c in calls for a in (*c[2], *c[3].values()))
    assert replay_quilt_seconds(calls) > 0
    assert not calls[0][1].parent.exists()  # the spool is removed after the replay
