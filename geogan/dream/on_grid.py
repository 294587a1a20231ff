"""A dream on the real grid of a bbox, written as a palette COG and rendered with a conditional model
(:func:`dream`): by default a procedural town (:func:`geogan.dream.town.dream_town`: a street skeleton,
buildings per block), written as a GeoPackage and rasterized and rendered like OSM; or a DCGAN's class map,
dreamed at the model's GSD and resampled onto the grid."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import Schema, load_schema
from ..errors import TooLargeError
from ..grid import Grid, grid_from_bbox, parse_crs
from ..options import with_options
from ..sketch import RasterClassSource
from .data import palette_rgb
from .model import BBox, DreamModel, PathLike, ProgressFn, load_dream_model
from .stitch import MAX_DREAM_PX, STREET_JOIN_GAP_PX, dream_map
from .style import TownStyle, town_style
from .town import Town, dream_town, local_crs, write_town_gpkg

log = logging.getLogger("geogan")

#: Name of the dreamed class map written by :func:`dream`.
DREAM_CLASSES = "dream_classes.tif"
#: Name of the procedural town's GeoPackage written by :func:`dream` (OSM tag columns, EPSG:4326).
DREAM_TOWN = "dream_town.gpkg"
#: ``model`` of :func:`dream` that builds a procedural town instead of running a DCGAN.
STREETS_MODEL = "streets"
#: Output GSD of a procedural dream that is not rendered (a rendered one takes the render model's).
STREETS_GSD_M = 1.0


def town_size_m(grid: Grid) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((width, height) in ground metres, centre lon/lat)``: the town's local frame covering ``grid``."""
    import pyproj

    centre = grid.center_lonlat()
    left, bottom, right, top = grid.bounds
    xs, ys = np.meshgrid(np.linspace(left, right, 5), np.linspace(bottom, top, 5))
    t = pyproj.Transformer.from_crs(grid.crs, local_crs(centre), always_xy=True)
    x, y = t.transform(xs.ravel(), ys.ravel())
    return (2.0 * float(np.abs(x).max()), 2.0 * float(np.abs(y).max())), centre


def town_on_grid(grid: Grid, seed: int, style: str | TownStyle, gpkg: Path, schema: Schema
                 ) -> tuple[np.ndarray, Town]:
    """A procedural town covering ``grid``: written to ``gpkg`` and rasterized onto ``grid`` with geogan's
    reader and rasterizer, exactly as an OSM file would be. Returns ``(class map, town)``."""
    from ..inputs import read_features
    from ..rasterizer import rasterize_classes

    size_m, centre = town_size_m(grid)
    town = dream_town(size_m, seed, town_style(style))
    write_town_gpkg(town, gpkg, centre)
    feats, _ = read_features([Path(gpkg)], grid, schema, None, 2)
    return rasterize_classes(feats, grid), town


def dream_on_grid(model: DreamModel, grid: Grid, seed: int = 0, **kwargs) -> tuple[np.ndarray, Grid]:
    """Dream at the model's native GSD over ``grid``'s bounds, resampled (nearest) onto ``grid``.

    Returns ``(class map on grid, the native dream grid)``; ``kwargs`` go to :func:`dream_map`.
    """
    gx, gy = grid.gsd_m_at(grid.height / 2, grid.width / 2)
    native = (max(1, round(grid.height * gy / model.gsd_m)), max(1, round(grid.width * gx / model.gsd_m)))
    dream_grid = grid.resized(*native)
    native_map = dream_map(model, native, seed, **kwargs)
    if native == grid.shape_yx:
        return native_map, dream_grid
    return RasterClassSource(native_map, dream_grid).classes(grid), dream_grid


def write_class_map(class_map: np.ndarray, grid: Grid, path: PathLike, schema: Schema,
                    strip_px: int = 512) -> Path:
    """Write a class map as a palette COG with geogan's writer (atomic: all or nothing)."""
    from ..pipeline import OutputPaths, output_specs
    from ..write import OutputSet

    path = Path(path)
    spec = {"classes": output_specs(OutputPaths(path, path, path), schema)["classes"]}
    with OutputSet(grid, spec) as outputs:
        for row0 in range(0, grid.height, strip_px):
            outputs.write("classes", row0, class_map[row0:row0 + strip_px])
    return path


@dataclass
class DreamResult:
    classes: Path  # dream_classes.tif
    grid: Grid
    render: object | None = None  # api.render's RenderResult, when rendered
    seconds: float = 0.0
    town: Path | None = None  # dream_town.gpkg of a procedural town


def _render_gsd(render_model: str) -> float:
    from ..zoo import resolve_model

    card = json.loads(resolve_model(render_model).read_text(encoding="utf-8"))
    return float(card["gsd_m"])


def _scaled(progress: ProgressFn | None, start: float, span: float) -> ProgressFn | None:
    return (lambda f, m: progress(start + span * (f or 0), m)) if progress else None


def _dreamed(grid: Grid, seed: int, dm: DreamModel | None, style: TownStyle | None, tmp: Path, schema: Schema,
             gan_options: dict, progress: ProgressFn | None) -> tuple[np.ndarray, dict]:
    """The class map on ``grid`` and the render's source: the town's GeoPackage (procedural, ``dm`` None)
    or the DCGAN's map as an exactly palette-coloured PNG with the grid's own shape (so it maps 1:1)."""
    if dm is None:
        if progress:
            progress(0.0, "dreaming a town")
        class_map, _ = town_on_grid(grid, seed, style, tmp / DREAM_TOWN, schema)
        return class_map, {"osm": tmp / DREAM_TOWN}
    from PIL import Image

    class_map, _ = dream_on_grid(dm, grid, seed, progress=_scaled(progress, 0.0, 0.2), **gan_options)
    Image.fromarray(palette_rgb(class_map, schema)).save(tmp / "dream.png")
    return class_map, {"sketch": tmp / "dream.png"}


