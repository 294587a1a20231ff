"""geogan's processing algorithms: QGIS parameters in, ``geogan.render`` /
``geogan.rasterize`` run in geogan's own Python (``runner.run_worker``), QGIS
feedback for progress and cancel, rasters back into the project.

No numpy and no geogan imports here: layers are handed over as files.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsEditorWidgetSetup,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsPalettedRasterRenderer,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication, QVariant
from qgis.PyQt.QtGui import QColor

from .runner import WorkerError, run_worker
from .status import dep_status

SKETCH_FIELD = "class"
_OSM_SUFFIXES = (".osm", ".pbf", ".osm.pbf", ".osm.bz2")
# post-processors must outlive the algorithm run (QGIS keeps only a pointer)
_KEEP_ALIVE: list = []


def tr(text: str) -> str:
    return QCoreApplication.translate("geogan", text)


def crs_text(crs: QgsCoordinateReferenceSystem) -> str | None:
    """A CRS as text pyproj understands: the authority id, else WKT2."""
    if not crs.isValid():
        return None
    auth = crs.authid()
    if auth and not auth.upper().startswith("USER:"):
        return auth
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


def _osm_file(layer) -> str | None:
    """The .osm/.pbf behind an OGR OSM layer: geogan reads the file itself (tags intact)."""
    if layer.providerType() != "ogr":
        return None
    path = QgsProviderRegistry.instance().decodeUri("ogr", layer.source()).get("path") or ""
    return path if path.lower().endswith(_OSM_SUFFIXES) else None


def _or_none_if_negative(value: int) -> int | None:
    """A processing parameter where a negative number means "automatic"."""
    return None if value < 0 else value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:40] or "layer"


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
    """Shared plumbing: dependency gate, running the worker, exporting layers."""

    LAYERS = "LAYERS"
    OSM_FILE = "OSM_FILE"
    CLASS_FIELD = "CLASS_FIELD"
    EXTENT = "EXTENT"
    OUTPUT_CRS = "OUTPUT_CRS"
    GSD_M = "GSD_M"
    RULES = "RULES"

    def createInstance(self):  # noqa: N802
        return type(self)()

    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def helpUrl(self):  # noqa: N802
        return "https://github.com/geogan/geogan"

    def canExecute(self):  # noqa: N802
        st = dep_status()
        return st.ok, ("" if st.ok else st.message)

    # ------------------------------------------------------------ parameters
    def _add_source_params(self):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, tr("Vector layers (OSM layers, GeoPackage, hand-drawn sketch...)"),
            QgsProcessing.TypeVectorAnyGeometry, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.OSM_FILE, tr("OSM file (.osm / .pbf)"), QgsProcessingParameterFile.File,
            optional=True, fileFilter="OpenStreetMap (*.osm *.pbf);;All files (*.*)"))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_FIELD, tr("Class field (schema class name or id; empty: use OSM tags)"),
            optional=True))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, tr("Extent (empty: the data's extent)"), optional=True))
        # optional + default: qgis_process 3.22 treats a required CRS's default as missing
        self.addParameter(QgsProcessingParameterCrs(
            self.OUTPUT_CRS, tr("Output CRS"), defaultValue="EPSG:3857", optional=True))

    def _add_rules_param(self):
        rules = QgsProcessingParameterFile(
            self.RULES, tr("Class rules (TOML; empty: geogan's built-in schema)"),
            QgsProcessingParameterFile.File, optional=True, fileFilter="TOML (*.toml)")
        rules.setFlags(rules.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(rules)

    # ------------------------------------------------------------ inputs
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Main thread: snapshot the input layers as thread-safe feature sources."""
        self._sources = []
        for layer in self.parameterAsLayerList(parameters, self.LAYERS, context) or []:
            if not isinstance(layer, QgsVectorLayer):
                raise QgsProcessingException(f"'{layer.name()}' is not a vector layer; "
                                             "give vector layers (or an OSM file)")
            osm = _osm_file(layer)
            if osm:
                self._sources.append(("file", osm, layer.name()))
            elif layer.geometryType() in (QgsWkbTypes.NullGeometry, QgsWkbTypes.UnknownGeometry):
                feedback.pushWarning(f"layer '{layer.name()}' has no geometry; skipped")
            else:
                self._sources.append(("layer", QgsVectorLayerFeatureSource(layer), layer.fields(),
                                      layer.wkbType(), layer.crs(), layer.name()))
        osm_file = self.parameterAsFile(parameters, self.OSM_FILE, context)
        if osm_file:
            if not Path(osm_file).is_file():
                raise QgsProcessingException(f"OSM file '{osm_file}' does not exist; "
                                             "choose an existing .osm or .pbf file")
            self._sources.append(("file", osm_file, Path(osm_file).name))
        return True

    def _export_sources(self, tmpdir: Path, context, feedback) -> list[str]:
        """Files for geogan: OSM files as they are, other layers as one GPKG each."""
        paths: list[str] = []
        for i, src in enumerate(self._sources):
            if src[0] == "file":
                if src[1] not in paths:
                    paths.append(src[1])
                continue
            _, source, fields, wkb, crs, name = src
            keep = [f for f in fields if f.name().lower() != "fid"]  # GPKG owns 'fid'
            out_fields = QgsFields()
            for f in keep:
                out_fields.append(QgsField(f))
            path = tmpdir / f"{i:02d}_{_safe_name(name)}.gpkg"
            options = QgsVectorFileWriter.SaveVectorOptions()
            options.driverName = "GPKG"
            options.layerName = _safe_name(name)
            options.fileEncoding = "UTF-8"
            # geometry type GEOMETRY: layers may mix polygons and lines (GeoJSON, memory)
            writer = QgsVectorFileWriter.create(str(path), out_fields, QgsWkbTypes.Unknown,
                                                crs, context.transformContext(), options)
            if writer.hasError() != QgsVectorFileWriter.NoError:
                raise QgsProcessingException(f"cannot export layer '{name}' for geogan: "
                                             f"{writer.errorMessage()}")
            names = [f.name() for f in keep]
            count = 0
            for feat in source.getFeatures():
                if feedback.isCanceled():
                    break
                geom = feat.geometry()
                if geom.isNull():
                    continue
                out = QgsFeature(out_fields)
                out.setGeometry(geom)
                out.setAttributes([feat[n] for n in names])
                writer.addFeature(out)
                count += 1
            del writer
            feedback.pushInfo(f"layer '{name}': {count} features handed to geogan")
            paths.append(str(path))
        return paths

    def _common_kwargs(self, parameters, context, feedback, tmpdir: Path) -> dict:
        crs = "EPSG:3857"
        if parameters.get(self.OUTPUT_CRS) not in (None, ""):
            crs = crs_text(self.parameterAsCrs(parameters, self.OUTPUT_CRS, context))
            if crs is None:
                raise QgsProcessingException(f"output CRS '{parameters.get(self.OUTPUT_CRS)}' is not "
                                             "valid; give one such as EPSG:3857")
        kwargs: dict = {"crs": crs}
        paths = self._export_sources(tmpdir, context, feedback)
        kwargs["osm"] = paths or None
        class_field = (self.parameterAsString(parameters, self.CLASS_FIELD, context) or "").strip()
        kwargs["class_field"] = class_field or None
        rules = self.parameterAsFile(parameters, self.RULES, context)
        kwargs["rules"] = rules or None
        extent_value = parameters.get(self.EXTENT)
        if extent_value not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            if rect is not None and not rect.isNull() and not rect.isEmpty():
                extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
                bbox_crs = crs_text(extent_crs)
                if bbox_crs is None:
                    feedback.pushWarning(f"the extent gives no CRS; taking it as {crs}")
                    bbox_crs = crs
                kwargs["bbox"] = [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]
                kwargs["bbox_crs"] = bbox_crs
        return kwargs

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


