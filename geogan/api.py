"""The public Python API: :func:`render`, :func:`rasterize`, :func:`rasterize_array` and :class:`Renderer`.

Thin adapters over the render core (:mod:`geogan.core`): each turns its plain keyword arguments (paths, a
bbox, CRS strings, a GSD in ground metres, ...) into the settings values of :mod:`geogan.settings`, which
check themselves at construction, before any heavy work, and hands them to the core. Progress comes
through ``progress(fraction, message)``; the render stops when ``cancel()`` returns True. The CLI builds
the same values; the QGIS worker sends :func:`render`'s keyword arguments, checked by :func:`request_from_kwargs`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

from . import core
from .sources import SourceOptions
from .infer import LoadedModel, load_model
from .classes import load_schema
from .inputs import materialize_sources, sample_osm_path
from .options import check_names, field_names
from .pipeline import CancelFn, ProgressFn, RenderResult
from .settings import (AreaSettings, BBox, HeightSettings, ModelSettings, OsmFetch, OutputSettings, PathLike,
                       RenderRequest, RenderSettings, RuntimeSettings, SourceSettings, TilingSettings, generator_seed)

__all__ = ["render", "rasterize", "rasterize_array", "Renderer", "OsmFetch", "RenderRequest", "request_from_kwargs",
           "run_request", "generator_seed", "sample_osm_path", "materialize_sources", "MAX_RASTERIZE_PX",
           "RENDER_KEYWORDS", "RASTERIZE_KEYWORDS"]

MAX_RASTERIZE_PX = core.MAX_RASTERIZE_PX


# ---------------------------------------------------------------- render()'s keywords: the settings' fields
#: The settings values of a :class:`~geogan.settings.RenderRequest`, in the order they are made (and so
#: checked: the output's compression first).
_PART_TYPES = {"output": OutputSettings, "area": AreaSettings, "runtime": RuntimeSettings, "tiling": TilingSettings,
               "heights": HeightSettings, "sources": SourceSettings, "model": ModelSettings}
#: render() keywords named otherwise than the field they set.
_RENAMED = {("sources", "fetch"): "osm_fetch", ("sources", "options"): "source_options", ("model", "name"): "model"}
#: Settings fields that are not render() keywords (``in_memory``: ``out_dir=None`` says it).
_NOT_KEYWORDS = {("output", "in_memory"), ("runtime", "batch_tiles")}


def _keyword_table() -> dict[str, tuple[str, str]]:
    """render() keyword -> (part, field): every field of the settings values, renamed or left out as above."""
    table = {}
    for part, cls in _PART_TYPES.items():
        for name in field_names(cls):
            if (part, name) not in _NOT_KEYWORDS:
                table[_RENAMED.get((part, name), name)] = (part, name)
    return table


#: render()'s keywords, each the field of one settings value (a field added to a settings value is a keyword).
RENDER_KEYWORDS = _keyword_table()


def render(osm: PathLike | Sequence[PathLike] | None = None, *, bbox: BBox | None = None, crs: str = "EPSG:3857",
           gsd_m: float | None = None, out_dir: PathLike | None = "out", model: str = "default",
           progress: ProgressFn | None = None, cancel: CancelFn | None = None,
           _preloaded: LoadedModel | None = None, **options):
    """Render synthetic aerial imagery, heights and a class map for an area.

    ``osm``: vector sources: a path (OSM .osm/.pbf, GPKG, GeoJSON, Shapefile), a GeoDataFrame (any CRS; a
    ``class`` column or OSM tag columns) or a list of them; None with ``bbox=None`` renders the bundled sample
    town, None with a bbox fetches the area from an Overpass API (``osm_fetch``). ``bbox``: (xmin, ymin, xmax,
    ymax) in ``bbox_crs`` (default EPSG:4326); None: the data's extent. ``crs``: the output CRS. ``gsd_m``:
    the output pixel size in *ground* metres (default: the model's native GSD). ``out_dir``: where
    aerial.tif, height.tif and classes.tif (COGs) go; None returns an ``xarray.Dataset`` instead. ``model``:
    a zoo name (``geogan models``) or a model .json/.safetensors path. ``progress(fraction, message)`` is
    called after every batch of tiles; ``cancel() -> bool`` is checked once per tile batch.

    ``options`` are the other settings, as keywords, each a field of one settings value of
    :mod:`geogan.settings` (documented there; the full table is in docs/api.md):

    * :class:`~geogan.settings.AreaSettings`: ``bbox_crs``, ``res`` (square pixels in CRS units, instead
      of ``gsd_m``), ``tap`` (bounds on multiples of the pixel size, as ``gdalwarp -tap``);
    * :class:`~geogan.settings.SourceSettings`: ``sketch`` (a class-palette PNG over ``bbox``),
      ``class_field``, ``rules``, ``osm_fetch`` (an :class:`OsmFetch`), ``source_options``;
    * :class:`~geogan.settings.ModelSettings`: ``device``, ``precision``, ``compile``, ``style_ref``,
      ``style_colours``, ``runtime``;
    * :class:`~geogan.settings.TilingSettings`: ``tile_px``, ``overlap_px`` (model pixels);
    * :class:`~geogan.settings.HeightSettings`: ``dem``, ``canopy``, ``hillshade``;
    * :class:`~geogan.settings.OutputSettings`: ``overwrite``, ``compression``, ``mesh``, and every other
      output field (e.g. ``fill``, ``blocks_out``);
    * :class:`~geogan.settings.RuntimeSettings`: ``seed``, ``force``, ``scheduler``, ``workers``.

    A name that is none of these is an :class:`~geogan.options.UnknownOptionError` naming the nearest; a bad
    value is the one-line error of the settings value that holds it; both before any work.

    Returns a ``RenderResult`` (the output paths, the grid, tile count and timings), or an
    ``xarray.Dataset`` (``aerial`` (band, y, x), ``height`` (y, x), ``classes`` (y, x)) when ``out_dir`` is
    None.
    """
    named = {"osm": osm, "bbox": bbox, "crs": crs, "gsd_m": gsd_m, "out_dir": out_dir, "model": model,
             "progress": progress, "cancel": cancel}
    return run_request(request_from_kwargs({**named, **options}), _preloaded)


def request_from_kwargs(kwargs: Mapping[str, object], in_memory: bool = False) -> RenderRequest:
    """:func:`render`'s keyword arguments (any subset) as a checked :class:`~geogan.settings.RenderRequest`.

    A name :func:`render` does not take is a one-line InputError (the QGIS worker's requests are checked
    here); each value is checked by the settings value that holds it; a keyword left out takes its default.
    """
    parts = _settings_values(kwargs, "render", in_memory)
    settings = RenderSettings(parts["tiling"], parts["heights"], parts["runtime"])
    return RenderRequest(parts["sources"], parts["area"], parts["model"], parts["output"], settings)


def _settings_values(kwargs: Mapping[str, object], function: str, in_memory: bool = False) -> dict[str, object]:
    """Part name -> its settings value, made from the render keywords in ``kwargs`` (checked: names, then
    each value by the settings value holding it, in :data:`_PART_TYPES` order)."""
    check_names(kwargs, RENDER_KEYWORDS, function)
    fields: dict[str, dict[str, object]] = {part: {} for part in _PART_TYPES}
    for keyword, value in kwargs.items():
        part, name = RENDER_KEYWORDS[keyword]
        fields[part][name] = value
    fields["output"]["in_memory"] = in_memory
    return {part: cls(**fields[part]) for part, cls in _PART_TYPES.items()}


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


#: rasterize()'s keyword options: the render keywords a class map uses.
RASTERIZE_KEYWORDS = ("bbox_crs", "class_field", "rules", "osm_fetch", "source_options", "overwrite",
                      "force", "compression", "fill")


def rasterize(osm: PathLike | Sequence[PathLike] | None = None, *, bbox: BBox | None = None, crs: str = "EPSG:3857",
              gsd_m: float = 0.5, res: float | None = None, tap: bool = False, out: PathLike = "classes.tif",
              progress: ProgressFn | None = None, cancel: CancelFn | None = None, **options) -> Path:
    """Rasterize vector sources into a class-map COG (uint8 with the schema palette) at ``out``.

    The parameters and ``options`` (:data:`RASTERIZE_KEYWORDS`) are :func:`render`'s (``compression``:
    "deflate" or "zstd"; the class map is never lossy, so "jpeg" writes DEFLATE; ``res`` replaces ``gsd_m``;
    ``fill``: outside the data's coverage class 255, nodata, or "background"); another name is an
    :class:`~geogan.options.UnknownOptionError`.
    """
    named = {"osm": osm, "bbox": bbox, "crs": crs, "gsd_m": None if res is not None else gsd_m, "res": res,
             "tap": tap, "progress": progress, "cancel": cancel}
    check_names(options, (*named, "out", *RASTERIZE_KEYWORDS), "rasterize")
    parts = _settings_values({**named, **options}, "rasterize")
    output = parts["output"]
    return core.rasterize(parts["sources"], parts["area"], Path(out), overwrite=output.overwrite,
                          compression=output.compression, runtime=parts["runtime"], fill=output.fill)


def rasterize_array(osm, bbox: BBox | None = None, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857",
                    gsd_m: float = 0.5, rules: PathLike | None = None, class_field: str | None = None,
                    osm_fetch: OsmFetch | None = None, source_options: SourceOptions | None = None,
                    fill: str = "nodata"):
    """Class map as an in-memory array: returns ``(classes uint8 (H, W), grid)`` (255 outside the data's
    coverage unless ``fill="background"``)."""
    return core.rasterize_array(SourceSettings(osm, None, class_field, rules, osm_fetch, source_options),
                                AreaSettings(bbox, bbox_crs, crs, gsd_m), fill)
