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


def dream(bbox: BBox, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float | None = None,
          out_dir: PathLike = "out", model: PathLike = STREETS_MODEL, seed: int = 0,
          render_model: str | None = "default", overwrite: bool = False, device: str = "auto",
          min_speck_px: int = 4, join_gap_px: int = STREET_JOIN_GAP_PX, tile_px: int | None = None,
          overlap_px: int | None = None, rules: PathLike | None = None,
          force: bool = False, progress: ProgressFn | None = None, style: str | TownStyle = "town") -> DreamResult:
    """Dream a town on the real grid of ``bbox`` and render it.

    ``model`` :data:`STREETS_MODEL` (default) builds a procedural town in the ``style`` preset
    (:func:`geogan.dream.town.dream_town`) and writes it as ``OUT/dream_town.gpkg`` too; any other
    ``model`` is a DCGAN dream model (``min_speck_px``/``join_gap_px`` clean its map). Writes
    ``OUT/dream_classes.tif`` (palette COG) and, unless ``render_model`` is None, renders the dream with
    that conditional model into ``OUT/aerial.tif``, ``height.tif`` and ``classes.tif`` through
    :func:`geogan.api.render` (``classes.tif`` equals ``dream_classes.tif``). ``gsd_m`` defaults to the
    render model's native GSD (without rendering: :data:`STREETS_GSD_M`, or the DCGAN's). ``tile_px``/
    ``overlap_px`` are the render's tiling; ``seed`` drives both the dream and the render.
    """
    from ..api import render as api_render
    from ..infer import resolve_device
    from ..pipeline import OutputPaths
    from ..write import check_outputs

    t0 = time.perf_counter()
    schema = load_schema(rules)
    parse_crs(crs)
    procedural = str(model) == STREETS_MODEL
    town_look = town_style(style) if procedural else None
    dm = None if procedural else load_dream_model(model, resolve_device(device), schema)
    if gsd_m is None:
        gsd_m = _render_gsd(render_model) if render_model is not None else (STREETS_GSD_M if dm is None else dm.gsd_m)
    out = Path(out_dir)
    result = DreamResult(out / DREAM_CLASSES, grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m))  # type: ignore[arg-type]
    town_path = out / DREAM_TOWN if procedural else None
    check_outputs([result.classes, *([town_path] if town_path else []),
                   *(OutputPaths.in_dir(out).all() if render_model is not None else [])], overwrite)
    grid = result.grid
    if grid.width * grid.height > MAX_DREAM_PX:
        raise TooLargeError(f"the dream would be {grid.width}x{grid.height} px; raise --gsd or shrink the bbox")
    with tempfile.TemporaryDirectory(prefix="geogan-dream-") as tmp:
        class_map, source = _dreamed(grid, seed, dm, town_look, Path(tmp), schema,
                                     {"min_speck_px": min_speck_px, "join_gap_px": join_gap_px}, progress)
        write_class_map(class_map, grid, result.classes, schema)
        log.info("dreamed %dx%d px (%s)", grid.width, grid.height, ", ".join(
            f"{schema.by_id(int(k)).name} {v / class_map.size:.0%}" for k, v in
            zip(*np.unique(class_map, return_counts=True))))
        if render_model is not None:
            result.render = api_render(**source, bbox=tuple(bbox), bbox_crs=bbox_crs, crs=crs, gsd_m=gsd_m,
                                       out_dir=out, model=render_model, device=device, tile_px=tile_px,
                                       overlap_px=overlap_px, seed=seed, overwrite=overwrite, rules=rules,
                                       force=force, progress=_scaled(progress, 0.2, 0.8))
        if town_path is not None:
            shutil.move(str(source["osm"]), town_path)
            result.town = town_path
    result.seconds = time.perf_counter() - t0
    return result
