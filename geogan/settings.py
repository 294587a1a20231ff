"""A render's settings as values: small frozen dataclasses, each checked at construction.

Every front builds these (``geogan.api.render`` from its keyword arguments, ``geogan render`` from its
options, the QGIS worker from its JSON request) and hands them to the render core (:mod:`geogan.core`);
the Dask front takes the same values. A bad field is a one-line :class:`~geogan.errors.InputError` (or
:class:`~geogan.errors.GridError`) naming the argument, its option and a value that works.

* :class:`SourceSettings`: what is drawn (vector sources or a sketch, class rules, OSM fetching);
* :class:`AreaSettings`: where (bbox and its CRS, output CRS, ground metres per pixel);
* :class:`ModelSettings`: which generator and how it runs (device, precision, compile, style reference);
* :class:`TilingSettings`, :class:`HeightSettings`, :class:`OutputSettings`, :class:`RuntimeSettings`;
* :class:`RenderSettings` (tiling, heights, runtime: what the core's ``render`` takes besides the output)
  and :class:`RenderRequest` (all of the above: one render, as the fronts describe it).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GridError, InputError
from .grid import RES_AND_GSD, user_crs
from .sources import SourceOptions
from .terrain import CanopyParams
from .tiles import TileSpec
from .write import check_codecs

PathLike = str | os.PathLike
BBox = tuple[float, float, float, float]
ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

#: ``compression`` choices: the COG codec of the images (aerial.tif, hillshade.tif) and of the data
#: (height.tif, classes.tif: never lossy). ZSTD: level 1 for the images (about half the CPU time of DEFLATE
#: level 1 at the same size), 3 for the data; readers need GDAL >= 2.3 (libtiff with zstd). JPEG: quality 90,
#: RGB stored as YCbCr.
COMPRESSIONS = {"deflate": ("DEFLATE", "DEFLATE"), "zstd": ("ZSTD", "ZSTD"), "jpeg": ("JPEG", "DEFLATE")}


# ---------------------------------------------------------------- checks shared by the settings and the API
def codecs_of(compression: str) -> tuple[str, str]:
    """(image codec, data codec) of a ``compression`` name, or the one-line error naming the choices."""
    codecs = COMPRESSIONS.get(compression) if isinstance(compression, str) else None
    if codecs is None:
        raise InputError(f"unknown compression '{compression}'; choose --compress deflate, zstd or jpeg")
    return codecs


def check_compression(compression: str) -> str:
    """``compression`` lower-cased, checked: a key of ``COMPRESSIONS`` that rasterio's GDAL can write."""
    name = compression.strip().lower() if isinstance(compression, str) else compression
    check_codecs(codecs_of(name))  # an unknown name: the one-line error naming the choices
    return name


#: ``fill`` choices: what the outputs hold outside the input data's coverage (:mod:`geogan.coverage`)
FILLS = ("nodata", "background")


def check_fill(fill) -> str:
    """``fill`` lower-cased, or the one-line error naming the choices."""
    name = fill.strip().lower() if isinstance(fill, str) else fill
    if name not in FILLS:
        raise InputError(f"unknown fill {fill!r}; choose --fill nodata (outside the data's coverage the outputs "
                         "are nodata) or --fill background (drawn as background, as if mapped)")
    return name


def check_gsd_type(gsd_m) -> None:
    if gsd_m is not None and (isinstance(gsd_m, bool) or not isinstance(gsd_m, numbers.Real)):
        raise GridError(f"gsd_m={gsd_m!r} is a {type(gsd_m).__name__}, not a number; give ground metres per pixel "
                        "as a number, e.g. gsd_m=0.5 (--gsd 0.5)")


def check_res_type(res, tap) -> None:
    if res is not None and (isinstance(res, bool) or not isinstance(res, numbers.Real)):
        raise GridError(f"res={res!r} is a {type(res).__name__}, not a number; give the pixel size in output-CRS "
                        "units as a number, e.g. res=0.5 (--res 0.5)")
    if not isinstance(tap, bool):
        raise GridError(f"tap={tap!r} is not True or False; pass tap=True (--tap) to snap the grid to multiples "
                        "of the pixel size")


def check_whole(value, name: str, option: str, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}={value!r} is not a whole number; give an integer, e.g. {option}")
    if value < minimum:
        raise InputError(f"{name}={value} must be {minimum} or more, e.g. {option}")


def check_callback(fn, name: str, signature: str) -> None:
    if fn is not None and not callable(fn):
        raise InputError(f"{name}={fn!r} is not callable; pass a function {signature} or None")


def generator_seed(seed: int) -> int:
    """The 32-bit seed that noise, tile orientations and canopy take for a user's ``seed`` (any integer >= 0).

    Seeds below 2**32 are used as they are (renders made with them stay the same); a larger seed is
    hashed with numpy's SeedSequence, so seeds no longer repeat every 2**32 (2**32 gave seed 0's render)
    and 2**70 no longer overflows. Two seeds may still share a 32-bit seed by chance (one pair in 2**32).
    """
    seed = int(seed)
    if seed < 2**32:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def _path_or_none(value) -> Path | None:
    return None if value is None else Path(value)


