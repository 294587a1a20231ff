"""The plugin's dialogs in a real QGIS GUI (Xvfb): what a user sees before running anything.

``scripts/qgis_screenshots.py --only-dialogs`` (the script that makes docs/qgis_*.png) opens the
render dialog on the sample town with a selection and the project in UTM 35N, and the dependency
installer as a user without geogan sees it; it reports what the widgets show.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    not (Path("/usr/bin/qgis_process.bin").exists() and shutil.which("xvfb-run")),
    reason="needs QGIS and xvfb-run (scripts/install_qgis.sh)")


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    import os
    import sys

    out = tmp_path_factory.mktemp("shots")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(GEOGAN_PYTHON=sys.executable, GEOGAN_PYTHONPATH=str(REPO))
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1300x24", SYSTEM_PYTHON,
                           str(REPO / "scripts" / "qgis_screenshots.py"), "--out-dir", str(out), "--only-dialogs",
                           "--report", str(out / "report.json")], capture_output=True, text=True, timeout=300,
                          env=env, cwd=out)
    assert proc.returncode == 0 and (out / "report.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_render_dialog_shows_the_choices(shots):
    from geogan.zoo import list_models

    _, report = shots
    assert report["selected"] > 0 and report["input_selected_only"]  # the selection, ticked
    assert "EPSG:32635" in report["output_crs"]  # the project's CRS, not EPSG:3857
    assert report["overwrite"] is False
    names = [item.split()[0] for item in report["model_items"]]
    assert names[0] == "default" and report["model_items"][0] == "default  (CC BY-NC-SA 4.0)"
    assert sorted(names) == sorted(c["name"] for c in list_models() if "rgb" in (c.get("outputs") or []))
    assert "Licence: CC BY-NC-SA 4.0 (weights trained on LandCover.ai" in report["help"]


def test_render_dialog_shot_shows_every_parameter(shots):
    """qgis_render_dialog.png holds every parameter but the advanced ones (no scrolling), the newer ones
    included."""
    _, report = shots
    assert report["params_scroll_px"] == 0
    labels = " | ".join(report["param_labels"])
    for words in ("Class for every feature", "Height field", "Levels field", "Mask polygons",
                  "Pixel size (output CRS units", "Snap to pixel grid", "Model (see the help", "Write a 3D scene",
                  "Replace existing outputs", "Output folder"):
        assert words in labels, (words, labels)


def test_installer_dialog_says_what_install_does(shots):
    _, report = shots
    status = report["installer_status"]
    assert status.startswith("geogan is not installed for QGIS yet") and "download size" in status
    assert "Install dependencies" not in status  # no pointer to the dialog it is shown in
    assert "light without it" in status
    runtimes = report["installer_runtimes"]
    assert runtimes[0].startswith("PyTorch, automatic") and runtimes[-1].startswith("Light: no PyTorch")
    assert "530 MB installed instead of 1.3 GB" in runtimes[-1]  # the measured sizes (docs/onnx.md)
    args = report["installer_last_runtime_args"]
    assert args[-2:] == ["--runtime", "onnx"] and "--gpu" not in args


def test_screenshots_are_pictures(shots):
    from PIL import Image

    out, _ = shots
    for name, size in (("qgis_render_dialog.png", (1100, 1180)), ("qgis_render_models.png", (1100, 1180)),
                       ("qgis_installer_dialog.png", (820, 420))):
        with Image.open(out / name) as img:
            assert img.size == size
            pixels = np.asarray(img.convert("L"), dtype=float)
        assert pixels.std() > 10  # widgets and text, not an empty grab
