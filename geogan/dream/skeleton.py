"""The street skeleton of a dream town: recursive block subdivision (:func:`street_skeleton`).

The area (in local ground metres) is one region; a region larger than its drawn block size is split by a
street across it (perpendicular to its longer side, off-centre, turned and gently bent), and both halves are
split again. Every street after the first runs from a street to a street or to the area's edge, so the
network is connected by construction. Blocks deep enough for it get dead-end streets (cul-de-sacs), some
of them continued to the next street as footways. Everything is drawn from one ``numpy`` generator: the
same seed gives the same skeleton.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, Point, Polygon

from .style import Sizes, TownStyle

#: Street kinds by generation (OSM ``highway`` values) and their widths in metres (geogan's road table).
STREET_WIDTH_M = {"secondary": 8.0, "tertiary": 7.0, "residential": 6.0, "footway": 2.0}
MIN_BLOCK_SIDE_M = 45.0
_EPS_M = 0.01


@dataclass(frozen=True)
class Street:
    line: LineString
    kind: str  # an OSM highway value of STREET_WIDTH_M

    @property
    def width_m(self) -> float:
        return STREET_WIDTH_M[self.kind]


@dataclass(frozen=True)
class Skeleton:
    """Streets and the blocks between them (polygons bounded by street centre lines or the area's edge)."""

    streets: tuple[Street, ...]
    blocks: tuple[Polygon, ...]


def draw_size(rng: np.random.Generator, size: Sizes) -> float:
    """One log-normal draw of ``size``, cut to its range."""
    return float(np.clip(size.median * size.spread ** rng.normal(), size.low, size.high))


def _axes(region: Polygon) -> tuple[np.ndarray, float, np.ndarray, float, np.ndarray]:
    """(centre, long side length, unit long axis, short side length, unit short axis) of the region's
    minimum rotated rectangle."""
    rect = np.asarray(shapely.minimum_rotated_rectangle(region).exterior.coords)[:4]
    e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    (long_v, long_l), (short_v, short_l) = sorted(((e1, l1), (e2, l2)), key=lambda a: -a[1])
    return rect.mean(0), long_l, long_v / max(long_l, 1e-9), short_l, short_v / max(short_l, 1e-9)


def _bent_line(p: np.ndarray, d: np.ndarray, reach: float, bend: float) -> LineString:
    """A line through ``p`` along unit ``d`` reaching ``reach`` both ways, bowed sideways by ``bend`` x reach
    (a quadratic Bezier in 9 points)."""
    n = np.array([-d[1], d[0]])
    a, b, c = p - d * reach, p + d * reach, p + n * (2 * bend * reach)
    t = np.linspace(0, 1, 9)[:, None]
    return LineString((1 - t) ** 2 * a + 2 * t * (1 - t) * c + t ** 2 * b)


def _rotate(v: np.ndarray, deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([v[0] * math.cos(r) - v[1] * math.sin(r), v[0] * math.sin(r) + v[1] * math.cos(r)])


def _piece_near(lines, p: np.ndarray) -> LineString | None:
    """The part of an intersection result nearest ``p`` (a LineString), or None."""
    parts = [g for g in shapely.get_parts(lines) if isinstance(g, LineString) and g.length > 0]
    if not parts:
        return None
    return min(parts, key=lambda g: g.distance(Point(p)))


def _try_cut(region: Polygon, rng: np.random.Generator, style: TownStyle, along_long: bool):
    """One random cut of ``region``: ``(street line, parts)`` or None when it makes slivers."""
    centre, long_l, long_v, short_l, short_v = _axes(region)
    axis, axis_l, across = (long_v, long_l, short_v) if along_long else (short_v, short_l, long_v)
    p = centre + axis * (rng.uniform(*style.split_at) - 0.5) * axis_l
    d = _rotate(across, rng.uniform(-style.angle_jitter_deg, style.angle_jitter_deg))
    line = _bent_line(p, d, long_l + short_l, rng.uniform(-style.bend, style.bend))
    piece = _piece_near(region.intersection(line), p)
    if piece is None:
        return None
    parts = [g for g in shapely.get_parts(region.difference(piece.buffer(_EPS_M, cap_style="flat")))
             if isinstance(g, Polygon)]
    if len(parts) < 2 or min(g.area for g in parts) < 0.15 * region.area:
        return None
    if min(_axes(g)[3] for g in parts) < MIN_BLOCK_SIDE_M:
        return None
    return piece, parts


class Network:
    """The streets laid so far, and the visible area: a street counts as joined only where it meets the
    network inside the area (a junction out in the margin would leave it cut off on the map)."""

    def __init__(self, visible: Polygon) -> None:
        self.visible = visible
        self.lines = None

    def add(self, line: LineString) -> None:
        self.lines = line if self.lines is None else self.lines.union(line)

    def joined_ends(self, line: LineString) -> np.ndarray:
        """Booleans for the (start, end) of ``line``: on a street (inside the area, unless the whole line is
        outside it). With no streets yet: both True."""
        if self.lines is None:
            return np.ones(2, dtype=bool)
        ends = shapely.points(np.asarray(line.coords)[[0, -1]])
        on = shapely.distance(ends, self.lines) < 0.5
        if line.intersects(self.visible):
            on &= shapely.contains(self.visible, ends)
        return on


def _cut(region: Polygon, rng: np.random.Generator, style: TownStyle, network: Network, tries: int = 8):
    """A cut of ``region`` whose street starts or ends on an earlier street, or None (a leaf block)."""
    for i in range(tries):
        got = _try_cut(region, rng, style, along_long=i % 4 != 3)
        if got is not None and network.joined_ends(got[0]).any():
            return got
    return None


def _street_kind(depth: int, style: TownStyle) -> str:
    if depth < style.major_levels:
        return "secondary" if depth == 0 else "tertiary"
    return "residential"


def _block_target(rng: np.random.Generator, style: TownStyle, region: Polygon) -> float:
    """The area below which ``region`` stays a block: drawn per region, larger out in the fringe."""
    r = float(np.hypot(*np.asarray(region.centroid.coords[0])))
    fringe = float(np.clip((r - style.core_m) / style.fringe_m, 0.0, 1.0))
    return draw_size(rng, style.block_area_m2) * (1.0 + 5.0 * fringe ** 2)


def _dead_end(line: LineString, kind: str, network: Network, rng: np.random.Generator,
              style: TownStyle) -> list[Street]:
    """``line`` cut short of the street at one end (a dead end, maybe with a footway over the gap);
    [] when too short."""
    on = network.joined_ends(line)
    keep_start = bool(on[0]) if on[0] != on[1] else rng.random() < 0.5
    if not keep_start:
        line = LineString(np.asarray(line.coords)[::-1])
    gap = rng.uniform(*style.dead_end_gap_m)
    if line.length - gap < 40.0:
        return []
    out = [Street(shapely.ops.substring(line, 0.0, line.length - gap), kind)]
    if rng.random() < style.footpath_chance:
        out.append(Street(shapely.ops.substring(line, line.length - gap, line.length), "footway"))
    return out


def subdivide(area: Polygon, visible: Polygon, rng: np.random.Generator, style: TownStyle
              ) -> tuple[list[Street], list[Polygon], Network]:
    """Streets, leaf blocks and the street network of ``area`` (``visible``: the part that will be on the
    map) by recursive subdivision (breadth first: the widest streets first).

    After the first street, a region becomes, with the chance ``style.grid_chance``, a neighbourhood of
    through streets (all its cuts join streets at both ends: small blocks); elsewhere a cut's street is,
    with the chance ``style.dead_end_share``, a dead end (stopped short of the far street, maybe with a
    footway over the gap). The region is split along the whole cut all the same, so later streets keep
    to their side of it. Residential streets so form trees off the collector roads with a few loops and
    a few gridded quarters, as in real suburbs.
    """
    streets: list[Street] = []
    blocks: list[Polygon] = []
    queue = [(area, 0, False)]
    network = Network(visible)
    while queue:
        region, depth, grid = queue.pop(0)
        target = _block_target(rng, style, region) * (style.grid_block_scale if grid else 1.0)
        got = None if region.area <= target else _cut(region, rng, style, network)
        if got is None:
            blocks.append(region)
            continue
        line, parts = got
        new = [Street(line, _street_kind(depth, style))]
        first = network.lines is None
        grid = grid or (not first and region.area <= style.grid_max_area_m2 and rng.random() < style.grid_chance)
        if not grid and not first and rng.random() < style.dead_end_share:
            new = _dead_end(line, new[0].kind, network, rng, style) or new
        streets.extend(new)
        network.add(new[0].line)
        queue.extend((g, depth + 1, grid) for g in parts)
    return streets, blocks, network


def culdesacs(block: Polygon, rng: np.random.Generator, style: TownStyle, network: Network) -> list[Street]:
    """Dead-end streets into a deep block from its long sides, every ``culdesac_spacing_m``, some continued
    to the far side as a footway."""
    centre, long_l, long_v, short_l, short_v = _axes(block)
    if short_l < style.culdesac_depth_m:
        return []
    both = short_l > 2.0 * style.culdesac_depth_m
    out: list[Street] = []
    s = -0.5 * long_l + rng.uniform(0.6, 1.0) * style.culdesac_spacing_m[0]
    side = 1.0 if rng.random() < 0.5 else -1.0
    while s < 0.5 * long_l - 0.6 * style.culdesac_spacing_m[0]:
        for sgn in ((side, -side) if both else (side,)):
            start = centre + long_v * s + short_v * sgn * (0.5 * short_l + 5.0)
            d = _rotate(-short_v * sgn, rng.uniform(-6, 6))
            reach = (rng.uniform(0.32, 0.42) if both else rng.uniform(0.55, 0.75)) * short_l + 5.0
            line = _piece_near(block.intersection(LineString([start, start + d * reach])), start)
            if line is None or line.length < 40 or not network.joined_ends(line)[0]:
                continue
            out.append(Street(line, "residential"))
            if not both and rng.random() < style.footpath_chance:
                path = _piece_near(block.intersection(LineString([start + d * reach, start + d * (short_l + 10)])),
                                   start + d * reach)
                if path is not None:
                    out.append(Street(path, "footway"))
        s += rng.uniform(*style.culdesac_spacing_m)
    return out