# ---------------------------------------------------------------- the values
@dataclass(frozen=True)
class OsmFetch:
    """Where OSM data comes from when no file is given: an Overpass endpoint and an on-disk cache."""

    url: str | None = None  # default: $GEOGAN_OVERPASS_URL, else the public instance
    cache_dir: PathLike | None = None  # default: $XDG_CACHE_HOME/geogan or ~/.cache/geogan
    use_cache: bool = True


@dataclass(frozen=True, eq=False)
class SourceSettings:
    """What is drawn. ``osm``: a vector file path, a GeoDataFrame, a list of them, or None (the bundled
    sample town, or with a bbox the area fetched from Overpass, see ``fetch``); ``sketch``: a PNG painted
    with the class palette instead; ``class_field``: an attribute holding class names/ids instead of OSM
    tags; ``rules``: a class rules TOML (None: the built-in schema)."""

    osm: object = None
    sketch: Path | None = None
    class_field: str | None = None
    rules: Path | None = None
    fetch: OsmFetch = field(default_factory=OsmFetch)
    options: SourceOptions | None = None  # --class, --height-field, --levels-field, --all-sea (non-OSM layers)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sketch", _path_or_none(self.sketch))
        object.__setattr__(self, "rules", _path_or_none(self.rules))
        if self.fetch is None:
            object.__setattr__(self, "fetch", OsmFetch())
        if self.options is not None and not isinstance(self.options, SourceOptions):
            raise InputError(f"source_options must be a geogan.sources.SourceOptions, not {type(self.options).__name__}")
        self.source_options()  # checks class_field against the options' class

    def source_options(self) -> SourceOptions:
        """The options the sources are read with (``class_field`` folded in)."""
        opts = self.options or SourceOptions()
        if self.class_field is None or opts.class_field == self.class_field:
            return opts
        if opts.class_field is not None:
            raise InputError(f"class_field '{self.class_field}' and source_options.class_field "
                             f"'{opts.class_field}' differ; give one")
        return dataclasses.replace(opts, class_field=self.class_field)


@dataclass(frozen=True)
class AreaSettings:
    """Where: ``bbox`` (xmin, ymin, xmax, ymax) in ``bbox_crs`` (None: the data's extent), the output
    ``crs`` and its pixel size: ``gsd_m`` in ground metres (None: the model's native GSD) or ``res`` in
    output-CRS units, square (exclusive with ``gsd_m``); ``tap``: the grid's bounds on multiples of the
    pixel size (:func:`geogan.grid.grid_from_bbox`)."""

    bbox: BBox | None = None
    bbox_crs: str = "EPSG:4326"
    crs: str = "EPSG:3857"
    gsd_m: float | None = None
    res: float | None = None
    tap: bool = False

    def __post_init__(self) -> None:
        check_gsd_type(self.gsd_m)
        check_res_type(self.res, self.tap)
        if self.res is not None and self.gsd_m is not None:
            raise GridError(RES_AND_GSD)
        user_crs(self.crs, "--crs")
        user_crs(self.bbox_crs, "--bbox-crs")
        if self.bbox is not None:
            object.__setattr__(self, "bbox", tuple(self.bbox))


@dataclass(frozen=True)
class ModelSettings:
    """Which generator (a zoo name or a model .json/.safetensors path) and how it runs: ``device`` auto, cpu
    or cuda; ``precision`` auto, fp32, bf16 or fp16; ``compile`` with torch.compile; ``style_ref``: a
    reference aerial image whose look the render takes on (style-encoder models); ``runtime``: auto, torch or
    onnx (a model exported with ``geogan export-onnx``, run with onnxruntime; auto: torch when installed)."""

    name: str = "default"
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    style_ref: Path | None = None
    runtime: str = "auto"
    style_colours: bool = False  # with style_ref: also move each class's colours toward the photo's

    def __post_init__(self) -> None:
        object.__setattr__(self, "style_ref", _path_or_none(self.style_ref))
        if self.runtime not in ("auto", "torch", "onnx"):
            raise InputError(f"unknown runtime '{self.runtime}'; choose --runtime auto, torch or onnx")


