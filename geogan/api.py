"""The public Python API: :func:`render`, :func:`rasterize`, :func:`rasterize_array` and :class:`Renderer`.

Thin adapters over the render core (:mod:`geogan.core`): each turns its plain keyword arguments (paths, a
bbox, CRS strings, a GSD in ground metres, ...) into the settings values of :mod:`geogan.settings`, which
check themselves at construction, before any heavy work, and hands them to the core. Progress comes
through ``progress(fraction, message)``; the render stops when ``cancel()`` returns True. The CLI builds
the same values; the QGIS worker sends :func:`render`'s keyword arguments, checked by :func:`request_from_kwargs`.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Mapping, Sequence

from . import core
from .errors import InputError
from .sources import SourceOptions
from .infer import LoadedModel, load_model
from .classes import load_schema
from .inputs import materialize_sources, sample_osm_path
from .pipeline import CancelFn, ProgressFn, RenderResult
from .settings import (AreaSettings, BBox, HeightSettings, ModelSettings, OsmFetch, OutputSettings, PathLike,
                       RenderRequest, RenderSettings, RuntimeSettings, SourceSettings, TilingSettings,
                       check_compression, generator_seed)
from .terrain import CanopyParams

__all__ = ["render", "rasterize", "rasterize_array", "Renderer", "OsmFetch", "RenderRequest", "request_from_kwargs",
           "run_request", "generator_seed", "sample_osm_path", "materialize_sources", "MAX_RASTERIZE_PX"]

MAX_RASTERIZE_PX = core.MAX_RASTERIZE_PX


def render(osm: PathLike | Sequence[PathLike] | None = None, bbox: BBox | None = None, bbox_crs: str = "EPSG:4326",
           crs: str = "EPSG:3857", gsd_m: float | None = None, out_dir: PathLike | None = "out", model: str = "default",
           device: str = "auto", tile_px: int | None = None, overlap_px: int | None = None, seed: int = 0,
           overwrite: bool = False,
           rules: PathLike | None = None, force: bool = False, class_field: str | None = None,
           dem: PathLike | None = None, hillshade: bool = False, canopy: CanopyParams | None = None,
           scheduler: str | None = None, workers: int | None = None, osm_fetch: OsmFetch | None = None,
           sketch: PathLike | None = None, style_ref: PathLike | None = None, progress: ProgressFn | None = None,
           cancel: CancelFn | None = None, compile: bool = False, compression: str = "deflate",
           precision: str = "auto", res: float | None = None, tap: bool = False,
           source_options: SourceOptions | None = None, mesh: bool = False, runtime: str = "auto",
           style_colours: bool = False, fill: str = "nodata", _preloaded: LoadedModel | None = None,
           _in_memory: bool = False):
    """Render synthetic aerial imagery, heights and a class map for an area.

    Parameters
    ----------
    osm : path or paths to vector sources (OSM .osm/.pbf, GPKG, GeoJSON, Shapefile);
        None with ``bbox=None`` renders the bundled sample town; None with a bbox fetches the area
        from an Overpass API (see ``osm_fetch``: endpoint and cache).
    bbox : (xmin, ymin, xmax, ymax) in ``bbox_crs``; None = the data's extent.
    crs : output CRS. gsd_m : output pixel size in *ground* metres (default: the model's native GSD); the grid
        covers the bbox exactly, so its pixels may be a little off square in CRS units.
    res : output pixel size in *output-CRS units*, square (exclusive with ``gsd_m``; ``gdalwarp -tr``).
    tap : snap the grid's bounds outwards to multiples of the pixel size (``gdalwarp -tap``), so renders of
        neighbouring areas line up pixel for pixel (with ``gsd_m``: the pixel size it gives at the centre).
    out_dir : directory receiving aerial.tif, height.tif, classes.tif (COGs); None returns an
        ``xarray.Dataset`` (``aerial`` (band, y, x), ``height`` (y, x), ``classes`` (y, x); rioxarray CRS).
    osm may also be a GeoDataFrame (any CRS; its ``class`` column, or OSM tag columns, say the class).
    model : a zoo name (``geogan models``) or a path to a model .json/.safetensors.
    device : auto, cpu or cuda. tile_px, overlap_px : the generator's tiling in *model* pixels (the model
        always runs at its native GSD on a world-aligned grid, then the result is warped onto the output grid;
        default: the model's training tile, 256 px, with a quarter overlap).
    seed : any integer 0 or more; same seed -> identical output (:func:`generator_seed`).
    overwrite : replace existing outputs. rules : a class rules TOML (default: built-in schema).
    force : run even when the estimate is over a day. class_field : attribute with a schema class
        name or id (for hand-drawn layers) instead of OSM tags.
    dem : a DEM raster (any GDAL raster, any CRS): terrain under objects, in the DEM's vertical datum;
        without it the ground is flat at 0. hillshade : also write hillshade.tif (light from the NW).
    canopy : vegetation canopy heights per class (default: woodland 15 m +-30 %, wetland 1 m).
    style_ref : a reference aerial image whose look (colours, texture) the render takes on; needs a model
        trained with a style encoder (``model="style"``). style_colours : with ``style_ref``, also move each
        class's colours toward the photo's own (labelled by the segmenter; :mod:`geogan.style_reference`).
    sketch : a PNG painted with the class palette, stretched over ``bbox`` (instead of vector sources).
    scheduler : a Dask scheduler address (``tcp://host:8786``) to render blocks of tiles on a cluster;
        workers : or the number of workers of a local Dask cluster. Output equals the local render.
    progress : ``progress(fraction, message)``. cancel : ``cancel() -> bool``, checked once per tile.
    compile : ``torch.compile`` the generator (CUDA graphs on a GPU; local renders, not Dask workers).
    precision : the generator's arithmetic: ``"auto"`` (fp16 on a CUDA GPU, fp32 on CPU), ``"fp32"``,
        ``"bf16"`` (about 1.4x faster on CPUs with AVX512-BF16 or AMX, within about 1 grey level) or
        ``"fp16"`` (GPU only). A half-precision batch that overflows is run again in fp32.
    compression : the COGs' compression: ``"deflate"`` (lossless, read everywhere), ``"zstd"`` (lossless,
        about half the CPU time for the aerial image at the same size; readers need GDAL >= 2.3 / libtiff
        with zstd) or ``"jpeg"`` (aerial and hillshade lossy JPEG quality 90, RGB as YCbCr, several times
        smaller; heights and classes stay lossless DEFLATE).
    source_options : a :class:`geogan.sources.SourceOptions` for non-OSM layers: ``class_name`` (every feature
        gets that class, e.g. "building"), ``height_field`` / ``levels_field`` (measured heights / storeys;
        default: a field named ``height`` in any letter case), ``sea_without_coast``.
    runtime : ``"auto"``, ``"torch"`` or ``"onnx"``: run a model exported with ``geogan export-onnx`` (its
        card beside the ``.onnx``) with onnxruntime (CPU, fp32; no torch needed for the generator).
    mesh : also write ``scene.glb`` beside the rasters: one closed solid per building on a simplified
        terrain, placed in a local east-north-up frame (:mod:`geogan.scene`; needs vector source files).
    fill : outside the input data's coverage (an OSM file's bounds, a layer's extent; :mod:`geogan.coverage`)
        ``"nodata"`` (the default: aerial transparent, height and classes nodata, and a warning saying how much
        of the area) or ``"background"`` (drawn as background as if it were mapped, with the warning).

    Returns
    -------
    RenderResult with the three paths, the grid, tile count and timing (an xarray.Dataset when
    ``out_dir`` is None).
    """
    args = dict(locals())
    public = {k: v for k, v in args.items() if not k.startswith("_")}
    return run_request(request_from_kwargs(public, in_memory=_in_memory), _preloaded)


def _render_defaults() -> dict[str, object]:
    """:func:`render`'s public keyword arguments and their defaults."""
    return {name: p.default for name, p in inspect.signature(render).parameters.items() if not name.startswith("_")}


def request_from_kwargs(kwargs: Mapping[str, object], in_memory: bool = False) -> RenderRequest:
    """:func:`render`'s keyword arguments (any subset) as a checked :class:`~geogan.settings.RenderRequest`.

    A name :func:`render` does not take is a one-line InputError (the QGIS worker's requests are checked
    here); each value is checked by the settings value that holds it.
    """
    defaults = _render_defaults()
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise InputError(f"render() takes no argument {', '.join(map(repr, unknown))}; its arguments are "
                         f"{', '.join(defaults)}")
    a = {**defaults, **kwargs}
    output = OutputSettings(a["out_dir"], a["overwrite"], a["compression"], in_memory, a["mesh"],  # compression first
                            a["fill"])
    area = AreaSettings(a["bbox"], a["bbox_crs"], a["crs"], a["gsd_m"], a["res"], a["tap"])
    runtime = RuntimeSettings(a["seed"], a["force"], a["scheduler"], a["workers"], progress=a["progress"],
                              cancel=a["cancel"])
    settings = RenderSettings(TilingSettings(a["tile_px"], a["overlap_px"]),
                              HeightSettings(a["dem"], a["canopy"], a["hillshade"]), runtime)
    sources = SourceSettings(a["osm"], a["sketch"], a["class_field"], a["rules"], a["osm_fetch"], a["source_options"])
    return RenderRequest(sources, area,
                         ModelSettings(a["model"], a["device"], a["precision"], a["compile"], a["style_ref"],
                                       a["runtime"], a["style_colours"]),
                         output, settings)


def run_request(request: RenderRequest, preloaded: LoadedModel | None = None):
    """Carry out ``request`` (:func:`geogan.core.run`); with no ``out_dir`` render into a scratch folder and
    return an ``xarray.Dataset``."""
    if request.output.out_dir is not None:
        return core.run(request, preloaded)
    import tempfile

    from .xarray_io import load_dataset
    with tempfile.TemporaryDirectory(prefix="geogan-") as tmp:
        output = dataclasses.replace(request.output, out_dir=Path(tmp), overwrite=True, in_memory=True)
        return load_dataset(core.run(dataclasses.replace(request, output=output), preloaded))


class Renderer:
    """Loads a model once and renders many areas (what long-lived fronts use).

    >>> r = Renderer(model="default", device="auto")
    >>> r.render(osm="town.osm", out_dir="a"); r.render(osm="town.osm", bbox=..., out_dir="b")
    """

    def __init__(self, model: str = "default", device: str = "auto", rules: PathLike | None = None,
                 precision: str = "auto", runtime: str = "auto") -> None:
        self.model_name, self.rules = model, rules
        ModelSettings(model, device, precision, runtime=runtime)  # the one-line checks
        self.loaded = load_model(model, load_schema(rules), device, precision=precision, runtime=runtime)

    def render(self, **kwargs) -> RenderResult:
        kwargs.setdefault("rules", self.rules)
        return render(model=self.model_name, _preloaded=self.loaded, **kwargs)


def rasterize(osm: PathLike | Sequence[PathLike] | None = None, bbox: BBox | None = None,
              bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float = 0.5,
              out: PathLike = "classes.tif", rules: PathLike | None = None, class_field: str | None = None,
              overwrite: bool = False, force: bool = False, osm_fetch: OsmFetch | None = None,
              progress: ProgressFn | None = None, cancel: CancelFn | None = None,
              compression: str = "deflate", source_options: SourceOptions | None = None,
              res: float | None = None, tap: bool = False, fill: str = "nodata") -> Path:
    """Rasterize vector sources into a class-map COG (uint8 with the schema palette). Same parameters as render
    (``compression``: "deflate" or "zstd"; the class map is never lossy, so "jpeg" writes DEFLATE; ``res``
    replaces ``gsd_m``; ``fill``: outside the data's coverage class 255, nodata, or "background")."""
    compression = check_compression(compression)  # before any work
    area = AreaSettings(bbox, bbox_crs, crs, None if res is not None else gsd_m, res, tap)
    runtime = RuntimeSettings(force=force, progress=progress, cancel=cancel)
    sources = SourceSettings(osm, None, class_field, rules, osm_fetch, source_options)
    return core.rasterize(sources, area, Path(out), overwrite=overwrite, compression=compression, runtime=runtime,
                          fill=fill)


def rasterize_array(osm, bbox: BBox | None = None, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857",
                    gsd_m: float = 0.5, rules: PathLike | None = None, class_field: str | None = None,
                    osm_fetch: OsmFetch | None = None, source_options: SourceOptions | None = None,
                    fill: str = "nodata"):
    """Class map as an in-memory array: returns ``(classes uint8 (H, W), grid)`` (255 outside the data's
    coverage unless ``fill="background"``)."""
    return core.rasterize_array(SourceSettings(osm, None, class_field, rules, osm_fetch, source_options),
                                AreaSettings(bbox, bbox_crs, crs, gsd_m), fill)
