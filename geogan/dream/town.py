"""A procedural dream town as vector features (:func:`dream_town`), placed on the earth and written as a
GeoPackage that geogan reads like OSM (:func:`write_town_gpkg`).

Order of work: the street skeleton (:func:`geogan.dream.skeleton.subdivide`), a use per block (more houses
and apartments in the core, more farmland and forest in the fringe; maybe one lake), cul-de-sacs in
built-up blocks, then each block's land (the block less its streets) filled by :func:`fill_block`. One
``numpy`` generator seeded by ``seed`` draws everything, so the same seed and size give the same town.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import shapely
from shapely.geometry import Polygon, box

from ..errors import InputError
from .blocks import Feature, choose_use, feature, fill_block, fringe_of
from .skeleton import Street, culdesacs, subdivide
from .style import TownStyle, town_style

#: Streets and blocks go on this far beyond the area, so that the town does not stop at its edge.
MARGIN_M = 80.0
MAX_TOWN_SIDE_M = 20_000.0
#: A smaller area shows the middle of a town this large (so that it has streets, not just one block).
MIN_TOWN_SIDE_M = 500.0
#: GeoPackage layers of a written town (like GDAL's OSM layers) and the tag columns they carry.
TOWN_LAYERS = ("lines", "multipolygons")
TAG_COLUMNS = ("highway", "width", "building", "building:levels", "roof:shape", "landuse", "leisure", "natural",
               "place")


@dataclass(frozen=True)
class Town:
    """Features in local ground metres (x east, y north, origin at the area's centre), the blocks and
    their uses; ``size_m`` is the area's (width, height)."""

    features: tuple[Feature, ...]
    blocks: tuple[Polygon, ...]
    uses: tuple[str, ...]
    size_m: tuple[float, float]

    def with_tag(self, key: str, value: str | None = None) -> list[Feature]:
        return [f for f in self.features if key in f.tag_dict and (value is None or f.tag_dict[key] == value)]


def _place_lake(blocks: list[Polygon], uses: list[str], rng: np.random.Generator, style: TownStyle) -> list[str]:
    """Maybe turn one block (1-8 ha, out of the very centre) into a lake."""
    if rng.random() >= style.lake_chance:
        return uses
    fit = [i for i, b in enumerate(blocks) if 10_000 <= b.area <= 80_000 and fringe_of(b, style) < 0.9
           and float(np.hypot(*np.asarray(b.centroid.coords[0]))) > 150.0]
    if not fit:
        return uses
    uses = list(uses)
    uses[fit[int(rng.integers(len(fit)))]] = "lake"
    return uses


def _street_features(streets: list[Street]) -> list[Feature]:
    return [feature(s.line, highway=s.kind, width=f"{s.width_m:g}") for s in streets]


def _lands(blocks: list[Polygon], streets: list[Street]) -> list:
    """Each block less the streets' surfaces (their drawn widths)."""
    surfaces = np.array([s.line.buffer(s.width_m / 2) for s in streets], dtype=object)
    tree = shapely.STRtree(surfaces)
    out = []
    for block in blocks:
        near = tree.query(block)
        out.append(block.difference(shapely.union_all(surfaces[near])) if len(near) else block)
    return out


def check_town_size(size_m: tuple[float, float]) -> tuple[float, float]:
    w, h = (float(v) for v in size_m)
    if not (0 < w <= MAX_TOWN_SIDE_M and 0 < h <= MAX_TOWN_SIDE_M):
        raise InputError(f"a dream town of {w:g} x {h:g} m: each side must be between 0 and "
                         f"{MAX_TOWN_SIDE_M:g} m; shrink the bbox")
    return w, h


def dream_town(size_m: tuple[float, float], seed: int = 0, style: str | TownStyle = "town") -> Town:
    """A town filling ``size_m`` = (width, height) ground metres (plus :data:`MARGIN_M` around it; at
    least :data:`MIN_TOWN_SIDE_M` each way)."""
    w, h = check_town_size(size_m)
    if int(seed) < 0:
        raise InputError(f"seed {seed} must be 0 or more")
    style = town_style(style)
    rng = np.random.default_rng([int(seed), 0x70_57_2E])
    gw, gh = max(w, MIN_TOWN_SIDE_M) / 2 + MARGIN_M, max(h, MIN_TOWN_SIDE_M) / 2 + MARGIN_M
    area = box(-gw, -gh, gw, gh)
    streets, blocks, network = subdivide(area, box(-w / 2, -h / 2, w / 2, h / 2), rng, style)
    uses = _place_lake(blocks, [choose_use(b, rng, style) for b in blocks], rng, style)
    for block, use in zip(blocks, uses):
        if use in ("houses", "apartments"):
            streets.extend(culdesacs(block, rng, style, network))
    feats: list[Feature] = []
    if streets:
        for land, use in zip(_lands(blocks, streets), uses):
            feats.extend(fill_block(land, use, rng))
    feats.extend(_street_features(streets))
    return Town(tuple(feats), tuple(blocks), tuple(uses), (w, h))


# ---------------------------------------------------------------- on the earth
def local_crs(center_lonlat: tuple[float, float]) -> pyproj.CRS:
    """A transverse Mercator centred on the area: ground metres there, the town's local frame."""
    lon, lat = center_lonlat
    return pyproj.CRS.from_proj4(f"+proj=tmerc +lat_0={lat!r} +lon_0={lon!r} +k=1 +x_0=0 +y_0=0 "
                                 "+datum=WGS84 +units=m +no_defs")


def town_geoms_lonlat(town: Town, center_lonlat: tuple[float, float]) -> np.ndarray:
    """The town's geometries in longitude/latitude (EPSG:4326)."""
    t = pyproj.Transformer.from_crs(local_crs(center_lonlat), "EPSG:4326", always_xy=True)
    geoms = np.array([f.geom for f in town.features], dtype=object)

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.stack([x, y], 1)

    return shapely.transform(geoms, fn)


def _multipolygon(geom) -> shapely.MultiPolygon:
    """A valid MultiPolygon of an area feature's polygons."""
    parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(geom)))
    return shapely.multipolygons([p for p in parts if isinstance(p, Polygon)])


def _layer_rows(town: Town, geoms: np.ndarray, lines: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """(WKB, tag columns) of the line or the area features."""
    pick = [i for i, g in enumerate(geoms) if (shapely.get_type_id(g) in (1, 5)) == lines and not g.is_empty]
    sel = geoms[pick] if lines else np.array([_multipolygon(g) for g in geoms[pick]], dtype=object)
    columns = [np.array([town.features[i].tag_dict.get(k) for i in pick], dtype=object) for k in TAG_COLUMNS]
    return shapely.to_wkb(sel), columns


def write_town_gpkg(town: Town, path: str | os.PathLike, center_lonlat: tuple[float, float]) -> Path:
    """Write the town as a GeoPackage in EPSG:4326 with OSM tag columns (layers ``lines`` and
    ``multipolygons``, like GDAL's OSM driver), readable by any geogan command."""
    import pyogrio.raw

    path = Path(path)
    geoms = town_geoms_lonlat(town, center_lonlat)
    for layer, lines in zip(TOWN_LAYERS, (True, False)):
        wkb, columns = _layer_rows(town, geoms, lines)
        pyogrio.raw.write(path, wkb, columns, list(TAG_COLUMNS), layer=layer, driver="GPKG",
                          geometry_type="LineString" if lines else "MultiPolygon", crs="EPSG:4326",
                          append=layer != TOWN_LAYERS[0])
    return path
