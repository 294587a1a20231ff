"""Building heights from OSM tags and their roofs on the output grid (metres above local ground).

OSM semantics (Simple 3D Buildings, https://wiki.openstreetmap.org/wiki/Simple_3D_Buildings)
    ``height``              top of the building or part above ground, *including* the roof
    ``min_height``          bottom of a part above ground (an overhang, a bridge-like part)
    ``building:levels``     storeys above ground *excluding* roof storeys; they count from the
                            ground, so ``building:min_level`` does not lower the top
    ``building:min_level``  storeys skipped below the part: bottom = min_level x storey height
    ``roof:height``         roof height (ridge - eaves); part of ``height`` when that is given,
                            on top of ``building:levels`` x storey height otherwise
    ``roof:levels``         roof storeys: roof height = roof:levels x storey height
    ``roof:angle``          roof pitch in degrees: roof height = tan(angle) x half the width
    ``roof:shape``          flat, gabled, hipped, half-hipped, pyramidal, skillion, dome, onion,
                            round, gambrel, mansard, cone, saltbox, butterfly; others are drawn
                            flat (with one warning per value)
    ``roof:direction``      compass direction (degrees clockwise from north, or N, NNE, ...) the
                            roof faces: a skillion slopes down towards it
    ``roof:orientation``    ``along`` (default: ridge along the long side) or ``across``

Top height, in order: ``height``; ``building:levels`` x storey + roof height; a default per
``building`` type (roof inside it). A roof:shape without a roof height gets a default from a
pitch (30 degrees, a skillion 15 degrees) over the half-width of the footprint's minimum
rotated rectangle, never taller than the walls under it. ``min_height`` (else
``building:min_level`` x storey) is the part's bottom; one at or above the top is ignored with
a warning.

``height.tif`` is the top surface: a pixel shows the highest roof over it. Where
``building:part`` features exist they replace the building outline under them (the S3DB rule:
the outline is only the 2-D footprint then); several parts overlapping give their maximum.
The bottom height of the part that makes the surface is available as a second raster
(:func:`geogan.rasterizer.rasterize_object_heights` with ``with_bottom=True``) and per feature as
``BuildingTable.min_heights_m`` for a mesh exporter.

Roofs are approximated by a per-pixel profile inside the footprint, computed in local ground
metres around each building (a 2x2 Jacobian from the output CRS to east/north ground metres at
the building, so EPSG:3857 at 60 N, where a projected metre is half a ground metre, and
lon/lat grids give the same roof as UTM):

* gabled / round / gambrel / saltbox / butterfly: a function of the distance across the ridge,
  the ridge running along the long axis of the minimum rotated rectangle (``across`` turns it);
* hipped / mansard / half-hipped: rise with the distance to the footprint edge at the pitch that
  puts the ridge at the widest point (the straight-skeleton roof of a convex footprint);
* pyramidal / cone / dome / onion: planes (or a circular profile) from every edge to one apex
  (the centroid);
* skillion: linear along ``roof:direction`` (else down across the short axis, to the side
  facing south), from the top at the back to the eaves at the front.

This module is plain data and geometry (tags in, heights and roof profiles out); burning them
into a grid is :mod:`geogan.rasterizer`'s. Pixel rule as for the class map: a pixel belongs to
a footprint when its centre lies inside (which feature is on top comes from the same GDAL
rasterization as the class map; the roof profile is evaluated at the pixel centres). Each roof
is computed only on the pixels of its bounding window, from the footprint alone, so the result
does not depend on how the output is cut into strips; profile heights are rounded to 1 mm so
strips agree bit for bit.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pyproj
import shapely

from .classes import parse_length_m, parse_number

log = logging.getLogger("geogan")

STOREY_HEIGHT_M = 3.0

# Default total height in metres by building=* value when no height tag exists.
DEFAULT_BUILDING_HEIGHT_M = {
    "house": 7.0, "detached": 7.0, "semidetached_house": 7.0, "terrace": 8.0, "residential": 9.0,
    "bungalow": 4.5, "cabin": 4.0, "hut": 3.0, "shed": 3.0, "garage": 3.0, "garages": 3.0, "carport": 3.0,
    "roof": 4.0, "apartments": 15.0, "dormitory": 12.0, "hotel": 18.0, "office": 18.0, "commercial": 12.0,
    "retail": 7.0, "supermarket": 7.0, "kiosk": 3.0, "industrial": 10.0, "warehouse": 10.0,
    "factory": 12.0, "manufacture": 12.0, "barn": 8.0, "farm": 7.0, "farm_auxiliary": 6.0,
    "greenhouse": 4.0, "church": 18.0, "chapel": 8.0, "cathedral": 30.0, "mosque": 15.0,
    "temple": 12.0, "school": 10.0, "university": 15.0, "hospital": 18.0, "public": 10.0,
    "civic": 10.0, "government": 12.0, "train_station": 10.0, "transportation": 8.0,
    "stadium": 20.0, "sports_hall": 10.0, "parking": 10.0, "service": 4.0, "transformer_tower": 6.0,
    "water_tower": 20.0, "tower": 25.0, "yes": 8.0,
}
DEFAULT_HEIGHT_M = 8.0

# Roof shapes drawn with a profile; index = code stored in BuildingTable.roof_shapes.
ROOF_SHAPES = ("flat", "gabled", "hipped", "half-hipped", "pyramidal", "skillion", "dome", "onion", "round",
               "gambrel", "mansard", "cone", "saltbox", "butterfly")
ROOF_CODE = {name: i for i, name in enumerate(ROOF_SHAPES)}
_ROOF_ALIASES = {"half_hipped": "half-hipped", "halfhipped": "half-hipped", "pyramid": "pyramidal",
                 "gable": "gabled", "hip": "hipped", "shed": "skillion", "mono-pitched": "skillion",
                 "lean_to": "skillion", "barrel": "round", "flat_roof": "flat", "side_hipped": "hipped"}
# Default pitch (degrees) when a shape is given without roof:height / roof:levels / roof:angle.
DEFAULT_ROOF_PITCH_DEG = 30.0
DEFAULT_SKILLION_PITCH_DEG = 15.0
_DOME_SHAPES = {"dome", "onion"}
_COMPASS = {name: i * 22.5 for i, name in enumerate(
    ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"))}
_PROFILE_ROUND_M = 1e-3


# ----------------------------------------------------------------------------- tags


@dataclass(frozen=True)
class BuildingHeights:
    """3-D description of one building or building part (metres above local ground).

    ``height_m`` is the top (ridge), ``min_height_m`` the bottom of the part, the roof
    spans ``eaves_m`` .. ``height_m`` with shape ``roof_shape`` ("flat" when none or
    unknown). ``roof_direction_deg`` is NaN when not tagged. ``warnings`` are one-line
    messages about tags that were ignored or clamped.
    """

    height_m: float
    min_height_m: float = 0.0
    roof_shape: str = "flat"
    roof_height_m: float = 0.0
    roof_direction_deg: float = math.nan
    roof_across: bool = False
    is_part: bool = False
    warnings: tuple[str, ...] = ()
    is_tree: bool = False  # a tree crown (tree_heights), not a building: it follows the terrain

    @property
    def eaves_m(self) -> float:
        return self.height_m - self.roof_height_m


def parse_direction_deg(text: object) -> float:
    """``roof:direction`` as degrees clockwise from north: a number ("135", "135°") or N, NNE, ..."""
    if text is None:
        return math.nan
    s = str(text).strip().replace("°", "")
    if s.upper() in _COMPASS:
        return _COMPASS[s.upper()]
    value = parse_number(s)
    return math.nan if value is None or not math.isfinite(value) else value % 360.0


def roof_shape_of(tags: Mapping[str, str]) -> tuple[str, str | None]:
    """The normalised ``roof:shape`` and the raw value when it is unknown (drawn flat)."""
    raw = tags.get("roof:shape")
    if raw is None or not str(raw).strip():
        return "flat", None
    value = str(raw).strip().lower().replace(" ", "_")
    value = _ROOF_ALIASES.get(value, value)
    if value in ROOF_CODE:
        return value, None
    return "flat", str(raw)


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _non_negative(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _default_roof_height_m(shape: str, half_width_m: float | None, angle_deg: float | None) -> float:
    """Roof height from a pitch over the footprint's half-width (a skillion spans the full width)."""
    if shape == "flat" or not half_width_m or half_width_m <= 0:
        return 0.0
    if shape in _DOME_SHAPES or shape == "round":
        return half_width_m if angle_deg is None else half_width_m * math.tan(math.radians(angle_deg))
    if angle_deg is None:
        angle_deg = DEFAULT_SKILLION_PITCH_DEG if shape == "skillion" else DEFAULT_ROOF_PITCH_DEG
    run_m = 2.0 * half_width_m if shape == "skillion" else half_width_m
    return run_m * math.tan(math.radians(min(max(angle_deg, 0.0), 80.0)))


