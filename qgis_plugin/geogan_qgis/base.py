"""What every geogan algorithm shares: the input, extent, CRS and overwrite parameters, handing the
chosen features to geogan, running the worker with QGIS feedback, and the class styles.

No numpy and no geogan imports here: layers are handed over as files.
"""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsEditorWidgetSetup,
    QgsPalettedRasterRenderer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QColor

from .inputs import Chosen, Mask, area_request, crs_text, export_chosen, read_mask, union_lonlat
from .runner import WorkerError, run_worker
from .status import dep_status

SKETCH_FIELD = "class"
# post-processors must outlive the algorithm run (QGIS keeps only a pointer)
KEEP_ALIVE: list = []
NO_INPUT = ("no input: give a vector layer (INPUT), more layers (LAYERS) or an OSM file (OSM_FILE); "
            "to try geogan on its bundled sample town run 'Render the example town' (geogan:render_example)")


CLASS_AND_FIELD = ("give either 'Class for every feature' (CLASS_NAME) or a 'Class field' (CLASS_FIELD), "
                   "not both")
MASK_AND_OSM_FILE = ("the mask applies to layers, not to an OSM file given as a file; add the file's layers to "
                     "QGIS and give them as INPUT/LAYERS, or leave MASK empty")

RES_AND_GSD = ("'Pixel size (ground metres)' (GSD_M) and 'Pixel size (output CRS units)' (RES) both set the pixel "
               "size; give one of them")


def _number(parameters, name: str) -> float:
    """A number parameter's value as given (0.0 when empty or not a number)."""
    try:
        return float(parameters.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _given(parameters, name: str) -> bool:
    value = parameters.get(name)
    return value not in (None, "", []) and not (isinstance(value, str) and not value.strip())


def tr(text: str) -> str:
    return QCoreApplication.translate("geogan", text)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:40] or "layer"


def advanced(param):
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


class ClassPalette(QgsProcessingLayerPostProcessorInterface):
    """Paints a class-map raster with the schema's colours and class names."""

    def __init__(self, schema: list[dict]):
        super().__init__()
        self.schema = schema

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            classes = [QgsPalettedRasterRenderer.Class(int(c["id"]), QColor(*c["color"]),
                                                       f'{c["id"]} {c["name"]}') for c in self.schema]
            layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
            layer.triggerRepaint()


class SketchStyle(QgsProcessingLayerPostProcessorInterface):
    """Value-map widget and class colours on a sketch layer loaded into the project."""

    def __init__(self, schema: list[dict]):
        super().__init__()
        self.schema = schema

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            style_sketch_layer(layer, self.schema)
            layer.triggerRepaint()


def style_sketch_layer(layer: QgsVectorLayer, schema: list[dict]) -> None:
    """A ValueMap of the schema's class names on ``class``, and one colour per class."""
    idx = layer.fields().indexOf(SKETCH_FIELD)
    if idx < 0:
        return
    value_map = [{c["name"]: c["name"]} for c in schema if int(c["id"]) != 0]
    layer.setEditorWidgetSetup(idx, QgsEditorWidgetSetup("ValueMap", {"map": value_map}))
    categories = []
    for c in schema:
        if int(c["id"]) == 0:
            continue
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(*c["color"]))
        categories.append(QgsRendererCategory(c["name"], symbol, c["name"]))
    layer.setRenderer(QgsCategorizedSymbolRenderer(SKETCH_FIELD, categories))


class GeoganAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: dependency gate, inputs, running the worker, outputs."""

    INPUT = "INPUT"
    LAYERS = "LAYERS"
    OSM_FILE = "OSM_FILE"
    CLASS_FIELD = "CLASS_FIELD"
    CLASS_NAME = "CLASS_NAME"
    HEIGHT_FIELD = "HEIGHT_FIELD"
    LEVELS_FIELD = "LEVELS_FIELD"
    EXTENT = "EXTENT"
    MASK = "MASK"
    OUTPUT_CRS = "OUTPUT_CRS"
    GSD_M = "GSD_M"
    RES = "RES"
    TAP = "TAP"
    RULES = "RULES"
    OVERWRITE = "OVERWRITE"

    def createInstance(self):  # noqa: N802
        return type(self)()

    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def helpUrl(self):  # noqa: N802
        return "https://github.com/geogan/geogan/blob/main/docs/qgis.md"

    def canExecute(self):  # noqa: N802
        st = dep_status()
        return st.ok, ("" if st.ok else st.message)

    # ------------------------------------------------------------ parameters
    def _add_source_params(self):
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, tr("Vector layer (OSM layer, GeoPackage, sketch...): its filter and, if ticked, "
                           "only its selected features"), [QgsProcessing.TypeVectorAnyGeometry], optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, tr("More vector layers (each with its filter; all their features)"),
            QgsProcessing.TypeVectorAnyGeometry, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.OSM_FILE, tr("OSM file (.osm / .pbf; every feature in it)"), QgsProcessingParameterFile.File,
            optional=True, fileFilter="OpenStreetMap (*.osm *.pbf);;All files (*.*)"))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_FIELD, tr("Class field (schema class name or id; empty: use OSM tags)"), optional=True))
        self._add_layer_option_params()
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, tr("Extent (empty: the chosen features' or the mask's extent)"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.MASK, tr("Mask polygons (optional): only what lies inside them is drawn"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self._add_crs_param()

    def _add_layer_option_params(self):
        """How features of non-OSM layers (GeoPackage, Shapefile, ...) are classified and given heights."""
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAME, tr("Class for every feature (non-OSM layers; e.g. building)"), optional=True))
        for name, label in ((self.HEIGHT_FIELD, "Height field (building heights in metres; non-OSM layers)"),
                            (self.LEVELS_FIELD, "Levels field (building storeys; non-OSM layers)")):
            self.addParameter(QgsProcessingParameterField(
                name, tr(label), parentLayerParameterName=self.INPUT, optional=True))

    def _add_res_params(self):
        self.addParameter(QgsProcessingParameterNumber(
            self.RES, tr("Pixel size (output CRS units; instead of ground metres)"),
            QgsProcessingParameterNumber.Double, defaultValue=None, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.TAP, tr("Snap to pixel grid (like gdalwarp -tap)"), defaultValue=False))

    def _add_crs_param(self, default="ProjectCrs"):
        # optional + default: qgis_process 3.22 treats a required CRS's default as missing
        self.addParameter(QgsProcessingParameterCrs(
            self.OUTPUT_CRS, tr("Output CRS (default: the project's)"), defaultValue=default, optional=True))

    def _add_rules_param(self):
        self.addParameter(advanced(QgsProcessingParameterFile(
            self.RULES, tr("Class rules (TOML; empty: geogan's built-in schema)"),
            QgsProcessingParameterFile.File, optional=True, fileFilter="TOML (*.toml)")))

    def _add_overwrite_param(self):
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace existing outputs"), defaultValue=False))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if ok and self.parameterDefinition(self.INPUT) is not None and not self._has_input(parameters):
            return False, NO_INPUT
        clash = self._clash(parameters)
        return (False, clash) if ok and clash else (ok, message)

    def _clash(self, parameters) -> str | None:
        """Why two given parameters cannot go together, or None."""
        if _given(parameters, self.CLASS_NAME) and _given(parameters, self.CLASS_FIELD):
            return CLASS_AND_FIELD
        if _given(parameters, self.MASK) and _given(parameters, self.OSM_FILE):
            return MASK_AND_OSM_FILE
        gsd = self.parameterDefinition(self.GSD_M)
        if _number(parameters, self.RES) and _number(parameters, self.GSD_M) and gsd is not None and \
                gsd.flags() & QgsProcessingParameterDefinition.FlagOptional:
            return RES_AND_GSD  # where the ground size has no default (render); rasterize's 0.5 gives way
        return None

    def _has_input(self, parameters) -> bool:
        return any(parameters.get(name) not in (None, "", []) for name in (self.INPUT, self.LAYERS, self.OSM_FILE))

    # ------------------------------------------------------------ inputs
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Main thread: snapshot the chosen features as thread-safe feature sources."""
        clash = self._clash(parameters)  # run() does not call checkParameterValues
        if clash:
            raise QgsProcessingException(clash)
        self._chosen: list[Chosen] = []
        self._files: list[str] = []
        if parameters.get(self.INPUT) not in (None, ""):
            source = self.parameterAsSource(parameters, self.INPUT, context)
            if source is None:
                raise QgsProcessingException(f"INPUT '{parameters.get(self.INPUT)}' is not a vector layer; "
                                             "choose a vector layer")
            self._chosen.append(Chosen(source, source.fields(), source.sourceCrs(), source.sourceName()))
        for layer in self.parameterAsLayerList(parameters, self.LAYERS, context) or []:
            self._add_layer(layer, feedback)
        osm_file = self.parameterAsFile(parameters, self.OSM_FILE, context)
        if osm_file:
            if not Path(osm_file).is_file():
                raise QgsProcessingException(f"OSM file '{osm_file}' does not exist; "
                                             "choose an existing .osm or .pbf file")
            self._files.append(osm_file)
        if not self._chosen and not self._files:
            raise QgsProcessingException(NO_INPUT)
        self._mask = self._read_mask(parameters, context, feedback)
        return True

    def _read_mask(self, parameters, context, feedback) -> Mask | None:
        if not _given(parameters, self.MASK):
            return None
        source = self.parameterAsSource(parameters, self.MASK, context)
        if source is None:
            raise QgsProcessingException(f"MASK '{parameters.get(self.MASK)}' is not a polygon layer; "
                                         "choose a polygon layer")
        return read_mask(source, source.sourceName(), feedback)

    def _add_layer(self, layer, feedback) -> None:
        if not isinstance(layer, QgsVectorLayer):
            raise QgsProcessingException(f"'{layer.name()}' is not a vector layer; give vector layers "
                                         "(or an OSM file)")
        if layer.geometryType() in (QgsWkbTypes.NullGeometry, QgsWkbTypes.UnknownGeometry):
            feedback.pushWarning(f"layer '{layer.name()}' has no geometry; skipped")
            return
        if layer.selectedFeatureCount():
            feedback.pushWarning(
                f"layer '{layer.name()}' has {layer.selectedFeatureCount()} selected features, but all its "
                f"features are used: to use only the selection, give it as INPUT with 'Selected features only'")
        self._chosen.append(Chosen(QgsVectorLayerFeatureSource(layer), layer.fields(), layer.crs(), layer.name()))

    def _export_sources(self, tmpdir: Path, extent, context, feedback) -> tuple[list[str], list]:
        """GeoPackages of the chosen features (then the OSM files as they are), and their lon/lat extents."""
        paths, extents, total = [], [], 0
        for i, chosen in enumerate(self._chosen):
            request = area_request(extent[0], extent[1], chosen.crs, context) if extent else \
                area_request(None, chosen.crs, chosen.crs, context)
            name = safe_name(chosen.name)
            done = export_chosen(chosen, str(tmpdir / f"{i:02d}_{name}.gpkg"), name, request, context, feedback,
                                 self._mask)
            feedback.pushInfo(f"layer '{chosen.name}': {done.count} features handed to geogan")
            paths.append(done.path)
            extents.append(done.extent_lonlat)
            total += done.count
        if self._chosen and not total and not self._files and not feedback.isCanceled():
            raise QgsProcessingException(
                "the chosen layers have no features here (is 'Selected features only' ticked with nothing "
                "selected, or does the filter, the extent or the mask leave none?); choose features to draw")
        return paths + [f for f in self._files if f not in paths], extents

    # ------------------------------------------------------------ CRS and extent
    def _output_crs(self, parameters, context) -> str:
        crs = self.parameterAsCrs(parameters, self.OUTPUT_CRS, context)
        text = crs_text(crs)
        if text is None:
            given = parameters.get(self.OUTPUT_CRS)
            if given in (None, "", "ProjectCrs"):
                raise QgsProcessingException(
                    "no output CRS: the project has none; give OUTPUT_CRS (e.g. EPSG:3857 or the UTM zone), "
                    "or run in a project (qgis_process: --PROJECT_PATH=project.qgz)")
            raise QgsProcessingException(f"output CRS '{given}' is not valid; give one such as EPSG:3857")
        return text

    def _extent(self, parameters, context, feedback):
        """(rectangle, its CRS) of the EXTENT parameter, or None when none is given."""
        value = parameters.get(self.EXTENT)
        if value in (None, ""):
            return None
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        if rect is None or rect.isNull() or rect.isEmpty():
            raise QgsProcessingException(f"extent '{value}' is empty; give xmin,xmax,ymin,ymax [CRS]")
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        if crs_text(crs) is None:
            raise QgsProcessingException(
                f"extent '{value}' gives no CRS and there is no project CRS to take; add it in brackets: "
                "xmin,xmax,ymin,ymax [EPSG:4326]")
        if isinstance(value, str) and "[" not in value:
            feedback.pushWarning(f"the extent gives no CRS; taking it in the project CRS {crs_text(crs)}")
        return rect, crs

    def _common_kwargs(self, parameters, context, feedback, tmpdir: Path) -> dict:
        kwargs: dict = {"crs": self._output_crs(parameters, context)}
        extent = self._extent(parameters, context, feedback)
        if extent is None and getattr(self, "_mask", None) is not None:
            extent = self._mask.geometry.boundingBox(), self._mask.crs
        if extent is not None:
            rect, crs = extent
            kwargs.update(bbox=[rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()],
                          bbox_crs=crs_text(crs))
        paths, extents = self._export_sources(tmpdir, extent, context, feedback)
        kwargs["osm"] = paths
        if extent is None and not self._files:
            kwargs.update(bbox=union_lonlat(extents), bbox_crs="EPSG:4326")
        class_field = (self.parameterAsString(parameters, self.CLASS_FIELD, context) or "").strip()
        kwargs["class_field"] = class_field or None
        kwargs["rules"] = self.parameterAsFile(parameters, self.RULES, context) or None
        options = self._source_options(parameters, context)
        if options:  # only when used: a geogan without them still runs
            kwargs["source_options"] = options
        return kwargs

    def _source_options(self, parameters, context) -> dict:
        """CLASS_NAME, HEIGHT_FIELD, LEVELS_FIELD as geogan's SourceOptions values (the worker builds it)."""
        options = {}
        if _given(parameters, self.CLASS_NAME):
            options["class_name"] = self.parameterAsString(parameters, self.CLASS_NAME, context).strip()
        for key, name in (("height_field", self.HEIGHT_FIELD), ("levels_field", self.LEVELS_FIELD)):
            fields = self.parameterAsFields(parameters, name, context) if _given(parameters, name) else []
            if fields and fields[0].strip():
                options[key] = fields[0].strip()
        return options

    def _pixel_kwargs(self, parameters, context, gsd_m: float | None, feedback) -> dict:
        """The pixel size for geogan: RES (CRS units, square) with TAP, or ``gsd_m`` (ground metres) rounded
        to square pixels by the worker (``worker_grid``; snapped with TAP)."""
        tap = self.parameterDefinition(self.TAP) is not None and \
            self.parameterAsBoolean(parameters, self.TAP, context)
        res = self.parameterAsDouble(parameters, self.RES, context) if _given(parameters, self.RES) else 0.0
        if not res:
            return {"gsd_m": gsd_m, "square_pixels": True, **({"tap": True} if tap else {})}
        if gsd_m is not None:
            feedback.pushInfo(f"pixels {res:g} x {res:g} output CRS units (RES); the ground pixel size is not used")
        return {"res": res, "tap": tap}

    # ------------------------------------------------------------ outputs
    def _overwrite(self, paths, parameters, context) -> bool:
        """OVERWRITE, after refusing (without it) outputs that exist already."""
        if self.parameterAsBoolean(parameters, self.OVERWRITE, context):
            return True
        existing = [Path(p) for p in paths if Path(p).exists()]
        if existing:
            names = ", ".join(p.name for p in existing)
            raise QgsProcessingException(
                f"'{existing[0].parent}' already has {names}; tick 'Replace existing outputs' (OVERWRITE=true) "
                "to replace them, or choose another output")
        return False

    # ------------------------------------------------------------ running
    def _run(self, op: str, kwargs: dict, feedback) -> dict:
        st = dep_status()
        if not st.ok:
            raise QgsProcessingException(st.message)
        last_key = [None]

        def on_progress(fraction: float, message: str) -> None:
            feedback.setProgress(max(0.0, min(100.0, 100.0 * fraction)))
            key = re.sub(r"[\d.]+", "#", message)  # one log line per stage, not per tile
            if message and key != last_key[0]:
                last_key[0] = key
                feedback.pushInfo(message)

        def on_message(level: str, message: str) -> None:
            if level in ("WARNING", "ERROR", "CRITICAL"):
                feedback.pushWarning(message)
            else:
                feedback.pushInfo(message)

        try:
            return run_worker(st.python, op, kwargs, on_progress=on_progress, on_message=on_message,
                              on_log=feedback.pushDebugInfo, is_canceled=feedback.isCanceled)
        except WorkerError as exc:
            if exc.log_tail:
                feedback.pushDebugInfo(exc.log_tail)
            raise QgsProcessingException(str(exc)) from None
