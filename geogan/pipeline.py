"""The render stages on one grid: tile plan and size check, tile inputs, generator, blending, COG strips.

:mod:`geogan.core` wires a render (sources, grid, model, settings) and hands this module a
:class:`RenderJob`; :func:`render_grid` runs it in this process (:mod:`geogan.distributed` runs the same
job on Dask). Tiles are processed one tile row at a time. For each tile the class map is
rasterized directly at the model's native ground resolution for that tile
(the CRS's scale factor varies across a tall area, so each tile gets its own
rescaling), the generator runs on a batch of tiles, outputs are resized back
to the output grid, blended, and finished rows are streamed to disk together
with the class map and heights rasterized at output resolution. Writing runs
in background threads while the generator works (see :func:`render_grid`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from .blend import StripBlender
from .classes import Schema
from .errors import Cancelled, InputError, RenderError, TooLargeError
from .sketch import ClassSource
from .grid import Grid
from .infer import LoadedModel, cpu_streams, model_input_px, run_batches, seed_torch
from .memory import RenderSize, generator_bytes_per_px, memory_problem
from .noise import noise_window, orient, tile_orientation
from .coverage import NODATA_CLASS
from .provenance import ClassNameFiles
from .rasterizer import object_layers
from .runtime import frozen_gc, return_free_heap
from .settings import COMPRESSIONS, CancelFn, ProgressFn, RuntimeSettings, check_compression, codecs_of  # noqa: F401
from .terrain import CanopyParams, DemSource, compose_heights, hillshade
from .tiles import Tile, TileSpec, tile_rows
from .warp import StripWarper
from .write import OutputSet, RasterSpec

log = logging.getLogger("geogan")


HEIGHT_NODATA = -9999.0
MAX_HOURS_DEFAULT = 24.0
CPU_BATCH_TILES = 4  # tiles per generator call on CPU (render_grid's default)
CUDA_BATCH_TILES = 64  # tiles per generator call on a CUDA GPU (at most a tile row): an H100 runs the default
# model (fp16) at 209 MP/s in calls of 8 tiles, 1114 MP/s in calls of 64 (benchmarks/gpu_bench.py)
MAX_QUEUED_STRIPS = 1  # generator strips waiting for the writer thread (bounds memory)


@dataclass(frozen=True)
class OutputPaths:
    aerial: Path
    height: Path
    classes: Path
    hillshade: Path | None = None

    @classmethod
    def in_dir(cls, out_dir: Path, hillshade: bool = False) -> "OutputPaths":
        return cls(out_dir / "aerial.tif", out_dir / "height.tif", out_dir / "classes.tif",
                   out_dir / "hillshade.tif" if hillshade else None)

    def all(self) -> list[Path]:
        return [p for p in (self.aerial, self.height, self.classes, self.hillshade) if p is not None]


@dataclass
class RenderResult:
    aerial: Path
    height: Path
    classes: Path
    grid: Grid
    tiles: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    hillshade: Path | None = None
    scene: Path | None = None  # scene.glb (render with mesh=True)

    @property
    def paths(self) -> dict[str, Path]:
        out = {"aerial": self.aerial, "height": self.height, "classes": self.classes}
        if self.hillshade is not None:
            out["hillshade"] = self.hillshade
        return out


@dataclass(frozen=True)
class TilePlan:
    """Model-input size for each tile row (the ground scale varies with latitude), the tile count, the
    model megapixels, and the ground metres per pixel (x, y) at the grid's centre (computed once here, for
    the size check, the log and the heights)."""

    model_px_by_row: tuple[int, ...]
    tiles: int
    model_megapixels: float
    centre_gsd_m: tuple[float, float] = (1.0, 1.0)

    @property
    def mean_centre_gsd_m(self) -> float:
        return (self.centre_gsd_m[0] + self.centre_gsd_m[1]) / 2


MODEL_TILE_PX = 256  # the tile size the shipped generators were trained on (card ``train_tile_px`` overrides)


def auto_tile_spec(model: LoadedModel, gsd_m: float) -> TileSpec:
    """Output tiles that hold ``train_tile_px`` (default 256) model pixels at ``gsd_m``, a quarter overlap.

    The generators are trained on 256 px crops; fed 512 px inputs (a 256 px tile at twice the native
    GSD) the previous default model repeated a dark tree every 128 model pixels over open ground, a pattern the
    tile orientation cannot scatter because it lies inside one tile. Output tiles are rounded to 16 px
    (at least 32 px, so coarse renders get many small tiles of full-size model input).
    """
    model_px = int(model.card.get("train_tile_px", MODEL_TILE_PX))
    tile = max(32, int(round(model_px * model.gsd_m / gsd_m / 16)) * 16)
    return TileSpec(tile, tile // 4)


def centre_gsd_m(grid: Grid) -> tuple[float, float]:
    """Ground metres per pixel (x, y) at the grid's centre."""
    return grid.gsd_m_at(grid.height / 2, grid.width / 2)


