"""The ``geogan`` command line: a thin front over :mod:`geogan.api`.

Errors: one line on stderr, exit code 2 for bad input/usage and 1 for
runtime failures, 130 for Ctrl-C and 143 for SIGTERM (handled alike: temporary
files removed, a true line on what was written); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from . import __version__
from .errors import GeoganError, InputError
from .optional import is_missing_torch, require_torch, torch_missing_message
from .outdir import committed_paths, forget_committed

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Synthetic georeferenced aerial imagery and heights from OpenStreetMap.")
err = Console(stderr=True)
_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"geogan {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output; tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("geogan")
    logger.handlers[:] = [RichHandler(console=err, show_time=False, show_path=False, markup=False)]
    logger.setLevel(level)
    logger.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup runs."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (main thread only), SIGTERM raises :class:`Terminated`; the old handler after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _interrupted(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The true one-line message and exit code for Ctrl-C (130) or SIGTERM (143)."""
    what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
    written = committed_paths()
    if written:
        return f"{what} after writing {', '.join(map(str, written))} (complete); nothing else was written", code
    return f"{what}; no output was written", code


def run_guarded(fn: Callable[[], object]) -> object:
    """Run ``fn``; turn geogan errors into one stderr line and an exit code (SIGTERM handled like Ctrl-C)."""
    forget_committed()
    try:
        with _sigterm_as_interrupt():
            return fn()
    except GeoganError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        message, code = _interrupted(exc)
        err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug or an environment failure: still one line unless --verbose
        if _state["verbose"]:
            traceback.print_exc()
        if is_missing_torch(exc):  # PyTorch is optional (the 'torch' extra): name the fix, not the import
            err.print(f"error: {torch_missing_message('this command')}", markup=False, highlight=False,
                      soft_wrap=True)
            raise typer.Exit(InputError.exit_code) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(f"error: {type(exc).__name__}: {first} (rerun with --verbose for details)", markup=False,
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def needs_torch(command: str) -> None:
    """For a command that always runs PyTorch (training, evaluation): without it, stop here with one line
    naming the fix (exit 2), before the command imports anything of PyTorch's."""
    run_guarded(lambda: require_torch(f"geogan {command}"))


def parse_bbox(text: Optional[str]) -> Optional[tuple[float, float, float, float]]:
    if text is None:
        return None
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"--bbox '{text}' must be four numbers xmin,ymin,xmax,ymax") from None
    if len(values) != 4:
        raise InputError(f"--bbox '{text}' must be four numbers xmin,ymin,xmax,ymax; got {len(values)}")
    return values  # type: ignore[return-value]


def _fetch(url, cache_dir, no_cache):
    from .api import OsmFetch

    return OsmFetch(url=url, cache_dir=cache_dir, use_cache=not no_cache)