class RasterizeAlgorithm(GeoganAlgorithm):
    OUTPUT = "OUTPUT"

    def name(self):
        return "rasterize"

    def displayName(self):  # noqa: N802
        return tr("Rasterize classes")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Burns vector data into a geogan class map (uint8 GeoTIFF with the class palette: "
            "0 background, 1 building, 2 road, 3 path, 4 railway, 5 water, 6 woodland, 7 grass, "
            "8 farmland, 9 impervious, 10 bare, 11 wetland).\n\n"
            "Inputs: vector layers and/or an OSM file. OSM tags decide the classes, or give a "
            "class field holding a class name or id (hand-drawn sketch layers use 'class').\n"
            "Extent: any CRS; it is reprojected into the output CRS. Empty: the data's extent.\n"
            "GSD: output pixel size in ground metres.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_source_params()
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD_M, tr("Pixel size (ground metres)"), QgsProcessingParameterNumber.Double,
            defaultValue=0.5, minValue=0.01))
        self._add_rules_param()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Class map")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(out).suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(f"class map '{out}' must be a GeoTIFF; end the name in .tif")
        tmpdir = Path(tempfile.mkdtemp(prefix="geogan_qgis_"))
        try:
            kwargs = self._common_kwargs(parameters, context, feedback, tmpdir)
            if feedback.isCanceled():
                return {}
            kwargs.update(gsd_m=self.parameterAsDouble(parameters, self.GSD_M, context),
                          out=out, overwrite=True)
            result = self._run("rasterize", kwargs, feedback)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if context.willLoadLayerOnCompletion(out):
            pp = ClassPalette(result["schema"])
            _KEEP_ALIVE.append(pp)
            context.layerToLoadOnCompletionDetails(out).setPostProcessor(pp)
        return {self.OUTPUT: result["classes"]}