def plan_tiles(grid: Grid, spec: TileSpec, model: LoadedModel) -> TilePlan:
    """The model-input size of each tile row, from the ground scale at the row's centre (once per row)."""
    cols = spec.count(grid.width)
    centres = np.minimum(np.asarray(spec.starts(grid.height), float) + spec.tile_px / 2, grid.height - 0.5)
    gx, gy = grid.gsd_m_at_many(centres, np.full(len(centres), grid.width / 2))
    sizes = [model_input_px(spec.tile_px, float(g), model.gsd_m, model.size_multiple) for g in (gx + gy) / 2]
    mp = sum(cols * m * m / 1e6 for m in sizes)
    return TilePlan(tuple(sizes), len(sizes) * cols, mp, centre_gsd_m(grid))


def native_plan(grid: Grid, spec: TileSpec) -> TilePlan:
    """The tile plan of a canonical grid (:mod:`geogan.anchor`): every tile fed to the model as it is, at the
    model's native pixel size in the canonical CRS (the UTM scale error, under 0.1 % inside a zone, is
    accepted so tiles stay the same everywhere)."""
    rows, cols = spec.count(grid.height), spec.count(grid.width)
    return TilePlan((spec.tile_px,) * rows, rows * cols, rows * cols * spec.tile_px ** 2 / 1e6, centre_gsd_m(grid))


def quick_estimate(grid: Grid, spec: TileSpec, model: LoadedModel) -> TilePlan:
    """Tile count and model megapixels from the centre scale alone: cheap for any area."""
    centre = centre_gsd_m(grid)
    m = model_input_px(spec.tile_px, sum(centre) / 2, model.gsd_m, model.size_multiple)
    rows, cols = spec.count(grid.height), spec.count(grid.width)
    return TilePlan((m,) * min(rows, 1), rows * cols, rows * cols * m * m / 1e6, centre)


def estimate_seconds(plan: TilePlan, model: LoadedModel) -> float:
    return plan.model_megapixels / max(model.throughput_mp_s, 1e-6)


def render_size(grid: Grid, spec: TileSpec, plan: TilePlan, model: LoadedModel, *, hillshade: bool = False,
                in_memory: bool = False, out_grid: Grid | None = None) -> RenderSize:
    """The sizes a render's memory depends on (:mod:`geogan.memory`), with this module's batching.

    ``grid``: where the generator runs; ``out_grid``: the output grid when it is another (the canonical
    frame's warp target): the strips are counted as wide as the wider of the two, the result as large as
    the output."""
    streams, _ = cpu_streams(model.device)
    batch = CUDA_BATCH_TILES if model.device.type == "cuda" else CPU_BATCH_TILES
    out = out_grid if out_grid is not None else grid
    return RenderSize(max(grid.width, out.width), out.height, spec.tile_px, spec.overlap_px,
                      max(plan.model_px_by_row, default=spec.tile_px), generator_bytes_per_px(model.card),
                      out_bands=4 if "height" in model.card.get("outputs", ()) else 3,
                      batch_tiles=min(batch, spec.count(grid.width)), batches_in_flight=streams + 1,
                      hillshade=hillshade, in_memory=in_memory)


def check_size(plan: TilePlan, model: LoadedModel, force: bool, max_hours: float = MAX_HOURS_DEFAULT, *,
               grid: Grid | None = None, spec: TileSpec | None = None, hillshade: bool = False,
               in_memory: bool = False, budget_bytes: int | None = None, out_grid: Grid | None = None) -> None:
    """Refuse (:class:`TooLargeError`, unless ``force``) a render estimated to take over ``max_hours`` or,
    given ``grid`` and ``spec``, to need more memory than ``budget_bytes`` (default: what this machine can
    give, :func:`geogan.memory.memory_problem`). Time is checked first: an area of days is told as such.
    ``out_grid``: the output grid when the generator runs on another (:func:`render_size`)."""
    if force:
        return
    secs = estimate_seconds(plan, model)
    if secs > max_hours * 3600:
        raise TooLargeError(
            f"this area needs {plan.tiles} tiles ({plan.model_megapixels:.0f} model megapixels), about "
            f"{secs / 3600:.1f} h on {model.device.type} ({secs / 86400:.1f} days); the model renders the area at "
            f"its native {model.gsd_m:g} m whatever --gsd, so shrink the bbox, or pass --force to run anyway")
    if grid is not None and spec is not None:
        size = render_size(grid, spec, plan, model, hillshade=hillshade, in_memory=in_memory, out_grid=out_grid)
        problem = memory_problem(size,
                                 budget_bytes, tile_gsd_m=plan.mean_centre_gsd_m, native_gsd_m=model.gsd_m,
                                 multiple_px=model.size_multiple)
        if problem is not None:
            raise TooLargeError(problem)


