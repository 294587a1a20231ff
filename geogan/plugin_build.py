"""Build the QGIS plugin zip (``geogan plugin build --out DIR``).

The plugin's sources are ``qgis_plugin/geogan_qgis/`` and the top-level
``metadata.txt`` of a geogan source checkout. The zip holds one folder,
``geogan_qgis/`` (not ``geogan/``: QGIS imports a plugin by its folder name,
and a plugin called ``geogan`` would hide the geogan library), with the
plugin package and ``metadata.txt`` whose ``version`` is ``geogan.__version__``.
The zip is reproducible: sorted entries, fixed timestamps.

With ``include_wheel=True`` the zip also carries a geogan wheel
(``geogan_qgis/wheels/``) built from the checkout: the plugin's installer
installs it by default, so the zip alone sets everything up (geogan is not
on PyPI).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import __version__
from .errors import InputError, OutputError

PLUGIN_PACKAGE = "geogan_qgis"
ZIP_NAME = "geogan.zip"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", "wheels"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}


def source_root() -> Path:
    """The geogan source checkout holding ``qgis_plugin/`` and ``metadata.txt``."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "qgis_plugin" / PLUGIN_PACKAGE / "__init__.py").is_file():
        raise InputError(f"the QGIS plugin sources are not next to this geogan ({root}); "
                         "build the plugin from a geogan source checkout")
    return root


def metadata_with_version(text: str, version: str = __version__) -> str:
    """``metadata.txt`` text with its ``version=`` line set to ``version``."""
    new, count = re.subn(r"(?m)^version\s*=.*$", f"version={version}", text)
    if count != 1:
        raise InputError("metadata.txt must have exactly one 'version=' line in [general]")
    return new


def metadata_version(path: str | Path | None = None) -> str:
    """The version written in ``metadata.txt``."""
    path = Path(path) if path else source_root() / "metadata.txt"
    match = re.search(r"(?m)^version\s*=\s*(\S+)\s*$", path.read_text(encoding="utf-8"))
    if not match:
        raise InputError(f"{path} has no 'version=' line; add 'version={__version__}' to [general]")
    return match.group(1)


def sync_metadata(path: str | Path | None = None, check: bool = False) -> bool:
    """Set ``metadata.txt``'s version to ``geogan.__version__``.

    With ``check=True`` nothing is written. Returns True when the file was
    (or, with ``check``, already is) in sync.
    """
    path = Path(path) if path else source_root() / "metadata.txt"
    text = path.read_text(encoding="utf-8")
    new = metadata_with_version(text)
    if new == text:
        return True
    if check:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def _plugin_files(package_dir: Path) -> list[Path]:
    files = []
    for p in sorted(package_dir.rglob("*")):
        rel = p.relative_to(package_dir)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix not in _SKIP_SUFFIXES and p.name != "metadata.txt":
            files.append(p)
    return files


def build_wheel(root: str | Path, out_dir: str | Path) -> Path:
    """Build geogan's wheel from a copy of the checkout (pip's in-tree build would litter it)."""
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="geogan_wheel_") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "geogan", src / "geogan",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE.txt"):
            if (root / name).is_file():
                shutil.copy(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(src)]
        if importlib.util.find_spec("setuptools") is not None:
            cmd.insert(4, "--no-build-isolation")  # offline when setuptools is already there
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1577836800"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"cannot build the geogan wheel from {root}: {last}")
    wheels = sorted(out_dir.glob(f"geogan-{__version__}-*.whl"))
    if not wheels:
        raise InputError(f"pip built no geogan-{__version__} wheel from {root}")
    return wheels[-1]


def build_plugin_zip(out_dir: str | Path, root: str | Path | None = None,
                     include_wheel: bool = False) -> Path:
    """Write ``out_dir/geogan.zip``, installable with QGIS's "Install from ZIP".

    Parameters
    ----------
    out_dir : folder for the zip (created if missing; an existing zip is replaced).
    root : geogan source checkout (default: the one this module lives in).
    include_wheel : also put a geogan wheel into the zip (``geogan_qgis/wheels/``),
        which the plugin's installer then installs; needs pip (a few seconds).

    Returns
    -------
    Path of the zip.

    Raises
    ------
    InputError
        The plugin sources or ``metadata.txt`` are missing or malformed.
    OutputError
        ``out_dir`` cannot be written.
    """
    root = Path(root) if root else source_root()
    package_dir = root / "qgis_plugin" / PLUGIN_PACKAGE
    meta_path = root / "metadata.txt"
    if not (package_dir / "__init__.py").is_file() or not meta_path.is_file():
        raise InputError(f"{root} lacks qgis_plugin/{PLUGIN_PACKAGE}/ or metadata.txt; "
                         "pass a geogan source checkout")
    metadata = metadata_with_version(meta_path.read_text(encoding="utf-8"))
    extra: list[tuple[str, bytes]] = []
    if include_wheel:
        with tempfile.TemporaryDirectory(prefix="geogan_wheel_out_") as wdir:
            wheel = build_wheel(root, wdir)
            extra.append((f"{PLUGIN_PACKAGE}/wheels/{wheel.name}", wheel.read_bytes()))
    out_dir = Path(out_dir)
    zip_path = out_dir / ZIP_NAME
    tmp = out_dir / (ZIP_NAME + ".tmp")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            entries = [(f"{PLUGIN_PACKAGE}/{p.relative_to(package_dir).as_posix()}", p.read_bytes())
                       for p in _plugin_files(package_dir)]
            entries.append((f"{PLUGIN_PACKAGE}/metadata.txt", metadata.encode("utf-8")))
            if (root / "LICENSE").is_file():  # the QGIS plugin repository asks for one
                entries.append((f"{PLUGIN_PACKAGE}/LICENSE", (root / "LICENSE").read_bytes()))
            entries += extra
            for arcname, data in sorted(entries):
                info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        tmp.replace(zip_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {zip_path}: {exc.strerror or exc}; "
                          "choose a writable --out folder") from None
    return zip_path


def register(app) -> None:
    """Add ``geogan plugin build --out DIR`` to the CLI (called by ``geogan.cli``)."""
    import typer

    plugin_app = typer.Typer(help="The geogan QGIS plugin.", no_args_is_help=True)

    @plugin_app.command("build")
    def build(out: Path = typer.Option(Path("dist"), "--out",
                                       help="Folder for geogan.zip (QGIS: Plugins > Install from ZIP)."),
              with_wheel: bool = typer.Option(True, "--with-wheel/--no-wheel",
                                              help="Bundle a geogan wheel for the plugin's installer.")
              ) -> None:
        """Build the QGIS plugin zip, its metadata version set to geogan's."""
        from .cli import run_guarded

        path = run_guarded(lambda: build_plugin_zip(out, include_wheel=with_wheel))
        typer.echo(f"wrote {path}")

    app.add_typer(plugin_app, name="plugin")