def _explicit_roof_m(tags: Mapping[str, str], storey_height_m: float) -> float | None:
    """Roof height from ``roof:height``, else ``roof:levels`` x storey height; None when untagged."""
    roof_tag_m = _non_negative(parse_length_m(tags.get("roof:height")))
    if roof_tag_m is not None:
        return roof_tag_m
    roof_levels = _non_negative(parse_number(tags.get("roof:levels")))
    return roof_levels * storey_height_m if roof_levels is not None else None


def _roof_angle_deg(tags: Mapping[str, str]) -> float | None:
    angle = parse_number(str(tags.get("roof:angle", "")).replace("°", "")) if tags.get("roof:angle") else None
    return angle if angle is not None and 0 <= angle < 90 else None


def _bottom_m(tags: Mapping[str, str], storey_height_m: float) -> float:
    """``min_height``, else ``building:min_level`` x storey height, else 0."""
    min_height = _non_negative(parse_length_m(tags.get("min_height")))
    if min_height is not None:
        return min_height
    min_level = _non_negative(parse_number(tags.get("building:min_level")))
    return min_level * storey_height_m if min_level else 0.0


def _tagged_top_m(tags: Mapping[str, str], storey_height_m: float) -> tuple[float | None, float | None]:
    """``(top, None)``, the roof inside it (``height`` or the type's default), or ``(None, top of the walls)``
    from ``building:levels``."""
    height = _positive(parse_length_m(tags.get("height")))
    if height is not None:
        return height, None
    levels = _positive(parse_number(tags.get("building:levels")))
    if levels is not None:
        return None, levels * storey_height_m
    kind = (tags.get("building:part") if is_building_part(tags) else tags.get("building")) or "yes"
    return DEFAULT_BUILDING_HEIGHT_M.get(kind, DEFAULT_HEIGHT_M), None


