"""Install geogan and its dependencies into a plugin-owned venv.

Headless (no QGIS needed; use the same Python QGIS runs, e.g. /usr/bin/python3
on Debian/Ubuntu, or the OSGeo4W shell's python on Windows)::

    python3 /path/to/plugins/geogan_qgis/installer.py             # install (shows the size first)
    python3 /path/to/plugins/geogan_qgis/installer.py --plan      # only say what would be downloaded
    python3 /path/to/plugins/geogan_qgis/installer.py --check     # report what is installed
    python3 /path/to/plugins/geogan_qgis/installer.py --gpu cpu --geogan /path/to/geogan-wheel-or-src

In QGIS: Plugins > geogan > Install dependencies... runs this same script.

What it does, and why:

* makes a venv with ``python -m venv ENV`` (ENV defaults to
  ``~/.local/share/geogan/qgis-env``; Windows ``%LOCALAPPDATA%\\geogan\\qgis-env``;
  ``--env`` or ``GEOGAN_QGIS_ENV`` override). It lives outside the plugin
  folder (plugin upgrades keep it) and is *isolated*: QGIS's own
  site-packages are never written to, and old distro packages (attrs,
  pyproj, ...) do not leak into geogan's environment.
* chooses PyTorch (``plan.py``): CPU-only from PyTorch's CPU index unless an
  NVIDIA GPU is found (``--gpu auto|cpu|cuda``), since PyPI's Linux torch brings
  about 3 GB of CUDA libraries;
* resolves everything with pip's dry run and prints the download size before
  downloading anything (``--plan`` stops there);
* installs that exact torch first, then geogan with its ``torch`` extra
  (``geogan[torch]==`` the plugin's version unless ``--geogan`` names another
  wheel, source folder or version) with torch pinned, so pip cannot swap it;
* or, with ``--runtime onnx``, the light install: no PyTorch; it renders the
  default texture bank (numpy) and models exported with ``geogan export-onnx``
  (onnxruntime): plain geogan (PyTorch is an extra) and onnxruntime;
* checks that everything really imports.

QGIS never imports these packages: the plugin runs geogan in a separate
process with ENV's python, so QGIS's numpy/GDAL/PROJ cannot clash with the
wheels' own. No ``pip --target`` and no ``sys.path`` edits in QGIS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

if __package__:
    from . import plan as planning
    from . import runner
else:  # run as a script: python3 installer.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plan as planning  # type: ignore[no-redef]
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


def plugin_version() -> str | None:
    """The version in the plugin's metadata.txt (the geogan version it was built for)."""
    meta = Path(__file__).resolve().parent / "metadata.txt"
    try:
        text = meta.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"(?m)^version\s*=\s*(\S+)\s*$", text)
    return match.group(1) if match else None


def default_geogan_spec() -> str:
    """geogan at the plugin's own version, from the package index."""
    version = plugin_version()
    return f"geogan=={version}" if version else "geogan"


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


def _remove_venv(env_dir: Path, log) -> None:
    if not env_dir.exists():
        return
    if not (env_dir / "pyvenv.cfg").exists():
        raise InstallError(f"{env_dir} is not a venv; refusing to delete it")
    log(f"removing {env_dir}")
    shutil.rmtree(env_dir)


def _install_torch(pip: list[str], plan, pip_args: Sequence[str], log) -> None:
    """The exact torch the plan showed, from its index."""
    index = ["--index-url", plan.torch.index_url] if plan.torch.index_url else []
    spec = f"torch=={plan.torch_version}"
    if _run(pip + ["install", *pip_args, *index, spec], log) != 0:
        raise InstallError(f"pip could not install PyTorch ('{spec}'); see the log above")


def _install_geogan(pip: list[str], py: Path, geogan_spec: str, pip_args: Sequence[str], upgrade: bool,
                    log) -> None:
    """``geogan_spec`` (with the torch extra) with the installed torch pinned."""
    torch_version = _installed_version(py, "torch")
    if torch_version is None:
        raise InstallError("PyTorch did not install; see the log above")
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(f"torch=={torch_version}\n", encoding="utf-8")
        cmd = pip + ["install", *pip_args, "-c", str(constraints)] + (["--upgrade"] if upgrade else [])
        if _run(cmd + [geogan_spec], log) != 0:
            raise InstallError(f"pip could not install '{geogan_spec}'; see the log above "
                               "(give --geogan a geogan wheel or source folder)")


def _install_light(pip: list[str], plan, pip_args: Sequence[str], upgrade: bool, log) -> None:
    """The light install's plan: plain geogan (no torch extra) and onnxruntime, in one pip call."""
    up = ["--upgrade"] if upgrade else []
    if _run(pip + ["install", *pip_args, *up, *plan.requirements], log) != 0:
        raise InstallError(f"pip could not install {' and '.join(plan.requirements)}; see the log above "
                           "(give --geogan a geogan wheel or source folder)")


def _make_plan(pip: list[str], py: Path, runtime: str, geogan_spec: str, torch_spec: str,
               torch_index_url: str | None, gpu: str, pip_args: Sequence[str], upgrade: bool, log):
    """The plan for ``runtime``: torch (:func:`planning.make_plan`) or onnx (:func:`planning.make_light_plan`)."""
    if runtime not in RUNTIMES:
        raise InstallError(f"--runtime {runtime} is not one of {', '.join(RUNTIMES)}")
    try:
        if runtime == "onnx":
            return planning.make_light_plan(pip, geogan_spec, pip_args, _clean_env(), log)
        installed = None if upgrade else _installed_version(py, "torch")
        if installed:
            log(f"torch {installed} already installed")
        choice = planning.choose_torch(torch_spec, torch_index_url, gpu)
        return planning.make_plan(pip, choice, geogan_spec, installed, pip_args, _clean_env(), log)
    except planning.PlanError as exc:
        raise InstallError(str(exc)) from None


