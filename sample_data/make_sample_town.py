#!/usr/bin/env python3
"""Generate "Kuvitelmala", geogan's fictional sample town, as OpenStreetMap data.

The town is invented: the geogan authors wrote it with this script and it is
not derived from OpenStreetMap or any other map. It is distributed under the
same licence as geogan (MIT). Only its *location* is real: it sits in
southern Finland's countryside near lon 25.70, lat 60.40, so that
projections, metre/degree conversions and UTM zone handling (EPSG:32635) are
exercised at a high latitude (~60 N, where a degree of longitude is about
half a degree of latitude on the ground).

Outputs, next to this script by default:

* ``sample_town.osm``      OSM XML 0.6 with a ``<bounds>`` element
* ``sample_town.osm.pbf``  the same data as PBF (only if pyosmium is installed)

Usage::

    python sample_data/make_sample_town.py [--out-dir DIR] [--no-pbf]

The output is deterministic: a fixed seed and only the standard library are
used to build it (pyosmium only converts the finished XML to PBF).

Layout (metres; the street grid is rotated 8 degrees counter-clockwise):
a river runs west-east through the southern part, crossed by the main street
(highway=primary) on a bridge and by a footbridge; the town's street grid lies
north of it, with houses, apartment blocks, shops, a church, a park with a
pond and beach, parking lots and a courtyard block (multipolygon). A railway
with a station runs along the north edge; the main street passes under it in a
tunnel. South of the river: a forest with a clearing (multipolygon), an
industrial area and farmland with tracks. West: wetland and meadow; east:
a wood and grass.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path
from xml.sax.saxutils import quoteattr

TOWN_NAME = "Kuvitelmala"
GENERATOR = "geogan sample_data/make_sample_town.py"
LON0, LAT0 = 25.70, 60.40  # centre of the town (real place, invented content)
HALF_W, HALF_H = 600.0, 450.0  # metres: town extent is 1200 m (E-W) x 900 m (N-S)
GRID_ANGLE_DEG = 8.0
SEED = 604025

NODE_ID0, WAY_ID0, REL_ID0 = 1, 100_001, 200_001

# --------------------------------------------------------------------------
# geometry helpers (stdlib only)
# --------------------------------------------------------------------------
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_PHI0 = math.radians(LAT0)
_W0 = math.sqrt(1 - _E2 * math.sin(_PHI0) ** 2)
_M0 = _A * (1 - _E2) / _W0**3  # meridional radius of curvature
_N0 = _A / _W0  # prime-vertical radius of curvature
_COS, _SIN = math.cos(math.radians(GRID_ANGLE_DEG)), math.sin(math.radians(GRID_ANGLE_DEG))
XMIN, XMAX, YMIN, YMAX = -HALF_W, HALF_W, -HALF_H, HALF_H


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    """Local east/north metres around (LON0, LAT0) -> lon/lat degrees (WGS84)."""
    return (
        LON0 + math.degrees(x / (_N0 * math.cos(_PHI0))),
        LAT0 + math.degrees(y / _M0),
    )


def g2w(p: tuple[float, float]) -> tuple[float, float]:
    """Street-grid coordinates (u, v) -> local east/north metres (x, y)."""
    u, v = p
    return (u * _COS - v * _SIN, u * _SIN + v * _COS)


def _lerp(p, q, t):
    return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)


def _clip_segment(p, q):
    """Liang-Barsky: parameter range of segment p-q inside the town box."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for pk, qk in ((-dx, p[0] - XMIN), (dx, XMAX - p[0]), (-dy, p[1] - YMIN), (dy, YMAX - p[1])):
        if pk == 0:
            if qk < 0:
                return None
        else:
            r = qk / pk
            if pk < 0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
    if t0 >= t1:
        return None
    return t0, t1


def clip_polyline(pts):
    pieces, cur = [], []
    for p, q in zip(pts, pts[1:]):
        r = _clip_segment(p, q)
        if r is None:
            if cur:
                pieces.append(cur)
                cur = []
            continue
        t0, t1 = r
        a = p if t0 == 0.0 else _lerp(p, q, t0)
        b = q if t1 == 1.0 else _lerp(p, q, t1)
        if not cur or t0 > 0.0:
            if cur:
                pieces.append(cur)
            cur = [a]
        cur.append(b)
        if t1 < 1.0:
            pieces.append(cur)
            cur = []
    if cur:
        pieces.append(cur)
    return [pc for pc in pieces if len(pc) >= 2]


