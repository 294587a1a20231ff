"""The QGIS plugin draws exactly what the user chose, where and how QGIS users expect (issue 23).

One PyQGIS process (QGIS's own Python, the plugin installed from its zip into a
fresh profile) runs every case through the processing registry; the rasters are
read back here with rasterio. Cases:

* a layer's subset filter and "Selected features only" decide what is drawn; an OSM
  tag that GDAL keeps only in ``other_tags`` (``area:highway``) still gives its class;
* the output CRS defaults to the project CRS, pixels are square;
* no silent fallbacks: no input, no CRS for the output or for the extent are refused (no sample town,
  no EPSG:3857);
* an existing output is refused without OVERWRITE, replaced with it;
* the model drop-down lists the models installed in geogan's Python (a model put in the
  user's model folder too), the help names their licences;
* classes.qml beside classes.tif carries the class names and the colours of the schema
  actually used (a custom rules file), and QGIS opens the raster styled by it;
* grid, layer and output options: a pixel size in CRS units snapped to its multiples (RES, TAP),
  a measured-height GeoPackage layer without a building field (CLASS_NAME, HEIGHT_FIELD), a polygon
  mask (MASK), scene.glb (MESH); parameters that cannot go together are refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyproj
import pytest

from osm_factory import offset_lonlat, write_osm
from test_qgis_plugin import QGIS_PROCESS, SYSTEM_PYTHON, _plugins_dir, _qgis_env, qgis_home  # noqa: F401

pytestmark = pytest.mark.skipif(not QGIS_PROCESS.exists(), reason="QGIS is not installed; run scripts/install_qgis.sh")

LON, LAT = 10.0, 50.0
UTM = "EPSG:32632"  # the project CRS of the cases: not the old EPSG:3857 default
# feature -> (east, north) of a point inside it, metres from (LON, LAT)
INSIDE = {"A": (20, 20), "B": (60, 20), "C": (20, 60), "road": (50, 40), "footway": (50, 90)}
# the mask: around building A, and around the road's east part (east, north: west, south, east, north metres)
MASK_BOXES = [(5, 5, 35, 35), (60, 35, 90, 45)]
# measured buildings (a survey layer: no building field, heights in HOEHE): (west, south, size m) -> height m
SURVEY = {(10, 10, 20): 12.5, (50, 10, 20): 27.0}


def write_town(path: Path) -> Path:
    """Buildings A and B, an area:highway C (its key only in GDAL's other_tags), a road and a footway."""
    def square(first: int, east: float, north: float, size: float) -> dict:
        corners = [(east, north), (east + size, north), (east + size, north + size), (east, north + size)]
        return {first + i: offset_lonlat(LON, LAT, x, y) for i, (x, y) in enumerate(corners)}

    nodes = {**square(1, 10, 10, 20), **square(11, 50, 10, 20), **square(21, 10, 50, 20),
             31: offset_lonlat(LON, LAT, 0, 40), 32: offset_lonlat(LON, LAT, 100, 40),
             41: offset_lonlat(LON, LAT, 0, 90), 42: offset_lonlat(LON, LAT, 100, 90)}
    ways = [(1, [1, 2, 3, 4, 1], {"building": "yes"}), (2, [11, 12, 13, 14, 11], {"building": "yes"}),
            (3, [21, 22, 23, 24, 21], {"area": "yes", "area:highway": "residential"}),
            (4, [31, 32], {"highway": "residential"}), (5, [41, 42], {"highway": "footway"})]
    return write_osm(path, nodes, ways, bounds=(*offset_lonlat(LON, LAT, 0, 0), *offset_lonlat(LON, LAT, 100, 100)))


def _utm_box(west: float, south: float, east: float, north: float):
    import shapely

    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    corners = [offset_lonlat(LON, LAT, x, y) for x, y in ((west, south), (east, south), (east, north), (west, north))]
    return shapely.Polygon([to_utm.transform(*c) for c in corners])


def write_survey(path: Path) -> Path:
    """A GeoPackage of buildings (UTM 32N) with measured heights in 'HOEHE' and no building field."""
    import geopandas as gpd
    import pyogrio

    geoms = [_utm_box(w, s, w + size, s + size) for w, s, size in SURVEY]
    frame = gpd.GeoDataFrame({"HOEHE": list(SURVEY.values()), "name": ["a", "b"]}, geometry=geoms, crs=UTM)
    pyogrio.write_dataframe(frame, path, layer="survey")
    return path


def write_mask(path: Path) -> Path:
    """MASK_BOXES as a GeoJSON polygon layer in lon/lat."""
    import shapely

    boxes = [shapely.Polygon([offset_lonlat(LON, LAT, x, y) for x, y in ((w, s), (e, s), (e, n), (w, n))])
             for w, s, e, n in MASK_BOXES]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(b)} for b in boxes]}),
        encoding="utf-8")
    return path