@dataclass(frozen=True)
class TilingSettings:
    """The generator's tiles in model pixels (it runs at the model's native GSD on the canonical grid,
    :mod:`geogan.anchor`): ``tile_px`` (None: the model's training tile, card ``train_tile_px``, default 256)
    and ``overlap_px`` (None: a quarter of the tile)."""

    tile_px: int | None = None
    overlap_px: int | None = None

    def __post_init__(self) -> None:
        check_whole(self.tile_px, "tile_px", "tile_px=256 (--tile-size 256)", 1)
        check_whole(self.overlap_px, "overlap_px", "overlap_px=64 (--overlap 64)", 0)
        if self.tile_px is not None:  # the tile spec's own checks, before any work
            self.spec()

    def spec(self) -> TileSpec:
        """The explicit tiling as a :class:`TileSpec` (``tile_px`` must be set)."""
        if self.tile_px is None:
            raise ValueError("the tiling has no tile size yet; resolve it with geogan.core.tile_spec")
        return TileSpec(int(self.tile_px), int(self.overlap_px if self.overlap_px is not None
                                                else int(self.tile_px) // 4))


@dataclass(frozen=True)
class HeightSettings:
    """How height.tif is made: ``dem`` a DEM raster for the terrain (None: flat ground at 0, or a height
    model's own terrain), ``canopy`` vegetation heights per class (None: the defaults of
    :class:`~geogan.terrain.CanopyParams`), ``hillshade`` also write hillshade.tif."""

    dem: Path | None = None
    canopy: CanopyParams | None = None
    hillshade: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dem", _path_or_none(self.dem))


@dataclass(frozen=True)
class OutputSettings:
    """Where and how the COGs are written: ``out_dir`` (None: an in-memory ``xarray.Dataset``, made in a
    scratch folder), ``overwrite`` existing outputs, ``compression`` a key of :data:`COMPRESSIONS`
    (checked, lower-cased); ``in_memory`` the outputs are read back into memory afterwards (the size
    check counts them); ``mesh``: also write ``scene.glb`` (building solids on a terrain, :mod:`geogan.scene`);
    ``fill``: what the outputs hold outside the input data's coverage (:mod:`geogan.coverage`): "nodata"
    (transparent aerial, nodata heights and classes) or "background" (drawn as background, as if mapped);
    ``blocks_out``: a folder every Dask worker can write: the workers write their blocks' COGs there and
    ``out_dir`` gets only the mosaic index (VRTs and a STAC ItemCollection, :mod:`geogan.blocks`)."""

    out_dir: Path | None = Path("out")
    overwrite: bool = False
    compression: str = "deflate"
    in_memory: bool = False
    mesh: bool = False
    fill: str = "nodata"
    blocks_out: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "compression", check_compression(self.compression))
        object.__setattr__(self, "fill", check_fill(self.fill))
        object.__setattr__(self, "out_dir", _path_or_none(self.out_dir))
        if self.mesh and self.out_dir is None:
            raise InputError("mesh=True writes scene.glb into out_dir; give an out_dir")
        object.__setattr__(self, "blocks_out", _path_or_none(self.blocks_out))
        if self.blocks_out is not None and (self.out_dir is None or self.in_memory or self.mesh):
            raise InputError("blocks_out (--blocks-out) leaves the pixels on the workers and writes an index into "
                             "out_dir; give an out_dir, and no mesh or in-memory result with it")


@dataclass(frozen=True)
class RuntimeSettings:
    """How the render runs: ``seed`` (any integer >= 0; same seed, same output), ``force`` (run even when
    the estimate is over a day or over this machine's memory), ``scheduler`` (a Dask scheduler address) or
    ``workers`` (a local Dask cluster of that many processes; neither: this process), ``batch_tiles``
    (tiles per generator call; None: the device's default), ``progress(fraction, message)`` and
    ``cancel() -> bool`` (checked once per tile batch)."""

    seed: int = 0
    force: bool = False
    scheduler: str | None = None
    workers: int | None = None
    batch_tiles: int | None = None
    progress: ProgressFn | None = None
    cancel: CancelFn | None = None

    def __post_init__(self) -> None:
        check_whole(self.seed, "seed", "seed=0 (--seed 0); any integer 0 or more gives its own repeatable render",
                    0)
        check_whole(self.workers, "workers", "workers=2 (--workers 2: a local Dask cluster of 2 processes); "
                    "leave it out to render in this process", 1)
        check_whole(self.batch_tiles, "batch_tiles", "batch_tiles=4", 1)
        check_callback(self.progress, "progress", "progress(fraction, message)")
        check_callback(self.cancel, "cancel", "cancel() -> bool")

    @property
    def generator_seed(self) -> int:
        """The 32-bit seed the generator's noise takes (:func:`generator_seed`)."""
        return generator_seed(self.seed)

    @property
    def distributed(self) -> bool:
        return bool(self.scheduler) or self.workers is not None


@dataclass(frozen=True)
class RenderSettings:
    """What the core's ``render`` takes besides sources, grid, model and output."""

    tiling: TilingSettings = field(default_factory=TilingSettings)
    heights: HeightSettings = field(default_factory=HeightSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)


@dataclass(frozen=True, eq=False)
class RenderRequest:
    """One render as a front describes it (:func:`geogan.core.run` carries it out)."""

    sources: SourceSettings = field(default_factory=SourceSettings)
    area: AreaSettings = field(default_factory=AreaSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    settings: RenderSettings = field(default_factory=RenderSettings)

    def __post_init__(self) -> None:
        if self.sources.sketch is not None and (self.area.bbox is None or self.sources.osm is not None):
            raise InputError("a sketch is placed by --bbox and replaces --osm; pass --bbox and no --osm")
        if self.output.blocks_out is not None and not self.settings.runtime.distributed:
            raise InputError("--blocks-out is written by Dask workers; add --workers N (a local cluster) or "
                             "--scheduler ADDR")
