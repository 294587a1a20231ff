"""The GPU benchmark scripts run here in their CPU self-check mode, so that a session lent a GPU finds them
working (device time is scarce): the same code paths on tiny inputs, JSON written with the keys the README
quotes. Their numbers here mean nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path, *args: str) -> dict:
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke-cpu", "--json", str(out), *args],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())


def test_gpu_bench_smoke(tmp_path):
    res = _run("gpu_bench.py", tmp_path / "g.json")
    assert set(res["ceiling_flop_s"]) == {"fp32", "tf32", "bf16", "fp16"}
    model = res["models"][0]
    assert model["model"] == "fast" and model["flops_per_tile"] > 1e8
    assert set(model["accuracy_vs_fp64"]) == {"fp32", "tf32", "bf16-autocast", "fp16-autocast", "bf16", "fp16"}
    assert model["accuracy_vs_fp64"]["fp32"]["rel_err"] < 1e-5  # the float64 reference is the same function
    assert all(r["mp_s"] > 0 for r in model["precision_layout"] + model["batch_sweep"] + model["run_batch"])
    assert res["default_vs_pix2pix_speedup"] > 0


def test_gpu_render_smoke(tmp_path):
    res = _run("gpu_render.py", tmp_path / "r.json")
    assert [r["area_km2"] for r in res["runs"]] == [0.05, 0.1]
    assert all(r["tiles"] > 0 and r["e2e_mp_s"] > 0 and r["generator_mp_s"] > 0 for r in res["runs"])
    assert res["gpu_vs_cpu"]["classes_equal"] and res["gpu_vs_cpu"]["aerial_max_diff_levels"] == 0  # CPU twice