IN_QGIS = r'''
import json, os, sys
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsProcessingContext,
                       QgsProcessingFeatureSourceDefinition, QgsProcessingFeedback, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)
plugins_dir, osm, rules, work, survey, mask = sys.argv[1:7]
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, plugins_dir)
from geogan_qgis.provider import GeoganProvider
provider = GeoganProvider()  # kept: the registry does not own a Python provider
QgsApplication.processingRegistry().addProvider(provider)
reg = QgsApplication.processingRegistry()
project = QgsProject.instance()
project.setCrs(QgsCoordinateReferenceSystem("EPSG:32632"))
polys = QgsVectorLayer(osm + "|layername=multipolygons", "town polygons", "ogr")
lines = QgsVectorLayer(osm + "|layername=lines", "town lines", "ogr")
lines.setSubsetString("\"highway\" = 'residential'")
project.addMapLayers([polys, lines])
polys.selectByExpression("\"osm_way_id\" IN ('1', '3')")  # building A and area C, not building B
out = {"selected": polys.selectedFeatureCount(), "lines_shown": len(list(lines.getFeatures()))}

class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors, self.log = [], []
    def reportError(self, error, fatalError=False):
        self.errors.append(error)
    def pushInfo(self, info):
        self.log.append(info)
    def pushWarning(self, info):
        self.log.append(info)

def run(alg_id, params, in_project=True):
    ctx, fb = QgsProcessingContext(), Feedback()
    if in_project:
        ctx.setProject(project)
    res, ok = reg.createAlgorithmById(alg_id).run(params, ctx, fb)
    return {"ok": ok, "errors": fb.errors, "log": fb.log, "result": {k: str(v) for k, v in (res or {}).items()}}

chosen = {"INPUT": QgsProcessingFeatureSourceDefinition(polys.id(), True), "LAYERS": [lines.id()]}
bad = {"GSD_M": 1.0, "OUTPUT": work + "/bad.tif"}
out["no_input"] = run("geogan:rasterize", bad)
file_input = {**bad, "INPUT": osm + "|layername=multipolygons"}
out["no_project_crs"] = run("geogan:rasterize", file_input, in_project=False)
empty = QgsVectorLayer(osm + "|layername=lines", "no lines", "ogr")
empty.setSubsetString("\"highway\" = 'no such value'")
project.addMapLayer(empty)
out["nothing_chosen"] = run("geogan:rasterize", {**bad, "INPUT": empty.id()})
out["extent_no_crs"] = run("geogan:rasterize", {**file_input, "OUTPUT_CRS": "EPSG:3857",
                                                "EXTENT": "10,10.001,50,50.001"}, in_project=False)
out["rasterize"] = run("geogan:rasterize", {**chosen, "GSD_M": 1.0, "RULES": rules, "OUTPUT": work + "/r/classes.tif"})
render_alg = reg.algorithmById("geogan:render")
models = render_alg.parameterDefinition("MODEL").options()
out["models"], out["help"] = models, render_alg.shortHelpString()
render = {**chosen, "GSD_M": 1.0, "MODEL": [m.split()[0] for m in models].index("tiny"), "TILE_PX": 64,
          "OVERLAP_PX": 16, "OUTPUT_DIR": work + "/render"}
out["render"] = run("geogan:render", render)
out["again"] = run("geogan:render", render)
mtime = os.path.getmtime(work + "/render/aerial.tif")
out["overwrite"] = run("geogan:render", {**render, "OVERWRITE": True})
out["replaced"] = os.path.getmtime(work + "/render/aerial.tif") != mtime
tiny = render["MODEL"]
out["masked"] = run("geogan:rasterize", {"INPUT": polys.id(), "LAYERS": [lines.id()], "MASK": mask, "GSD_M": 1.0,
                                         "RES": 0.7, "TAP": True, "OUTPUT": work + "/masked/classes.tif"})
out["survey"] = run("geogan:render", {"INPUT": survey + "|layername=survey", "CLASS_NAME": "building",
                                      "HEIGHT_FIELD": "HOEHE", "MESH": True, "RES": 1.0, "TAP": True, "MODEL": tiny,
                                      "TILE_PX": 64, "OVERLAP_PX": 16, "OUTPUT_DIR": work + "/survey"})
out["class_and_field"] = run("geogan:rasterize", {**file_input, "CLASS_NAME": "building", "CLASS_FIELD": "class"})
out["res_and_gsd"] = run("geogan:render", {**chosen, "GSD_M": 1.0, "RES": 1.0, "OUTPUT_DIR": work + "/bad"})
out["mask_and_osm_file"] = run("geogan:rasterize", {**bad, "OSM_FILE": osm, "MASK": mask})
no_polygons = QgsVectorLayer("Polygon?crs=EPSG:4326", "empty mask", "memory")
project.addMapLayer(no_polygons)
out["empty_mask"] = run("geogan:rasterize", {**file_input, "MASK": no_polygons.id()})
layer = QgsRasterLayer(work + "/render/classes.tif", "classes")  # a fresh open: the default style is classes.qml
r = layer.renderer()
out["opened"] = {"renderer": r.type(), "labels": [c.label for c in r.classes()] if r.type() == "paletted" else []}
print("@@RESULT@@" + json.dumps(out), flush=True)
os._exit(0)  # skip QGIS teardown (PyQGIS standalone scripts may crash in it)
'''


