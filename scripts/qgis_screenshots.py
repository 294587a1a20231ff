#!/usr/bin/env python3
"""Screenshots of the geogan QGIS plugin for docs/qgis.md, taken by a real QGIS (PyQGIS).

    xvfb-run -a -s "-screen 0 1600x1300x24" /usr/bin/python3 scripts/qgis_screenshots.py

Run it with the Python QGIS embeds (``/usr/bin/python3`` on Debian/Ubuntu) under a
virtual display (``apt-get install xvfb``); no window manager is needed, widgets
are captured with ``QWidget.grab()``.

What it does, like ``tests/test_qgis_plugin.py``: copies ``qgis_plugin/geogan_qgis``
into a fresh, temporary QGIS profile (HOME points to a temp folder) and starts the
plugin there, with geogan running in ``GEOGAN_PYTHON`` (default: this checkout's
``.venv/bin/python``, ``GEOGAN_PYTHONPATH`` = the checkout). The project CRS is
UTM 35N (EPSG:32635), as a user's project in Finland would be. Then:

1. loads the bundled sample OSM (``geogan/data/sample/sample_town.osm``) as two
   layers: its polygons, with the blocks in the middle selected, and its lines,
   filtered to roads (no footways); opens the Processing dialog of ``geogan:render``
   with the polygons as INPUT ("Selected features only" ticked), the lines as more
   layers, a 300 m x 300 m extent, GSD 0.5 m, the output CRS left at the project's
   and the default model, and grabs it, tall enough for every parameter but the advanced
   ones -> ``qgis_render_dialog.png``; the dialog's help panel scrolled to the models
   and their licences, the parameters to the model drop-down -> ``qgis_render_models.png``;
2. the dependency installer dialog as a user without geogan sees it ->
   ``qgis_installer_dialog.png``;
3. (unless ``--only-dialogs``) presses Run (the algorithm runs as a QGIS task, the
   rasters are loaded into the project, the class map styled by its classes.qml) and
   grabs the layer tree and two map canvases, ``geogan aerial`` and ``geogan classes``
   -> ``qgis_render_result.png``.

``--report FILE`` writes what the dialogs showed (JSON) for ``tests/test_qgis_screens.py``.
PNGs are quantized with Pillow to stay small.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_OSM = REPO / "geogan" / "data" / "sample" / "sample_town.osm"
LON, LAT, HALF_M = 25.70, 60.40, 150.0  # centre and half size of the rendered area
SELECT_HALF_M = 70.0  # the selected blocks: features touching this square around the centre
PROJECT_CRS = "EPSG:32635"
ROADS_ONLY = "\"highway\" IS NOT NULL AND \"highway\" NOT IN ('footway', 'path', 'steps', 'cycleway')"
MAX_BYTES = 400_000
RENDER_DIALOG_PX = (1100, 1180)  # every parameter of geogan:render but the advanced ones, without scrolling


def _bbox_lonlat(lon: float, lat: float, half_m: float) -> tuple[float, float, float, float]:
    dlat = half_m / 111_320.0
    dlon = half_m / (111_320.0 * math.cos(math.radians(lat)))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def _prepare_profile(home: Path) -> Path:
    """A fresh QGIS profile with the plugin copied in (as the plugin zip would unpack it)."""
    plugins = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "python" / "plugins"
    shutil.copytree(REPO / "qgis_plugin" / "geogan_qgis", plugins / "geogan_qgis",
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


def _start_qgis(plugins: Path):
    """QGIS with a stand-in QgisInterface (QGIS's own tests do the same), processing and the plugin."""
    from unittest import mock

    import qgis.utils
    from qgis.core import QgsApplication
    from qgis.gui import QgisInterface, QgsBrowserGuiModel, QgsMapCanvas
    from qgis.PyQt.QtWidgets import QMainWindow

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], True)
    app.initQgis()
    main_window = QMainWindow()
    iface = mock.Mock(spec=QgisInterface)
    iface.mainWindow.return_value = main_window
    iface.mapCanvas.return_value = QgsMapCanvas(main_window)
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

    if not dep_status().ok:
        sys.exit(f"geogan is not usable from QGIS: {dep_status().message}")
    return app, iface, (main_window, browser_model, plugin)


