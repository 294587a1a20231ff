"""geogan.provenance: metadata tags, class names (RAT + QGIS style) and data coverage of outputs (issue 22)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import numpy as np
import pytest
import rasterio
from affine import Affine

from geogan.classes import load_schema
from geogan.grid import grid_from_bbox
from geogan.provenance import (OSM_ATTRIBUTION, Provenance, class_aux_xml, class_qml, coverage_mask,
                               osm_coverage_lonlat, output_tags, uncovered_message, write_class_names)
from osm_factory import offset_lonlat, write_osm


def _tif(path, dtype="uint8"):
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype=dtype, crs="EPSG:32632",
                       transform=Affine(1, 0, 500000, 0, -1, 6000000)) as ds:
        ds.write(np.arange(64, dtype=dtype).reshape(1, 8, 8) % 12)
    return path


def test_output_tags_in_a_real_geotiff(tmp_path):
    card = tmp_path / "m.json"
    card.write_text(json.dumps({"name": "m", "weights_sha256": "ab" * 32, "license": "CC BY 4.0 (data: X)"}))
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    tags = output_tags(Provenance.from_card(card, seed=42, osm_used=True, created=when), version="9.9")
    path = _tif(tmp_path / "aerial.tif")
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**tags)
    with rasterio.open(path) as ds:
        got = ds.tags()
    assert got["SYNTHETIC"] == "YES" and got["GEOGAN_SEED"] == "42" and got["GEOGAN_MODEL"] == "m"
    assert got["TIFFTAG_SOFTWARE"] == "geogan 9.9" and got["TIFFTAG_DATETIME"] == "2026:05:04 03:02:01"
    assert got["GEOGAN_CREATED"] == "2026-05-04T03:02:01Z"
    assert got["GEOGAN_MODEL_CARD_SHA256"] == __import__("hashlib").sha256(card.read_bytes()).hexdigest()
    assert got["GEOGAN_MODEL_WEIGHTS_SHA256"] == "ab" * 32 and got["GEOGAN_MODEL_LICENSE"] == "CC BY 4.0 (data: X)"
    assert got["TIFFTAG_COPYRIGHT"] == OSM_ATTRIBUTION and "OpenStreetMap contributors, ODbL" in OSM_ATTRIBUTION
    no_osm = output_tags(Provenance(seed=1, osm_used=False))
    assert "TIFFTAG_COPYRIGHT" not in no_osm and "GEOGAN_MODEL" not in no_osm and no_osm["SYNTHETIC"] == "YES"


def test_class_names_as_qgis_style_and_raster_attribute_table(tmp_path):
    schema = load_schema()
    path = _tif(tmp_path / "classes.tif")
    aux, qml = write_class_names(path, schema)
    assert aux.name == "classes.tif.aux.xml" and qml.name == "classes.qml"
    entries = ET.fromstring(qml.read_text()).findall(".//paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries][:2] == \
        [("0", "0 background", "#ffffff"), ("1", "1 building", "#d62728")]
    assert len(entries) == len(schema.classes)
    assert class_qml([{"id": c.id, "name": c.name, "color": c.color} for c in schema.classes]) == class_qml(schema)
    rat = ET.fromstring(class_aux_xml(schema)).find(".//GDALRasterAttributeTable")
    assert [r.findall("F")[1].text for r in rat.findall("Row")] == schema.names
    if shutil.which("gdalinfo") is None:
        pytest.skip("gdalinfo is not installed: GDAL's reading of the sidecar is not checked")
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, text=True,
                                     check=True).stdout)
    band = info["bands"][0]
    assert band["categories"][:3] == ["background", "building", "road"]
    rows = info["rat"]["row"]
    assert [r["f"][1] for r in rows] == schema.names and rows[5]["f"] == [5, "water", 31, 119, 220]


def test_coverage_of_an_osm_extract(tmp_path):
    lon0, lat0 = 10.5, 54.3
    (w, s), (e, n) = offset_lonlat(lon0, lat0, -100, -100), offset_lonlat(lon0, lat0, 100, 100)
    grid = grid_from_bbox((w, s, e, n), "EPSG:4326", "EPSG:32632", 2.0)
    # the extract covers the west half of the grid
    osm = write_osm(tmp_path / "half.osm", {1: (w, s), 2: (lon0, n)}, [(1, [1, 2], {"highway": "track"})],
                    bounds=(w - 0.01, s - 0.01, lon0, n + 0.01))
    mask = coverage_mask(grid, osm_coverage_lonlat([osm]))
    assert mask.mean() == pytest.approx(0.5, abs=0.02) and mask[:, 0].all() and not mask[:, -1].any()
    assert uncovered_message(mask.mean()).startswith("the input data covers 50.")
    assert "drawn as background (--fill background)" in uncovered_message(0.5, "background")
    assert uncovered_message(1.0) is None
    nobounds = write_osm(tmp_path / "nb.osm", {1: (w, s), 2: (e, n)}, [(1, [1, 2], {"highway": "track"})],
                         bounds=False)
    assert osm_coverage_lonlat([nobounds]) is None and coverage_mask(grid, None).all()
    pytest.importorskip("osmium")
    from osm_factory import to_pbf
    # a .osm.pbf: the box in its header
    assert np.array_equal(coverage_mask(grid, osm_coverage_lonlat([to_pbf(osm, tmp_path / "half.osm.pbf")])), mask)
