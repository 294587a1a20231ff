"""A dream on the real grid of a bbox: dreamed at the model's GSD, resampled onto the grid, written as a
palette COG and rendered with a conditional model (:func:`dream`)."""

from __future__ import annotations

import json
import logging
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
from .model import DEFAULT_MODEL_NAME, BBox, DreamModel, PathLike, ProgressFn, load_dream_model
from .stitch import MAX_DREAM_PX, STREET_JOIN_GAP_PX, dream_map

log = logging.getLogger("geogan")

#: Name of the dreamed class map written by :func:`dream`.
DREAM_CLASSES = "dream_classes.tif"


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


def _render_gsd(render_model: str) -> float:
    from ..zoo import resolve_model

    card = json.loads(resolve_model(render_model).read_text(encoding="utf-8"))
    return float(card["gsd_m"])


def dream(bbox: BBox, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float | None = None,
          out_dir: PathLike = "out", model: PathLike = DEFAULT_MODEL_NAME, seed: int = 0,
          render_model: str | None = "default", overwrite: bool = False, device: str = "auto",
          min_speck_px: int = 4, join_gap_px: int = STREET_JOIN_GAP_PX, tile_px: int | None = None,
          overlap_px: int | None = None, rules: PathLike | None = None,
          force: bool = False, progress: ProgressFn | None = None) -> DreamResult:
    """Dream a town on the real grid of ``bbox`` and render it.

    Writes ``OUT/dream_classes.tif`` (palette COG) and, unless ``render_model`` is None, renders it with
    that conditional model into ``OUT/aerial.tif``, ``height.tif`` and ``classes.tif`` through
    :func:`geogan.api.render` (``classes.tif`` equals ``dream_classes.tif``). ``gsd_m`` defaults to the
    render model's native GSD (the dream model's without rendering). ``tile_px``/``overlap_px`` are the
    render's tiling (default: :func:`geogan.pipeline.auto_tile_spec`); ``seed`` drives both the dream and the render.
    """
    from ..api import render as api_render
    from ..infer import resolve_device
    from ..pipeline import OutputPaths
    from ..write import check_outputs

    t0 = time.perf_counter()
    schema = load_schema(rules)
    parse_crs(crs)
    dev = resolve_device(device)
    dm = load_dream_model(model, dev, schema)
    if gsd_m is None:
        gsd_m = _render_gsd(render_model) if render_model is not None else dm.gsd_m
    out = Path(out_dir)
    classes_path = out / DREAM_CLASSES
    check_outputs([classes_path] + (OutputPaths.in_dir(out).all() if render_model is not None else []), overwrite)
    grid = grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m)  # type: ignore[arg-type]
    if grid.width * grid.height > MAX_DREAM_PX:
        raise TooLargeError(f"the dream would be {grid.width}x{grid.height} px; raise --gsd or shrink the bbox")
    class_map, _ = dream_on_grid(dm, grid, seed, min_speck_px=min_speck_px, join_gap_px=join_gap_px,
                                 progress=(lambda f, m: progress(0.2 * f, m)) if progress else None)
    write_class_map(class_map, grid, classes_path, schema)
    log.info("dreamed %dx%d px (%s)", grid.width, grid.height, ", ".join(
        f"{schema.by_id(int(k)).name} {v / class_map.size:.0%}" for k, v in
        zip(*np.unique(class_map, return_counts=True))))
    result = DreamResult(classes_path, grid)
    if render_model is not None:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="geogan-dream-") as tmp:
            png = Path(tmp) / "dream.png"
            Image.fromarray(palette_rgb(class_map, schema)).save(png)
            result.render = api_render(sketch=png, bbox=tuple(bbox), bbox_crs=bbox_crs, crs=crs, gsd_m=gsd_m,
                                       out_dir=out, model=render_model, device=device, tile_px=tile_px,
                                       overlap_px=overlap_px, seed=seed, overwrite=overwrite, rules=rules,
                                       force=force,
                                       progress=(lambda f, m: progress(0.2 + 0.8 * (f or 0), m)) if progress else None)
    result.seconds = time.perf_counter() - t0
    return result