def output_specs(paths: OutputPaths, schema: Schema, compression: str = "deflate",
                 tags: Mapping[str, str] | None = None, coverage=None) -> dict[str, RasterSpec]:
    """What each output holds and how it is compressed (``compression``: a key of ``COMPRESSIONS``).

    ``tags``: metadata every output carries (provenance: :func:`geogan.provenance.output_tags`). The class
    map gets its class names beside it (``classes.tif.aux.xml`` with a raster attribute table, and a QGIS
    style ``classes.qml``), replaced with the set. The same specs for local and Dask renders, so both
    write the same files. ``coverage``: the pixels the input data covers (:class:`geogan.coverage.Coverage`);
    outside them aerial.tif is transparent (an alpha band), height.tif nodata, classes.tif
    ``NODATA_CLASS`` and hillshade.tif 0 (their nodata).
    """
    image, data = codecs_of(compression)
    masked = coverage is not None
    cover = coverage.rows if masked else None
    specs = {
        "aerial": RasterSpec(paths.aerial, 4 if masked else 3, "uint8", None, "average",
                             descriptions=("red", "green", "blue", "alpha")[:4 if masked else 3], photometric="RGB",
                             predictor="2", deflate_level=1, compress=image, zstd_level=1, tags=tags,
                             coverage=cover, alpha=masked),
        "height": RasterSpec(paths.height, 1, "float32", HEIGHT_NODATA, "average",
                             descriptions=("surface_height_m",), units="metre", deflate_level=3, compress=data,
                             zstd_level=3, tags=tags, coverage=cover),
        "classes": RasterSpec(paths.classes, 1, "uint8", NODATA_CLASS if masked else None, "nearest",
                              colormap=schema.palette(), descriptions=("class",), compress=data, zstd_level=3,
                              tags=tags, sidecars=ClassNameFiles(schema), coverage=cover),
    }
    if paths.hillshade is not None:
        specs["hillshade"] = RasterSpec(paths.hillshade, 1, "uint8", 0 if masked else None, "average",
                                        descriptions=("hillshade",), predictor="2", deflate_level=3, compress=image,
                                        zstd_level=1, tags=tags, coverage=cover)
    return specs


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB of generator values in [-1, 1] (a texture bank's exact strips come as uint8 already)."""
    if rgb.dtype == np.uint8:
        return rgb
    x = np.add(rgb, 1.0, dtype=np.float32)  # one float temporary, worked on in place
    x *= 127.5
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


BAND_TILES = 16  # tiles per band piece: bounds a band's memory on very wide grids


def tile_row_inputs(feats: ClassSource, grid: Grid, spec: TileSpec, row: list[Tile], model_px: int,
                    seed: int, offset_rc: tuple[int, int] = (0, 0)) -> Callable[[Tile], tuple[np.ndarray, np.ndarray]]:
    """For one row of tiles: ``tile -> (class map, noise)`` at model resolution (``model_px`` square).

    ``offset_rc``: the world pixel position of ``grid``'s (0, 0) pixel (:func:`geogan.anchor.world_offset`),
    which keys the noise to the place (global position = grid position + offset).

    At the model's native GSD (``model_px == tile_px``) the class map and noise are made once per band
    of ``BAND_TILES`` neighbouring tiles and the tiles are cut from it (the same pixels each tile's own
    window gives, with a fraction of the calls; one band piece is kept at a time). Otherwise every
    tile is rasterized on its own rescaled window.
    """
    tile_px = spec.tile_px
    dr, dc = offset_rc
    if model_px == tile_px:
        index = {t.col0: i for i, t in enumerate(row)}
        piece: dict = {}

        def cut(t: Tile) -> tuple[np.ndarray, np.ndarray]:
            k = index[t.col0] // BAND_TILES
            if piece.get("k") != k:
                tiles = row[k * BAND_TILES:(k + 1) * BAND_TILES]
                c0, width = tiles[0].col0, tiles[-1].col0 + tile_px - tiles[0].col0
                piece.update(k=k, c0=c0, classes=feats.classes(grid.window(t.row0, c0, tile_px, width)),
                             noise=noise_window(seed, t.row0 + dr, c0 + dc, tile_px, width))
            c = t.col0 - piece["c0"]
            return piece["classes"][:, c:c + tile_px], piece["noise"][:, c:c + tile_px]
        return cut
    scale = model_px / tile_px

    def one(t: Tile) -> tuple[np.ndarray, np.ndarray]:
        model_grid = grid.window(t.row0, t.col0, tile_px, tile_px).resized(model_px, model_px)
        r0, c0 = int(round((t.row0 + dr) * scale)), int(round((t.col0 + dc) * scale))
        return feats.classes(model_grid), noise_window(seed, r0, c0, model_px, model_px)
    return one


def blend_tile_rows(feats: ClassSource, grid: Grid, model: LoadedModel, spec: TileSpec, plan: TilePlan, *,
                    first_row: int, stop_row: int, seed: int = 0, batch_tiles: int = CPU_BATCH_TILES,
                    on_batch: Callable[[int], None] | None = None, offset_rc: tuple[int, int] = (0, 0)
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """Render tile rows ``first_row .. stop_row-1`` and yield finished, blended output strips.

    Yields ``(grid_row0, float32 (3, rows, width) in [-1, 1])`` (4 bands for height models: RGB, height; a texture
    bank at its native scale: uint8 RGB, :func:`geogan.quilt_model.quilt_strip`). Rows above
    ``first_row``'s stride start are only final when ``first_row`` is 0: a
    block of tile rows that starts lower must begin one tile row earlier and
    drop what that extra row alone finishes (see :func:`render_block`).
    ``on_batch(n_tiles)`` is called before each batch (progress, cancel). On CPU, several batches run
    at once (:func:`geogan.infer.cpu_streams`); their outputs are blended in order. ``offset_rc``: the world
    pixel position of ``grid``'s (0, 0) pixel; noise and tile orientations are keyed by world position.
    """
    rows = tile_rows(grid.shape_yx, spec)
    if model.runtime == "quilt":  # a texture bank draws whole strips, exact without tile blending
        from .quilt_model import quilt_rows

        yield from quilt_rows(model, feats, grid, spec, plan, first_row=first_row, stop_row=stop_row, seed=seed,
                              on_batch=on_batch, offset_rc=offset_rc, n_rows=len(rows))
        return
    n_ch = 4 if "height" in model.card.get("outputs", ()) else 3  # RGB (+ height in [-1, 1], blended the same way)
    blender = StripBlender(grid.shape_yx, n_ch, spec.tile_px, spec.overlap_px, first_row0=rows[first_row][0].row0)

    turn = turns_tiles(model)

    def batches():
        for r in range(first_row, stop_row):
            row = rows[r]
            inputs = tile_row_inputs(feats, grid, spec, row, plan.model_px_by_row[r], seed, offset_rc)
            for b in range(0, len(row), batch_tiles):
                batch: list[Tile] = row[b:b + batch_tiles]
                if on_batch is not None:
                    on_batch(len(batch))
                ks = [tile_orientation(seed, t.row0 + offset_rc[0], t.col0 + offset_rc[1]) if turn else 0
                      for t in batch]
                maps, noise = zip(*((orient(m, k), orient(z, k)) for (m, z), k in
                                    zip((inputs(tile) for tile in batch), ks)))
                yield (r, batch, b + batch_tiles >= len(row)), np.stack(maps), np.stack(noise)[:, None], ks

    streams, threads = cpu_streams(model.device)
    for (r, batch, row_done), out in run_batches(model, batches(), spec.tile_px, streams=streams,
                                                 threads_per_stream=threads):
        for tile, values in zip(batch, out):  # run_batch turned each tile back
            blender.add(tile.row0, tile.col0, values[:n_ch])
        if row_done:
            yield from blender.finish_row(last=(r == len(rows) - 1))


def turns_tiles(model: LoadedModel) -> bool:
    """Whether each tile is generated in its own orientation (:func:`geogan.noise.tile_orientation`: one of
    the 8 quarter turns and mirrors, undone on the output).

    A generator that ignores its noise paints the same picture for the same input; on open ground every
    tile's input is the same, so a feature it likes there (the previous default model: one dark tree about
    90 px from the tile corner) repeats at the tile stride, a regular grid over whole fields. Turning each tile
    moves it to one of four places about 38 model pixels from the tile centre, which breaks the grid (one
    tree per tile remains). A U-Net without position cue (the default since session 7,
    :data:`geogan.models.unet.NO_POSITION_CUE`) has no such feature; turning its tiles does no harm. Only for
    models trained on flipped and turned tiles (card ``rotate_tiles``, else the recipe's ``flip``); never for
    models with a height output, whose shading has a light direction.
    """
    card = model.card
    if "rotate_tiles" in card:
        return bool(card["rotate_tiles"])
    if "height" in card.get("outputs", ()):
        return False
    return card.get("training", {}).get("recipe", {}).get("flip", True) is not False


def block_rows(grid: Grid, spec: TileSpec, first_row: int, stop_row: int) -> tuple[int, int]:
    """Output rows [start, stop) owned by the block of tile rows [first_row, stop_row)."""
    n_rows = spec.count(grid.height)
    start = 0 if first_row == 0 else first_row * spec.stride_px
    stop = grid.height if stop_row >= n_rows else stop_row * spec.stride_px
    return start, stop


def height_scale_of(model: LoadedModel) -> float | None:
    """Metres per unit of the model's height band, or None for models without a height output."""
    return float(model.card["height_scale_m"]) if "height" in model.card.get("outputs", ()) else None


def render_block(feats: ClassSource, grid: Grid, model: LoadedModel, spec: TileSpec, plan: TilePlan, *,
                 first_row: int, stop_row: int, seed: int = 0, offset_rc: tuple[int, int] = (0, 0)
                 ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """The strips owned by a block of tile rows, identical to a whole render's.

    Each strip is ``(row0, uint8 RGB (3, rows, width), generated terrain in metres (rows, width) or None)``;
    the terrain is there for models with a height output. Tiles are pure functions of their inputs and
    noise, so re-rendering the tile row above the block gives exactly the values the whole render blends.
    """
    start, stop = block_rows(grid, spec, first_row, stop_row)
    height_scale_m = height_scale_of(model)
    out = []
    for row0, strip in blend_tile_rows(feats, grid, model, spec, plan, first_row=max(0, first_row - 1),
                                       stop_row=stop_row, seed=seed, offset_rc=offset_rc):
        lo, hi = max(row0, start), min(row0 + strip.shape[1], stop)
        if lo < hi:
            rows = strip[:, lo - row0:hi - row0]
            out.append((lo, _to_uint8(rows[:3]), None if height_scale_m is None else rows[3] * height_scale_m))
    return out


@dataclass
class HeightSpec:
    """How height.tif is made: optional DEM terrain, vegetation canopy, optional hillshade.tif."""

    dem: DemSource | None = None
    canopy: CanopyParams | None = None
    hillshade: bool = False
    gsd_m: float = 1.0  # one canopy scale for the whole output (seamless)
    res_xy_m: tuple[float, float] = (1.0, 1.0)
    offset_rc: tuple[int, int] = (0, 0)  # world pixel position of the output's (0, 0) pixel: keys the canopy


SURFACE_CHUNK_PX = 2048  # columns per piece of a surface strip (bounds its temporaries on very wide grids)


def _surface(feats: ClassSource, grid: Grid, schema: Schema, heights: HeightSpec, seed: int, row0: int,
             n_rows: int, terrain_m: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class map and surface height (terrain + objects + canopy) of rows row0..row0+n_rows.

    ``terrain_m``: the model's generated terrain (metres) for these rows, used when no DEM is given.
    Computed in pieces of ``SURFACE_CHUNK_PX`` columns: every term is a pure function of global pixel
    position, so the pieces join exactly (except for a pixel centre lying exactly on a polygon edge,
    which GDAL's rasterizer may round either way depending on the window's origin, and DEM values,
    whose bilinear resampling GDAL rounds per window: differences under 0.1 mm).
    """
    classes = np.empty((n_rows, grid.width), dtype=np.uint8)
    surface = np.empty((n_rows, grid.width), dtype=np.float32)
    for c0 in range(0, grid.width, SURFACE_CHUNK_PX):
        c1 = min(grid.width, c0 + SURFACE_CHUNK_PX)
        g = grid.window(row0, c0, n_rows, c1 - c0)
        cls = feats.classes(g)
        terrain = heights.dem.read(g) if heights.dem is not None else \
            (None if terrain_m is None else terrain_m[:, c0:c1])
        classes[:, c0:c1] = cls
        top_m, base_m = object_layers(feats, g)
        surface[:, c0:c1] = compose_heights(terrain, top_m, cls, schema, seed, heights.canopy,
                                            row0=row0 + heights.offset_rc[0], col0=c0 + heights.offset_rc[1],
                                            gsd_m=heights.gsd_m, nodata=HEIGHT_NODATA,
                                            base_m=base_m if heights.dem is not None else None)
    return classes, surface


def write_strip(outputs: OutputSet, feats: ClassSource, grid: Grid, schema: Schema, heights: HeightSpec, seed: int,
                row0: int, rgb_u8: np.ndarray, terrain_m: np.ndarray | None = None) -> None:
    """Write the aerial rows and the matching class-map, height (and hillshade) rows.

    ``terrain_m``: generated terrain in metres for these rows (height models), the terrain when no DEM is given.
    """
    outputs.write("aerial", row0, rgb_u8)
    write_surface(outputs, feats, grid, schema, heights, seed, row0, rgb_u8.shape[1], terrain_m)


def strip_rows(grid: Grid, spec: TileSpec) -> list[tuple[int, int]]:
    """``(row0, rows)`` of the strips a whole render releases: one per tile row, top to bottom."""
    starts = spec.starts(grid.height)
    return [(a, b - a) for a, b in zip(starts, starts[1:] + [grid.height])]


def write_surface(outputs: OutputSet, feats: ClassSource, grid: Grid, schema: Schema, heights: HeightSpec, seed: int,
                  row0: int, n: int, terrain_m: np.ndarray | None = None) -> None:
    """Write the class-map, height (and hillshade) rows ``row0 .. row0 + n`` (``terrain_m`` as in write_strip)."""
    if not heights.hillshade:
        classes, surface = _surface(feats, grid, schema, heights, seed, row0, n, terrain_m)
    else:  # one extra row above and below so strip borders shade seamlessly
        top = 1 if row0 > 0 else 0
        bottom = 1 if row0 + n < grid.height else 0
        t = None if terrain_m is None else np.pad(terrain_m, ((top, bottom), (0, 0)), mode="edge")
        classes, surface = _surface(feats, grid, schema, heights, seed, row0 - top, n + top + bottom, t)
        classes, core = classes[top:top + n], surface[top:top + n]
        z = np.where(surface == HEIGHT_NODATA, np.nan, surface)
        shade = hillshade(z[top:top + n], heights.res_xy_m, above=z[0] if top else None,
                          below=z[-1] if bottom else None)
        outputs.write("hillshade", row0, shade)
        surface = core
    outputs.write("classes", row0, classes)
    outputs.write("height", row0, surface)


def _write_surfaces(outputs: OutputSet, feats: ClassSource, grid: Grid, schema: Schema, heights: HeightSpec,
                    seed: int, strips: list[tuple[int, int]], stop: threading.Event) -> None:
    """Write and finish every output but the aerial image (they do not need the generator)."""
    for row0, n in strips:
        if stop.is_set():
            return
        write_surface(outputs, feats, grid, schema, heights, seed, row0, n)
    for key in ("classes", "height", "hillshade"):
        if key in outputs.specs and not stop.is_set():
            outputs.finish(key)


def _write_generated(outputs: OutputSet, job: "RenderJob", warper: StripWarper, row0: int, strip: np.ndarray,
                     height_scale_m: float | None) -> None:
    """Warp a blended generator strip (canonical rows from ``row0``) and write the output strips it completes:
    the aerial rows, and for height models the surface rows too (see :func:`write_warped`)."""
    terrain_m = None if height_scale_m is None else strip[3] * height_scale_m
    write_warped(outputs, job, warper.push(row0, _to_uint8(strip[:3]), terrain_m), surfaces=height_scale_m is not None)
    return_free_heap()  # the warp's temporaries, before the next strip's


def write_warped(outputs: OutputSet, job: "RenderJob", strips: list[tuple[int, np.ndarray, np.ndarray | None]],
                 surfaces: bool = True) -> None:
    """Write output strips from :meth:`StripWarper.push`: the aerial rows, with ``surfaces`` the class-map,
    height (and hillshade) rows too (:func:`write_strip`)."""
    for out_row0, rgb, terrain_m in strips:
        if job.colour is not None:  # per-class colours toward the reference photo's (a per-pixel function)
            h = job.colour.halo_px
            rgb = job.colour(rgb, job.feats.classes(job.grid.window(out_row0 - h, -h, rgb.shape[1] + 2 * h,
                                                                    job.grid.width + 2 * h)))
        if surfaces:
            write_strip(outputs, job.feats, job.grid, job.schema, job.heights, job.generator_seed, out_row0, rgb,
                        terrain_m)
        else:
            outputs.write("aerial", out_row0, rgb)


def make_height_spec(grid: Grid, dem: DemSource | None = None, canopy: CanopyParams | None = None,
                     hillshade: bool = False, gsd_xy_m: tuple[float, float] | None = None,
                     offset_rc: tuple[int, int] = (0, 0)) -> HeightSpec:
    """``gsd_xy_m``: ground metres per pixel at the grid's centre (None: computed here); ``offset_rc``: the
    world pixel position of the grid's (0, 0) pixel (:func:`geogan.anchor.world_offset`)."""
    gx, gy = gsd_xy_m if gsd_xy_m is not None else centre_gsd_m(grid)
    return HeightSpec(dem, canopy if canopy is not None else CanopyParams(), hillshade, (gx + gy) / 2, (gx, gy),
                      offset_rc)


def log_plan(grid: Grid, spec: TileSpec, plan: TilePlan, model: LoadedModel, out: Grid | None = None,
             out_gsd_m: tuple[float, float] = (0.0, 0.0)) -> None:
    """Log the generator's grid and tiling (and the output grid ``out``, ``out_gsd_m`` ground metres per pixel
    at its centre, when it is another)."""
    if out is not None and out != grid:
        rx, ry = out.res_xy
        ox, oy = out_gsd_m
        unit = out.crs.axis_info[0].unit_name if out.crs.axis_info else "units"
        log.info("output grid %dx%d px in %s, pixel %.4g x %.4g %s = %.3f x %.3f ground m at centre", out.width,
                 out.height, out.crs.to_string(), rx, ry, unit, ox, oy)
    rx, ry = grid.res_xy
    gx, gy = plan.centre_gsd_m
    unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "units"
    log.info("%sgrid %dx%d px in %s, pixel %.4g x %.4g %s = %.3f x %.3f ground m at centre; %d tiles of %d px "
             "(overlap %d), model %s native GSD %.3g m on %s (%s)", "generator " if out is not None else "",
             grid.width, grid.height, grid.crs.to_string(), rx, ry, unit, gx, gy, plan.tiles, spec.tile_px,
             spec.overlap_px, model.name, model.gsd_m, model.device, model.precision)
    distinct = sorted(set(plan.model_px_by_row))
    if distinct != [spec.tile_px]:
        log.info("per-tile rescaling: model input %s px for %d px tiles", distinct, spec.tile_px)


@dataclass(frozen=True, eq=False)
class GeneratorFrame:
    """Where the generator runs: a grid, the class source drawn on it, and the world pixel position of its
    (0, 0) pixel (:mod:`geogan.anchor`: the canonical grid; noise and tile orientations are keyed by it)."""

    feats: ClassSource
    grid: Grid
    offset_rc: tuple[int, int] = (0, 0)


@dataclass(frozen=True, eq=False)
class RenderJob:
    """One wired render, as :func:`render_grid` and the Dask front run it (:mod:`geogan.core` builds it).

    ``feats`` and ``grid``: the output grid and its class source (classes.tif, height.tif); ``frame``: where
    the generator runs (the canonical grid, :func:`geogan.anchor.canonical_grid`; None: on ``grid`` itself,
    offset (0, 0)), its strips warped onto ``grid`` (:class:`~geogan.warp.StripWarper`). ``spec`` and
    ``plan``: the tiling of the generator's grid, the plan size-checked by the core (:func:`check_size`);
    ``generator_seed``: the 32-bit seed of the noise, tile orientations and canopy
    (:func:`geogan.settings.generator_seed`).
    """

    feats: ClassSource
    grid: Grid
    model: LoadedModel
    schema: Schema
    paths: OutputPaths
    spec: TileSpec
    plan: TilePlan
    heights: HeightSpec
    compression: str = "deflate"
    generator_seed: int = 0
    frame: GeneratorFrame | None = None
    tags: Mapping[str, str] | None = None  # provenance metadata of every output
    colour: object = None  # a geogan.colour_transfer.ColourTransfer toward a --style-ref photo's colours
    coverage: object = None  # a geogan.coverage.Coverage: outside it the outputs are nodata (output_specs)

    @property
    def generator(self) -> GeneratorFrame:
        return self.frame if self.frame is not None else GeneratorFrame(self.feats, self.grid)

    def warper(self) -> StripWarper:
        """A fresh :class:`StripWarper` from the generator's grid onto the output grid."""
        return StripWarper(self.generator.grid, self.grid, self.heights.gsd_m / self.model.gsd_m)


def _batch_callback(tiles: int, progress: ProgressFn | None, cancel: CancelFn | None) -> Callable[[int], None]:
    """``on_batch(n)`` for :func:`blend_tile_rows`: stop when ``cancel()`` says so, report progress."""
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        if cancel is not None and cancel():
            raise Cancelled("render cancelled; no output was written")
        if progress is not None and done:
            progress(done / tiles, f"tile {done}/{tiles}")
        done += n
    return on_batch


@frozen_gc()  # see geogan.runtime
def render_grid(job: RenderJob, runtime: RuntimeSettings = RuntimeSettings()) -> RenderResult:
    """Render ``job.feats`` on ``job.grid`` with ``job.model`` into the COGs at ``job.paths``.

    ``runtime.batch_tiles``: tiles per generator call (default ``CPU_BATCH_TILES`` on CPU, where 2-4 tiles per
    call keep both cores busier than one, measured with benchmarks/bench.py; ``CUDA_BATCH_TILES`` on CUDA);
    ``runtime.progress`` and ``runtime.cancel`` as in :class:`geogan.settings.RuntimeSettings`.
    ``job.compression``: the COGs' codecs, a key of ``COMPRESSIONS`` (see :func:`output_specs`).
    """
    t0 = time.perf_counter()
    feats, grid, model, schema, paths = job.feats, job.grid, job.model, job.schema, job.paths
    spec, plan, heights, seed, compression = job.spec, job.plan, job.heights, job.generator_seed, job.compression
    gen, warper = job.generator, job.warper()
    progress, cancel = runtime.progress, runtime.cancel
    batch_tiles = runtime.batch_tiles
    if batch_tiles is None:
        batch_tiles = CUDA_BATCH_TILES if model.device.type == "cuda" else CPU_BATCH_TILES
    log_plan(gen.grid, spec, plan, model, grid, heights.res_xy_m)
    seed_torch(seed)
    on_batch = _batch_callback(plan.tiles, progress, cancel)

    # The generator runs here; one thread warps and writes the strips it releases, another writes (and
    # converts to COGs) the class map and heights when they do not depend on it (no height output). GDAL,
    # numpy and torch release the GIL, so the writing hides behind the generator.
    height_scale_m = height_scale_of(model)
    stop = threading.Event()
    with OutputSet(grid, output_specs(paths, schema, compression, job.tags, job.coverage)) as outputs, \
            ThreadPoolExecutor(1, thread_name_prefix="geogan-surface") as surface_pool, \
            ThreadPoolExecutor(1, thread_name_prefix="geogan-write") as strip_pool:
        try:
            surfaces = surface_pool.submit(_write_surfaces, outputs, feats, grid, schema, heights, seed,
                                           [(s.row0, s.rows) for s in warper.strips], stop) \
                if height_scale_m is None else None
            writes: deque[Future] = deque()
            for row0, strip in blend_tile_rows(gen.feats, gen.grid, model, spec, plan, first_row=0,
                                               stop_row=len(plan.model_px_by_row), seed=seed,
                                               batch_tiles=batch_tiles, on_batch=on_batch, offset_rc=gen.offset_rc):
                writes.append(strip_pool.submit(_write_generated, outputs, job, warper, row0, strip, height_scale_m))
                del strip
                return_free_heap()  # what the last strip's threads freed (see geogan.runtime)
                while writes and (len(writes) > MAX_QUEUED_STRIPS or writes[0].done()):
                    writes.popleft().result()
                if surfaces is not None and surfaces.done():
                    surfaces.result()  # raise a writing error now, not after the whole render
            for w in writes:
                w.result()
            if surfaces is not None:
                surfaces.result()
            check_warped(warper)
        except BaseException:
            stop.set()
            raise
        if cancel is not None and cancel():
            raise Cancelled("render cancelled; no output was written")
        if progress is not None:
            progress(1.0, "writing Cloud-Optimized GeoTIFFs")
    secs = time.perf_counter() - t0
    log.info("rendered %d tiles in %.1f s (%.2f output MP/s)", plan.tiles, secs, grid.width * grid.height / 1e6 / secs)
    return RenderResult(paths.aerial, paths.height, paths.classes, grid, plan.tiles, secs, hillshade=paths.hillshade)


def check_warped(warper: StripWarper) -> None:
    """Refuse to finish a render whose output strips were not all made (never an output that looks complete)."""
    if not warper.done:
        raise RenderError(f"internal error: {len(warper.strips) - warper.next_strip} output strips were never warped "
                          "(the generator's grid did not cover the output); please report this render's options")


def rasterize_to_file(feats: ClassSource, grid: Grid, schema: Schema, out: Path, *, strip_px: int = 512,
                      progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                      compression: str = "deflate", tags: Mapping[str, str] | None = None,
                      coverage=None) -> Path:
    """Write only the class map, strip by strip, as a COG with the class palette (and its class names beside it).

    ``compression`` and ``coverage`` as in :func:`output_specs`: the class map is never lossy ("jpeg" writes
    DEFLATE).
    """
    spec = {"classes": output_specs(OutputPaths(out, out, out), schema, compression, tags, coverage)["classes"]}
    with OutputSet(grid, spec) as outputs:
        for row0 in range(0, grid.height, strip_px):
            if cancel is not None and cancel():
                raise Cancelled("rasterize cancelled; no output was written")
            n = min(strip_px, grid.height - row0)
            outputs.write("classes", row0, feats.classes(grid.window(row0, 0, n, grid.width)))
            if progress is not None:
                progress((row0 + n) / grid.height, f"rows {row0 + n}/{grid.height}")
    return out
