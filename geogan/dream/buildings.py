"""Buildings of a dream block: separate footprints along the curbs (:func:`frontage_buildings`).

The block's buildable land (the block less its streets) is walked along every curb, one lot after another
(lot widths drawn from the style's frontage range). Each lot gets a rectangle of a drawn area and
length/width ratio, set back from the curb by a drawn distance and turned with the street; lots deep
enough get a second row behind, and houses a shed behind them. A footprint is kept only if it lies inside
the land and keeps the style's gap to every footprint already placed, so buildings never merge.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from .skeleton import draw_size
from .style import BuildingStyle, PerimeterStyle

CURB_MARGIN_M = 1.5  # no footprint closer than this to the curb, whatever the drawn setback


def _rectangle(centre: np.ndarray, t: np.ndarray, along_m: float, across_m: float) -> Polygon:
    """A rectangle centred at ``centre``: ``along_m`` along unit ``t``, ``across_m`` across it."""
    n = np.array([-t[1], t[0]])
    a, c = t * along_m / 2, n * across_m / 2
    return Polygon([centre - a - c, centre + a - c, centre + a + c, centre - a + c])


def _footprint(rng: np.random.Generator, bs: BuildingStyle, max_along_m: float) -> tuple[float, float]:
    """(along the street, across it) in metres: a drawn area and ratio, the long side either way."""
    area = draw_size(rng, bs.area_m2)
    ratio = rng.uniform(*bs.aspect)
    long_m, short_m = math.sqrt(area * ratio), math.sqrt(area / ratio)
    along, across = (long_m, short_m) if rng.random() < 0.6 else (short_m, long_m)
    if along > max_along_m:  # a narrow lot: turn the long side away from the street
        along, across = min(along, across), max(along, across)
    return along, across


class _Placer:
    """Footprints placed so far in one block, and the tests a new one must pass."""

    def __init__(self, land: Polygon) -> None:
        self.land = land.buffer(-CURB_MARGIN_M) if land.area > 0 else None
        if self.land is not None:
            shapely.prepare(self.land)
        self.placed: list[Polygon] = []

    def put(self, shape: Polygon, gap_m: float) -> bool:
        if self.land is None or not shapely.contains(self.land, shape):
            return False
        if self.placed and bool(shapely.dwithin(np.array(self.placed, dtype=object), shape, gap_m).any()):
            return False
        self.placed.append(shape)
        return True


def _stations(ring, rng: np.random.Generator, bs: BuildingStyle) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Lots along a curb ring: (point on the curb, unit tangent, lot width), interior on the left."""
    out = []
    s = rng.uniform(0.0, bs.frontage_m[0])
    while s < ring.length - 2.0:
        width = rng.uniform(*bs.frontage_m)
        mid = s + width / 2
        a, p, b = (np.asarray(g.coords[0]) for g in
                   shapely.line_interpolate_point(ring, [mid - 2.0, mid, mid + 2.0]))
        t = b - a
        norm = float(np.hypot(*t))
        if norm > 1e-6:
            out.append((p, t / norm, width))
        s += width
    return out


def _lot(placer: _Placer, rng: np.random.Generator, bs: BuildingStyle, p: np.ndarray, t: np.ndarray,
         width_m: float) -> None:
    """A lot's building(s): up to ``bs.rows`` rows from the curb, each with a chance of a shed behind."""
    n = np.array([-t[1], t[0]])  # into the block
    depth0 = rng.uniform(*bs.setback_m)
    for _ in range(bs.rows):
        along, across = _footprint(rng, bs, width_m - bs.gap_m)
        turn = rng.uniform(-4.0, 4.0)
        tt = np.array([t[0] * math.cos(math.radians(turn)) - t[1] * math.sin(math.radians(turn)),
                       t[0] * math.sin(math.radians(turn)) + t[1] * math.cos(math.radians(turn))])
        centre = p + n * (depth0 + across / 2) + t * rng.uniform(-0.15, 0.15) * max(0.0, width_m - along)
        if not placer.put(_rectangle(centre, tt, along, across), bs.gap_m):
            return
        back = depth0 + across
        if rng.random() < bs.shed_share:
            area = draw_size(rng, bs.shed_area_m2)
            side = math.sqrt(area * rng.uniform(1.0, 1.8))
            shed_c = p + n * (back + bs.gap_m * rng.uniform(0.8, 2.5) + area / side / 2)
            shed_c = shed_c + t * rng.uniform(-0.5, 0.5) * along
            if placer.put(_rectangle(shed_c, tt, side, area / side), bs.gap_m * 0.6):
                back += bs.gap_m + area / side
        depth0 = back + rng.uniform(8.0, 20.0)