def _load_town(project):
    """The sample town's polygons (blocks in the middle selected) and its lines filtered to roads."""
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle,
                           QgsVectorLayer)

    project.setCrs(QgsCoordinateReferenceSystem(PROJECT_CRS))
    polys = QgsVectorLayer(f"{SAMPLE_OSM}|layername=multipolygons", "sample_town polygons", "ogr")
    lines = QgsVectorLayer(f"{SAMPLE_OSM}|layername=lines", "sample_town roads", "ogr")
    if not (polys.isValid() and lines.isValid()):
        sys.exit(f"cannot open {SAMPLE_OSM}")
    lines.setSubsetString(ROADS_ONLY)
    project.addMapLayers([polys, lines])
    west, south, east, north = _bbox_lonlat(LON, LAT, SELECT_HALF_M)
    to_layer = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), polys.crs(), project)
    polys.selectByRect(to_layer.transformBoundingBox(QgsRectangle(west, south, east, north)))
    return polys, lines


def _render_dialog(alg_id, polys, lines, render_dir: Path, parent):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProcessingFeatureSourceDefinition

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dialog = AlgorithmDialog(alg, parent=parent)
    west, south, east, north = _bbox_lonlat(LON, LAT, HALF_M)
    dialog.setParameters({
        "INPUT": QgsProcessingFeatureSourceDefinition(polys.id(), True),
        "LAYERS": [lines.id()],
        "EXTENT": f"{west:.6f},{east:.6f},{south:.6f},{north:.6f} [EPSG:4326]",
        "GSD_M": 0.5,
        "MODEL": 0,
        "OUTPUT_DIR": str(render_dir),
    })
    dialog.resize(*RENDER_DIALOG_PX)
    return dialog


def _dialog_report(dialog, polys) -> dict:
    """What the render dialog shows and would run with."""
    from qgis.PyQt.QtWidgets import QComboBox, QTextBrowser

    params = dialog.createProcessingParameters()
    source = params.get("INPUT")
    combos = [[c.itemText(i) for i in range(c.count())] for c in dialog.findChildren(QComboBox)]
    helps = [b.toPlainText() for b in dialog.findChildren(QTextBrowser)]
    return {"selected": polys.selectedFeatureCount(),
            "input_selected_only": bool(getattr(source, "selectedFeaturesOnly", False)),
            "model_items": next((items for items in combos if any(i.startswith("default") for i in items)), []),
            "output_crs": str(params.get("OUTPUT_CRS")), "overwrite": params.get("OVERWRITE"),
            "help": max(helps, key=len) if helps else ""}


def _shoot_dialogs(app, dialog, out_dir: Path) -> dict:
    """The two render dialog shots; returns what the first shows: the parameter labels and how far the
    parameters would scroll (0: all of them are in the picture)."""
    from qgis.PyQt.QtWidgets import QCheckBox, QLabel, QScrollArea, QSplitter, QTextBrowser

    dialog.show()
    _wait(app, 1.0)
    _save_png(dialog, out_dir / "qgis_render_dialog.png", colors=128)
    params = max(dialog.findChildren(QScrollArea), key=lambda a: a.width() * a.height())
    shown = {"params_scroll_px": params.verticalScrollBar().maximum(),
             "param_labels": [w.text() for w in params.findChildren((QLabel, QCheckBox)) if w.isVisible()]}
    splitter = max(dialog.findChildren(QSplitter), key=lambda sp: sp.width())
    splitter.setSizes([500, 600])  # a wide help panel, scrolled to the models and their licences
    browser = max(dialog.findChildren(QTextBrowser), key=lambda b: len(b.toPlainText()))
    _wait(app, 0.5)
    for bar in (browser.verticalScrollBar(), params.verticalScrollBar()):  # the help's end: the models
        bar.setValue(bar.maximum())
    _wait(app, 0.5)
    _save_png(dialog, out_dir / "qgis_render_models.png", colors=128)
    splitter.setSizes([800, 300])
    return shown


def _installer_shot(app, out_dir: Path, parent) -> dict:
    """The installer dialog as a user without geogan sees it (a Python without geogan, for a moment); returns
    its status line, its runtime choices and the installer arguments of the last choice."""
    from geogan_qgis.installer_dialog import InstallerDialog
    from geogan_qgis.status import dep_status

    saved = {k: os.environ.get(k) for k in ("GEOGAN_PYTHON", "GEOGAN_PYTHONPATH")}
    os.environ.update(GEOGAN_PYTHON="/usr/bin/python3", GEOGAN_PYTHONPATH="")
    try:
        dep_status(refresh=True)
        dialog = InstallerDialog(parent, on_done=lambda: None)
        dialog.resize(820, 420)
        dialog.show()
        _wait(app, 0.5)
        _save_png(dialog, out_dir / "qgis_installer_dialog.png", colors=64)
        shown = {"installer_status": dialog.status.text(),
                 "installer_runtimes": [dialog.gpu.itemText(i) for i in range(dialog.gpu.count())]}
        dialog.gpu.setCurrentIndex(dialog.gpu.count() - 1)  # the light install: what Install would run
        shown["installer_last_runtime_args"] = dialog._base_args()[1:]
        dialog.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        dep_status(refresh=True)
    return shown