def _roof_within_top(shape: str, top_m: float, bottom_m: float, explicit_roof_m: float | None,
                     default_roof_m: float, notes: list[str]) -> tuple[float, float]:
    """``(bottom, roof height)`` of a part whose top includes its roof."""
    if bottom_m >= top_m:
        notes.append(f"min_height/building:min_level {bottom_m:g} m at or above the top {top_m:g} m ignored")
        bottom_m = 0.0
    if shape == "flat":
        return bottom_m, 0.0
    if explicit_roof_m is None:  # a default roof is never taller than the walls under it
        return bottom_m, min(default_roof_m, (top_m - bottom_m) / 2.0)
    if explicit_roof_m > top_m - bottom_m:
        notes.append(f"roof:height {explicit_roof_m:g} m taller than the part ({top_m - bottom_m:g} m) clamped")
        return bottom_m, top_m - bottom_m
    return bottom_m, explicit_roof_m


def _roof_on_walls(shape: str, walls_top_m: float, bottom_m: float, explicit_roof_m: float | None,
                   default_roof_m: float, storey_height_m: float, notes: list[str]) -> tuple[float, float, float]:
    """``(top, bottom, roof height)`` of a part whose roof stands on walls ``walls_top_m`` high."""
    if shape == "flat":
        roof_m = 0.0
        extra_m = explicit_roof_m or 0.0  # a flat roof storey still adds to the top
    else:
        walls_m = max(walls_top_m - bottom_m, storey_height_m)
        roof_m = explicit_roof_m if explicit_roof_m is not None else min(default_roof_m, walls_m)
        extra_m = roof_m
    top_m = walls_top_m + extra_m
    if bottom_m >= top_m:
        notes.append(f"min_height/building:min_level {bottom_m:g} m at or above the top {top_m:g} m ignored")
        bottom_m = 0.0
    return top_m, bottom_m, roof_m


# the tags building_heights reads (nothing else of a feature changes its result)
_HEIGHT_TAGS = ("height", "min_height", "building", "building:part", "building:levels", "building:min_level",
                "roof:shape", "roof:height", "roof:levels", "roof:angle", "roof:orientation", "roof:direction")