def clip_polygon(pts):
    """Sutherland-Hodgman clip of a ring (no repeated closing point) to the box."""
    edges = (
        (lambda p: p[0] >= XMIN, lambda p, q: _lerp(p, q, (XMIN - p[0]) / (q[0] - p[0]))),
        (lambda p: p[0] <= XMAX, lambda p, q: _lerp(p, q, (XMAX - p[0]) / (q[0] - p[0]))),
        (lambda p: p[1] >= YMIN, lambda p, q: _lerp(p, q, (YMIN - p[1]) / (q[1] - p[1]))),
        (lambda p: p[1] <= YMAX, lambda p, q: _lerp(p, q, (YMAX - p[1]) / (q[1] - p[1]))),
    )
    out = list(pts)
    for inside, cross in edges:
        if not out:
            break
        src, out = out, []
        prev = src[-1]
        for cur in src:
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
            prev = cur
    # drop (near-)duplicate consecutive vertices
    res = []
    for p in out:
        if not res or math.dist(p, res[-1]) > 0.01:
            res.append(p)
    if len(res) > 1 and math.dist(res[0], res[-1]) <= 0.01:
        res.pop()
    return res


def rect(u0, v0, u1, v1):
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def ellipse(cu, cv, ru, rv, n=28):
    return [
        (cu + ru * math.cos(2 * math.pi * k / n), cv + rv * math.sin(2 * math.pi * k / n))
        for k in range(n)
    ]


def fmt_num(x: float) -> str:
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