RUNTIMES = ("torch", "onnx")
TORCH_EXTRA = "torch"  # geogan's extra that requires PyTorch (geogan itself does not)


def install(env_dir: str | Path | None = None, base: str | None = None, *,
            geogan_spec: str | None = None, torch_spec: str = "torch",
            torch_index_url: str | None = None, gpu: str = "auto", pip_args: Sequence[str] = (),
            upgrade: bool = False, recreate: bool = False, plan_only: bool = False, runtime: str = "torch",
            log: Callable[[str], None] = print) -> dict:
    """Create/update the venv, show the download, and install torch + geogan into it.

    ``gpu``: "auto" (CUDA torch only if ``nvidia-smi`` finds a GPU), "cpu" or "cuda"; ``torch_index_url``
    overrides the choice of index. ``runtime`` "onnx": the light install, onnxruntime instead of torch.
    ``plan_only``: stop after showing what would be downloaded (the venv is created, nothing installed);
    returns ``{"plan": ...}``.

    Returns the full import check of the venv's python (``ok`` true on success).
    Raises ``InstallError`` with one line on failure.
    """
    env_dir = Path(env_dir) if env_dir else default_env_dir()
    base = base or runner.base_python()
    geogan_spec = geogan_spec or default_geogan_spec()
    if runtime != "onnx":  # the full install: geogan[torch], its torch installed first and pinned
        geogan_spec = planning.with_extra(geogan_spec, TORCH_EXTRA)
    if recreate:
        _remove_venv(env_dir, log)
    pip = _make_venv(env_dir, base, log)
    py = env_python(env_dir)
    plan = _make_plan(pip, py, runtime, geogan_spec, torch_spec, torch_index_url, gpu, pip_args, upgrade, log)
    log(("PyTorch: " if plan.runtime == "torch" else "") + plan.reason)
    log(plan.describe())
    if plan_only:
        return {"plan": plan.as_dict()}
    if plan.runtime == "onnx":
        _install_light(pip, plan, pip_args, upgrade, log)
    else:
        if plan.torch_version is not None:
            _install_torch(pip, plan, pip_args, log)
        _install_geogan(pip, py, geogan_spec, pip_args, upgrade, log)
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
        runtime = f"torch {v['torch']}" if "torch" in v else f"onnxruntime {v.get('onnxruntime')} (no torch)"
        return (f"geogan {info.get('geogan_version')} with {runtime}, "
                f"numpy {v.get('numpy')}, rasterio {v.get('rasterio')} in {info.get('python')}")
    parts = []
    if info.get("missing"):
        parts.append("missing " + ", ".join(info["missing"]))
    if info.get("broken"):
        parts.append("broken " + ", ".join(f"{k} ({v})" for k, v in info["broken"].items()))
    return "; ".join(parts) + f" in {info.get('python')}"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="installer.py",
                                 description="Install geogan for the geogan QGIS plugin into a plugin-owned venv "
                                             "(the download size is shown before anything is downloaded).")
    ap.add_argument("--env", help=f"venv folder (default: {default_env_dir()})")
    ap.add_argument("--python", help="base Python to make the venv from "
                                     f"(default: QGIS's Python, here {runner.base_python()})")
    ap.add_argument("--geogan", default=None,
                    help="pip spec for geogan: a wheel, a source folder or a version "
                         f"(default: {default_geogan_spec()})")
    ap.add_argument("--gpu", choices=planning.GPU_CHOICES, default="auto",
                    help="PyTorch build: auto (CUDA only if nvidia-smi finds an NVIDIA GPU), cpu or cuda")
    ap.add_argument("--runtime", choices=RUNTIMES, default="torch",
                    help="what runs the generator: torch (PyTorch, every model) or onnx (the light install: "
                         "onnxruntime, no PyTorch; the default texture bank and models exported with "
                         "geogan export-onnx)")
    ap.add_argument("--torch", default="torch", help="pip spec for PyTorch, installed first (default: torch)")
    ap.add_argument("--torch-index-url",
                    help=f"package index for PyTorch only (default: {planning.CPU_TORCH_INDEX} for CPU builds)")
    ap.add_argument("--pip-arg", action="append", default=[],
                    help="extra argument for every pip install (repeatable)")
    ap.add_argument("--upgrade", action="store_true", help="upgrade torch and geogan")
    ap.add_argument("--recreate", action="store_true", help="delete and rebuild the venv")
    ap.add_argument("--plan", action="store_true",
                    help="only show what would be downloaded and its size (creates the empty venv)")
    ap.add_argument("--check", action="store_true", help="only report what is installed")
    ap.add_argument("--json", action="store_true", help="print the result (check or plan) as JSON, last line")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env_dir = Path(args.env).expanduser() if args.env else default_env_dir()
    if args.check:
        info = runner.check_python(str(env_python(env_dir)), full_import=True, timeout_s=300)
        print(json.dumps(info) if args.json else ("OK: " if info.get("ok") else "NOT READY: ")
              + _describe(info))
        return 0 if info.get("ok") else 1
    try:
        info = install(env_dir, args.python, geogan_spec=args.geogan, torch_spec=args.torch,
                       torch_index_url=args.torch_index_url, gpu=args.gpu, pip_args=args.pip_arg,
                       upgrade=args.upgrade, recreate=args.recreate, plan_only=args.plan, runtime=args.runtime,
                       log=lambda s: print(s, flush=True))
    except InstallError as exc:
        print(f"geogan installer: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