def frontage_buildings(land: Polygon, bs: BuildingStyle, rng: np.random.Generator) -> list[Polygon]:
    """Separate building footprints (local metres) along the curbs of ``land`` (a block less its streets;
    a MultiPolygon is done part by part)."""
    out: list[Polygon] = []
    for part in shapely.get_parts(land):
        if not isinstance(part, Polygon) or part.area < 200:
            continue
        part = orient(part, sign=1.0)  # exterior counter-clockwise, holes clockwise: the land on the left
        placer = _Placer(part)
        for ring in [part.exterior, *part.interiors]:
            for p, t, width in _stations(ring, rng, bs):
                _lot(placer, rng, bs, p, t, width)
        out.extend(placer.placed)
    return out


def _yard_buildings(yard: Polygon, ring, ps: PerimeterStyle, rng: np.random.Generator) -> list[Polygon]:
    """Small free-standing buildings in a courtyard, kept 3 m off the ring and each other."""
    if yard.is_empty or yard.area < 30:
        return []
    placer = _Placer(yard)
    placer.placed = list(shapely.get_parts(ring)) if not ring.is_empty else []
    x0, y0, x1, y1 = yard.bounds
    for _ in range(int(rng.integers(ps.yard_buildings[0], ps.yard_buildings[1] + 1))):
        for _try in range(6):
            area = draw_size(rng, ps.yard_area_m2)
            side = math.sqrt(area * rng.uniform(1.0, 2.0))
            t = np.array([1.0, 0.0])
            centre = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
            if placer.put(_rectangle(centre, t, side, area / side), 3.0):
                break
    return placer.placed[len(shapely.get_parts(ring)) if not ring.is_empty else 0:]


def perimeter_buildings(land: Polygon, ps: PerimeterStyle, rng: np.random.Generator) -> list[Polygon]:
    """City-block buildings: a band ``ps.depth_m`` deep along the block's edge (touching houses, one patch
    as in a real perimeter block), opened by a few gaps; sometimes the whole block one building; small
    buildings in the courtyard."""
    out: list[Polygon] = []
    for part in shapely.get_parts(land):
        if not isinstance(part, Polygon) or part.area < 400:
            continue
        outer = part.buffer(-rng.uniform(*ps.setback_m), join_style="mitre")
        if outer.is_empty:
            continue
        if rng.random() < ps.full_chance and outer.area <= ps.full_max_m2:
            out.extend(g for g in shapely.get_parts(outer) if isinstance(g, Polygon))
            continue
        inner = outer.buffer(-rng.uniform(*ps.depth_m), join_style="mitre")
        ring = outer.difference(inner)
        boundary = shapely.get_exterior_ring(max(shapely.get_parts(outer), key=lambda g: g.area))
        for _ in range(int(rng.integers(ps.gaps[0], ps.gaps[1] + 1))):
            d = rng.uniform(0, boundary.length)
            a, b = (np.asarray(g.coords[0]) for g in shapely.line_interpolate_point(boundary, [d, d + 1.0]))
            t = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
            ring = ring.difference(_rectangle(a, t, rng.uniform(*ps.gap_m), 2 * ps.depth_m[1] + 4))
        ring = ring.buffer(0)
        out.extend(g for g in shapely.get_parts(ring) if isinstance(g, Polygon) and g.area > 20)
        if not inner.is_empty:
            out.extend(_yard_buildings(inner.buffer(-3.0), ring, ps, rng))
    return out