@pytest.fixture(scope="module")
def session(qgis_home, tiny_model, tmp_path_factory):  # noqa: F811
    """Run every case in one QGIS process; returns (its results, the work folder)."""
    import shutil

    from geogan.classes import load_schema

    work = tmp_path_factory.mktemp("qgis_inputs")
    osm = write_town(work / "town.osm")
    model_dir = work / "models"  # the user's model folder: the drop-down must list what is installed there
    model_dir.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_model.with_suffix(suffix), model_dir / f"tiny{suffix}")
    building = load_schema().by_name("building")
    text = (Path(__file__).parents[1] / "geogan" / "data" / "classes.toml").read_text(encoding="utf-8")
    old = f"color = [{', '.join(str(int(v)) for v in building.color)}]"
    assert old in text
    rules = work / "rules.toml"
    rules.write_text(text.replace(old, "color = [1, 2, 3]", 1), encoding="utf-8")
    script = work / "in_qgis.py"
    script.write_text(IN_QGIS, encoding="utf-8")
    survey, mask = write_survey(work / "survey.gpkg"), write_mask(work / "mask.geojson")
    proc = subprocess.run([SYSTEM_PYTHON, str(script), str(_plugins_dir(qgis_home)), str(osm), str(rules), str(work),
                           str(survey), str(mask)],
                          env=_qgis_env(qgis_home, GEOGAN_MODEL_DIR=str(model_dir)), capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[0][len("@@RESULT@@"):]), work


def _value_at(path: Path, east_m: float, north_m: float):
    import rasterio

    lon, lat = offset_lonlat(LON, LAT, east_m, north_m)
    with rasterio.open(path) as ds:
        x, y = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        row, col = ds.index(x, y)
        return ds.read(1)[row, col] if 0 <= row < ds.height and 0 <= col < ds.width else None


def _class_at(path: Path, name: str) -> int:
    """The class drawn at a point of feature ``name``; 0 where the raster does not reach."""
    value = _value_at(path, *INSIDE[name])
    return 0 if value is None else int(value)


