"""The bundled fictional sample town and the tests' OSM file factory read back through GDAL's OSM driver."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyogrio
import pyproj
import pytest

try:
    from osm_factory import polygon_osm, road_osm, square_building_osm, to_pbf, write_osm
except ImportError:  # tests/ imported as a package
    from tests.osm_factory import polygon_osm, road_osm, square_building_osm, to_pbf, write_osm

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_OSM = SAMPLE_DIR / "sample_town.osm"
SAMPLE_PBF = SAMPLE_DIR / "sample_town.osm.pbf"
LAYERS = {"points", "lines", "multilinestrings", "multipolygons", "other_relations"}


def hstore(s) -> dict:
    """Parse GDAL's other_tags ("k"=>"v","k2"=>"v2") into a dict."""
    if not isinstance(s, str):
        return {}
    return {k: v for k, v in re.findall(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"', s)}


def _read(path, layer):
    return pyogrio.read_dataframe(path, layer=layer)


@pytest.fixture(scope="module", params=["osm", "pbf"])
def sample(request):
    path = SAMPLE_OSM if request.param == "osm" else SAMPLE_PBF
    return path, _read(path, "multipolygons"), _read(path, "lines")


def test_sample_files_present_and_small():
    assert SAMPLE_OSM.stat().st_size < 2_000_000
    assert SAMPLE_PBF.stat().st_size > 0
    head = SAMPLE_OSM.read_text(encoding="utf-8")[:2000]
    assert '<osm version="0.6"' in head and "<bounds " in head and "FICTIONAL" in head


def test_sample_xml_ids_and_refs_valid():
    root = ET.parse(SAMPLE_OSM).getroot()
    node_ids = [int(n.get("id")) for n in root.iter("node")]
    way_ids = [int(w.get("id")) for w in root.iter("way")]
    assert min(node_ids) > 0 and len(set(node_ids)) == len(node_ids)
    assert min(way_ids) > 0 and len(set(way_ids)) == len(way_ids)
    known = set(node_ids)
    for way in root.iter("way"):
        refs = [int(nd.get("ref")) for nd in way.iter("nd")]
        assert len(refs) >= 2 and set(refs) <= known
    ways = set(way_ids)
    for rel in root.iter("relation"):
        for m in rel.iter("member"):
            assert m.get("type") == "way" and int(m.get("ref")) in ways


def test_sample_layers_and_counts(sample):
    path, mp, lines = sample
    assert {name for name, _ in pyogrio.list_layers(path)} == LAYERS

    buildings = mp[mp["building"].notna()]
    assert len(buildings) >= 250
    assert {"house", "apartments", "retail", "industrial", "church", "yes"} <= set(buildings["building"])
    assert mp.geometry.is_valid.all()

    tags = buildings["other_tags"].map(hstore)
    assert tags.map(lambda t: "height" in t).sum() >= 20
    assert tags.map(lambda t: "building:levels" in t).sum() >= 20
    assert tags.map(lambda t: not ({"height", "building:levels"} & t.keys())).sum() >= 20

    water = mp[mp["natural"] == "water"]
    assert len(water) >= 2  # river polygon + pond
    assert "water" in set(mp["natural"]) and {"wetland", "wood", "beach"} <= set(mp["natural"])
    assert {"forest", "farmland", "meadow", "grass"} <= set(mp["landuse"])
    assert "park" in set(mp["leisure"]) and "parking" in set(mp["amenity"])

    # multipolygon relations: courtyard building and forest with a clearing, each with a hole
    rels = mp[mp["osm_id"].notna()]
    assert len(rels) >= 2 and (rels["type"] == "multipolygon").all()
    assert all(len(poly.interiors) >= 1 for g in rels.geometry for poly in g.geoms)

    hw = set(lines["highway"].dropna())
    assert {"primary", "secondary", "residential", "service", "footway", "cycleway", "track", "path"} <= hw
    assert (lines["railway"] == "rail").any() and (lines["waterway"] == "river").any()
    ltags = lines["other_tags"].map(hstore)
    assert ltags.map(lambda t: t.get("bridge") == "yes" and t.get("layer") == "1").any()
    assert ltags.map(lambda t: t.get("tunnel") == "yes").any()
    assert ltags.map(lambda t: "lanes" in t).any() and ltags.map(lambda t: "width" in t).any()


def test_sample_location_near_60n():
    info = pyogrio.read_info(SAMPLE_OSM, layer="lines")
    minlon, minlat, maxlon, maxlat = info["total_bounds"]  # from <bounds>
    assert 59.9 < minlat < maxlat < 60.9
    assert 25.2 < minlon < maxlon < 26.2
    geod = pyproj.Geod(ellps="WGS84")
    lat = (minlat + maxlat) / 2
    width = geod.inv(minlon, lat, maxlon, lat)[2]
    height = geod.inv(minlon, minlat, minlon, maxlat)[2]
    assert 1100 < width < 1300 and 800 < height < 1000
    lines = _read(SAMPLE_OSM, "lines")
    x0, y0, x1, y1 = lines.total_bounds
    assert minlon - 1e-6 <= x0 and x1 <= maxlon + 1e-6 and minlat - 1e-6 <= y0 and y1 <= maxlat + 1e-6


def test_sample_osm_and_pbf_hold_the_same_data():
    for layer in ("multipolygons", "lines", "points"):
        a, b = _read(SAMPLE_OSM, layer), _read(SAMPLE_PBF, layer)
        assert len(a) == len(b)
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
        assert a.geometry.geom_equals_exact(b.geometry, 1e-9).all()


def test_sample_generator_reproduces_committed_file(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample_town", SAMPLE_DIR / "make_sample_town.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out-dir", str(tmp_path), "--no-pbf"]) == 0
    assert (tmp_path / "sample_town.osm").read_bytes() == SAMPLE_OSM.read_bytes()


# --------------------------------------------------------------------------- osm_factory


def test_factory_square_building_roundtrip(tmp_path):
    path = square_building_osm(tmp_path / "b.osm", 25.70, 60.40, 20.0, {"building": "yes", "height": "12"})
    mp = _read(path, "multipolygons")
    assert len(mp) == 1 and mp["building"].iloc[0] == "yes"
    assert hstore(mp["other_tags"].iloc[0]) == {"height": "12"}
    assert len(_read(path, "lines")) == 0
    area = mp.to_crs("EPSG:32635").area.iloc[0]
    assert area == pytest.approx(400.0, rel=0.005)  # UTM scale factor ~0.9998 here
    lon, lat = mp.geometry.iloc[0].centroid.coords[0]
    assert lon == pytest.approx(25.70, abs=1e-6) and lat == pytest.approx(60.40, abs=1e-6)


def test_factory_road_roundtrip(tmp_path):
    tags = {"highway": "primary", "lanes": "2", "bridge": "yes", "layer": "1"}
    lines = _read(road_osm(tmp_path / "r.osm", 25.70, 60.40, 25.701, 60.40, tags), "lines")
    assert len(lines) == 1 and lines["highway"].iloc[0] == "primary"
    assert hstore(lines["other_tags"].iloc[0]) == {"lanes": "2", "bridge": "yes", "layer": "1"}
    length = lines.to_crs("EPSG:32635").length.iloc[0]
    assert length == pytest.approx(55.1, abs=0.5)  # 0.001 deg of longitude at 60.4 N


def test_factory_closed_way_polygon_rules(tmp_path):
    ring = [(0, 0), (30, 0), (30, 20), (0, 20)]
    as_poly = polygon_osm(tmp_path / "p.osm", 25.70, 60.40, ring, {"landuse": "grass"})
    assert len(_read(as_poly, "multipolygons")) == 1 and len(_read(as_poly, "lines")) == 0
    # highway is not in GDAL's closed_ways_are_polygons: a closed service road stays a line
    as_line = polygon_osm(tmp_path / "l.osm", 25.70, 60.40, ring, {"highway": "service"})
    assert len(_read(as_line, "multipolygons")) == 0 and len(_read(as_line, "lines")) == 1


def test_factory_multipolygon_and_pbf(tmp_path):
    pytest.importorskip("osmium")
    path = polygon_osm(
        tmp_path / "m.osm", 25.70, 60.40, [(0, 0), (40, 0), (40, 40), (0, 40)],
        {"building": "yes", "building:levels": "3"}, holes_m=[[(10, 10), (30, 10), (30, 30), (10, 30)]],
    )
    for p in (path, to_pbf(path, tmp_path / "m.osm.pbf")):
        mp = _read(p, "multipolygons")
        assert len(mp) == 1 and mp["type"].iloc[0] == "multipolygon"
        assert hstore(mp["other_tags"].iloc[0]) == {"building:levels": "3"}
        assert mp.to_crs("EPSG:32635").area.iloc[0] == pytest.approx(1200.0, rel=0.005)


def test_factory_write_osm_validates(tmp_path):
    with pytest.raises(ValueError):
        write_osm(tmp_path / "bad.osm", {1: (25.7, 60.4)}, [(1, [1, 2], {"highway": "path"})])
    path = write_osm(
        tmp_path / "pt.osm", {1: (25.7, 60.4, {"amenity": "bench"}), 2: (25.7, 60.401)},
        [(5, [1, 2], {"highway": "footway"})], bounds=False,
    )
    assert "<bounds" not in path.read_text()
    assert len(_read(path, "points")) == 1 and len(_read(path, "lines")) == 1


def test_packaged_sample_is_the_sample_data_file():
    from geogan.api import sample_osm_path
    packaged = sample_osm_path()
    top = Path(__file__).resolve().parents[1] / "sample_data" / "sample_town.osm"
    assert packaged.read_bytes() == top.read_bytes()
