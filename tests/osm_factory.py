"""Write tiny synthetic OpenStreetMap files for tests (plain helpers, no fixtures).

Everything here is made up by the tests; nothing is real OSM data.

* :func:`write_osm` writes OSM XML 0.6 from plain Python structures.
* :func:`square_building_osm`, :func:`road_osm`, :func:`polygon_osm` are
  one-feature conveniences.
* :func:`to_pbf` converts an ``.osm`` file to ``.osm.pbf`` with pyosmium.

Notes on GDAL's OSM driver (what pyogrio uses to read these files):

* A *closed* way only becomes a polygon (layer ``multipolygons``) if its tags
  match ``closed_ways_are_polygons`` in GDAL's ``osmconf.ini`` (keys such as
  building, landuse, natural, leisure, amenity, ...; or ``area=yes``).
  Otherwise it is a line (layer ``lines``): e.g. a closed ``highway=service``
  loop or a closed ``waterway=riverbank``.
* Untagged ways are not reported at all (a multipolygon relation's untagged
  member ways only appear through the relation).
* Only tagged nodes appear in the ``points`` layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

Tags = Mapping[str, object]
NodeSpec = tuple  # (lon, lat) or (lon, lat, tags)

_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)

_GENERATOR = "geogan tests/osm_factory.py"


def metres_to_degrees(lat: float) -> tuple[float, float]:
    """Degrees per metre (east, north) at latitude ``lat`` on the WGS84 ellipsoid."""
    phi = math.radians(lat)
    w = math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    n = _A / w  # prime-vertical radius of curvature
    m = _A * (1 - _E2) / w**3  # meridional radius of curvature
    return math.degrees(1 / (n * math.cos(phi))), math.degrees(1 / m)


def offset_lonlat(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """Move (lon, lat) by a small east/north offset in metres (local tangent plane)."""
    dlon, dlat = metres_to_degrees(lat)
    return lon + east_m * dlon, lat + north_m * dlat


def _tags_xml(tags: Tags | None, indent: str = "    ") -> list[str]:
    return [f"{indent}<tag k={quoteattr(str(k))} v={quoteattr(str(v))}/>" for k, v in (tags or {}).items()]


def write_osm(
    path: str | Path,
    nodes: Mapping[int, NodeSpec],
    ways: Iterable[tuple[int, Sequence[int], Tags]],
    relations: Iterable[tuple[int, Sequence[tuple[str, int, str]], Tags]] = (),
    bounds: tuple[float, float, float, float] | bool | None = None,
) -> Path:
    """Write an OSM XML (0.6) file and return its path.

    nodes:     {id: (lon, lat)} or {id: (lon, lat, {tags})}
    ways:      [(id, [node ids], {tags})]; repeat the first node id at the end to close a way
    relations: [(id, [(member type 'node'|'way'|'relation', ref, role)], {tags})]
    bounds:    (minlon, minlat, maxlon, maxlat) for the <bounds> element; None computes it
               from the nodes; False writes no <bounds>.

    Objects are written in the order GDAL and osmium expect (nodes, ways, relations, each
    sorted by id). Way node refs must exist, ids must be positive.
    """
    path = Path(path)
    ways = sorted(ways, key=lambda w: w[0])
    relations = sorted(relations, key=lambda r: r[0])
    for kind, ids in (("node", list(nodes)), ("way", [w[0] for w in ways]), ("relation", [r[0] for r in relations])):
        if any(int(i) <= 0 for i in ids):
            raise ValueError(f"{kind} ids must be positive")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate {kind} ids")
    for wid, refs, _ in ways:
        missing = [r for r in refs if r not in nodes]
        if missing:
            raise ValueError(f"way {wid} references missing nodes {missing}")
        if len(refs) < 2:
            raise ValueError(f"way {wid} needs at least two nodes")

    out = ["<?xml version='1.0' encoding='UTF-8'?>", f'<osm version="0.6" generator="{_GENERATOR}">']
    if bounds is None and nodes:
        lons = [n[0] for n in nodes.values()]
        lats = [n[1] for n in nodes.values()]
        bounds = (min(lons), min(lats), max(lons), max(lats))
    if bounds:
        minlon, minlat, maxlon, maxlat = bounds
        out.append(f'  <bounds minlat="{minlat:.7f}" minlon="{minlon:.7f}" maxlat="{maxlat:.7f}" maxlon="{maxlon:.7f}"/>')
    for nid in sorted(nodes):
        spec = nodes[nid]
        lon, lat = spec[0], spec[1]
        tags = spec[2] if len(spec) > 2 else None
        head = f'  <node id="{int(nid)}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"'
        if tags:
            out += [head + ">", *_tags_xml(tags), "  </node>"]
        else:
            out.append(head + "/>")
    for wid, refs, tags in ways:
        out.append(f'  <way id="{int(wid)}" version="1">')
        out += [f'    <nd ref="{int(r)}"/>' for r in refs]
        out += _tags_xml(tags)
        out.append("  </way>")
    for rid, members, tags in relations:
        out.append(f'  <relation id="{int(rid)}" version="1">')
        out += [f'    <member type="{t}" ref="{int(ref)}" role={quoteattr(role)}/>' for t, ref, role in members]
        out += _tags_xml(tags)
        out.append("  </relation>")
    out.append("</osm>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def square_building_osm(
    path: str | Path, lon: float, lat: float, size_m: float, tags: Tags | None = None
) -> Path:
    """One closed way: an axis-aligned square of side ``size_m`` metres centred at lon/lat.

    tags default to {"building": "yes"}.
    """
    h = size_m / 2.0
    corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
    nodes = {i + 1: offset_lonlat(lon, lat, dx, dy) for i, (dx, dy) in enumerate(corners)}
    ways = [(1, [1, 2, 3, 4, 1], dict(tags) if tags is not None else {"building": "yes"})]
    return write_osm(path, nodes, ways)


def road_osm(
    path: str | Path, lon0: float, lat0: float, lon1: float, lat1: float, tags: Tags | None = None
) -> Path:
    """One straight two-node way from (lon0, lat0) to (lon1, lat1).

    tags default to {"highway": "residential"}.
    """
    nodes = {1: (lon0, lat0), 2: (lon1, lat1)}
    return write_osm(path, nodes, [(1, [1, 2], dict(tags) if tags is not None else {"highway": "residential"})])


def polygon_osm(
    path: str | Path,
    lon: float,
    lat: float,
    ring_m: Sequence[tuple[float, float]],
    tags: Tags,
    holes_m: Sequence[Sequence[tuple[float, float]]] = (),
) -> Path:
    """One area from rings given in metres (east, north) around lon/lat.

    Without holes this is a closed way carrying ``tags``; with holes it is a
    ``type=multipolygon`` relation (tags on the relation, untagged outer/inner ways).
    """
    nodes: dict[int, tuple[float, float]] = {}
    ways = []
    for wid, ring in enumerate([ring_m, *holes_m], start=1):
        refs = []
        for dx, dy in ring:
            nid = len(nodes) + 1
            nodes[nid] = offset_lonlat(lon, lat, dx, dy)
            refs.append(nid)
        ways.append((wid, refs + [refs[0]], {} if holes_m else dict(tags)))
    relations = []
    if holes_m:
        members = [("way", 1, "outer")] + [("way", w, "inner") for w in range(2, len(ways) + 1)]
        relations.append((1, members, {"type": "multipolygon", **dict(tags)}))
    return write_osm(path, nodes, ways, relations)


def to_pbf(osm_path: str | Path, pbf_path: str | Path) -> Path:
    """Convert an OSM XML file to PBF with pyosmium (``pip install osmium``)."""
    from geogan.osm_io import xml_to_pbf

    return xml_to_pbf(osm_path, pbf_path, _GENERATOR)