def _on_pixel_grid(path: Path, res: float) -> None:
    """Square pixels of exactly ``res`` and bounds on multiples of it (gdalwarp -tap)."""
    import rasterio

    with rasterio.open(path) as ds:
        assert ds.res == (res, res), (path, ds.res)
        for edge in ds.bounds:
            assert edge / res == pytest.approx(round(edge / res), abs=1e-6), (path, ds.bounds)


def test_filter_and_selection_decide_what_is_drawn(session):
    out, work = session
    assert out["selected"] == 2 and out["lines_shown"] == 1
    assert out["rasterize"]["ok"], out["rasterize"]
    for classes in (work / "r" / "classes.tif", work / "render" / "classes.tif"):
        drawn = {name: _class_at(classes, name) for name in INSIDE}
        # A selected; B not; C's class comes from other_tags; the filter keeps the road, drops the footway
        assert drawn == {"A": 1, "B": 0, "C": 2, "road": 2, "footway": 0}, (classes, drawn)
    assert "layer 'town polygons': 2 features handed to geogan" in out["rasterize"]["log"]


def test_output_crs_is_the_project_crs_with_square_pixels(session):
    import rasterio

    out, work = session
    for name in ("r/classes.tif", "render/aerial.tif", "render/height.tif", "render/classes.tif"):
        with rasterio.open(work / name) as ds:
            assert ds.crs == rasterio.crs.CRS.from_string(UTM), name
            assert ds.res[0] == pytest.approx(ds.res[1], rel=1e-9), (name, ds.res)
            assert ds.res[0] == pytest.approx(0.9997, abs=1e-9)  # 1 ground metre in UTM 32N, 4 digits
    assert any("pixels 0.9997 x 0.9997 EPSG:32632 units" in line for line in out["rasterize"]["log"])


def test_existing_outputs_need_overwrite(session):
    out, _ = session
    assert out["render"]["ok"], out["render"]
    again = out["again"]
    assert not again["ok"]
    assert any("already has aerial.tif, height.tif, classes.tif, classes.qml" in e and "OVERWRITE" in e
               for e in again["errors"]), again["errors"]
    assert out["overwrite"]["ok"] and out["replaced"]


def test_model_drop_down_lists_installed_models_with_licences(session):
    from geogan.zoo import list_models

    out, _ = session
    names = [m.split()[0] for m in out["models"]]
    installed = sorted(c["name"] for c in list_models() if "rgb" in (c.get("outputs") or []))
    assert names[0] == "default" and "tiny" in names
    assert sorted(set(names) - {"tiny"}) == installed
    assert "CC BY-NC-SA 4.0" in out["models"][0]  # the default model's licence, in the drop-down itself
    assert "<b>default</b>" in out["help"] and "LandCover.ai" in out["help"]


def test_classes_style_is_the_schema_used(session):
    out, work = session
    qml = (work / "r" / "classes.qml").read_text(encoding="utf-8")
    assert 'color="#010203"' in qml and 'label="1 building"' in qml  # the custom rules' building colour
    render_qml = (work / "render" / "classes.qml").read_text(encoding="utf-8")
    assert 'label="1 building"' in render_qml and 'color="#010203"' not in render_qml
    assert out["opened"]["renderer"] == "paletted"
    assert out["opened"]["labels"][:3] == ["0 background", "1 building", "2 road"]


def test_no_silent_fallbacks(session):
    """No input, no output CRS (no project), an extent without a CRS and a filter that leaves nothing are
    one-line errors, before any work."""
    out, work = session
    expected = {"no_input": "no input: give a vector layer (INPUT), more layers (LAYERS) or an OSM file (OSM_FILE)",
                "no_project_crs": "no output CRS: the project has none; give OUTPUT_CRS",
                "extent_no_crs": "extent '10,10.001,50,50.001' gives no CRS and there is no project CRS to take",
                "nothing_chosen": "the chosen layers have no features here"}
    for case, message in expected.items():
        assert not out[case]["ok"], case
        assert any(e.startswith(message) for e in out[case]["errors"]), (case, out[case]["errors"])
    assert not (work / "bad.tif").exists()