class _Progress:
    """A rich progress bar fed by the API's progress(fraction, message) callback."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.enabled = enabled
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
        self.task = None

    def __enter__(self):
        if self.enabled:
            self.bar.start()
            self.task = self.bar.add_task("rendering", total=1.0)
        return self

    def __call__(self, fraction: float | None, message: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=fraction, description=message)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


OSM_HELP = "Vector source(s): OSM .osm/.osm.pbf, GPKG, GeoJSON or Shapefile. Repeat for several."
BBOX_HELP = "Area as xmin,ymin,xmax,ymax in --bbox-crs (default: the data's extent)."
FILL_HELP = ("Outside the input data's coverage (an OSM file's bounds, a layer's extent): nodata (transparent "
             "aerial, nodata heights and classes) or background (drawn as if mapped). Either way a warning says "
             "how much of the area is outside.")


@app.command()
def render(
    osm: Optional[list[Path]] = typer.Option(None, "--osm", help=OSM_HELP),
    sketch: Optional[Path] = typer.Option(None, help="A PNG painted with the class palette, stretched over --bbox."),
    style_ref: Optional[Path] = typer.Option(None, help="Reference aerial image whose look the render takes "
                                                         "(models trained with --style-encoder)."),
    style_colours: bool = typer.Option(False, "--style-colours/--no-style-colours",
                                       help="With --style-ref: move each class's colours toward the photo's."),
    bbox: Optional[str] = typer.Option(None, help=BBOX_HELP),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    crs: str = typer.Option("EPSG:3857", help="Output CRS."),
    gsd: Optional[float] = typer.Option(None, help="Output pixel size in ground metres (default: the model's); "
                                                   "the grid covers the bbox exactly (pixels may be off square)."),
    res: Optional[float] = typer.Option(None, help="Output pixel size in output-CRS units, square (like gdalwarp "
                                                   "-tr; instead of --gsd)."),
    tap: bool = typer.Option(False, "--tap", help="Snap the grid's bounds outwards to multiples of the pixel size "
                                                  "(like gdalwarp -tap): renders of neighbouring areas line up."),
    out: Path = typer.Option(Path("out"), help="Output directory (aerial.tif, height.tif, classes.tif)."),
    model: str = typer.Option("default", help="Model name (see 'geogan models') or path to a model .json."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    tile_size: Optional[int] = typer.Option(None, help="Tile size in model pixels (the model runs at its native "
                                                       "GSD; default: its training tile, 256)."),
    overlap: Optional[int] = typer.Option(None, help="Tile overlap in model pixels, blended (default: a quarter "
                                                     "of the tile)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical output."),
    rules: Optional[Path] = typer.Option(None, help="Class rules TOML (default: built-in schema)."),
    class_field: Optional[str] = typer.Option(None, help="Attribute holding a class name/id (non-OSM layers)."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Give every feature of non-OSM layers this "
                                             "class (e.g. building), instead of --class-field."),
    height_field: Optional[str] = typer.Option(None, help="Attribute with measured building heights in metres "
                                               "(default: a field named 'height' in any letter case)."),
    levels_field: Optional[str] = typer.Option(None, help="Attribute with building storeys (non-OSM layers)."),
    all_sea: bool = typer.Option(False, "--all-sea", help="An area that no natural=coastline crosses is sea "
                                                          "(default: land)."),
    mesh: bool = typer.Option(False, "--mesh", help="Also write scene.glb: one closed solid per building on a "
                                                    "simplified terrain, in a local east-north-up frame."),
    model_runtime: str = typer.Option("auto", "--runtime", metavar="[auto|torch|onnx]",
                                help="Run the generator with torch, or with onnxruntime for a model exported by "
                                     "'geogan export-onnx' (CPU, fp32)."),
    overpass_url: Optional[str] = typer.Option(None, help="Overpass API endpoint when no --osm is given "
                                               "(default $GEOGAN_OVERPASS_URL, else the public instance)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache for downloaded/clipped OSM (default ~/.cache/geogan)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the OSM cache (still writes it)."),
    dem: Optional[Path] = typer.Option(None, help="DEM raster (any CRS) for terrain heights; else flat ground at 0."),
    hillshade: bool = typer.Option(False, help="Also write hillshade.tif (light from the north-west)."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
    force: bool = typer.Option(False, help="Run even if the estimate is over a day."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (tcp://host:8786) to render on."),
    workers: Optional[int] = typer.Option(None, help="Render on a local Dask cluster of N worker processes."),
    blocks_out: Optional[Path] = typer.Option(None, help="With --workers/--scheduler: a folder every worker can "
                                              "write; the workers write their blocks' COGs there and --out gets "
                                              "only the index (aerial.vrt, height.vrt, classes.vrt, stac.json)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the generator (with CUDA graphs on a "
                                                          "GPU; pays off on large areas; no gain on CPU)."),
    compress: str = typer.Option("deflate", "--compress", metavar="[deflate|zstd|jpeg]",
                                 help="COG compression: deflate (lossless, read everywhere), zstd (lossless, "
                                      "faster; readers need GDAL >= 2.3) or jpeg (aerial and hillshade lossy "
                                      "JPEG, quality 90; heights and classes stay lossless)."),
    fill: str = typer.Option("nodata", "--fill", metavar="[nodata|background]", help=FILL_HELP),
    precision: str = typer.Option("auto", metavar="[auto|fp32|bf16|fp16]",
                                  help="The generator's arithmetic: auto (fp16 on a CUDA GPU, fp32 on CPU), "
                                       "fp32, bf16 (about 1.4x faster on CPUs with AVX512-BF16/AMX, within "
                                       "about 1 grey level) or fp16 (GPU only)."),
) -> None:
    """Render aerial.tif, height.tif and classes.tif for an area (default: the bundled sample town)."""
    from .api import run_request
    from .settings import (AreaSettings, HeightSettings, ModelSettings, OutputSettings, RenderRequest, RenderSettings,
                           RuntimeSettings, SourceSettings, TilingSettings)

    def request(bar: _Progress) -> RenderRequest:  # the options as the render core's settings values
        area_bbox = parse_bbox(bbox)
        output = OutputSettings(out, overwrite, compress, mesh=mesh, fill=fill, blocks_out=blocks_out)
        area = AreaSettings(area_bbox, bbox_crs, crs, gsd, res, tap)
        runtime = RuntimeSettings(seed, force, scheduler, workers, progress=bar)
        settings = RenderSettings(TilingSettings(tile_size, overlap), HeightSettings(dem, None, hillshade), runtime)
        sources = SourceSettings(osm or None, sketch, class_field, rules, _fetch(overpass_url, cache_dir, no_cache),
                                 _source_options(class_name, height_field, levels_field, all_sea))
        return RenderRequest(sources, area, ModelSettings(model, device, precision, compile, style_ref, model_runtime,
                                                         style_colours),
                             output, settings)

    def go():
        with _Progress(progress and err.is_terminal) as bar:
            return run_request(request(bar))

    result = run_guarded(go)
    g = result.grid
    scene = f", {result.scene}" if result.scene is not None else ""
    typer.echo(f"wrote {result.aerial}, {result.height}, {result.classes}{scene} "
               f"({g.width}x{g.height} px, {g.crs.to_string()}, {result.tiles} tiles, {result.seconds:.1f} s)")


def _source_options(class_name, height_field, levels_field, all_sea):
    """The --class/--height-field/--levels-field/--all-sea options as a SourceOptions (None when unused)."""
    if class_name is None and height_field is None and levels_field is None and not all_sea:
        return None
    from .sources import SourceOptions

    return SourceOptions(class_name=class_name, height_field=height_field, levels_field=levels_field,
                         sea_without_coast=all_sea)


@app.command()
def rasterize(
    osm: Optional[list[Path]] = typer.Option(None, "--osm", help=OSM_HELP),
    bbox: Optional[str] = typer.Option(None, help=BBOX_HELP),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    crs: str = typer.Option("EPSG:3857", help="Output CRS."),
    gsd: float = typer.Option(0.5, help="Pixel size in ground metres."),
    res: Optional[float] = typer.Option(None, help="Pixel size in output-CRS units, square (instead of --gsd)."),
    tap: bool = typer.Option(False, "--tap", help="Snap the bounds to multiples of the pixel size."),
    out: Path = typer.Option(Path("classes.tif"), help="Output class-map GeoTIFF."),
    rules: Optional[Path] = typer.Option(None, help="Class rules TOML (default: built-in schema)."),
    class_field: Optional[str] = typer.Option(None, help="Attribute holding a class name/id (non-OSM layers)."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Give every feature of non-OSM layers this "
                                             "class (e.g. building), instead of --class-field."),
    all_sea: bool = typer.Option(False, "--all-sea", help="An area that no natural=coastline crosses is sea."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    overpass_url: Optional[str] = typer.Option(None, help="Overpass API endpoint when no --osm is given "
                                               "(default $GEOGAN_OVERPASS_URL, else the public instance)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache for downloaded/clipped OSM (default ~/.cache/geogan)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the OSM cache (still writes it)."),
    force: bool = typer.Option(False, help="Run even for a huge class map."),
    compress: str = typer.Option("deflate", "--compress", metavar="[deflate|zstd]",
                                 help="COG compression: deflate (read everywhere) or zstd (faster; readers need "
                                      "GDAL >= 2.3). Always lossless."),
    fill: str = typer.Option("nodata", "--fill", metavar="[nodata|background]", help=FILL_HELP),
) -> None:
    """Rasterize vector data into a class map only (uint8 COG with the class palette)."""
    from .api import rasterize as api_rasterize

    path = run_guarded(lambda: api_rasterize(osm=osm or None, bbox=parse_bbox(bbox), bbox_crs=bbox_crs, crs=crs,
                                             gsd_m=gsd, out=out, rules=rules, class_field=class_field,
                                             overwrite=overwrite, force=force,
                                             osm_fetch=_fetch(overpass_url, cache_dir, no_cache),
                                             compression=compress, res=res, tap=tap, fill=fill,
                                             source_options=_source_options(class_name, None, None, all_sea)))
    typer.echo(f"wrote {path}")


@app.command()
def classes(
    rules: Optional[Path] = typer.Option(None, help="Show this rules file instead of the built-in schema."),
    dump: bool = typer.Option(False, help="Print the rules TOML (a starting point for --rules)."),
) -> None:
    """Print the class schema table (id, name, colour, priority, OSM tags)."""
    from rich.table import Table

    from .classes import default_rules_text, load_schema

    if dump:
        typer.echo(default_rules_text())
        return
    schema = run_guarded(lambda: load_schema(rules))
    table = Table(title=f"geogan class schema v{schema.version} ({schema.source})")
    for col in ("id", "name", "colour", "priority", "OSM tags"):
        table.add_column(col)
    for c in schema.classes:
        tags = []
        for rule in schema.rules:
            if rule.class_name == c.name:
                tags.append(" & ".join(f"{k}={'|'.join(v)}" for k, v in rule.match) + f" ({rule.geometry})")
        hexcol = "#%02x%02x%02x" % c.color
        table.add_row(str(c.id), c.name, f"[on {hexcol}]   [/] {hexcol}", str(c.priority), "\n".join(tags) or "-")
    Console().print(table)


@app.command()
def models() -> None:
    """List available models (user directory first, then built-in) with their cards."""
    from rich.table import Table

    from .zoo import list_models, model_dirs

    table = Table(title="geogan models")
    for col in ("name", "arch", "classes", "GSD m", "outputs", "training data", "licence", "path"):
        table.add_column(col, overflow="fold")
    for card in list_models():
        data = card.get("training", {}).get("data", "")
        outputs = list(card.get("outputs", []))
        if card.get("arch_params", {}).get("use_style_encoder"):
            outputs.append("--style-ref")
        table.add_row(card.get("name", "?"), card.get("arch", "?"), ", ".join(card.get("classes", [])),
                      str(card.get("gsd_m", "?")), ", ".join(outputs), str(data),
                      str(card.get("license", "")), card["path"])
    Console().print(table)
    typer.echo("searched: " + ", ".join(str(d) for d in model_dirs()))


#: Modules whose ``register(app)`` adds the commands that live beside their feature (training, plugin build, ...).
EXTENSION_MODULES = ("geogan.training.commands", "geogan.plugin_build", "geogan.mesh_cli", "geogan.evaluate_cli",
                     "geogan.dream_cli", "geogan.terrain_cli", "geogan.serve_cli", "geogan.onnx_cli",
                     "geogan.quilt_cli")
#: Optional third-party packages (top-level import name -> the extra that installs them). Only their absence
#: leaves a module's commands out; any other import error is a broken install and is raised as it is.
OPTIONAL_DEPENDENCIES = {"dask": "dask", "distributed": "dask", "xarray": "xarray", "rioxarray": "xarray",
                         "geopandas": "xarray"}


def register_extensions(target: typer.Typer, modules: tuple[str, ...] = EXTENSION_MODULES) -> None:
    """Add the commands of ``modules`` to ``target``.

    A module that cannot be imported raises its real error (so a broken import never reads as "No such
    command"), unless what is missing is one of :data:`OPTIONAL_DEPENDENCIES`: then its commands are left
    out with one stderr line naming the package and how to install it.
    """
    import importlib

    for mod in modules:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in OPTIONAL_DEPENDENCIES:
                raise
            err.print(f"warning: the commands of {mod} are unavailable: the optional package '{missing}' is not "
                      f"installed; pip install 'geogan[{OPTIONAL_DEPENDENCIES[missing]}]'", markup=False,
                      highlight=False, soft_wrap=True)
            continue
        module.register(target)


register_extensions(app)


def main() -> None:
    app(prog_name="geogan")


if __name__ == "__main__":
    main()