# --------------------------------------------------------------------------
# OSM data model + XML/PBF writers
# --------------------------------------------------------------------------
class OsmData:
    def __init__(self) -> None:
        self.nodes: dict[int, list] = {}  # id -> [lon, lat, tags]
        self.ways: list[tuple[int, list[int], dict]] = []
        self.relations: list[tuple[int, list[tuple[str, int, str]], dict]] = []
        self._shared: dict[tuple[float, float], int] = {}
        self._next_node = NODE_ID0
        self._next_way = WAY_ID0
        self._next_rel = REL_ID0

    # nodes ------------------------------------------------------------
    def node_w(self, xy, tags=None, shared=False) -> int:
        """Node at world metres xy. Shared nodes are reused by (mm-rounded) position."""
        key = (round(xy[0], 3), round(xy[1], 3))
        if shared and key in self._shared:
            nid = self._shared[key]
            if tags:
                self.nodes[nid][2].update(tags)
            return nid
        nid = self._next_node
        self._next_node += 1
        lon, lat = to_lonlat(*xy)
        self.nodes[nid] = [lon, lat, dict(tags or {})]
        if shared:
            self._shared[key] = nid
        return nid

    def point(self, uv, tags, shared=False) -> int:
        return self.node_w(g2w(uv), tags, shared=shared)

    # ways -------------------------------------------------------------
    def _way(self, refs, tags) -> int:
        wid = self._next_way
        self._next_way += 1
        self.ways.append((wid, refs, dict(tags)))
        return wid

    def line(self, uv_pts, tags, shared=True) -> list[int]:
        """Open way(s) through grid points, clipped to the town box."""
        ids = []
        for piece in clip_polyline([g2w(p) for p in uv_pts]):
            refs = [self.node_w(p, shared=shared) for p in piece]
            refs = [r for i, r in enumerate(refs) if i == 0 or r != refs[i - 1]]
            if len(refs) >= 2:
                ids.append(self._way(refs, tags))
        return ids

    def area(self, uv_ring, tags) -> int | None:
        """Closed way from a grid-coordinate ring, clipped to the town box."""
        ring = clip_polygon([g2w(p) for p in uv_ring])
        if len(ring) < 3:
            return None
        refs = [self.node_w(p) for p in ring]
        return self._way(refs + [refs[0]], tags)

    def relation(self, members, tags) -> int:
        rid = self._next_rel
        self._next_rel += 1
        self.relations.append((rid, list(members), dict(tags)))
        return rid

    # output -----------------------------------------------------------
    @staticmethod
    def bounds():
        lon0, lat0 = to_lonlat(XMIN, YMIN)
        lon1, lat1 = to_lonlat(XMAX, YMAX)
        return lon0, lat0, lon1, lat1

    def write_xml(self, path: Path) -> None:
        def tag_lines(tags):
            return [f"    <tag k={quoteattr(k)} v={quoteattr(str(v))}/>" for k, v in sorted(tags.items())]

        minlon, minlat, maxlon, maxlat = self.bounds()
        out = [
            "<?xml version='1.0' encoding='UTF-8'?>",
            f'<osm version="0.6" generator="{GENERATOR}">',
            f"  <!-- {TOWN_NAME}: a FICTIONAL town authored by the geogan project (MIT licence).",
            "       Only the location is real; every feature is invented. Not OpenStreetMap data.",
            "       Regenerate with: python sample_data/make_sample_town.py -->",
            f'  <bounds minlat="{minlat:.7f}" minlon="{minlon:.7f}" '
            f'maxlat="{maxlat:.7f}" maxlon="{maxlon:.7f}"/>',
        ]
        for nid in sorted(self.nodes):
            lon, lat, tags = self.nodes[nid]
            head = f'  <node id="{nid}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"'
            if tags:
                out.append(head + ">")
                out.extend(tag_lines(tags))
                out.append("  </node>")
            else:
                out.append(head + "/>")
        for wid, refs, tags in self.ways:
            out.append(f'  <way id="{wid}" version="1">')
            out.extend(f'    <nd ref="{r}"/>' for r in refs)
            out.extend(tag_lines(tags))
            out.append("  </way>")
        for rid, members, tags in self.relations:
            out.append(f'  <relation id="{rid}" version="1">')
            out.extend(
                f'    <member type="{t}" ref="{ref}" role={quoteattr(role)}/>' for t, ref, role in members
            )
            out.extend(tag_lines(tags))
            out.append("  </relation>")
        out.append("</osm>")
        path.write_text("\n".join(out) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# the town
# --------------------------------------------------------------------------
U_LINES = [-450.0, -300.0, -150.0, 0.0, 150.0, 300.0, 450.0]
V_LINES = [-80.0, 20.0, 110.0, 200.0, 280.0]
U_NAMES = {
    -450.0: "Länsikatu",
    -300.0: "Koulukatu",
    -150.0: "Kirkkokatu",
    0.0: "Asemakatu",
    150.0: "Puistokatu",
    300.0: "Myllykatu",
    450.0: "Itäkatu",
}
V_NAMES = {
    -80.0: "Rantakatu",
    20.0: "Koivukatu",
    110.0: "Kauppakatu",
    200.0: "Pihlajakatu",
    280.0: "Ratakatu",
}
RESIDENTIAL_EXTRA = {  # a mix of lanes=/width=/surface= tags on residential streets
    -450.0: {"surface": "asphalt"},
    -300.0: {"width": "6", "surface": "asphalt"},
    -150.0: {"lanes": "2", "width": "7"},
    150.0: {"width": "6.5"},
    300.0: {"surface": "paving_stones", "width": "5"},
    450.0: {"surface": "gravel"},
    -80.0: {"lanes": "2", "width": "7", "surface": "asphalt"},
    20.0: {},
    200.0: {"width": "6"},
    280.0: {"lanes": "2"},
}
EDGE = 900.0  # long enough to leave the 1200 x 900 m box in grid coordinates

RAIL_V = 330.0
RIVER_HALF_WIDTH = 13.0


def river_v(u: float) -> float:
    """River centre line (grid v) as a function of grid u."""
    return -165.0 + 22.0 * math.sin(2 * math.pi * u / 900.0 + 0.6)


def cycle_v(u: float) -> float:
    return river_v(u) + 32.0


def river_samples(u0=-EDGE, u1=EDGE, step=20.0):
    n = int(round((u1 - u0) / step))
    return [u0 + k * step for k in range(n + 1)]


def points_on(p0, p1, junctions):
    """p0, p1 plus every junction on the straight segment p0-p1, ordered."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy
    found = {0.0: p0, 1.0: p1}
    for j in junctions:
        t = ((j[0] - p0[0]) * dx + (j[1] - p0[1]) * dy) / length2
        if 0.0 < t < 1.0:
            cx, cy = p0[0] + t * dx, p0[1] + t * dy
            if math.hypot(j[0] - cx, j[1] - cy) < 1e-6:
                found[t] = j
    return [found[t] for t in sorted(found)]


BUILDING_KINDS = {
    # w: frontage, d: depth, s: setback from street centre line, gap between buildings
    "house": dict(w=(9.0, 14.0), d=(8.0, 10.5), s=(9.0, 12.0), gap=(5.0, 11.0), lshape=0.3, skip=0.08),
    "apartment": dict(w=(26.0, 40.0), d=(11.0, 13.0), s=(8.0, 10.0), gap=(8.0, 14.0), lshape=0.15, skip=0.0),
    "retail": dict(w=(12.0, 22.0), d=(12.0, 15.0), s=(10.0, 11.5), gap=(2.0, 6.0), lshape=0.0, skip=0.0),
}
LONG_ROW_START = 10.0  # along-street margin of the primary rows of a block
SIDE_ROW_START = 29.0  # > deepest footprint of a primary row (s + d + wing <= 28)


class Town:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.osm = OsmData()
        self.house_numbers: dict[str, int] = {}
        self.junctions: list[tuple[float, float]] = []

    # tag helpers ------------------------------------------------------
    def height_tags(self, levels_range, per_level, roof):
        rng = self.rng
        levels = rng.randint(*levels_range)
        height = levels * per_level + rng.uniform(*roof)
        r = rng.random()
        if r < 0.35:
            return {"building:levels": str(levels)}
        if r < 0.55:
            return {"height": fmt_num(height)}
        if r < 0.65:
            return {"building:levels": str(levels), "height": fmt_num(height)}
        return {}

    def address(self, street):
        n = self.house_numbers.get(street, 0) + 1
        self.house_numbers[street] = n
        return {"addr:street": street, "addr:housenumber": str(n)}

    def building_tags(self, kind, street):
        rng = self.rng
        if kind == "house":
            tags = {"building": "house" if rng.random() < 0.7 else "yes"}
            tags.update(self.height_tags((1, 2), 3.0, (1.5, 3.0)))
        elif kind == "apartment":
            tags = {"building": "apartments"}
            tags.update(self.height_tags((3, 5), 3.0, (0.5, 2.0)))
        else:
            tags = {"building": "retail"}
            tags.update(self.height_tags((1, 2), 4.0, (0.5, 1.5)))
            if rng.random() < 0.5:
                tags["shop"] = rng.choice(["bakery", "clothes", "hairdresser", "kiosk", "books", "florist"])
        if street:
            tags.update(self.address(street))
        return tags

    def footprint(self, kind, a, w, s, d):
        """Local (along, inward) footprint: rectangle or L-shape."""
        rng = self.rng
        if rng.random() < BUILDING_KINDS[kind]["lshape"]:
            w2 = w * rng.uniform(0.35, 0.6)
            d2 = rng.uniform(3.0, 5.0)
            if rng.random() < 0.5:
                return [(a, s), (a + w, s), (a + w, s + d), (a + w2, s + d), (a + w2, s + d + d2), (a, s + d + d2)]
            return [(a, s), (a + w, s), (a + w, s + d + d2), (a + w - w2, s + d + d2), (a + w - w2, s + d), (a, s + d)]
        return [(a, s), (a + w, s), (a + w, s + d), (a, s + d)]

    # buildings --------------------------------------------------------
    @staticmethod
    def _place(origin, t, n, local):
        return [(origin[0] + la * t[0] + lb * n[0], origin[1] + la * t[1] + lb * n[1]) for la, lb in local]

    def row(self, origin, t, n, a0, a1, kind, street, sheds=False, a_max=None):
        """Buildings along one street edge: along-street range [a0, a1] from origin."""
        rng, k = self.rng, BUILDING_KINDS[kind]
        a_max = a1 if a_max is None else a_max
        a = a0 + rng.uniform(0.0, 3.0)
        count = 0
        while True:
            w = rng.uniform(*k["w"])
            if a + w > a1:
                break
            s, d = rng.uniform(*k["s"]), rng.uniform(*k["d"])
            local = self.footprint(kind, a, w, s, d)
            gap = rng.uniform(*k["gap"])
            if rng.random() >= k["skip"]:
                self.osm.area(self._place(origin, t, n, local), self.building_tags(kind, street))
                count += 1
                # a shed or garage in the back yard (kept clear of the block's side rows)
                if sheds and rng.random() < 0.35:
                    ws, ds = rng.uniform(3.0, 6.0), rng.uniform(3.0, 5.0)
                    sa = rng.uniform(a, a + w - ws)
                    sb = k["s"][1] + k["d"][1] + 5.0 + rng.uniform(2.0, 4.0)
                    if SIDE_ROW_START + 1.0 <= sa and sa + ws <= a_max - 1.0:
                        self.osm.area(
                            self._place(origin, t, n, [(sa, sb), (sa + ws, sb), (sa + ws, sb + ds), (sa, sb + ds)]),
                            {"building": rng.choice(["shed", "garage", "yes"])},
                        )
                        count += 1
            a += w + gap
        return count

    def fill_block(self, u0, v0, u1, v1, kinds, primary="v"):
        """kinds: dict edge -> building kind (edges 'S', 'N', 'W', 'E').

        The two primary edges ('S'/'N' if primary == 'v', else 'W'/'E') get rows
        along their whole length; the other two only between the primary rows.
        """
        edges = {
            "S": ((u0, v0), (1.0, 0.0), (0.0, 1.0), u1 - u0, V_NAMES.get(v0)),
            "N": ((u1, v1), (-1.0, 0.0), (0.0, -1.0), u1 - u0, V_NAMES.get(v1)),
            "W": ((u0, v1), (0.0, -1.0), (1.0, 0.0), v1 - v0, U_NAMES.get(u0)),
            "E": ((u1, v0), (0.0, 1.0), (-1.0, 0.0), v1 - v0, U_NAMES.get(u1)),
        }
        long_edges = ("S", "N") if primary == "v" else ("W", "E")
        for e, kind in kinds.items():
            if kind is None:
                continue
            origin, t, n, length, street = edges[e]
            m = LONG_ROW_START if e in long_edges else SIDE_ROW_START
            sheds = kind == "house" and e in long_edges
            self.row(origin, t, n, m, length - m, kind, street, sheds=sheds, a_max=length - SIDE_ROW_START)

    # network ----------------------------------------------------------
    def street_tags(self, coord, axis):
        name = (U_NAMES if axis == "u" else V_NAMES)[coord]
        tags = {"highway": "residential", "name": name, "maxspeed": "30"}
        tags.update(RESIDENTIAL_EXTRA.get(coord, {}))
        return tags

    def build(self) -> OsmData:
        osm = self.osm
        J = self.junctions
        for u in U_LINES:
            for v in V_LINES:
                J.append((u, v))

        # extra junctions (all in grid coordinates) -----------------------
        cyc_pts = [(u, cycle_v(u)) for u in river_samples(-450.0, 450.0, 25.0)]
        cyc_line = [(-450.0, -80.0)] + cyc_pts + [(450.0, -80.0)]
        J.extend(cyc_pts)
        rv0 = river_v(0.0)
        bridge_s, bridge_n = (0.0, rv0 - 22.0), (0.0, rv0 + 22.0)
        tunnel_s, tunnel_n = (0.0, RAIL_V - 14.0), (0.0, RAIL_V + 14.0)
        extra = [
            (0.0, -300.0),  # industrial road
            (0.0, -395.0),  # south track
            (0.0, -440.0),  # forest path
            (0.0, 395.0),  # north track
            (-84.0, -80.0),  # church footway
            (150.0, 0.0),  # park footways
            (300.0, -10.0),
            (190.0, -80.0),
            (-100.0, 200.0),  # parking aisle
            (75.0, 200.0),  # supermarket access
            (60.0, 280.0),  # park & ride access
            (40.0, RAIL_V),  # siding switch
            (155.0, -300.0),  # industrial spur
        ]
        J.extend(extra)

        # primary road: south -> bridge -> town -> tunnel -> north -------
        primary = {
            "highway": "primary",
            "name": "Asemakatu",
            "ref": "1405",
            "lanes": "2",
            "width": "10",
            "maxspeed": "50",
            "surface": "asphalt",
        }
        osm.line(points_on((0.0, -EDGE), bridge_s, J), dict(primary, name="Rantatie", maxspeed="60"))
        osm.line([bridge_s, bridge_n], dict(primary, bridge="yes", layer="1", name="Myllysilta"))
        osm.line(points_on(bridge_n, tunnel_s, J), dict(primary, lanes="3", **{"turn:lanes": "left|through|through"}))
        osm.line([tunnel_s, tunnel_n], dict(primary, tunnel="yes", layer="-1", maxheight="4.2"))
        osm.line(points_on(tunnel_n, (0.0, EDGE), J), dict(primary, name="Pohjoistie", maxspeed="60"))

        # secondary road across the whole town ----------------------------
        secondary = {
            "highway": "secondary",
            "name": "Kauppakatu",
            "ref": "2953",
            "lanes": "2",
            "width": "8",
            "maxspeed": "40",
        }
        osm.line(points_on((-EDGE, 110.0), (0.0, 110.0), J), secondary)
        osm.line(points_on((0.0, 110.0), (EDGE, 110.0), J), dict(secondary, maxspeed="50", sidewalk="both"))

        # residential grid -------------------------------------------------
        for u in U_LINES:
            if u != 0.0:
                osm.line(points_on((u, V_LINES[0]), (u, V_LINES[-1]), J), self.street_tags(u, "u"))
        for v in V_LINES:
            if v != 110.0:
                osm.line(points_on((U_LINES[0], v), (U_LINES[-1], v), J), self.street_tags(v, "v"))
        osm.point((0.0, 110.0), {"highway": "traffic_signals"}, shared=True)
        osm.point((0.0, -80.0), {"highway": "crossing", "crossing": "zebra"}, shared=True)

        # paths ---------------------------------------------------------------
        osm.line(cyc_line, {"highway": "cycleway", "foot": "designated", "surface": "asphalt", "name": "Rantaraitti"})
        fb_n, fb_s = (-300.0, river_v(-300.0) + 20.0), (-300.0, river_v(-300.0) - 20.0)
        osm.line(points_on((-300.0, -80.0), fb_n, J), {"highway": "footway", "surface": "gravel"})
        osm.line([fb_n, fb_s], {"highway": "footway", "bridge": "yes", "layer": "1", "name": "Pappilan silta"})
        osm.line(
            [fb_s, (-310.0, -255.0), (-345.0, -300.0), (-330.0, -345.0), (-250.0, -385.0),
             (-170.0, -410.0), (-90.0, -430.0), (0.0, -440.0)],
            {"highway": "path", "surface": "ground"},
        )
        osm.line([(-84.0, -80.0), (-84.0, -40.0)], {"highway": "footway", "surface": "paving_stones"})
        osm.line([(150.0, 0.0), (200.0, -5.0), (250.0, -10.0), (300.0, -10.0)], {"highway": "footway", "surface": "fine_gravel"})
        osm.line([(190.0, -80.0), (185.0, -40.0), (200.0, -5.0)], {"highway": "footway", "surface": "fine_gravel"})
        osm.line(
            [(0.0, -395.0), (340.0, -395.0), (340.0, river_v(340.0) - 24.0)],
            {"highway": "track", "tracktype": "grade2", "surface": "gravel"},
        )
        osm.line([(0.0, 395.0), (250.0, 395.0)], {"highway": "track", "tracktype": "grade3"})

        # service roads ------------------------------------------------------
        osm.line(points_on((0.0, -300.0), (300.0, -300.0), J), {"highway": "service", "name": "Teollisuustie", "width": "7"})
        osm.line([(155.0, -300.0), (155.0, -318.0)], {"highway": "service", "service": "parking_aisle"})
        osm.line([(-100.0, 200.0), (-100.0, 240.0), (-100.0, 266.0)], {"highway": "service", "service": "parking_aisle"})
        osm.line([(-138.0, 240.0), (-100.0, 240.0), (-70.0, 240.0)], {"highway": "service", "service": "parking_aisle"})
        osm.line([(75.0, 200.0), (75.0, 220.0)], {"highway": "service"})
        osm.line([(60.0, 280.0), (60.0, 300.0)], {"highway": "service", "service": "parking_aisle"})

        # railway --------------------------------------------------------------
        rail = {"railway": "rail", "usage": "main", "gauge": "1524", "electrified": "contact_line", "maxspeed": "120"}
        osm.line(points_on((-EDGE, RAIL_V), (EDGE, RAIL_V), J), rail)
        osm.line([(40.0, RAIL_V), (90.0, RAIL_V + 7.5), (320.0, RAIL_V + 7.5)], {"railway": "rail", "service": "siding", "gauge": "1524"})
        osm.area(rect(-150.0, 322.0, -18.0, 327.0), {"railway": "platform", "public_transport": "platform", "ref": "1"})
        osm.area(
            rect(-80.0, 292.0, -25.0, 312.0),
            {"building": "train_station", "building:levels": "2", "height": "9", "name": f"{TOWN_NAME} asema"},
        )
        osm.point((-50.0, 325.0), {"railway": "station", "public_transport": "station", "name": TOWN_NAME})

        # water ------------------------------------------------------------------
        us = river_samples()
        osm.line([(u, river_v(u)) for u in us], {"waterway": "river", "name": "Myllyjoki"}, shared=False)
        north = [(u, river_v(u) + RIVER_HALF_WIDTH) for u in us]
        south = [(u, river_v(u) - RIVER_HALF_WIDTH) for u in reversed(us)]
        osm.area(north + south, {"natural": "water", "water": "river", "name": "Myllyjoki"})
        beach_us = river_samples(170.0, 290.0, 10.0)
        osm.area(
            [(u, river_v(u) + 12.0) for u in beach_us] + [(u, river_v(u) + 24.0) for u in reversed(beach_us)],
            {"natural": "beach", "surface": "sand", "name": "Uimaranta"},
        )

        # riverside green, park and pond -----------------------------------------
        green_us = river_samples(-450.0, 450.0, 25.0)
        osm.area(
            [(u, river_v(u) + 26.0) for u in green_us] + [(450.0, -88.0), (-450.0, -88.0)],
            {"landuse": "grass"},
        )
        osm.area(rect(156.0, -74.0, 294.0, 14.0), {"leisure": "park", "name": "Myllypuisto"})
        osm.area(ellipse(240.0, -45.0, 28.0, 16.0), {"natural": "water", "water": "pond", "name": "Lampi"})
        osm.point((205.0, -12.0), {"amenity": "bench"})
        osm.point((262.0, -16.0), {"amenity": "bench"})

        # church block ---------------------------------------------------------
        osm.area(rect(-142.0, -72.0, -8.0, 12.0), {"landuse": "grass", "name": "Kirkkopuisto"})
        church = [(-118, -34), (-110, -34), (-110, -38), (-72, -38), (-72, -50), (-60, -50), (-60, -38),
                  (-50, -38), (-50, -22), (-60, -22), (-60, -10), (-72, -10), (-72, -22), (-110, -22),
                  (-110, -26), (-118, -26)]
        osm.area(
            [(float(u), float(v)) for u, v in church],
            {"building": "church", "amenity": "place_of_worship", "religion": "christian",
             "denomination": "lutheran", "height": "24", "name": f"{TOWN_NAME}n kirkko"},
        )
        osm.area(rect(-140.0, -8.0, -122.0, 8.0), {"building": "yes", "building:levels": "1", "name": "Seurakuntatalo"})
        osm.point((-125.0, -55.0), {"natural": "tree"})
        osm.point((-30.0, -60.0), {"natural": "tree"})

        # courtyard block: multipolygon building -------------------------------
        outer = osm.area(rect(-140.0, 30.0, -10.0, 100.0), {})
        inner = osm.area(rect(-124.0, 46.0, -26.0, 84.0), {})
        osm.relation(
            [("way", outer, "outer"), ("way", inner, "inner")],
            {"type": "multipolygon", "building": "apartments", "building:levels": "4",
             "roof:shape": "flat", "name": "Korttelitalo", "addr:street": "Koivukatu", "addr:housenumber": "2"},
        )

        # parking block and supermarket ------------------------------------------
        osm.area(rect(-142.0, 208.0, -65.0, 272.0), {"amenity": "parking", "parking": "surface", "capacity": "60"})
        osm.area(rect(-52.0, 222.0, -10.0, 266.0), {"building": "retail", "building:levels": "2", "shop": "hardware"})
        osm.area(rect(10.0, 208.0, 140.0, 228.0), {"amenity": "parking", "parking": "surface"})
        osm.area(rect(70.0, 236.0, 140.0, 272.0), {"building": "retail", "shop": "supermarket", "height": "7.5", "name": "Kuvi-Market"})
        osm.area(rect(15.0, 236.0, 55.0, 270.0), {"building": "retail", "building:levels": "1"})
        osm.area(rect(20.0, 288.0, 120.0, 314.0), {"amenity": "parking", "park_ride": "yes"})

        # blocks --------------------------------------------------------------
        H = "house"
        all_houses = {"S": H, "N": H, "W": H, "E": H}
        specials = {
            (2, 0): None,  # church (above)
            (4, 0): None,  # park (above)
            (2, 1): None,  # courtyard block (above)
            (2, 3): None,  # parking + shop (above)
            (3, 3): None,  # supermarket (above)
            (3, 0): ({"W": "retail", "E": "apartment", "S": "apartment", "N": "apartment"}, "u"),
            (3, 1): ({"W": "retail", "E": "apartment", "S": "apartment", "N": "apartment"}, "u"),
            (3, 2): ({"W": "retail", "E": "apartment", "S": "apartment", "N": "apartment"}, "u"),
            (2, 2): ({"E": "retail", "W": "apartment", "S": "apartment", "N": "apartment"}, "u"),
            (1, 2): ({"S": "apartment", "N": "house", "W": "house", "E": "house"}, "v"),
        }
        for ci in range(len(U_LINES) - 1):
            for ri in range(len(V_LINES) - 1):
                u0, u1 = U_LINES[ci], U_LINES[ci + 1]
                v0, v1 = V_LINES[ri], V_LINES[ri + 1]
                if (ci, ri) in specials:
                    spec = specials[(ci, ri)]
                    if spec is not None:
                        self.fill_block(u0, v0, u1, v1, spec[0], primary=spec[1])
                else:
                    self.fill_block(u0, v0, u1, v1, all_houses)
        # houses between Ratakatu and the railway
        for a, b in ((-450.0, -150.0), (150.0, 450.0)):
            self.row((a, 280.0), (1.0, 0.0), (0.0, 1.0), 5.0, b - a - 5.0, H, "Ratakatu")

        # south of the river: forest with clearing, industry, farmland ---------
        forest_us = river_samples(-EDGE, -14.0, 25.0) + [-14.0]
        forest_ring = [(-14.0, -EDGE), (-EDGE, -EDGE)] + [(u, river_v(u) - 28.0) for u in forest_us]
        f_outer = osm.area(forest_ring, {})
        f_inner = osm.area(rect(-430.0, -370.0, -330.0, -300.0), {"landuse": "meadow", "name": "Hakkuuaukea"})
        osm.relation(
            [("way", f_outer, "outer"), ("way", f_inner, "inner")],
            {"type": "multipolygon", "landuse": "forest", "leaf_type": "needleleaved", "name": "Myllymetsä"},
        )
        osm.area(rect(12.0, -382.0, 330.0, -232.0), {"landuse": "industrial", "name": "Myllyn teollisuusalue"})
        industrial = [
            (rect(30.0, -288.0, 90.0, -248.0), {"height": "9"}),
            (rect(110.0, -285.0, 160.0, -245.0), {}),
            (rect(180.0, -290.0, 300.0, -250.0), {"building:levels": "2"}),
            (rect(30.0, -370.0, 110.0, -312.0), {"height": "12.5"}),
            (rect(200.0, -370.0, 300.0, -320.0), {"height": "8", "building:levels": "1"}),
        ]
        for i, (ring, tags) in enumerate(industrial):
            osm.area(ring, dict({"building": "industrial" if i != 1 else "yes"}, **tags))
        osm.area(rect(125.0, -360.0, 185.0, -318.0), {"amenity": "parking", "parking": "surface", "access": "customers"})
        osm.area(rect(12.0, -EDGE, 330.0, -403.0), {"landuse": "farmland", "crop": "grain"})
        farm_us = river_samples(350.0, EDGE, 25.0)
        osm.area([(u, river_v(u) - 30.0) for u in reversed(farm_us)] + [(350.0, -EDGE), (EDGE, -EDGE)],
                 {"landuse": "farmland"})

        # west and east of the grid --------------------------------------------------
        west_us = river_samples(-EDGE, -465.0, 25.0) + [-465.0]
        osm.area([(u, river_v(u) + 16.0) for u in west_us] + [(-465.0, 95.0), (-EDGE, 95.0)],
                 {"natural": "wetland", "wetland": "marsh", "name": "Kurjensuo"})
        osm.area(rect(-EDGE, 125.0, -465.0, 318.0), {"landuse": "meadow", "meadow": "agricultural"})
        east_us = [465.0] + river_samples(475.0, EDGE, 25.0)
        osm.area([(u, river_v(u) + 16.0) for u in east_us] + [(EDGE, 95.0), (465.0, 95.0)],
                 {"natural": "wood", "leaf_type": "broadleaved"})
        osm.area(rect(465.0, 125.0, EDGE, 318.0), {"landuse": "grass"})

        # north of the railway -----------------------------------------------------
        osm.area(rect(-EDGE, 345.0, -12.0, EDGE), {"landuse": "meadow"})
        osm.area(rect(12.0, 345.0, 250.0, 389.0), {"landuse": "farmland"})
        osm.area(rect(12.0, 401.0, 250.0, EDGE), {"landuse": "farmland"})
        osm.area(rect(262.0, 345.0, EDGE, EDGE), {"landuse": "forest"})

        osm.point((20.0, 120.0), {"place": "village", "name": TOWN_NAME})
        return osm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--no-pbf", action="store_true", help="only write the .osm XML")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    osm = Town().build()
    xml_path = args.out_dir / "sample_town.osm"
    osm.write_xml(xml_path)
    n_buildings = sum(1 for _, _, t in osm.ways if "building" in t) + sum(
        1 for _, _, t in osm.relations if "building" in t
    )
    print(
        f"wrote {xml_path} ({xml_path.stat().st_size / 1024:.0f} KiB): {len(osm.nodes)} nodes, "
        f"{len(osm.ways)} ways, {len(osm.relations)} relations, {n_buildings} buildings"
    )
    print("bounds (minlon, minlat, maxlon, maxlat): " + ", ".join(f"{c:.7f}" for c in osm.bounds()))
    if not args.no_pbf:
        try:
            import osmium  # noqa: F401
        except ImportError:
            print("pyosmium not installed: skipped sample_town.osm.pbf (pip install osmium)")
        else:
            pbf_path = args.out_dir / "sample_town.osm.pbf"
            from geogan.osm_io import xml_to_pbf

            xml_to_pbf(xml_path, pbf_path, GENERATOR)
            print(f"wrote {pbf_path} ({pbf_path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
