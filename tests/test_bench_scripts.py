"""benchmarks/ab_render.py runs end to end (one tiny round against HEAD): the numbers mean nothing here."""

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
                        "--warm", "1", "--km2", "0.05", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    base, new = res["rounds"]["base"][0], res["rounds"]["new"][0]
    assert "geogan-ab-" in base["tree"] and Path(new["tree"]).resolve().is_relative_to(ROOT)  # each tree imported
    for r in (base, new):
        assert r["cold_s"] > 0 and r["warm_s"] > 0 and 0 < r["warm_ratio"] and r["generator_s"] > 0
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "geogan-ab-" not in listed  # the temporary worktree is removed again
