"""Building solids: one closed triangle mesh per building (part) from its footprint and its 3-D tags.

Pure geometry in local ground metres (x east, y north, z up); no I/O, no CRS.

A solid has vertical walls from its bottom (``base_m + min_height_m``) up to the roof, a flat bottom,
and a roof whose surface is the one :func:`geogan.heights.roof_heights_m` draws into ``height.tif``
(OSM Simple 3D Buildings: flat, gabled, hipped, pyramidal, skillion, ...). The roof is exact where it is
made of planes: the footprint is cut along the roof's ridge, hip and knee lines (:func:`roof_lines`),
each piece is triangulated without extra points (GEOS constrained Delaunay), and every vertex gets the
roof height of its position. Curved roofs (round, dome, onion) are approximated by extra cut lines.
Walls follow the roof along the footprint edge, so a gable end rises to the ridge.

Watertight by construction: the walls are built from the roof triangulation's boundary edges (each
edge used by exactly one triangle), the bottom reuses the roof's triangles reversed, and vertices are
shared through one index per 2-D point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString

from .heights import BuildingHeights, _rectangle_frame, roof_heights_m

_KEY_DECIMALS = 6  # 2-D points closer than 1 micrometre are one vertex
_MIN_TRIANGLE_AREA_M2 = 1e-8
_CURVE_STEPS = (0.25, 0.5, 0.75, 0.9)  # extra cut fractions for curved roofs
_GRID_SNAP_M = 1e-6  # the cut linework is noded on this grid, so neighbouring pieces share exact vertices
_RECTANGULAR = 0.97  # footprint area / its rotated rectangle's area above which ridges and hips are exact
_FIELD_CELLS = 6  # cuts per inscribed-circle diameter where a roof is drawn by sampling (non-rectangular hips)


@dataclass(frozen=True)
class Solid:
    """A closed triangle mesh: ``vertices`` (N, 3) metres, ``faces`` (M, 3) counter-clockwise from outside.

    ``roof_faces`` is how many of the first faces are roof (the rest are walls and the bottom);
    ``top`` marks the vertices on the roof (the rest are on the bottom).
    """

    vertices: np.ndarray
    faces: np.ndarray
    roof_faces: int
    top: np.ndarray


def _long_line(origin: np.ndarray, direction: np.ndarray, reach_m: float) -> LineString:
    return LineString([origin - direction * reach_m, origin + direction * reach_m])


def _parallel_lines(centre, u, v, half_w, fractions, reach_m) -> list[LineString]:
    """Lines along ``u`` at signed offsets ``fraction * half_w`` across (both sides)."""
    offsets = sorted({0.0, *(s * f for f in fractions for s in (-1.0, 1.0))})
    return [_long_line(centre + v * half_w * o, u, reach_m) for o in offsets]


def _hip_lines(centre, u, v, half_len, half_w) -> list[LineString]:
    """Ridge and hips of a hipped roof over the footprint's rotated rectangle."""
    ridge_half = max(half_len - half_w, 0.0)
    ends = [centre + u * ridge_half, centre - u * ridge_half]
    corners = [centre + su * u * half_len + sv * v * half_w for su in (1, -1) for sv in (1, -1)]
    lines = [LineString([ends[0], ends[1]])] if ridge_half > 0 else []
    for c in corners:
        end = ends[0] if np.dot(c - centre, u) >= 0 else ends[1]
        lines.append(LineString([end, end + (c - end) * 1.5]))  # past the corner: clipped later
    return lines


def _apex_lines(footprint, scale_fracs=()) -> list:
    """Lines from the apex to every footprint vertex, plus rings scaled towards the apex."""
    apex = shapely.centroid(footprint)
    if not shapely.contains(footprint, apex):
        apex = shapely.point_on_surface(footprint)
    a = np.array([apex.x, apex.y])
    xy = shapely.get_coordinates(shapely.get_exterior_ring(shapely.get_parts(footprint)))
    lines = [LineString([a, a + (p - a) * 1.5]) for p in np.unique(xy, axis=0)]  # past the vertex: clipped
    for f in scale_fracs:
        lines.append(shapely.affinity.scale(footprint, f, f, origin=apex).boundary)
    return lines


def _grid_lines(footprint, u, v) -> list[LineString]:
    """A grid of cuts along ``u`` and ``v`` for roofs drawn by sampling their height field.

    Used where the roof's bends are not straight lines of the rotated rectangle (hipped and mansard
    roofs over L-shapes or courtyards): vertices then sample the roof surface at this spacing.
    """
    mic = shapely.maximum_inscribed_circle(footprint, 1e-3)
    spacing = max(2.0 * float(shapely.length(mic)) / _FIELD_CELLS, 0.25)
    centre = np.array([footprint.centroid.x, footprint.centroid.y])
    xy = shapely.get_coordinates(footprint)
    reach = float(np.hypot(*(xy - centre).T).max()) + spacing
    steps = np.arange(-reach, reach + spacing, spacing)
    return [_long_line(centre + d * s, e, 2 * reach) for d, e in ((v, u), (u, v)) for s in steps]