@dataclass(frozen=True)
class DreamOptions:
    """What :func:`dream` takes besides the area, the models and the seed (its keyword options):
    ``overwrite`` existing outputs; ``device`` of both models; ``min_speck_px``/``join_gap_px`` clean a
    DCGAN's map (:class:`~geogan.dream.stitch.StitchSettings`); ``tile_px``/``overlap_px``: the render's
    tiling; ``rules``: the class schema; ``force`` a render estimated over a day; ``style``: the
    procedural town's preset (:func:`geogan.dream.style.town_style`)."""

    overwrite: bool = False
    device: str = "auto"
    min_speck_px: int = 4
    join_gap_px: int = STREET_JOIN_GAP_PX
    tile_px: int | None = None
    overlap_px: int | None = None
    rules: PathLike | None = None
    force: bool = False
    style: str | TownStyle = "town"


def _dream_gsd_m(gsd_m: float | None, render_model: str | None, dm: DreamModel | None) -> float:
    """The output GSD: given, else the render model's, else (not rendered) the DCGAN's or :data:`STREETS_GSD_M`."""
    if gsd_m is not None:
        return gsd_m
    if render_model is not None:
        return _render_gsd(render_model)
    return STREETS_GSD_M if dm is None else dm.gsd_m


def _check_dream_outputs(result: DreamResult, out: Path, procedural: bool, rendered: bool,
                         overwrite: bool) -> None:
    """Refuse existing outputs (unless ``overwrite``) and a grid too large to dream, before any work."""
    from ..pipeline import OutputPaths
    from ..write import check_outputs

    town = [out / DREAM_TOWN] if procedural else []
    check_outputs([result.classes, *town, *(OutputPaths.in_dir(out).all() if rendered else [])], overwrite)
    grid = result.grid
    if grid.width * grid.height > MAX_DREAM_PX:
        raise TooLargeError(f"the dream would be {grid.width}x{grid.height} px; raise --gsd or shrink the bbox")


def _log_dream(class_map: np.ndarray, grid: Grid, schema: Schema) -> None:
    log.info("dreamed %dx%d px (%s)", grid.width, grid.height, ", ".join(
        f"{schema.by_id(int(k)).name} {v / class_map.size:.0%}" for k, v in
        zip(*np.unique(class_map, return_counts=True))))


def dream(bbox: BBox, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float | None = None,
          out_dir: PathLike = "out", model: PathLike = STREETS_MODEL, seed: int = 0,
          render_model: str | None = "default", *, progress: ProgressFn | None = None, **options) -> DreamResult:
    """Dream a town on the real grid of ``bbox`` and render it.

    ``model`` :data:`STREETS_MODEL` (default) builds a procedural town in the ``style`` preset
    (:func:`geogan.dream.town.dream_town`) and writes it as ``OUT/dream_town.gpkg`` too; any other
    ``model`` is a DCGAN dream model (``min_speck_px``/``join_gap_px`` clean its map). Writes
    ``OUT/dream_classes.tif`` (palette COG) and, unless ``render_model`` is None, renders the dream with
    that conditional model into ``OUT/aerial.tif``, ``height.tif`` and ``classes.tif`` through
    :func:`geogan.api.render` (``classes.tif`` equals ``dream_classes.tif``). ``gsd_m`` defaults to the
    render model's native GSD (without rendering: :data:`STREETS_GSD_M`, or the DCGAN's). ``tile_px``/
    ``overlap_px`` are the render's tiling; ``seed`` drives both the dream and the render. ``options``:
    the fields of :class:`DreamOptions` (an unknown name is an :class:`~geogan.options.UnknownOptionError`).
    """
    from ..api import render as api_render
    from ..infer import resolve_device

    t0 = time.perf_counter()
    opt = with_options(DreamOptions(), options, "dream")
    schema = load_schema(opt.rules)
    parse_crs(crs)
    procedural = str(model) == STREETS_MODEL
    town_look = town_style(opt.style) if procedural else None
    dm = None if procedural else load_dream_model(model, resolve_device(opt.device), schema)
    gsd_m = _dream_gsd_m(gsd_m, render_model, dm)
    out = Path(out_dir)
    result = DreamResult(out / DREAM_CLASSES, grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m))  # type: ignore[arg-type]
    _check_dream_outputs(result, out, procedural, render_model is not None, opt.overwrite)
    grid = result.grid
    with tempfile.TemporaryDirectory(prefix="geogan-dream-") as tmp:
        class_map, source = _dreamed(grid, seed, dm, town_look, Path(tmp), schema,
                                     {"min_speck_px": opt.min_speck_px, "join_gap_px": opt.join_gap_px}, progress)
        write_class_map(class_map, grid, result.classes, schema)
        _log_dream(class_map, grid, schema)
        if render_model is not None:
            result.render = api_render(**source, bbox=tuple(bbox), bbox_crs=bbox_crs, crs=crs, gsd_m=gsd_m,
                                       out_dir=out, model=render_model, device=opt.device, tile_px=opt.tile_px,
                                       overlap_px=opt.overlap_px, seed=seed, overwrite=opt.overwrite,
                                       rules=opt.rules, force=opt.force, progress=_scaled(progress, 0.2, 0.8))
        if procedural:
            shutil.move(str(source["osm"]), out / DREAM_TOWN)
            result.town = out / DREAM_TOWN
    result.seconds = time.perf_counter() - t0
    return result
