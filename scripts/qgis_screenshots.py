#!/usr/bin/env python3
"""README screenshots of the geogan QGIS plugin, taken by a real QGIS (PyQGIS).

    xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3 scripts/qgis_screenshots.py

Run it with the Python QGIS embeds (``/usr/bin/python3`` on Debian/Ubuntu) under a
virtual display (``apt-get install xvfb``); no window manager is needed, widgets
are captured with ``QWidget.grab()``.

What it does, like ``tests/test_qgis_plugin.py``: copies ``qgis_plugin/geogan_qgis``
into a fresh, temporary QGIS profile (HOME points to a temp folder) and starts the
plugin there, with geogan running in ``GEOGAN_PYTHON`` (default: this checkout's
``.venv/bin/python``, ``GEOGAN_PYTHONPATH`` = the checkout). Then:

1. loads the bundled sample OSM (``geogan/data/sample/sample_town.osm``) as
   layers, opens the Processing algorithm dialog of ``geogan:render`` with a
   300 m x 300 m extent around lon 25.70 lat 60.40, GSD 0.5 m, EPSG:3857 and the
   default model, and grabs it -> ``docs/qgis_render_dialog.png``;
2. presses Run in that dialog (the algorithm runs as a QGIS task, the rasters are
   loaded into the project, the class map with the class palette) and grabs a
   window with the layer tree and two map canvases, ``geogan aerial`` and
   ``geogan classes`` -> ``docs/qgis_render_result.png``.

PNGs are quantized with Pillow to stay small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_OSM = REPO / "geogan" / "data" / "sample" / "sample_town.osm"
LON, LAT, HALF_M = 25.70, 60.40, 150.0  # centre and half size of the rendered area
MAX_BYTES = 400_000


def _bbox_lonlat(lon: float, lat: float, half_m: float) -> tuple[float, float, float, float]:
    import math

    dlat = half_m / 111_320.0
    dlon = half_m / (111_320.0 * math.cos(math.radians(lat)))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def _prepare_profile(home: Path) -> Path:
    """A fresh QGIS profile with the plugin copied in (as the plugin zip would unpack it)."""
    plugins = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "python" / "plugins"
    target = plugins / "geogan_qgis"
    shutil.copytree(REPO / "qgis_plugin" / "geogan_qgis", target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    for key in ("PYTHONHOME", "GEOGAN_QGIS_ENV", "VIRTUAL_ENV"):
        os.environ.pop(key, None)
    os.environ.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"),
                      XDG_CONFIG_HOME=str(home / ".config"), XDG_RUNTIME_DIR=str(runtime))
    if not os.environ.get("GEOGAN_PYTHON"):
        os.environ["GEOGAN_PYTHON"] = str(REPO / ".venv" / "bin" / "python")
        os.environ.setdefault("GEOGAN_PYTHONPATH", str(REPO))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the worker inherits it: stay light on CPU
    return plugins


def _save_png(widget, path: Path, colors: int) -> None:
    """Grab a widget into a PNG, quantized (and downscaled if still too big)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.png")
    if not widget.grab().save(str(raw), "PNG"):
        raise RuntimeError(f"could not save {raw}")
    img = Image.open(raw).convert("RGB")
    raw.unlink()
    scale = 1.0
    while True:
        out = img if scale == 1.0 else img.resize(
            (round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        out.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                     dither=Image.Dither.NONE).save(path, optimize=True)
        if path.stat().st_size <= MAX_BYTES or scale < 0.5:
            break
        scale *= 0.85
    print(f"wrote {path} ({out.width}x{out.height}, {path.stat().st_size // 1024} KB)", flush=True)


def _wait(app, seconds: float, until=None) -> bool:
    """Spin the event loop for up to ``seconds`` (or until ``until()`` is true)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs", help="where the PNGs go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary profile and rasters")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        sys.exit("no DISPLAY: run under xvfb-run (see the docstring)")

    # a fixed folder, so the output path shown in the dialog is the same on every run
    home = Path(tempfile.gettempdir()) / "geogan_qgis_shots"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    plugins = _prepare_profile(home)
    render_dir = home / "geogan_render"

    from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsLayerTreeModel,
                           QgsProject, QgsRasterLayer, QgsVectorLayer)
    from qgis.gui import (QgisInterface, QgsBrowserGuiModel, QgsLayerTreeMapCanvasBridge, QgsLayerTreeView,
                          QgsMapCanvas)
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor
    from qgis.PyQt.QtWidgets import QLabel, QMainWindow, QSplitter, QVBoxLayout, QWidget

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], True)
    app.initQgis()

    # an iface-less QGIS: a stand-in QgisInterface (QGIS's own tests do the same)
    from unittest import mock

    import qgis.utils

    main_window = QMainWindow()
    iface = mock.Mock(spec=QgisInterface)
    iface.mainWindow.return_value = main_window
    iface_canvas = QgsMapCanvas(main_window)
    iface.mapCanvas.return_value = iface_canvas
    iface.activeLayer.return_value = None
    browser_model = QgsBrowserGuiModel()
    iface.browserModel.return_value = browser_model
    qgis.utils.iface = iface

    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    sys.path.insert(0, str(plugins))
    from processing.core.Processing import Processing

    Processing.initialize()
    import geogan_qgis

    plugin = geogan_qgis.classFactory(iface)
    plugin.initGui()
    from geogan_qgis.status import dep_status

    st = dep_status()
    if not st.ok:
        sys.exit(f"geogan is not usable from QGIS: {st.message}")

    project = QgsProject.instance()
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    osm_layers = []
    for sub in ("multipolygons", "lines"):
        layer = QgsVectorLayer(f"{SAMPLE_OSM}|layername={sub}", f"sample_town {sub}", "ogr")
        if not layer.isValid():
            sys.exit(f"cannot open {SAMPLE_OSM} ({sub})")
        osm_layers.append(layer)
    project.addMapLayers(osm_layers)

    # ---------------------------------------------------------------- 1: the dialog
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    alg = QgsApplication.processingRegistry().createAlgorithmById("geogan:render")
    dialog = AlgorithmDialog(alg, parent=main_window)
    west, south, east, north = _bbox_lonlat(LON, LAT, HALF_M)
    dialog.setParameters({
        "LAYERS": [layer.id() for layer in osm_layers],
        "EXTENT": f"{west:.6f},{east:.6f},{south:.6f},{north:.6f} [EPSG:4326]",
        "OUTPUT_CRS": "EPSG:3857",
        "GSD_M": 0.5,
        "MODEL": "default",
        "OUTPUT_DIR": str(render_dir),
    })
    dialog.resize(1100, 780)
    dialog.show()
    _wait(app, 1.0)
    _save_png(dialog, args.out_dir / "qgis_render_dialog.png", colors=128)

    # ---------------------------------------------------------------- 2: run it, show the result
    finished = {}
    dialog.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, results=res))
    dialog.runAlgorithm()  # the Run button
    if not _wait(app, 300, until=lambda: "ok" in finished) or not finished["ok"]:
        log = dialog.findChild(QWidget, "txtLog")
        sys.exit("geogan:render failed in the dialog:\n" + (log.toPlainText()[-3000:] if log else ""))
    dialog.close()
    _wait(app, 0.5)

    by_name = {layer.name(): layer for layer in project.mapLayers().values()}
    missing = {"geogan aerial", "geogan height", "geogan classes"} - set(by_name)
    if missing:
        sys.exit(f"layers not loaded into the project: {sorted(missing)}")
    aerial, classes = by_name["geogan aerial"], by_name["geogan classes"]
    assert isinstance(aerial, QgsRasterLayer) and classes.renderer().type() == "paletted"

    root = project.layerTreeRoot()
    for layer in project.mapLayers().values():  # the tree: rasters on, OSM layers off
        node = root.findLayer(layer.id())
        node.setItemVisibilityChecked(layer.name() in ("geogan aerial", "geogan classes"))
        node.setExpanded(layer is classes)

    window = QWidget()
    window.setWindowTitle("geogan:render result")
    splitter = QSplitter(Qt.Horizontal, window)
    model = QgsLayerTreeModel(root)
    model.setFlag(QgsLayerTreeModel.AllowNodeChangeVisibility, True)
    tree = QgsLayerTreeView()
    tree.setModel(model)  # expanded as the nodes say: only the class palette's legend
    splitter.addWidget(tree)

    canvases = []
    for layer, title in ((aerial, "aerial.tif (geogan aerial)"),
                         (classes, "classes.tif (geogan classes, class palette)")):
        pane = QWidget()
        vbox = QVBoxLayout(pane)
        vbox.setContentsMargins(4, 4, 4, 4)
        label = QLabel(f"<b>{title}</b>")
        vbox.addWidget(label)
        canvas = QgsMapCanvas()
        canvas.setCanvasColor(QColor("white"))
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
        canvas.setLayers([layer])
        canvas.setMinimumSize(QSize(560, 560))
        vbox.addWidget(canvas)
        splitter.addWidget(pane)
        canvases.append(canvas)
    bridge = QgsLayerTreeMapCanvasBridge(root, iface_canvas)  # keeps QGIS's own canvas in sync
    layout = QVBoxLayout(window)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(splitter)
    splitter.setSizes([300, 580, 580])
    window.resize(1480, 620)
    window.show()
    _wait(app, 0.5)
    for canvas in canvases:
        canvas.setExtent(aerial.extent())
        canvas.refresh()
    _wait(app, 60, until=lambda: all(not c.isDrawing() for c in canvases))
    _wait(app, 1.0)
    _save_png(window, args.out_dir / "qgis_render_result.png", colors=256)

    print(f"rendered into {render_dir}", flush=True)
    del bridge
    if args.keep:
        print(f"kept {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # skip QGIS teardown (PyQGIS standalone scripts may crash in it)


if __name__ == "__main__":
    sys.exit(main())