def building_heights(tags: Mapping[str, str], storey_height_m: float = STOREY_HEIGHT_M,
                     half_width_m: float | None = None) -> BuildingHeights:
    """Top, bottom and roof of a building (part) from its OSM tags (see the module docstring).

    ``half_width_m`` is half the short side of the footprint's minimum rotated rectangle in
    ground metres; it sets the default roof height for a ``roof:shape`` given without
    ``roof:height`` / ``roof:levels`` (and the height of a ``roof:angle``). None: such
    roofs are flat.

    Remembered for recent combinations of the height tags (a town's buildings share a few): the half-width
    only counts when a ``roof:shape`` is tagged.
    """
    values = tuple(tags.get(k) for k in _HEIGHT_TAGS)
    width = half_width_m if tags.get("roof:shape") is not None else None
    try:
        return _remembered_heights(values, storey_height_m, width)
    except TypeError:  # a value that cannot be a key (not text)
        return _building_heights(tags, storey_height_m, half_width_m)


@functools.lru_cache(maxsize=16384)
def _remembered_heights(values: tuple, storey_height_m: float, half_width_m: float | None) -> BuildingHeights:
    tags = {k: v for k, v in zip(_HEIGHT_TAGS, values) if v is not None}
    return _building_heights(tags, storey_height_m, half_width_m)


def _building_heights(tags: Mapping[str, str], storey_height_m: float, half_width_m: float | None) -> BuildingHeights:
    notes: list[str] = []
    shape, unknown = roof_shape_of(tags)
    if unknown is not None:
        notes.append(f"unknown roof:shape={unknown!r}")
    explicit_roof_m = _explicit_roof_m(tags, storey_height_m)
    default_roof_m = _default_roof_height_m(shape, half_width_m, _roof_angle_deg(tags))
    bottom_m = _bottom_m(tags, storey_height_m)
    top_m, walls_top_m = _tagged_top_m(tags, storey_height_m)
    if top_m is not None:
        bottom_m, roof_m = _roof_within_top(shape, top_m, bottom_m, explicit_roof_m, default_roof_m, notes)
    else:
        top_m, bottom_m, roof_m = _roof_on_walls(shape, walls_top_m, bottom_m, explicit_roof_m, default_roof_m,
                                                 storey_height_m, notes)
    if roof_m <= 0:
        shape, roof_m = "flat", 0.0
    across = str(tags.get("roof:orientation", "")).strip().lower() == "across"
    return BuildingHeights(float(top_m), float(bottom_m), shape, float(roof_m),
                           parse_direction_deg(tags.get("roof:direction")), across, is_building_part(tags),
                           tuple(notes))


def building_height_m(tags: Mapping[str, str], storey_height_m: float = STOREY_HEIGHT_M,
                      half_width_m: float | None = None) -> float:
    """Total height of a building top above ground, from OSM tags (see :func:`building_heights`).

    Order: ``height``; ``building:levels`` x storey height + roof height (``roof:height``,
    ``roof:levels`` x storey, or a default for a ``roof:shape`` when ``half_width_m`` is
    known); a default by ``building`` type.
    """
    return building_heights(tags, storey_height_m, half_width_m).height_m


MAX_TREE_HEIGHT_M = 120.0


def tree_heights(tags: Mapping[str, str], crown_m: float, default_height_m: float, row: bool = False) -> BuildingHeights:
    """A tree's crown as a roof over the ground: its top from the ``height`` tag (else ``default_height_m``),
    rounded over the ``crown_m`` wide disc (a dome) or row (a ridge along its middle, as a hipped roof).
    The rounding is half the crown, at most half the tree's height."""
    height = _positive(parse_length_m(tags.get("height")))
    if height is None or height > MAX_TREE_HEIGHT_M:
        height = default_height_m
    crown_depth = min(crown_m / 2.0, height / 2.0) if crown_m > 0 else 0.0
    return BuildingHeights(float(height), 0.0, "hipped" if row else "dome", float(crown_depth), is_tree=True)


def is_building_part(tags: Mapping[str, str]) -> bool:
    value = tags.get("building:part")
    return value is not None and str(value).strip().lower() not in ("", "no")


