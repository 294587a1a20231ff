"""Which Python runs geogan for the plugin, and is everything installed there?

No QGIS imports here, so the logic is shared with the headless installer.

geogan runs in its own process (see ``worker.py``). Its interpreter is the
first of these that has geogan and its dependencies:

1. ``GEOGAN_PYTHON`` (environment): an interpreter with geogan installed
   (when set, it is the only candidate: development, CI, conda users).
   ``GEOGAN_PYTHONPATH`` is added to that interpreter's path (a source tree).
2. the plugin setting ``geogan/python`` (set in the installer dialog);
3. the plugin-owned venv made by ``installer.py`` (``default_env_dir()``,
   or ``GEOGAN_QGIS_ENV``);
4. the Python QGIS itself embeds, when geogan was installed into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import runner
from .installer import default_env_dir, env_python

PLUGIN_DIR = Path(__file__).resolve().parent
INSTALLER = PLUGIN_DIR / "installer.py"


@dataclass(frozen=True)
class DepStatus:
    ok: bool
    python: str | None  # the interpreter that will run geogan (when ok)
    message: str  # one line: what is there, or exactly what to install
    versions: dict = field(default_factory=dict)
    tried: tuple = ()  # (python, what was wrong) for each candidate
    models: tuple = ()  # render models installed there: dicts with name, summary, license, gsd_m, style


def candidates(configured: str | None = None) -> list[tuple[str, str]]:
    """(python, where it came from), in the order they are tried."""
    env_py = os.environ.get("GEOGAN_PYTHON", "").strip()
    if env_py:
        return [(env_py, "GEOGAN_PYTHON")]
    out = []
    if configured:
        out.append((configured, "plugin setting geogan/python"))
    out.append((str(env_python(default_env_dir())), "plugin venv"))
    out.append((runner.base_python(), "QGIS's Python"))
    seen, unique = set(), []
    for py, src in out:
        if py not in seen:
            seen.add(py)
            unique.append((py, src))
    return unique


def install_command() -> str:
    return f'"{runner.base_python()}" "{INSTALLER}"'


def check(configured: str | None = None) -> DepStatus:
    """Find a Python with geogan and its dependencies (a quick check, no heavy imports)."""
    tried = []
    for python, source in candidates(configured):
        if not Path(python).exists():
            tried.append((python, f"{source}: not found"))
            continue
        info = runner.check_python(python)
        if info.get("ok"):
            versions = info.get("versions", {})
            runtime = (f"torch {versions['torch']}" if "torch" in versions else
                       f"onnxruntime {versions.get('onnxruntime', '?')}, no torch: texture banks and ONNX models")
            msg = f"geogan {info.get('geogan_version') or '?'} ({runtime}) runs in {python} [{source}]"
            return DepStatus(True, python, msg, versions, tuple(tried), tuple(info.get("models") or ()))
        if "error" in info:
            what = info["error"]
        else:
            what = "missing " + ", ".join(info.get("missing", []))
            if info.get("broken"):
                what += "; broken " + ", ".join(f"{k} ({v})" for k, v in info["broken"].items())
        tried.append((python, f"{source}: {what}"))
    found = [f"{py} ({what})" for py, what in tried if "not found" not in what] or \
            [f"{py} ({what})" for py, what in tried]
    msg = ("geogan's Python packages are not installed for QGIS: " + "; ".join(found) +
           f". Install them with: {install_command()} "
           "(or Plugins > geogan > Install dependencies...), "
           "or set GEOGAN_PYTHON to a Python that has geogan installed.")
    return DepStatus(False, None, msg, {}, tuple(tried))
