"""The sea of an area from the OpenStreetMap coastline pieces that cross it (shapely in, shapely out).

OSM maps the sea only through ``natural=coastline`` ways: land lies on the LEFT of a way's direction,
water on the RIGHT, so a closed ring drawn counter-clockwise is an island (land inside). A file holds
only the pieces near its area; this module builds the area's sea from them, the way osmcoastline
builds land and water for the whole planet:

1. pieces are joined end to start into chains (``line_merge(directed=True)``); a chain that closes is a
   ring, and every ring is an island (osmcoastline's rule: a clockwise ring is a mapping error and
   is turned round, which also covers formats that re-orient rings, such as Shapefile);
2. an open chain whose end lies inside the area (a cut extract, a piece the file lacks) is extended
   straight along its last segment to the area's edge, and counted (``CoastResult.open_ends``);
3. the area's outline and the chains, noded together, split the area into faces
   (``polygonize``);
4. each face is water or land by a vote of the coastline segments on its sides: every segment looks
   a hair to its right (sea) and to its left (land), weighted by its length. A face with more sea
   than land is sea. Chains that end inside a face vote both ways there and cancel out.

Limits (by construction, documented in docs/classes.md): an area that no coastline crosses cannot be
told apart from solid land, so it is land unless the caller says it is all sea
(``sea_without_coast``); a big island whose whole coast lies outside the area is land (correct);
coastline mapping errors (crossing or wrongly directed ways) give what the votes make of them.
Coordinates are planar (lon/lat or a projected CRS, x east and y north): only directions matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

_EMPTY = shapely.Polygon()


@dataclass(frozen=True)
class CoastResult:
    """The sea of an area: a (multi)polygon (empty: no sea), the number of coastline chains found and
    of chain ends that stopped inside the area (extended straight to its edge)."""

    sea: BaseGeometry
    chains: int
    open_ends: int


def directed_lines(geoms: Iterable[BaseGeometry]) -> list[shapely.LineString]:
    """The coastline pieces as directed lines: lines as drawn, polygons (closed coastline ways that a
    reader made areas) as their outer rings, counter-clockwise (islands); duplicates once."""
    out: dict[bytes, shapely.LineString] = {}
    for geom in geoms:
        for part in shapely.get_parts(np.asarray([geom], dtype=object)):
            if part is None or part.is_empty:
                continue
            if part.geom_type == "Polygon":
                part = shapely.LineString(shapely.orient_polygons(part).exterior.coords)
            elif part.geom_type == "LinearRing":
                part = shapely.LineString(part.coords)
            if part.geom_type != "LineString" or shapely.get_num_coordinates(part) < 2:
                continue
            out.setdefault(shapely.to_wkb(part), part)
    return list(out.values())


def join_chains(lines: list[shapely.LineString]) -> list[shapely.LineString]:
    """Pieces joined end to start into chains; closed chains turned counter-clockwise (islands)."""
    if not lines:
        return []
    merged = shapely.get_parts(shapely.line_merge(shapely.MultiLineString(lines), directed=True))
    chains = []
    for chain in merged:
        if chain.is_closed and shapely.get_num_coordinates(chain) >= 4:
            ring = shapely.LinearRing(chain.coords)
            if not ring.is_ccw:
                chain = shapely.LineString(chain.coords[::-1])
        chains.append(chain)
    return chains


def _extend_ends(chain: shapely.LineString, area: shapely.Polygon) -> tuple[shapely.LineString, int]:
    """An open chain with each end inside ``area`` carried on straight to beyond the area's edge."""
    if chain.is_closed:
        return chain, 0
    xy = shapely.get_coordinates(chain)
    reach = 2.0 * float(np.hypot(*(np.subtract(*np.reshape(area.bounds, (2, 2))))))
    ends = 0
    head, tail = [], []
    for end, before, out in ((xy[0], xy[1], head), (xy[-1], xy[-2], tail)):
        step = end - before
        length = float(np.hypot(*step))
        if length > 0 and area.contains(shapely.Point(end)):
            out.append(end + step / length * reach)
            ends += 1
    if not ends:
        return chain, 0
    return shapely.LineString(np.vstack([*head, xy, *tail])), ends


def _faces(chains: list[shapely.LineString], area: shapely.Polygon) -> np.ndarray:
    """The pieces the chains cut ``area`` into."""
    clipped = shapely.intersection(np.asarray(chains, dtype=object), area)
    noded = shapely.union_all(np.asarray([area.boundary, *clipped], dtype=object))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    return faces[shapely.area(faces) > 0]


def _segment_votes(chains: list[shapely.LineString], area: shapely.Polygon) -> tuple[np.ndarray, np.ndarray]:
    """Probe points a hair right (sea, weight +length) and left (land, -length) of every segment."""
    probes, weights = [], []
    scale = float(np.hypot(area.bounds[2] - area.bounds[0], area.bounds[3] - area.bounds[1]))
    for chain in chains:
        xy = shapely.get_coordinates(chain)
        a, b = xy[:-1], xy[1:]
        d = b - a
        length = np.hypot(d[:, 0], d[:, 1])
        ok = length > 0
        a, d, length = a[ok], d[ok], length[ok]
        mid = a + d / 2
        left = np.column_stack([-d[:, 1], d[:, 0]]) / length[:, None]
        eps = np.minimum(length * 1e-3, scale * 1e-6)[:, None]
        probes += [mid - eps * left, mid + eps * left]
        weights += [length, -length]
    if not probes:
        return np.zeros((0, 2)), np.zeros(0)
    return np.vstack(probes), np.concatenate(weights)


def sea_polygon(coastlines: Iterable[BaseGeometry], area: shapely.Polygon, *,
                sea_without_coast: bool = False) -> CoastResult:
    """The sea inside ``area`` from the ``natural=coastline`` geometries that cross it (see the module doc).

    ``sea_without_coast``: what an area that no coastline crosses is (False: land).
    """
    chains = join_chains(directed_lines(coastlines))
    chains = [c for c in chains if c.intersects(area)]
    if not chains:
        return CoastResult(area if sea_without_coast else _EMPTY, 0, 0)
    extended = [_extend_ends(c, area) for c in chains]
    chains = [c for c, _ in extended]
    open_ends = sum(n for _, n in extended)
    faces = _faces(chains, area)
    probes, weights = _segment_votes(chains, area)
    score = np.zeros(len(faces))
    if len(faces) and len(probes):
        hit_probe, hit_face = STRtree(faces).query(shapely.points(probes), predicate="within")
        np.add.at(score, hit_face, weights[hit_probe])
    sea = faces[score > 0]
    return CoastResult(shapely.union_all(sea) if len(sea) else _EMPTY, len(chains), open_ends)