def roof_lines(shape: str, footprint, across: bool = False) -> list:
    """The lines along which the roof surface bends (ridges, hips, knees), in the footprint's metres."""
    if shape in ("flat", "skillion"):
        return []
    frame = _rectangle_frame(footprint)
    if frame is None:
        return []
    centre, u, v, half_len, half_w = frame
    if across:
        u, v, half_len, half_w = v, u, half_w, half_len
    reach = 4.0 * (half_len + half_w)
    if shape in ("gabled", "saltbox", "butterfly"):
        return _parallel_lines(centre, u, v, half_w, (), reach)
    if shape == "gambrel":
        return _parallel_lines(centre, u, v, half_w, (2.0 / 3.0,), reach)
    if shape == "round":
        return _parallel_lines(centre, u, v, half_w, _CURVE_STEPS, reach)
    if shape in ("hipped", "mansard", "half-hipped") and footprint.area < _RECTANGULAR * 4 * half_len * half_w:
        return _grid_lines(footprint, u, v)
    if shape == "half-hipped":
        knee = max(half_len - half_w / 2.0, 0.0)
        lines = _parallel_lines(centre, u, v, half_w, (), reach)
        for su in (1, -1):
            end = centre + su * u * knee
            lines += [_long_line(end, (su * u + sv * v) / math.sqrt(2.0), reach) for sv in (1, -1)]
        return lines
    if shape in ("hipped", "mansard"):
        lines = _hip_lines(centre, u, v, half_len, half_w)
        if shape == "mansard":
            lines.append(shapely.buffer(footprint, -half_w / 3.0, join_style="mitre").boundary)
        return lines
    if shape in ("pyramidal", "cone"):
        return _apex_lines(footprint)
    if shape in ("dome", "onion"):
        return _apex_lines(footprint, _CURVE_STEPS)
    return []


def roof_pieces(footprint, lines: list) -> list:
    """The footprint cut along ``lines`` into polygons (all counter-clockwise), sharing their nodes."""
    footprint = shapely.make_valid(footprint)
    cuts = [shapely.intersection(footprint, ln) for ln in lines]
    cuts = [c for c in cuts if not c.is_empty and c.length > 1e-6]
    if not cuts:
        return [shapely.orient_polygons(p) for p in shapely.get_parts(footprint) if p.area > 0]
    linework = shapely.set_precision(shapely.union_all([footprint.boundary, *cuts]), _GRID_SNAP_M)  # noded
    pieces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
    inside = [p for p in pieces if p.area > _MIN_TRIANGLE_AREA_M2
              and shapely.contains(footprint.buffer(1e-6), shapely.point_on_surface(p))]
    return [shapely.orient_polygons(p) for p in inside]


def _triangles(pieces: list) -> np.ndarray:
    """(T, 3, 2) counter-clockwise triangles of the pieces, using only the pieces' own vertices."""
    out = []
    for piece in pieces:
        tris = shapely.get_parts(shapely.constrained_delaunay_triangles(piece))
        for t in tris:
            xy = np.asarray(t.exterior.coords)[:3, :2]
            cross = (xy[1, 0] - xy[0, 0]) * (xy[2, 1] - xy[0, 1]) - (xy[1, 1] - xy[0, 1]) * (xy[2, 0] - xy[0, 0])
            if abs(cross) / 2.0 < _MIN_TRIANGLE_AREA_M2:
                continue
            out.append(xy if cross > 0 else xy[::-1])
    return np.asarray(out, dtype=np.float64).reshape(-1, 3, 2)


def _index_points(tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique 2-D points and each triangle corner's index into them (points within 1 um merged)."""
    flat = tris.reshape(-1, 2)
    keys = np.round(flat, _KEY_DECIMALS)
    points, inverse = np.unique(keys, axis=0, return_inverse=True)
    return points, inverse.reshape(-1, 3)


def _boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges (E, 2) used by exactly one triangle (the footprint's outline, interior on the left)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    return edges[counts[inverse.ravel()] == 1]


def building_solid(footprint, heights: BuildingHeights, base_m: float = 0.0) -> Solid | None:
    """The closed solid of one building (part) standing on ``base_m``; None for an empty footprint.

    ``footprint`` is a (multi)polygon in local ground metres. The roof top is ``base_m + heights.height_m``,
    the bottom ``base_m + heights.min_height_m``.
    """
    if footprint is None or footprint.is_empty or footprint.area <= _MIN_TRIANGLE_AREA_M2:
        return None
    shape = heights.roof_shape if heights.roof_height_m > 0 else "flat"
    tris = _triangles(roof_pieces(footprint, roof_lines(shape, footprint, heights.roof_across)))
    if not len(tris):
        return None
    points, roof = _index_points(tris)
    top_m = roof_heights_m(shape, footprint, points, heights.height_m, heights.roof_height_m,
                           heights.roof_direction_deg, heights.roof_across)
    n = len(points)
    bottom_m = base_m + heights.min_height_m
    vertices = np.vstack([np.column_stack([points, base_m + top_m]),
                          np.column_stack([points, np.full(n, bottom_m)])])
    a, b = _boundary_edges(roof).T
    walls = np.concatenate([np.column_stack([a + n, b + n, b]), np.column_stack([a + n, b, a])])
    faces = np.concatenate([roof, roof[:, ::-1] + n, walls]).astype(np.int64)
    top = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    return Solid(vertices, faces, len(roof), top)


__all__ = ["Solid", "building_solid", "roof_lines", "roof_pieces"]