class RenderAlgorithm(GeoganAlgorithm):
    MODEL = "MODEL"
    STYLE_REF = "STYLE_REF"
    DEM = "DEM"
    DEVICE = "DEVICE"
    SEED = "SEED"
    TILE_PX = "TILE_PX"
    OVERLAP_PX = "OVERLAP_PX"
    FORCE = "FORCE"
    COMPRESSION = "COMPRESSION"
    PRECISION = "PRECISION"
    OUTPUT_DIR = "OUTPUT_DIR"
    AERIAL = "AERIAL"
    HEIGHT = "HEIGHT"
    CLASSES = "CLASSES"
    DEVICES = ["auto", "cpu", "cuda"]
    COMPRESSIONS = [("deflate", "Deflate"), ("zstd", "ZSTD"), ("jpeg", "JPEG aerial")]  # geogan value, label
    PRECISIONS = ["auto", "fp32", "bf16", "fp16"]

    def name(self):
        return "render"

    def displayName(self):  # noqa: N802
        return tr("Render synthetic aerial imagery")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Generates synthetic, georeferenced aerial imagery (aerial.tif, RGB), heights "
            "(height.tif, metres) and the class map (classes.tif) with a geogan generator.\n\n"
            "Inputs: vector layers and/or an OSM file (nothing: geogan's bundled sample town). "
            "Class field: for hand-drawn layers (see 'Create sketch layer').\n"
            "Extent: any CRS, reprojected into the output CRS; empty: the data's extent.\n"
            "Pixel size: ground metres; empty: the model's native pixel size.\n"
            "Model: a name from 'geogan models' or a path to a model .json/.safetensors.\n"
            "Style reference: an aerial photo (raster layer) whose look the render takes on; needs a "
            "model with a style encoder (model 'style').\n"
            "Compression (advanced): Deflate (lossless, read everywhere), ZSTD (lossless, faster; "
            "readers need GDAL >= 2.3) or JPEG aerial (the aerial image lossy JPEG, quality 90, several "
            "times smaller; heights and classes stay lossless).\n"
            "Precision (advanced): the generator's arithmetic; auto = fp16 on a CUDA GPU, fp32 on CPU; bf16 "
            "is about 1.4x faster on CPUs with AVX512-BF16 (within about 1 grey level); fp16 needs a GPU.\n"
            "Cancel stops within one tile. The three rasters are written to the output folder "
            "and added to the project.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_source_params()
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD_M, tr("Pixel size (ground metres; empty: the model's own)"),
            QgsProcessingParameterNumber.Double, defaultValue=None, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Model (name or path to .json/.safetensors)"), defaultValue="default"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.STYLE_REF, tr("Style reference photo (optional; models with a style encoder, e.g. 'style')"),
            optional=True))
        advanced = [
            QgsProcessingParameterRasterLayer(self.DEM, tr("Terrain DEM (optional)"), optional=True),
            QgsProcessingParameterEnum(self.DEVICE, tr("Device"), options=self.DEVICES, defaultValue=0),
            QgsProcessingParameterNumber(self.SEED, tr("Seed (same seed, same image)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=0),
            QgsProcessingParameterNumber(self.TILE_PX, tr("Tile size (px; 0 = 256 model pixels at the output GSD)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=0,
                                         minValue=0),
            QgsProcessingParameterNumber(self.OVERLAP_PX, tr("Tile overlap (px; -1 = a quarter of the tile)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=-1,
                                         minValue=-1),
            QgsProcessingParameterBoolean(self.FORCE, tr("Run even if the area is very large"),
                                          defaultValue=False),
            QgsProcessingParameterEnum(self.COMPRESSION, tr("Compression"),
                                       options=[tr(label) for _, label in self.COMPRESSIONS], defaultValue=0,
                                       optional=True),
            QgsProcessingParameterEnum(self.PRECISION, tr("Precision"), options=self.PRECISIONS, defaultValue=0,
                                       optional=True),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self._add_rules_param()
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.AERIAL, tr("Aerial image")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.HEIGHT, tr("Heights")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.CLASSES, tr("Class map")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out_dir = Path(self.parameterAsFileOutput(parameters, self.OUTPUT_DIR, context))
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QgsProcessingException(f"cannot create output folder '{out_dir}': "
                                         f"{exc.strerror}; choose a writable folder") from None
        dem = self.parameterAsRasterLayer(parameters, self.DEM, context)
        dem_path = _raster_file(dem, "DEM") if dem is not None else None
        style = self.parameterAsRasterLayer(parameters, self.STYLE_REF, context)
        style_path = _raster_file(style, "style reference") if style is not None else None
        gsd = parameters.get(self.GSD_M)
        gsd_m = None
        if gsd not in (None, ""):
            gsd_m = self.parameterAsDouble(parameters, self.GSD_M, context) or None
        tmpdir = Path(tempfile.mkdtemp(prefix="geogan_qgis_"))
        try:
            kwargs = self._common_kwargs(parameters, context, feedback, tmpdir)
            if feedback.isCanceled():
                return {}
            if kwargs["osm"] is None and "bbox" not in kwargs:
                feedback.pushInfo("no input layers or OSM file: rendering geogan's bundled sample town")
            kwargs.update(
                gsd_m=gsd_m, out_dir=str(out_dir), overwrite=True, dem=dem_path,
                **({"style_ref": style_path} if style_path else {}),
                model=(self.parameterAsString(parameters, self.MODEL, context) or "default").strip(),
                device=self.DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                seed=self.parameterAsInt(parameters, self.SEED, context),
                tile_px=self.parameterAsInt(parameters, self.TILE_PX, context) or None,
                overlap_px=_or_none_if_negative(self.parameterAsInt(parameters, self.OVERLAP_PX, context)),
                force=self.parameterAsBoolean(parameters, self.FORCE, context))
            compression = self.COMPRESSIONS[self.parameterAsEnum(parameters, self.COMPRESSION, context)][0]
            if compression != "deflate":  # the default: not sent, so a geogan without the option still runs
                kwargs["compression"] = compression
            precision = self.PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)]
            if precision != "auto":  # likewise
                kwargs["precision"] = precision
            result = self._run("render", kwargs, feedback)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

        outputs = {self.OUTPUT_DIR: str(out_dir)}
        project = context.project()
        for key, out_name, label in ((self.AERIAL, "aerial", "geogan aerial"),
                                     (self.HEIGHT, "height", "geogan height"),
                                     (self.CLASSES, "classes", "geogan classes")):
            path = result.get(out_name)
            outputs[key] = path
            if path and project is not None:
                details = QgsProcessingContext.LayerDetails(label, project, key)
                details.layerTypeHint = QgsProcessingUtils.LayerHint.Raster
                if out_name == "classes":
                    pp = ClassPalette(result["schema"])
                    _KEEP_ALIVE.append(pp)
                    details.setPostProcessor(pp)
                context.addLayerToLoadOnCompletion(path, details)
        return outputs


class CreateSketchLayerAlgorithm(GeoganAlgorithm):
    OUTPUT = "OUTPUT"
    CRS = "CRS"
    GEOMETRY = "GEOMETRY"
    LAYER_NAME = "LAYER_NAME"
    GEOMETRIES = ["Polygon", "LineString"]

    def name(self):
        return "create_sketch_layer"

    def displayName(self):  # noqa: N802
        return tr("Create sketch layer")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Creates an empty GeoPackage layer for drawing a scene by hand. Its 'class' field "
            "has a drop-down of geogan's classes (building, road, water, woodland, ...) and the "
            "layer is coloured by class; both are saved as the layer's default style.\n\n"
            "Draw polygons (or lines for roads, paths and rails), pick a class for each, save, "
            "then run 'Render synthetic aerial imagery' with this layer and class field 'class'.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterCrs(self.CRS, tr("CRS"), defaultValue="EPSG:3857",
                                                    optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.GEOMETRY, tr("Geometry"),
                                                     options=self.GEOMETRIES, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(self.LAYER_NAME, tr("Layer name"),
                                                       defaultValue="sketch"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, tr("Sketch GeoPackage"), fileFilter="GeoPackage (*.gpkg)"))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        schema = self._run("schema", {}, feedback)["schema"]
        path = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if Path(path).suffix.lower() != ".gpkg":
            path = str(Path(path).with_suffix(".gpkg"))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        layer_name = _safe_name(self.parameterAsString(parameters, self.LAYER_NAME, context) or "sketch")
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem("EPSG:3857")
        wkb = (QgsWkbTypes.Polygon, QgsWkbTypes.LineString)[
            self.parameterAsEnum(parameters, self.GEOMETRY, context)]

        fields = QgsFields()
        fields.append(QgsField(SKETCH_FIELD, QVariant.String, "string", 32))
        fields.append(QgsField("note", QVariant.String, "string", 254))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = layer_name
        options.fileEncoding = "UTF-8"
        options.actionOnExistingFile = (QgsVectorFileWriter.CreateOrOverwriteLayer if Path(path).exists()
                                        else QgsVectorFileWriter.CreateOrOverwriteFile)
        writer = QgsVectorFileWriter.create(path, fields, wkb, crs, context.transformContext(), options)
        if writer.hasError() != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"cannot create sketch layer '{path}': {writer.errorMessage()}")
        del writer

        uri = f"{path}|layername={layer_name}"
        layer = QgsVectorLayer(uri, layer_name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"cannot open the new sketch layer '{uri}'")
        style_sketch_layer(layer, schema)
        error = layer.saveStyleToDatabase(layer_name, "geogan classes: value map and colours", True, "")
        if error:
            feedback.pushWarning(f"could not store the class style in {path}: {error}")
        feedback.pushInfo(f"sketch layer '{layer_name}' in {path}: draw features, set 'class', "
                          "then render with class field 'class'")
        del layer
        if context.project() is not None:
            details = QgsProcessingContext.LayerDetails(layer_name, context.project(), self.OUTPUT)
            details.layerTypeHint = QgsProcessingUtils.LayerHint.Vector
            pp = SketchStyle(schema)
            _KEEP_ALIVE.append(pp)
            details.setPostProcessor(pp)
            context.addLayerToLoadOnCompletion(uri, details)
        return {self.OUTPUT: path}


def _raster_file(layer, what: str) -> str:
    if layer.providerType() != "gdal":
        raise QgsProcessingException(f"{what} '{layer.name()}' is not a file raster; save it as a GeoTIFF first")
    return QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or layer.source()


class MeshAlgorithm(GeoganAlgorithm):
    AERIAL = "AERIAL"
    HEIGHT = "HEIGHT"
    EXAGGERATION = "EXAGGERATION"
    MAX_VERTICES = "MAX_VERTICES"
    MAX_TEXTURE = "MAX_TEXTURE"
    OUTPUT = "OUTPUT"

    def name(self):
        return "mesh"

    def displayName(self):  # noqa: N802
        return tr("Export textured 3D mesh")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Writes a textured terrain mesh (binary glTF .glb, or Wavefront .obj with .mtl/.png) "
            "from a render's height.tif, draped with its aerial.tif. Coordinates: ground metres "
            "from the raster's lower-left corner; a .prj beside the mesh records the CRS.\n\n"
            "Max vertices picks the grid step; the texture is downsampled to at most "
            "'max texture' pixels per side.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.AERIAL, tr("Aerial image (RGB)")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.HEIGHT, tr("Heights (metres)")))
        self.addParameter(QgsProcessingParameterNumber(
            self.EXAGGERATION, tr("Height exaggeration"), QgsProcessingParameterNumber.Double,
            defaultValue=1.0, minValue=0.001))
        for name, label, default in ((self.MAX_VERTICES, "Max vertices", 1_000_000),
                                     (self.MAX_TEXTURE, "Max texture size (px)", 4096)):
            p = QgsProcessingParameterNumber(name, tr(label), QgsProcessingParameterNumber.Integer,
                                             defaultValue=default, minValue=16)
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, tr("Mesh"), fileFilter="glTF binary (*.glb);;Wavefront OBJ (*.obj)"))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        aerial = self.parameterAsRasterLayer(parameters, self.AERIAL, context)
        height = self.parameterAsRasterLayer(parameters, self.HEIGHT, context)
        if aerial is None or height is None:
            raise QgsProcessingException("give the aerial.tif and height.tif of one render")
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if Path(out).suffix.lower() not in (".glb", ".obj"):
            out = str(Path(out).with_suffix(".glb"))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        result = self._run("mesh", {
            "aerial": _raster_file(aerial, "aerial image"), "height": _raster_file(height, "heights"),
            "out": out, "overwrite": True,
            "exaggeration": self.parameterAsDouble(parameters, self.EXAGGERATION, context),
            "max_vertices": self.parameterAsInt(parameters, self.MAX_VERTICES, context),
            "max_texture": self.parameterAsInt(parameters, self.MAX_TEXTURE, context),
        }, feedback)
        return {self.OUTPUT: result["mesh"]}


def all_algorithms() -> list[QgsProcessingAlgorithm]:
    return [RasterizeAlgorithm(), RenderAlgorithm(), CreateSketchLayerAlgorithm(), MeshAlgorithm()]