def test_res_and_tap_give_exact_pixels_on_their_multiples(session):
    out, work = session
    assert out["masked"]["ok"] and out["survey"]["ok"], (out["masked"], out["survey"])
    _on_pixel_grid(work / "masked" / "classes.tif", 0.7)
    for name in ("aerial.tif", "height.tif", "classes.tif"):
        _on_pixel_grid(work / "survey" / name, 1.0)


def test_mask_limits_what_is_drawn_and_the_extent(session):
    import rasterio

    out, work = session
    classes = work / "masked" / "classes.tif"
    # A inside the mask; B (beside it, no mask there) and the road between the two mask boxes left out
    drawn = {name: _value_at(classes, *INSIDE[name]) for name in ("A", "B", "road")}
    assert drawn == {"A": 1, "B": 0, "road": 0}, drawn  # each inside the raster (None: outside)
    assert _value_at(classes, 75, 40) == 2  # the road inside the second box
    mask = _utm_box(min(b[0] for b in MASK_BOXES), min(b[1] for b in MASK_BOXES),
                    max(b[2] for b in MASK_BOXES), max(b[3] for b in MASK_BOXES))
    with rasterio.open(classes) as ds:
        left, bottom, right, top = ds.bounds
    mx0, my0, mx1, my1 = mask.bounds
    # the mask's extent (lon/lat box in UTM: a little wider), grown to multiples of 0.7 m
    assert mx0 - 1.5 < left <= mx0 and my0 - 1.5 < bottom <= my0 and mx1 <= right < mx1 + 1.5 and my1 <= top < my1 + 1.5


def test_measured_heights_with_class_for_every_feature_and_a_scene(session):
    out, work = session
    assert out["survey"]["ok"], out["survey"]
    for (west, south, size), height_m in SURVEY.items():
        centre = (west + size / 2, south + size / 2)
        assert int(_value_at(work / "survey" / "classes.tif", *centre)) == 1
        assert float(_value_at(work / "survey" / "height.tif", *centre)) == pytest.approx(height_m, abs=0.5)
    assert any("building heights from field 'HOEHE'" in line for line in out["survey"]["log"]), out["survey"]["log"]
    scene = work / "survey" / "scene.glb"
    assert out["survey"]["result"]["SCENE"] == str(scene) and scene.stat().st_size > 1000
    assert scene.read_bytes()[:4] == b"glTF"


def test_parameters_that_cannot_go_together(session):
    out, work = session
    expected = {"class_and_field": "give either 'Class for every feature' (CLASS_NAME) or a 'Class field'",
                "res_and_gsd": "'Pixel size (ground metres)' (GSD_M) and 'Pixel size (output CRS units)' (RES)",
                "mask_and_osm_file": "the mask applies to layers, not to an OSM file given as a file",
                "empty_mask": "the mask 'empty mask' has no polygons"}
    for case, message in expected.items():
        assert not out[case]["ok"], case
        assert any(e.startswith(message) for e in out[case]["errors"]), (case, out[case]["errors"])
    assert not (work / "bad").exists()


def test_class_style_is_written_only_where_geogan_did_not():
    """geogan writes classes.qml itself; the plugin's copy is a fallback for an older geogan, never a rewrite."""
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location(
        "plugin_qml", Path(__file__).resolve().parents[1] / "qgis_plugin" / "geogan_qgis" / "qml.py")
    qml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qml)
    schema = [{"id": 0, "name": "background", "color": [0, 0, 0]}, {"id": 1, "name": "building", "color": [9, 9, 9]}]
    with tempfile.TemporaryDirectory() as tmp:
        raster = Path(tmp) / "classes.tif"
        written = qml.write_class_style_if_missing(raster, schema)  # none there: the plugin writes it
        assert written == Path(tmp) / "classes.qml" and 'label="1 building"' in written.read_text(encoding="utf-8")
        written.write_text("geogan's own", encoding="utf-8")
        assert qml.write_class_style_if_missing(raster, schema).read_text(encoding="utf-8") == "geogan's own"
