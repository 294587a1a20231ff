"""Install geogan and its dependencies into a plugin-owned venv.

Headless (no QGIS needed; use the same Python QGIS runs, e.g. /usr/bin/python3
on Debian/Ubuntu, or the OSGeo4W shell's python on Windows)::

    python3 /path/to/plugins/geogan_qgis/installer.py             # install
    python3 /path/to/plugins/geogan_qgis/installer.py --check     # report only
    python3 /path/to/plugins/geogan_qgis/installer.py --torch "torch==2.13.0" \
        --geogan /path/to/geogan-src-or-wheel

In QGIS: Plugins > geogan > Install dependencies... runs this same script.

What it does, and why:

* makes a venv with ``python -m venv ENV`` (ENV defaults to
  ``~/.local/share/geogan/qgis-env``; Windows ``%LOCALAPPDATA%\\geogan\\qgis-env``;
  ``--env`` or ``GEOGAN_QGIS_ENV`` override). It lives outside the plugin
  folder (plugin upgrades keep it) and is *isolated*: QGIS's own
  site-packages are never written to, and old distro packages (attrs,
  pyproj, ...) do not leak into geogan's environment.
* installs geogan from the wheel bundled in the plugin zip (``wheels/``)
  unless ``--geogan`` names another wheel, source folder or version;
* installs PyTorch first, by itself (``--torch``, default ``torch``; give a
  CPU build spec or ``--torch-index-url`` to avoid a multi-GB CUDA build),
  then geogan with torch pinned to what was installed, so pip cannot swap it.
* checks that everything really imports.

QGIS never imports these packages: the plugin runs geogan in a separate
process with ENV's python, so QGIS's numpy/GDAL/PROJ cannot clash with the
wheels' own. No ``pip --target`` and no ``sys.path`` edits in QGIS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

if __package__:
    from . import runner
else:  # run as a script: python3 installer.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import runner  # type: ignore[no-redef]


class InstallError(Exception):
    """An install step failed; the message is one line saying what to do."""


def default_env_dir() -> Path:
    """The plugin-owned venv: outside the plugin folder, so plugin upgrades keep it."""
    override = os.environ.get("GEOGAN_QGIS_ENV", "").strip()
    if override:
        return Path(override).expanduser()
    if os.name == "nt":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return root / "geogan" / "qgis-env"


def env_python(env_dir: Path) -> Path:
    return Path(env_dir) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def bundled_wheel() -> Path | None:
    """The geogan wheel shipped in the plugin zip (``wheels/``), if any."""
    wheels = sorted((Path(__file__).resolve().parent / "wheels").glob("geogan-*.whl"))
    return wheels[-1] if wheels else None


def default_geogan_spec() -> str:
    """The bundled wheel when the zip has one, else geogan from the package index."""
    wheel = bundled_wheel()
    return str(wheel) if wheel else "geogan"


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in runner._STRIP_ENV}
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def _run(cmd: Sequence[str], log: Callable[[str], None]) -> int:
    log("$ " + " ".join(str(c) for c in cmd))
    kw = {}
    if os.name == "nt":
        kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                encoding="utf-8", errors="replace", env=_clean_env(), **kw)
    except OSError as exc:
        raise InstallError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            log(line)
    return proc.wait()


def _make_venv(env_dir: Path, base: str, log) -> list[str]:
    """Create the venv; return the pip command prefix that installs into it."""
    py = env_python(env_dir)
    if py.exists():
        log(f"using existing venv {env_dir}")
        if _run([str(py), "-m", "pip", "--version"], log) == 0:
            return [str(py), "-m", "pip"]
        if _run([base, "-m", "pip", "--python", str(py), "--version"], log) == 0:
            return [base, "-m", "pip", "--python", str(py)]
        raise InstallError(f"the venv {env_dir} has no pip and {base} has none to lend; "
                           "run again with --recreate")
    if env_dir.exists() and any(env_dir.iterdir()) and not (env_dir / "pyvenv.cfg").exists():
        raise InstallError(f"{env_dir} exists and is not a venv; choose another --env or empty it")
    log(f"creating venv {env_dir} from {base}")
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    if _run([base, "-m", "venv", str(env_dir)], log) == 0 and py.exists():
        return [str(py), "-m", "pip"]
    # Debian/Ubuntu without python3-venv have no ensurepip: make the venv
    # without pip and drive it with the base Python's pip (pip >= 22.3).
    log("venv with pip failed; trying a venv without pip, driven by the base Python's pip")
    shutil.rmtree(env_dir, ignore_errors=True)
    if (_run([base, "-m", "venv", "--without-pip", str(env_dir)], log) == 0 and py.exists()
            and _run([base, "-m", "pip", "--python", str(py), "--version"], log) == 0):
        return [base, "-m", "pip", "--python", str(py)]
    shutil.rmtree(env_dir, ignore_errors=True)
    raise InstallError(f"{base} cannot create a venv: install Python's venv module "
                       "(Debian/Ubuntu: sudo apt install python3-venv python3-pip) and run again")


def _installed_version(py: Path, dist: str) -> str | None:
    code = ("import importlib.metadata as m, sys\n"
            f"try: print(m.version({dist!r}))\nexcept Exception: sys.exit(1)")
    try:
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True,
                             env=_clean_env(), timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def install(env_dir: str | Path | None = None, base: str | None = None, *,
            geogan_spec: str | None = None, torch_spec: str = "torch",
            torch_index_url: str | None = None, pip_args: Sequence[str] = (),
            upgrade: bool = False, recreate: bool = False,
            log: Callable[[str], None] = print) -> dict:
    """Create/update the venv and install torch + geogan into it.

    Returns the full import check of the venv's python (``ok`` true on success).
    Raises ``InstallError`` with one line on failure.
    """
    env_dir = Path(env_dir) if env_dir else default_env_dir()
    base = base or runner.base_python()
    geogan_spec = geogan_spec or default_geogan_spec()
    if recreate and env_dir.exists():
        if not (env_dir / "pyvenv.cfg").exists():
            raise InstallError(f"{env_dir} is not a venv; refusing to delete it")
        log(f"removing {env_dir}")
        shutil.rmtree(env_dir)
    pip = _make_venv(env_dir, base, log)
    py = env_python(env_dir)
    extra = list(pip_args)

    torch_version = _installed_version(py, "torch")
    if torch_version is None or upgrade:
        cmd = pip + ["install", *extra]
        if torch_index_url:
            cmd += ["--index-url", torch_index_url]
        cmd.append(torch_spec)
        if _run(cmd, log) != 0:
            raise InstallError(f"pip could not install PyTorch ('{torch_spec}'); see the log above")
        torch_version = _installed_version(py, "torch")
    else:
        log(f"torch {torch_version} already installed")
    if torch_version is None:
        raise InstallError("PyTorch did not install; see the log above")

    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(f"torch=={torch_version}\n", encoding="utf-8")
        cmd = pip + ["install", *extra, "-c", str(constraints)]
        if upgrade:
            cmd.append("--upgrade")
        cmd.append(geogan_spec)
        if _run(cmd, log) != 0:
            raise InstallError(f"pip could not install '{geogan_spec}'; see the log above "
                               "(give --geogan a geogan wheel or source folder)")

    info = runner.check_python(str(py), full_import=True, timeout_s=300)
    if not info.get("ok"):
        raise InstallError(f"installed, but the check failed: {_describe(info)}")
    log(f"OK: {_describe(info)}")
    return info


def _describe(info: dict) -> str:
    if info.get("error"):
        return info["error"]
    if info.get("ok"):
        v = info.get("versions", {})
        return (f"geogan {info.get('geogan_version')} with torch {v.get('torch')}, "
                f"numpy {v.get('numpy')}, rasterio {v.get('rasterio')} in {info.get('python')}")
    parts = []
    if info.get("missing"):
        parts.append("missing " + ", ".join(info["missing"]))
    if info.get("broken"):
        parts.append("broken " + ", ".join(f"{k} ({v})" for k, v in info["broken"].items()))
    return "; ".join(parts) + f" in {info.get('python')}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="installer.py",
                                 description="Install geogan for the geogan QGIS plugin "
                                             "into a plugin-owned venv.")
    ap.add_argument("--env", help=f"venv folder (default: {default_env_dir()})")
    ap.add_argument("--python", help="base Python to make the venv from "
                                     f"(default: QGIS's Python, here {runner.base_python()})")
    ap.add_argument("--geogan", default=None,
                    help="pip spec for geogan: a wheel, a source folder or a version "
                         f"(default: {default_geogan_spec()})")
    ap.add_argument("--torch", default="torch",
                    help="pip spec for PyTorch, installed first (default: torch)")
    ap.add_argument("--torch-index-url",
                    help="package index for PyTorch only, e.g. PyTorch's CPU wheel index")
    ap.add_argument("--pip-arg", action="append", default=[],
                    help="extra argument for every pip install (repeatable)")
    ap.add_argument("--upgrade", action="store_true", help="upgrade torch and geogan")
    ap.add_argument("--recreate", action="store_true", help="delete and rebuild the venv")
    ap.add_argument("--check", action="store_true", help="only report what is installed")
    ap.add_argument("--json", action="store_true", help="print the final check as JSON")
    args = ap.parse_args(argv)

    env_dir = Path(args.env).expanduser() if args.env else default_env_dir()
    if args.check:
        info = runner.check_python(str(env_python(env_dir)), full_import=True, timeout_s=300)
        print(json.dumps(info) if args.json else ("OK: " if info.get("ok") else "NOT READY: ")
              + _describe(info))
        return 0 if info.get("ok") else 1
    try:
        info = install(env_dir, args.python, geogan_spec=args.geogan, torch_spec=args.torch,
                       torch_index_url=args.torch_index_url, pip_args=args.pip_arg,
                       upgrade=args.upgrade, recreate=args.recreate,
                       log=lambda s: print(s, flush=True))
    except InstallError as exc:
        print(f"geogan installer: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
