"""Build the QGIS plugin zip (``geogan plugin build --out DIR``).

The plugin's sources are the package ``geogan_qgis``: ``qgis_plugin/geogan_qgis/``
in a source checkout, and the same folder installed beside ``geogan`` by its wheel
(pyproject's ``packages.find`` looks in ``qgis_plugin/`` too), so an installed
geogan builds the same zip as a checkout. ``metadata.txt`` and ``LICENSE`` live
in that folder. The zip holds one folder, ``geogan_qgis/`` (not ``geogan/``:
QGIS imports a plugin by its folder name, and a plugin called ``geogan`` would
hide the geogan library), whose ``metadata.txt`` carries ``version`` =
``geogan.__version__``.

The zip is what the QGIS plugin repository accepts: sources only (no wheel, no
compiled files; the plugin installs geogan and PyTorch itself on first use, see
``installer.py``), a LICENSE, and metadata with homepage, tracker, repository,
tags, ``qgisMinimumVersion`` and an icon. It is reproducible: sorted entries,
fixed timestamps.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import zipfile
from pathlib import Path

from . import __version__
from .errors import InputError, OutputError

PLUGIN_PACKAGE = "geogan_qgis"
ZIP_NAME = "geogan.zip"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", "wheels"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
#: what the QGIS plugin repository refuses inside a plugin zip
BINARY_SUFFIXES = (".whl", ".so", ".pyd", ".dll", ".dylib", ".exe", ".pyc", ".pyo", ".egg", ".zip", ".tar.gz")
#: metadata.txt keys the plugin repository requires or this project promises
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "homepage", "tags", "icon")


def plugin_dir() -> Path:
    """The plugin's source folder: this checkout's ``qgis_plugin/geogan_qgis``, else the installed package."""
    checkout = Path(__file__).resolve().parent.parent / "qgis_plugin" / PLUGIN_PACKAGE
    if (checkout / "__init__.py").is_file():
        return checkout
    spec = importlib.util.find_spec(PLUGIN_PACKAGE)
    if spec is not None and spec.origin and (Path(spec.origin).parent / "metadata.txt").is_file():
        return Path(spec.origin).parent
    raise InputError(f"this geogan has no QGIS plugin sources (no '{PLUGIN_PACKAGE}' package beside it); "
                     "reinstall geogan (pip install --force-reinstall geogan) or build from a source checkout")


def metadata_with_version(text: str, version: str = __version__) -> str:
    """``metadata.txt`` text with its ``version=`` line set to ``version``."""
    new, count = re.subn(r"(?m)^version\s*=.*$", f"version={version}", text)
    if count != 1:
        raise InputError("metadata.txt must have exactly one 'version=' line in [general]")
    return new


def metadata_version(path: str | Path | None = None) -> str:
    """The version written in ``metadata.txt``."""
    path = Path(path) if path else plugin_dir() / "metadata.txt"
    match = re.search(r"(?m)^version\s*=\s*(\S+)\s*$", path.read_text(encoding="utf-8"))
    if not match:
        raise InputError(f"{path} has no 'version=' line; add 'version={__version__}' to [general]")
    return match.group(1)


def sync_metadata(path: str | Path | None = None, check: bool = False) -> bool:
    """Set ``metadata.txt``'s version to ``geogan.__version__``.

    With ``check=True`` nothing is written. Returns True when the file was
    (or, with ``check``, already is) in sync.
    """
    path = Path(path) if path else plugin_dir() / "metadata.txt"
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


def repository_problems(names: list[str], metadata: str) -> list[str]:
    """What the QGIS plugin repository would refuse in a zip with these entries and this metadata.txt."""
    problems = [f"binary file {n}" for n in names if n.lower().endswith(BINARY_SUFFIXES)]
    if f"{PLUGIN_PACKAGE}/LICENSE" not in names:
        problems.append("no LICENSE file")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read_string(metadata)
    general = parser["general"] if parser.has_section("general") else {}
    problems += [f"metadata.txt lacks '{key}'" for key in REQUIRED_METADATA if not str(general.get(key, "")).strip()]
    icon = str(general.get("icon", "")).strip()
    if icon and f"{PLUGIN_PACKAGE}/{icon}" not in names:
        problems.append(f"the icon '{icon}' named in metadata.txt is not in the zip")
    return problems


def _entries(package_dir: Path) -> list[tuple[str, bytes]]:
    meta_path = package_dir / "metadata.txt"
    if not (package_dir / "__init__.py").is_file() or not meta_path.is_file():
        raise InputError(f"{package_dir} lacks __init__.py or metadata.txt; pass the plugin's source folder")
    metadata = metadata_with_version(meta_path.read_text(encoding="utf-8"))
    entries = [(f"{PLUGIN_PACKAGE}/{p.relative_to(package_dir).as_posix()}", p.read_bytes())
               for p in _plugin_files(package_dir)]
    entries.append((f"{PLUGIN_PACKAGE}/metadata.txt", metadata.encode("utf-8")))
    problems = repository_problems([name for name, _ in entries], metadata)
    if problems:
        raise InputError(f"the plugin in {package_dir} is not fit for the QGIS plugin repository: "
                         f"{'; '.join(problems)}; fix the plugin folder")
    return sorted(entries)


def build_plugin_zip(out_dir: str | Path, package_dir: str | Path | None = None) -> Path:
    """Write ``out_dir/geogan.zip``, installable with QGIS's "Install from ZIP" and fit for the plugin repository.

    Parameters
    ----------
    out_dir : folder for the zip (created if missing; an existing zip is replaced).
    package_dir : the plugin's source folder (default: :func:`plugin_dir`).

    Returns
    -------
    Path of the zip.

    Raises
    ------
    InputError
        The plugin sources or ``metadata.txt`` are missing or malformed, or the repository would refuse them.
    OutputError
        ``out_dir`` cannot be written.
    """
    entries = _entries(Path(package_dir) if package_dir else plugin_dir())
    out_dir = Path(out_dir)
    zip_path = out_dir / ZIP_NAME
    tmp = out_dir / (ZIP_NAME + ".tmp")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, data in entries:
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
                                       help="Folder for geogan.zip (QGIS: Plugins > Manage and Install "
                                            "Plugins > Install from ZIP).")) -> None:
        """Build the QGIS plugin zip (sources only; the plugin installs geogan itself), its version set to geogan's."""
        from .cli import run_guarded

        path = run_guarded(lambda: build_plugin_zip(out))
        typer.echo(f"wrote {path}")

    app.add_typer(plugin_app, name="plugin")
