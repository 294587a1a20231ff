"""The QGIS plugin in a real QGIS: qgis_process.bin and QGIS's own Python.

The plugin zip is built, unpacked into a fresh QGIS profile (HOME points to a
temp folder) and enabled. geogan runs in the Python given by GEOGAN_PYTHON
(this test's interpreter, with GEOGAN_PYTHONPATH = the source tree); one
test installs it for real with the plugin's installer into a venv made from
/usr/bin/python3, the Python QGIS embeds. QGIS: ``scripts/install_qgis.sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
SYSTEM_PYTHON = "/usr/bin/python3"  # the Python QGIS embeds on Debian
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not QGIS_PROCESS.exists(),
    reason="QGIS is not installed (/usr/bin/qgis_process.bin missing); run scripts/install_qgis.sh")

BBOX_LONLAT = (10.0, 50.0, 10.001, 50.0008)  # west, south, east, north


# ---------------------------------------------------------------- helpers
def _qgis_env(home: Path, **extra: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "GEOGAN_QGIS_ENV", "VIRTUAL_ENV")}
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_RUNTIME_DIR=str(runtime),
               QT_QPA_PLATFORM="offscreen", GEOGAN_PYTHON=sys.executable,
               GEOGAN_PYTHONPATH=str(REPO))
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _plugins_dir(home: Path) -> Path:
    return home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "python" / "plugins"


def qgis_process(home: Path, *args: str, timeout: float = 180, **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run([str(QGIS_PROCESS), *args], env=_qgis_env(home, **env_extra),
                          capture_output=True, text=True, timeout=timeout, cwd=str(home))


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _extent(bbox, crs: str) -> str:
    west, south, east, north = bbox
    return f"{west},{east},{south},{north} [{crs}]"  # QGIS order: xmin,xmax,ymin,ymax


def _write_geojson(path: Path) -> Path:
    """A building, a road and a pond with OSM tags, in lon/lat."""
    def box(x0, y0, x1, y1):
        return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    feats = [
        ({"building": "yes"}, box(10.0001, 50.0001, 10.0005, 50.0004)),
        ({"highway": "residential"}, {"type": "LineString", "coordinates": [[10.0, 50.0006], [10.001, 50.0006]]}),
        ({"natural": "water"}, box(10.0006, 50.0001, 10.0009, 50.0004)),
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": g} for p, g in feats]}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def qgis_home(tmp_path_factory) -> Path:
    """A fresh QGIS profile with the built plugin zip installed and enabled."""
    from geogan.plugin_build import build_plugin_zip

    home = tmp_path_factory.mktemp("qgis_home")
    zip_path = build_plugin_zip(home / "dist")
    plugins = _plugins_dir(home)
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins)
    _ok(qgis_process(home, "plugins", "enable", "geogan_qgis"))
    return home


@pytest.fixture(scope="module")
def geojson(tmp_path_factory) -> Path:
    return _write_geojson(tmp_path_factory.mktemp("data") / "town.geojson")


# ---------------------------------------------------------------- packaging
def test_zip_layout_and_metadata_version(tmp_path):
    import geogan
    from geogan.plugin_build import build_plugin_zip, sync_metadata

    zip_path = build_plugin_zip(tmp_path)
    assert zip_path == tmp_path / "geogan.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        meta = zf.read("geogan_qgis/metadata.txt").decode()
    assert {n.split("/")[0] for n in names} == {"geogan_qgis"}
    for required in ("__init__.py", "plugin.py", "provider.py", "algorithms.py", "installer.py",
                     "worker.py", "metadata.txt", "LICENSE", "icon.svg"):
        assert f"geogan_qgis/{required}" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert f"version={geogan.__version__}\n" in meta
    assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta
    assert sync_metadata(check=True), "metadata.txt's version differs from geogan.__version__"
    assert build_plugin_zip(tmp_path / "again").read_bytes() == zip_path.read_bytes()  # reproducible


# ---------------------------------------------------------------- qgis_process
def test_list_shows_provider_and_algorithms(qgis_home):
    proc = _ok(qgis_process(qgis_home, "list"))
    for alg in ("geogan:rasterize", "geogan:render", "geogan:create_sketch_layer", "geogan:mesh"):
        assert alg in proc.stdout
    assert "not installed" not in proc.stderr


def test_rasterize_reprojects_lonlat_extent(qgis_home, geojson, tmp_path):
    import pyproj
    import rasterio

    out = tmp_path / "classes.tif"
    _ok(qgis_process(qgis_home, "run", "geogan:rasterize", "--", f"LAYERS={geojson}",
                     f"EXTENT={_extent(BBOX_LONLAT, 'EPSG:4326')}", "OUTPUT_CRS=EPSG:3857",
                     "GSD_M=2", f"OUTPUT={out}"))
    expected = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform_bounds(
        *BBOX_LONLAT, densify_pts=21)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857
        res = max(ds.res)
        assert np.allclose(tuple(ds.bounds), expected, atol=res), (ds.bounds, expected)
        classes = set(np.unique(ds.read(1)).tolist())
        assert ds.colormap(1)[1][:3] != (0, 0, 0)
    assert {1, 2, 5} <= classes  # building, road, water


def test_render_writes_three_rasters(qgis_home, geojson, tiny_model, tmp_path):
    import rasterio

    out_dir = tmp_path / "render"
    proc = _ok(qgis_process(qgis_home, "run", "geogan:render", "--", f"LAYERS={geojson}",
                            f"EXTENT={_extent(BBOX_LONLAT, 'EPSG:4326')}", "OUTPUT_CRS=EPSG:3857",
                            "GSD_M=1", f"MODEL_FILE={tiny_model}", "TILE_PX=64", "OVERLAP_PX=16",
                            f"OUTPUT_DIR={out_dir}"))
    assert f"AERIAL:\t{out_dir / 'aerial.tif'}" in proc.stdout
    grids = []
    for name, bands in (("aerial", 3), ("height", 1), ("classes", 1)):
        with rasterio.open(out_dir / f"{name}.tif") as ds:
            assert ds.count == bands and ds.crs.to_epsg() == 3857
            assert ds.compression.name == "deflate"  # no COMPRESSION given: the default
            grids.append((ds.transform, ds.shape))
    assert grids[0] == grids[1] == grids[2]

    mesh = tmp_path / "scene.glb"
    _ok(qgis_process(qgis_home, "run", "geogan:mesh", "--", f"AERIAL={out_dir / 'aerial.tif'}",
                     f"HEIGHT={out_dir / 'height.tif'}", f"OUTPUT={mesh}"))
    assert mesh.read_bytes()[:4] == b"glTF"


def test_render_with_a_style_reference_layer(qgis_home, geojson, tmp_path):
    """A reference photo layer sets the look of a style-encoder model; the class map stays.

    Also the COMPRESSION choice (2: JPEG aerial) on the way: the aerial image is JPEG, the class map lossless;
    and PRECISION (2: bf16 for one render), which geogan's log line reports.
    """
    import rasterio
    from PIL import Image

    from conftest import make_tiny_style_model

    model = make_tiny_style_model(tmp_path / "style_unet", "unet")
    rng = np.random.default_rng(0)
    out = {}
    for name, colour in (("green", (40, 140, 40)), ("sand", (220, 190, 120))):
        ref = tmp_path / f"{name}.png"
        Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 20, (256, 256, 3)), 0, 255).astype(np.uint8)).save(ref)
        out_dir = tmp_path / name
        precision = "2" if name == "sand" else "0"
        p = _ok(qgis_process(qgis_home, "run", "geogan:render", "--", f"LAYERS={geojson}",
                             f"EXTENT={_extent(BBOX_LONLAT, 'EPSG:4326')}", "OUTPUT_CRS=EPSG:3857", "GSD_M=1",
                             f"MODEL_FILE={model}", f"STYLE_REF={ref}", "TILE_PX=64", "OVERLAP_PX=16", "COMPRESSION=2",
                             f"PRECISION={precision}", f"OUTPUT_DIR={out_dir}"))
        assert ("on cpu (bf16)" if name == "sand" else "on cpu (fp32)") in p.stdout + p.stderr
        with rasterio.open(out_dir / "aerial.tif") as a, rasterio.open(out_dir / "classes.tif") as c:
            out[name] = (a.read().astype(float).mean((1, 2)), c.read(1))
            assert (a.compression.name, c.compression.name) == ("jpeg", "deflate")
    assert np.array_equal(out["green"][1], out["sand"][1])
    assert np.abs(out["green"][0] - out["sand"][0]).max() > 1.0


def test_bad_input_is_one_line_error(qgis_home, geojson, tmp_path):
    missing = tmp_path / "no_such_model.json"
    proc = qgis_process(qgis_home, "run", "geogan:render", "--", f"LAYERS={geojson}",
                        f"MODEL_FILE={missing}", "OUTPUT_CRS=EPSG:3857", f"OUTPUT_DIR={tmp_path / 'out'}")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR:")]
    assert errors and str(missing) in errors[0], text[-2000:]

    proc = qgis_process(qgis_home, "run", "geogan:rasterize", "--", f"LAYERS={geojson}",
                        "OUTPUT_CRS=EPSG:999999", f"OUTPUT={tmp_path / 'c.tif'}")
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "output CRS 'EPSG:999999' is not valid" in proc.stdout + proc.stderr


def test_missing_dependencies_are_reported(qgis_home, geojson, tmp_path):
    # geogan.api, not geogan: the package imports its dependencies on first use, so a bare ``import geogan``
    # succeeds from a source checkout even where torch and GDAL are missing
    has_geogan = subprocess.run([SYSTEM_PYTHON, "-c", "import geogan.api"], capture_output=True).returncode == 0
    if has_geogan:
        pytest.skip(f"{SYSTEM_PYTHON} has geogan installed; cannot show the missing-deps message")
    env = {"GEOGAN_PYTHON": SYSTEM_PYTHON, "GEOGAN_PYTHONPATH": None}
    proc = _ok(qgis_process(qgis_home, "list", **env))
    assert "geogan's Python packages are not installed for QGIS" in proc.stderr
    assert "missing geogan" in proc.stderr and "installer.py" in proc.stderr
    proc = qgis_process(qgis_home, "run", "geogan:rasterize", "--", f"LAYERS={geojson}",
                        f"OUTPUT={tmp_path / 'c.tif'}", **env)
    assert proc.returncode != 0
    assert "Install them with:" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_sketch_layer_workflow(qgis_home, tmp_path):
    """create_sketch_layer -> draw (here: append with pyogrio) -> rasterize with class_field."""
    import pyogrio.raw
    import rasterio
    import shapely

    sketch = tmp_path / "sketch.gpkg"
    _ok(qgis_process(qgis_home, "run", "geogan:create_sketch_layer", "--", f"OUTPUT={sketch}",
                     "CRS=EPSG:3857"))
    info = pyogrio.read_info(sketch, layer="sketch")
    assert "class" in list(info["fields"]) and info["features"] == 0
    geoms = np.array([shapely.to_wkb(shapely.box(1113200, 6446280, 1113240, 6446320)),
                      shapely.to_wkb(shapely.box(1113250, 6446280, 1113300, 6446400))], dtype=object)
    pyogrio.raw.write(sketch, geoms, [np.array(["building", "water"], dtype=object),
                                      np.array(["", ""], dtype=object)],
                      ["class", "note"], layer="sketch", driver="GPKG", append=True,
                      geometry_type="Polygon", crs="EPSG:3857")
    out = tmp_path / "classes.tif"
    _ok(qgis_process(qgis_home, "run", "geogan:rasterize", "--", f"LAYERS={sketch}|layername=sketch",
                     "CLASS_FIELD=class", "GSD_M=2", "OUTPUT_CRS=EPSG:3857", f"OUTPUT={out}"))
    with rasterio.open(out) as ds:
        assert set(np.unique(ds.read(1)).tolist()) == {0, 1, 5}
        assert np.allclose(tuple(ds.bounds), (1113200, 6446280, 1113300, 6446400), atol=max(ds.res))


# ---------------------------------------------------------------- inside QGIS's Python
IN_QGIS = r'''
import json, os, sys, time
from pathlib import Path
from qgis.core import (QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject,
                       QgsRasterLayer, QgsVectorLayer)
plugins_dir, geojson, model, work = sys.argv[1:5]
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, plugins_dir)
from geogan_qgis.provider import GeoganProvider
provider = GeoganProvider()
QgsApplication.processingRegistry().addProvider(provider)
reg = QgsApplication.processingRegistry()
out = {}

class Feedback(QgsProcessingFeedback):
    def __init__(self, cancel_at_progress=False):
        super().__init__()
        self.errors, self.infos = [], []
        if cancel_at_progress:
            self.progressChanged.connect(lambda p: self.cancel() if p > 0 else None)
    def reportError(self, error, fatalError=False):
        self.errors.append(error)
    def pushInfo(self, info):
        self.infos.append(info)

def context():
    ctx = QgsProcessingContext()
    ctx.setProject(QgsProject.instance())
    return ctx

params = {"LAYERS": [geojson], "GSD_M": 1.0, "MODEL_FILE": model, "TILE_PX": 64, "OVERLAP_PX": 16,
          "OUTPUT_CRS": "EPSG:3857"}
fb = Feedback(cancel_at_progress=True)
t0 = time.monotonic()
_, ok = reg.createAlgorithmById("geogan:render").run(
    {**params, "EXTENT": "10.0,10.01,50.0,50.006 [EPSG:4326]", "OUTPUT_DIR": work + "/cancelled"},
    context(), fb)
out["cancel"] = {"ok": ok, "errors": fb.errors, "seconds": time.monotonic() - t0, "infos": fb.infos,
                 "written": sorted(p.name for p in Path(work, "cancelled").glob("*.tif"))}

ctx, fb = context(), Feedback()
auto_tiles = {k: v for k, v in params.items() if k not in ("TILE_PX", "OVERLAP_PX")}  # the defaults: automatic
res, ok = reg.createAlgorithmById("geogan:render").run(
    {**auto_tiles, "EXTENT": "10.0,10.001,50.0,50.0008 [EPSG:4326]", "OUTPUT_DIR": work + "/full"}, ctx, fb)
loaded = {}
for path, details in ctx.layersToLoadOnCompletion().items():
    layer = QgsRasterLayer(path, details.name)
    if details.postProcessor() is not None:
        details.postProcessor().postProcessLayer(layer, ctx, fb)
    r = layer.renderer()
    loaded[details.name] = {"valid": layer.isValid(), "renderer": r.type(),
                            "labels": [c.label for c in r.classes()] if r.type() == "paletted" else None}
out["render"] = {"ok": ok, "errors": fb.errors, "loaded": loaded}

ctx, fb = context(), Feedback()
res, ok = reg.createAlgorithmById("geogan:create_sketch_layer").run(
    {"OUTPUT": work + "/sketch.gpkg", "CRS": "EPSG:3857"}, ctx, fb)
layer = QgsVectorLayer(work + "/sketch.gpkg|layername=sketch", "sketch", "ogr")  # a fresh open
setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
out["sketch"] = {"ok": ok, "errors": fb.errors, "widget": setup.type(),
                 "values": [list(d.values())[0] for d in setup.config().get("map", [])],
                 "renderer": layer.renderer().type(), "to_load": len(ctx.layersToLoadOnCompletion())}
print("@@RESULT@@" + json.dumps(out), flush=True)
os._exit(0)  # skip QGIS teardown (PyQGIS standalone scripts may crash in it)
'''


def test_in_qgis_cancel_palette_and_sketch_style(qgis_home, geojson, tiny_model, tmp_path):
    script = tmp_path / "in_qgis.py"
    script.write_text(IN_QGIS, encoding="utf-8")
    proc = subprocess.run([SYSTEM_PYTHON, str(script), str(_plugins_dir(qgis_home)), str(geojson),
                           str(tiny_model), str(tmp_path / "work")], env=_qgis_env(qgis_home),
                          capture_output=True, text=True, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[0][len("@@RESULT@@"):])

    cancel = out["cancel"]  # cancelled at the first progress report: stops within a tile
    assert not cancel["ok"] and cancel["written"] == []
    assert any("cancel" in e.lower() for e in cancel["errors"]), cancel
    tiles = [i for i in cancel["infos"] if i.startswith("tile ")]
    assert len(tiles) <= 1, cancel["infos"]
    assert cancel["seconds"] < 60

    render = out["render"]
    assert render["ok"], render["errors"]
    assert set(render["loaded"]) == {"geogan aerial", "geogan height", "geogan classes"}
    classes = render["loaded"]["geogan classes"]
    assert classes["renderer"] == "paletted" and classes["labels"][:3] == ["0 background", "1 building", "2 road"]
    assert all(v["valid"] for v in render["loaded"].values())

    sketch = out["sketch"]
    assert sketch["ok"] and sketch["widget"] == "ValueMap" and sketch["to_load"] == 1
    assert sketch["renderer"] == "categorizedSymbol"
    assert {"building", "road", "water", "woodland"} <= set(sketch["values"])
    assert "background" not in sketch["values"]


# ---------------------------------------------------------------- the installer, for real
def _local_torch_wheel() -> Path | None:
    """A torch wheel on local disk for /usr/bin/python3 (no multi-GB download in tests)."""
    import torch

    tag = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    dirs = [d for d in os.environ.get("PIP_FIND_LINKS", "").split() if d] + ["/opt/wheels"]
    for d in dirs:
        d = Path(d.removeprefix("file://"))
        for whl in sorted(d.glob(f"torch-{torch.__version__}-{tag}-*.whl")) if d.is_dir() else []:
            return whl
    return None


def test_installer_makes_a_venv_qgis_uses(qgis_home, geojson, tmp_path):
    wheel = _local_torch_wheel()
    if wheel is None:
        pytest.skip("no local torch wheel for /usr/bin/python3; a real install would download PyTorch")
    installer = _plugins_dir(qgis_home) / "geogan_qgis" / "installer.py"
    env_dir = tmp_path / "geogan-env"
    env = _qgis_env(qgis_home, GEOGAN_PYTHON=None, GEOGAN_PYTHONPATH=None)

    proc = subprocess.run([SYSTEM_PYTHON, str(installer), "--env", str(env_dir), "--check"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "NOT READY" in proc.stdout

    # geogan from a wheel of this checkout (the default, geogan==VERSION from PyPI, is not published yet);
    # torch's own dependencies from the machine's local index (its CPU index is not reachable here)
    from test_qgis_install import checkout_wheel

    # --no-compile (passed to every pip install): no bytecode for the thousands of torch modules nothing here
    # imports (a third of the install's CPU time); what the checks import compiles on first use
    geogan_wheel = checkout_wheel(tmp_path / "wheels")
    proc = subprocess.run([SYSTEM_PYTHON, str(installer), "--env", str(env_dir), "--torch", str(wheel),
                           "--torch-index-url", "file:///opt/pypi/simple", "--geogan", str(geogan_wheel),
                           "--pip-arg=--no-compile"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK: geogan" in proc.stdout and geogan_wheel.name in proc.stdout
    assert proc.stdout.index("download: about") < proc.stdout.index(" install ")  # the size before any install
    proc = _ok(subprocess.run([SYSTEM_PYTHON, str(installer), "--env", str(env_dir), "--check"],
                              env=env, capture_output=True, text=True, timeout=120))
    # QGIS's own numpy is untouched: the venv is separate from the system site-packages
    numpy_file = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__file__)"],
                                capture_output=True, text=True, env=env).stdout
    assert numpy_file.startswith("/usr/lib/python3/")

    # the plugin finds its venv by itself (no GEOGAN_PYTHON)
    out = tmp_path / "classes.tif"
    _ok(qgis_process(qgis_home, "run", "geogan:rasterize", "--", f"LAYERS={geojson}",
                     f"EXTENT={_extent(BBOX_LONLAT, 'EPSG:4326')}", "GSD_M=2", "OUTPUT_CRS=EPSG:3857", f"OUTPUT={out}",
                     GEOGAN_PYTHON=None, GEOGAN_PYTHONPATH=None, GEOGAN_QGIS_ENV=str(env_dir)))
    assert out.exists()