def log_height_warnings(notes: Iterable[str]) -> None:
    """Log height-tag notes once per kind (``unknown roof:shape='x'`` x 3 -> one line)."""
    counts = Counter(notes)
    if not counts:
        return
    unknown = sorted(n for n in counts if n.startswith("unknown roof:shape"))
    if unknown:
        total = sum(counts[n] for n in unknown)
        values = ", ".join(n.split("=", 1)[1] for n in unknown[:5])
        log.warning("%d building(s) with an unknown roof:shape (%s) drawn with flat roofs", total, values)
    other = [n for n in counts if not n.startswith("unknown roof:shape")]
    if other:
        total = sum(counts[n] for n in other)
        log.warning("%d building height tag(s) ignored or clamped: %s", total, "; ".join(sorted(other)[:3]))


# ----------------------------------------------------------------------------- per-feature table


@dataclass
class BuildingTable:
    """Per-feature 3-D attributes, aligned with ``FeatureSet.geometries``.

    ``min_heights_m``: bottom of each building part above ground (0 = on the ground; NaN
    for features that are not buildings), for a mesh exporter. ``is_tree``: tree crowns (they
    have heights and roofs, but follow the terrain instead of standing on one base). ``roof_shapes`` are codes into
    :data:`ROOF_SHAPES`; ``roof_heights_m`` ridge minus eaves; ``roof_directions_deg`` NaN
    when untagged. ``ground_jacobians[i]`` (2x2) holds the CRS units per ground metre
    towards east (column 0) and north (column 1) at feature i (NaN for non-buildings).
    """

    min_heights_m: np.ndarray
    roof_shapes: np.ndarray
    roof_heights_m: np.ndarray
    roof_directions_deg: np.ndarray
    roof_across: np.ndarray
    is_part: np.ndarray
    ground_jacobians: np.ndarray
    is_tree: np.ndarray | None = None  # None: no trees

    @classmethod
    def from_heights(cls, items: list[BuildingHeights | None], jacobians: np.ndarray) -> "BuildingTable":
        n = len(items)
        nan = np.float32(np.nan)
        t = cls(np.full(n, nan, np.float32), np.zeros(n, np.int8), np.zeros(n, np.float32),
                np.full(n, nan, np.float32), np.zeros(n, bool), np.zeros(n, bool), np.asarray(jacobians, np.float64),
                np.zeros(n, bool))
        for i, b in enumerate(items):
            if b is None:
                continue
            t.min_heights_m[i] = b.min_height_m
            t.roof_shapes[i] = ROOF_CODE[b.roof_shape]
            t.roof_heights_m[i] = b.roof_height_m
            t.roof_directions_deg[i] = b.roof_direction_deg
            t.roof_across[i] = b.roof_across
            t.is_part[i] = b.is_part
            t.is_tree[i] = b.is_tree
        return t

    def take(self, order: np.ndarray) -> "BuildingTable":
        return BuildingTable(*(None if getattr(self, f) is None else getattr(self, f)[order]
                               for f in self.__dataclass_fields__))

    @property
    def trees(self) -> np.ndarray:
        """bool per feature: a tree crown."""
        return self.is_tree if self.is_tree is not None else np.zeros(len(self.min_heights_m), bool)


def ground_jacobians(lon: np.ndarray, lat: np.ndarray, crs: pyproj.CRS, step_m: float = 1.0) -> np.ndarray:
    """(N, 2, 2) CRS units per ground metre towards east (column 0) and north (column 1) at lon/lat.

    Measured by moving ``step_m`` ground metres along the ellipsoid and projecting; this captures
    the scale factor (2 in EPSG:3857 at 60 N), anisotropy (lon/lat CRSs) and meridian
    convergence (a UTM zone off its central meridian) of any CRS.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = np.full((len(lon), 2, 2), np.nan)
    if not len(lon):
        return out
    geod = crs.get_geod() or pyproj.Geod(ellps="WGS84")
    t = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0 = t.transform(lon, lat)
    for col, az in ((0, 90.0), (1, 0.0)):
        lon1, lat1, _ = geod.fwd(lon, lat, np.full_like(lon, az), np.full_like(lon, step_m))
        x1, y1 = t.transform(lon1, lat1)
        out[:, 0, col] = (np.asarray(x1) - x0) / step_m
        out[:, 1, col] = (np.asarray(y1) - y0) / step_m
    return out


# ----------------------------------------------------------------------------- roof profiles


def _segments(geom) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points (E, 2) of every ring edge of a (multi)polygon."""
    starts, ends = [], []
    for poly in shapely.get_parts(geom):
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords, dtype=np.float64)[:, :2]
            if len(xy) >= 2:
                starts.append(xy[:-1])
                ends.append(xy[1:])
    if not starts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    a, b = np.concatenate(starts), np.concatenate(ends)
    keep = np.any(a != b, axis=1)
    return a[keep], b[keep]