def _run_and_shoot_result(app, dialog, project, out_dir: Path) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsLayerTreeModel
    from qgis.gui import QgsLayerTreeView, QgsMapCanvas
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor
    from qgis.PyQt.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

    finished = {}
    dialog.algorithmFinished.connect(lambda ok, res: finished.update(ok=ok, results=res))
    dialog.runAlgorithm()  # the Run button
    if not _wait(app, 600, until=lambda: "ok" in finished) or not finished["ok"]:
        log = dialog.findChild(QWidget, "txtLog")
        sys.exit("geogan:render failed in the dialog:\n" + (log.toPlainText()[-3000:] if log else ""))
    dialog.close()
    _wait(app, 0.5)
    by_name = {layer.name(): layer for layer in project.mapLayers().values()}
    aerial, classes = by_name["geogan aerial"], by_name["geogan classes"]
    root = project.layerTreeRoot()
    for layer in project.mapLayers().values():  # the tree: rasters on, OSM layers off
        node = root.findLayer(layer.id())
        node.setItemVisibilityChecked(layer.name() in ("geogan aerial", "geogan classes"))
        node.setExpanded(layer is classes)
    window = QWidget()
    splitter = QSplitter(Qt.Horizontal, window)
    model = QgsLayerTreeModel(root)
    tree = QgsLayerTreeView()
    tree.setModel(model)
    splitter.addWidget(tree)
    canvases = []
    for layer, title in ((aerial, "aerial.tif (geogan aerial)"), (classes, "classes.tif (styled by classes.qml)")):
        pane = QWidget()
        vbox = QVBoxLayout(pane)
        vbox.setContentsMargins(4, 4, 4, 4)
        vbox.addWidget(QLabel(f"<b>{title}</b>"))
        canvas = QgsMapCanvas()
        canvas.setCanvasColor(QColor("white"))
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem(PROJECT_CRS))
        canvas.setLayers([layer])
        canvas.setMinimumSize(QSize(560, 560))
        vbox.addWidget(canvas)
        splitter.addWidget(pane)
        canvases.append(canvas)
    QVBoxLayout(window).addWidget(splitter)
    splitter.setSizes([300, 580, 580])
    window.resize(1480, 620)
    window.show()
    _wait(app, 0.5)
    for canvas in canvases:
        canvas.setExtent(aerial.extent())
        canvas.refresh()
    _wait(app, 60, until=lambda: all(not c.isDrawing() for c in canvases))
    _wait(app, 1.0)
    _save_png(window, out_dir / "qgis_render_result.png", colors=256)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs", help="where the PNGs go")
    ap.add_argument("--only-dialogs", action="store_true", help="grab the dialogs; do not render")
    ap.add_argument("--report", type=Path, help="write what the dialogs showed to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary profile and rasters")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        sys.exit("no DISPLAY: run under xvfb-run (see the docstring)")
    # a fixed folder, so the output path shown in the dialog is the same on every run
    home = Path(tempfile.gettempdir()) / "geogan_qgis_shots"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    app, iface, _keep = _start_qgis(_prepare_profile(home))
    from qgis.core import QgsProject

    project = QgsProject.instance()
    polys, lines = _load_town(project)
    dialog = _render_dialog("geogan:render", polys, lines, home / "geogan_render", iface.mainWindow())
    shown = _shoot_dialogs(app, dialog, args.out_dir)
    report = {**_dialog_report(dialog, polys), **shown}
    report.update(_installer_shot(app, args.out_dir, iface.mainWindow()))
    if args.report:
        args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if not args.only_dialogs:
        _run_and_shoot_result(app, dialog, project, args.out_dir)
        print(f"rendered into {home / 'geogan_render'}", flush=True)
    if args.keep:
        print(f"kept {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # skip QGIS teardown (PyQGIS standalone scripts may crash in it)


if __name__ == "__main__":
    sys.exit(main())