def _edge_distances_m(points_m: np.ndarray, a: np.ndarray, b: np.ndarray, apex_m: np.ndarray | None,
                      chunk_elems: int = 2_000_000) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance of each point to the nearest edge, and min over edges of distance/apex-distance.

    The second value is the pyramid coordinate: 0 on the footprint edge, 1 at the apex (the
    lowest of the planes through each edge and the apex; exact for convex footprints).
    """
    n, e = len(points_m), len(a)
    dist = np.empty(n)
    pyr = np.empty(n) if apex_m is not None else None
    ab = b - a
    ab2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-18)
    if apex_m is not None:
        # perpendicular distance from the apex to each edge's line
        cross = np.abs(ab[:, 0] * (apex_m[1] - a[:, 1]) - ab[:, 1] * (apex_m[0] - a[:, 0]))
        apex_d = np.maximum(cross / np.sqrt(ab2), 1e-9)
    step = max(1, chunk_elems // max(e, 1))
    for s in range(0, n, step):
        p = points_m[s:s + step]
        ap = p[:, None, :] - a[None, :, :]
        t = np.clip(np.einsum("nek,ek->ne", ap, ab) / ab2, 0.0, 1.0)
        d = np.hypot(ap[..., 0] - t * ab[:, 0], ap[..., 1] - t * ab[:, 1])
        dist[s:s + step] = d.min(axis=1)
        if pyr is not None:
            pyr[s:s + step] = (d / apex_d).min(axis=1)
    return dist, pyr


def _rectangle_frame(geom) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None:
    """Centre, ridge unit vector u (long side), across unit vector v, half-lengths a (along u), b (along v)."""
    rect = shapely.minimum_rotated_rectangle(geom)
    if rect.geom_type != "Polygon":
        return None
    c = np.asarray(rect.exterior.coords, dtype=np.float64)[:4, :2]
    e0, e1 = c[1] - c[0], c[2] - c[1]
    l0, l1 = float(np.hypot(*e0)), float(np.hypot(*e1))
    if min(l0, l1) <= 1e-9:
        return None
    # ties (a square): take the edge closer to east-west as the ridge, so the result is deterministic
    if abs(l0 - l1) <= 1e-9 * max(l0, l1):
        long_, short_, ll, ls = (e0, e1, l0, l1) if abs(e0[0]) >= abs(e1[0]) else (e1, e0, l1, l0)
    else:
        long_, short_, ll, ls = (e0, e1, l0, l1) if l0 > l1 else (e1, e0, l1, l0)
    u = long_ / ll
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):
        u = -u
    v = np.array([-u[1], u[0]])
    return c.mean(axis=0), u, v, ll / 2.0, ls / 2.0


def _knee(x: np.ndarray) -> np.ndarray:
    """Gambrel/mansard section: steep lower third of the run rises 2/3, the rest 1/3."""
    return np.interp(x, [0.0, 1.0 / 3.0, 1.0], [0.0, 2.0 / 3.0, 1.0])


def _skillion_fraction(footprint_m, pts: np.ndarray, direction_deg: float, v: np.ndarray) -> np.ndarray:
    """A single slope down towards ``roof:direction`` (else across the short axis ``v``, facing south)."""
    all_xy = np.concatenate(_segments(footprint_m))
    if math.isfinite(direction_deg):
        d = np.array([math.sin(math.radians(direction_deg)), math.cos(math.radians(direction_deg))])
    else:  # down across the short axis, towards the side facing south (east when exactly E-W)
        d = -v if (v[1] > 0 or (v[1] == 0 and v[0] < 0)) else v
    s_all = all_xy @ d
    s_min, s_max = float(s_all.min()), float(s_all.max())
    return (s_max - pts @ d) / max(s_max - s_min, 1e-9)  # 1 at the back (high), 0 at the front


def _hipped_fraction(shape: str, footprint_m, pts: np.ndarray, half_w: float) -> np.ndarray:
    """Hipped / mansard: rising with the distance to the nearest edge up to the widest point."""
    a, b = _segments(footprint_m)
    dist, _ = _edge_distances_m(pts, a, b, None)
    mic = shapely.maximum_inscribed_circle(footprint_m, max(half_w * 1e-4, 1e-6))
    radius = max(float(shapely.length(mic)), 1e-9)
    x = np.clip(dist / radius, 0.0, 1.0)
    return x if shape == "hipped" else _knee(x)


def _apex_fraction(shape: str, footprint_m, pts: np.ndarray) -> np.ndarray:
    """Pyramidal / cone / dome / onion: from every edge up to one apex (the centroid, if inside)."""
    a, b = _segments(footprint_m)
    apex = shapely.centroid(footprint_m)
    if not shapely.contains(footprint_m, apex):
        apex = shapely.point_on_surface(footprint_m)
    _, pyr = _edge_distances_m(pts, a, b, np.array([apex.x, apex.y]))
    rho = 1.0 - np.clip(pyr, 0.0, 1.0)  # 0 at the apex, 1 on the edge
    if shape in ("pyramidal", "cone"):
        return 1.0 - rho
    if shape == "dome":
        return np.sqrt(1.0 - rho ** 2)
    # onion: a bulb of 70 % of the height and a pointed tip on the inner 30 %
    return 0.7 * np.sqrt(1.0 - rho ** 2) + 0.3 * np.clip(1.0 - rho / 0.3, 0.0, 1.0)


def roof_fraction(shape: str, footprint_m, points_m: np.ndarray, direction_deg: float = math.nan,
                  across: bool = False) -> np.ndarray:
    """Height of the roof over each point as a fraction of the roof height: 0 at the eaves, 1 at the ridge.

    ``footprint_m`` is the (multi)polygon and ``points_m`` (N, 2) the points inside it, both in
    local ground metres with x east and y north. Pure geometry, no units beyond metres.
    """
    pts = np.asarray(points_m, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if shape == "flat" or n == 0:
        return np.ones(n)
    frame = _rectangle_frame(footprint_m)
    if frame is None:
        return np.ones(n)
    centre, u, v, half_len, half_w = frame
    if across:
        u, v, half_len, half_w = v, u, half_w, half_len
    rel = pts - centre
    along = np.abs(rel @ u)
    t_across = np.clip(np.abs(rel @ v) / half_w, 0.0, 1.0)  # 0 on the ridge line, 1 at the long edges
    if shape in ("gabled", "saltbox"):
        f = 1.0 - t_across
    elif shape == "round":
        f = np.sqrt(1.0 - t_across ** 2)
    elif shape == "gambrel":
        f = _knee(1.0 - t_across)
    elif shape == "butterfly":
        f = t_across
    elif shape == "half-hipped":  # gable below, a hip on the top half of each end
        f = np.minimum(1.0 - t_across, 0.5 + (half_len - along) / half_w)
    elif shape == "skillion":
        f = _skillion_fraction(footprint_m, pts, direction_deg, v)
    elif shape in ("hipped", "mansard"):
        f = _hipped_fraction(shape, footprint_m, pts, half_w)
    elif shape in ("pyramidal", "cone", "dome", "onion"):
        f = _apex_fraction(shape, footprint_m, pts)
    else:
        f = np.ones(n)
    return np.clip(f, 0.0, 1.0)


def roof_heights_m(shape: str, footprint_m, points_m: np.ndarray, height_m: float, roof_height_m: float,
                   direction_deg: float = math.nan, across: bool = False) -> np.ndarray:
    """Surface height over each point (local ground metres): eaves + roof height x :func:`roof_fraction`.

    Eaves are at ``height_m - roof_height_m``, the ridge (or apex) at ``height_m``; rounded to 1 mm.
    """
    frac = roof_fraction(shape, footprint_m, points_m, direction_deg, across) if roof_height_m > 0 else None
    if frac is None:
        return np.full(len(np.asarray(points_m).reshape(-1, 2)), float(height_m))
    h = (height_m - roof_height_m) + roof_height_m * frac
    return np.round(h / _PROFILE_ROUND_M) * _PROFILE_ROUND_M


__all__ = ["BuildingHeights", "BuildingTable", "DEFAULT_BUILDING_HEIGHT_M", "ROOF_SHAPES", "STOREY_HEIGHT_M",
           "building_height_m", "building_heights", "ground_jacobians", "log_height_warnings",
           "roof_fraction", "roof_heights_m", "tree_heights"]

