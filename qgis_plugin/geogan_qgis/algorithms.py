"""geogan's processing algorithms: QGIS parameters in, ``geogan.render`` /
``geogan.rasterize`` run in geogan's own Python (``runner.run_worker``), QGIS
feedback for progress and cancel, styled rasters back into the project.

No numpy and no geogan imports here: layers are handed over as files.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from .base import KEEP_ALIVE, ClassPalette, GeoganAlgorithm, advanced, tr
from .qml import qml_path, write_class_style_if_missing
from .status import dep_status
from .tools import CreateSketchLayerAlgorithm, MeshAlgorithm, raster_file

DEFAULT_MODEL = "default"
FILL_BACKGROUND = "FILL_BACKGROUND"
FILL_HELP = (
    "Outside the data's coverage (an OSM file's bounds): nodata (transparent aerial, nodata heights and classes) "
    "unless 'Draw areas outside the data's coverage as background' is ticked. Layers from the project are drawn "
    "as chosen (their export to geogan says what was chosen, not what the data covers), so the area around "
    "them is background.")


def fill_param():
    return QgsProcessingParameterBoolean(
        FILL_BACKGROUND, tr("Draw areas outside the data's coverage as background (else nodata)"), defaultValue=False)


def fill_kwargs(alg, parameters, context) -> dict:
    """``fill="background"`` for geogan when asked, or when project layers are handed over (exported clipped to
    the extent, the mask, the filter and the selection: their extent is what was chosen, not what the data
    covers); else nothing (geogan's default, nodata outside an OSM file's bounds)."""
    asked = alg.parameterDefinition(FILL_BACKGROUND) is not None and \
        alg.parameterAsBoolean(parameters, FILL_BACKGROUND, context)
    return {"fill": "background"} if asked or getattr(alg, "_chosen", None) else {}


def render_models() -> list[dict]:
    """The render models installed in geogan's Python (``default`` first), or just ``default``."""
    models = list(dep_status().models) or [{"name": DEFAULT_MODEL, "summary": "", "license": "", "gsd_m": None}]
    return sorted(models, key=lambda m: (m["name"] != DEFAULT_MODEL, m["name"]))


def _short_licence(text: str) -> str:
    for stop in (" (", ";", ". "):
        text = text.split(stop)[0]
    return text if len(text) <= 40 else text[:40].rsplit(" ", 1)[0] + "..."


def models_help(models: list[dict]) -> str:
    """One paragraph per model for the help panel: name, native pixel size, summary, licence."""
    lines = []
    for m in models:
        gsd = f", {m['gsd_m']:g} m pixels" if isinstance(m.get("gsd_m"), (int, float)) else ""
        summary = f" {m['summary']}." if m.get("summary") else ""
        lines.append(f"<b>{m['name']}</b>{gsd}:{summary} <i>Licence: {m.get('license') or 'not stated'}</i>")
    return "<br>".join(lines)


class RasterizeAlgorithm(GeoganAlgorithm):
    OUTPUT = "OUTPUT"

    def name(self):
        return "rasterize"

    def displayName(self):  # noqa: N802
        return tr("Rasterize classes")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Burns vector data into a geogan class map (uint8 GeoTIFF; classes.qml beside it holds the class "
            "names and palette: 0 background, 1 building, 2 road, 3 path, 4 railway, 5 water, 6 woodland, "
            "7 grass, 8 farmland, 9 impervious, 10 bare, 11 wetland).\n\n"
            "Input: a vector layer as QGIS shows it (its filter; tick 'Selected features only' for the "
            "selection), more layers, and/or an OSM file. OSM tags decide the classes, or a class field "
            "holding a class name or id (hand-drawn sketch layers use 'class').\n"
            "Non-OSM layers (GeoPackage, Shapefile...): 'Class for every feature' gives all their features one "
            "class (e.g. building).\n"
            "Extent: any CRS; empty: the chosen features' extent (or the mask's). Mask: only what lies inside "
            "its polygons is drawn (features are cut at its edge). Output CRS: empty = the project's.\n"
            "Pixel size: ground metres at the centre, rounded so pixels are square in the output CRS; or "
            "'Pixel size (output CRS units)', exactly (it wins over the ground metres). 'Snap to pixel grid': "
            "bounds on multiples of the pixel size (like gdalwarp -tap), so class maps line up.\n"
            "An existing output is replaced only with 'Replace existing outputs'.\n" + FILL_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_source_params()
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD_M, tr("Pixel size (ground metres)"), QgsProcessingParameterNumber.Double,
            defaultValue=0.5, minValue=0.01))
        self._add_res_params()
        self.addParameter(advanced(fill_param()))
        self._add_rules_param()
        self._add_overwrite_param()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Class map")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(out).suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(f"class map '{out}' must be a GeoTIFF; end the name in .tif")
        overwrite = self._overwrite([out, qml_path(out)], parameters, context)
        tmpdir = Path(tempfile.mkdtemp(prefix="geogan_qgis_"))
        try:
            kwargs = self._common_kwargs(parameters, context, feedback, tmpdir)
            if feedback.isCanceled():
                return {}
            gsd_m = self.parameterAsDouble(parameters, self.GSD_M, context)
            kwargs.update(self._pixel_kwargs(parameters, context, gsd_m, feedback), out=out, overwrite=overwrite,
                          **fill_kwargs(self, parameters, context))
            result = self._run("rasterize", kwargs, feedback)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        write_class_style_if_missing(result["classes"], result["schema"])
        if context.willLoadLayerOnCompletion(out):
            pp = ClassPalette(result["schema"])
            KEEP_ALIVE.append(pp)
            context.layerToLoadOnCompletionDetails(out).setPostProcessor(pp)
        return {self.OUTPUT: result["classes"]}


class RenderAlgorithm(GeoganAlgorithm):
    MODEL = "MODEL"
    MODEL_FILE = "MODEL_FILE"
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
    MESH = "MESH"
    SCENE = "SCENE"
    DEVICES = ["auto", "cpu", "cuda"]
    COMPRESSIONS = [("deflate", "Deflate"), ("zstd", "ZSTD"), ("jpeg", "JPEG aerial")]  # geogan value, label
    PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
    OUTPUT_FILES = ("aerial.tif", "height.tif", "classes.tif", "classes.qml")
    SCENE_FILE = "scene.glb"

    def name(self):
        return "render"

    def displayName(self):  # noqa: N802
        return tr("Render synthetic aerial imagery")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Generates synthetic, georeferenced aerial imagery (aerial.tif, RGB), heights "
            "(height.tif, metres) and the class map (classes.tif, styled by classes.qml) with a geogan "
            "generator.<br><br>"
            "Input (required): a vector layer as QGIS shows it (its filter; tick 'Selected features only' for "
            "the selection), more layers, and/or an OSM file. Class field: for hand-drawn layers (see 'Create "
            "sketch layer'). The bundled sample town: 'Render the example town'.<br>"
            "Non-OSM layers (GeoPackage, Shapefile...): 'Class for every feature' gives all their features one "
            "class (e.g. building); 'Height field' / 'Levels field' name the attributes holding building heights "
            "in metres / storeys (default: a field named height in any letter case).<br>"
            "Extent: any CRS; empty: the chosen features' extent (or the mask's). Mask: only what lies inside "
            "its polygons is drawn (features are cut at its edge). Output CRS: empty = the project's.<br>"
            "Pixel size: ground metres at the centre (empty: the model's own), rounded so pixels are square in "
            "the output CRS; or 'Pixel size (output CRS units)', exactly. 'Snap to pixel grid': bounds on "
            "multiples of the pixel size (like gdalwarp -tap), so renders of neighbouring areas line up.<br>"
            "3D scene: also writes scene.glb (one solid per building on the terrain; glTF viewers, Blender).<br>"
            "Style reference: an aerial photo (raster layer) whose look the render takes on; needs a model "
            "with a style encoder (model 'style').<br>"
            "Advanced: model file (a .json card, instead of the list); compression (Deflate lossless, ZSTD "
            "lossless and faster, JPEG aerial lossy and several times smaller); precision (auto = fp16 on a "
            "CUDA GPU, fp32 on CPU; bf16 about 1.4x faster on CPUs with AVX512-BF16).<br>"
            "Existing outputs in the folder are replaced only with 'Replace existing outputs'. Cancel stops "
            "within one tile.<br>" + FILL_HELP + "<br><br><b>Models</b> (their licences bind what you make with "
            "them):<br>"
            + models_help(render_models()))

    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_source_params()
        self._add_gsd_and_model_params(with_res=True)
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.STYLE_REF, tr("Style reference photo (optional; models with a style encoder, e.g. 'style')"),
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.MESH, tr("Write a 3D scene (scene.glb)"), defaultValue=False))
        for p in self._advanced_params():
            self.addParameter(advanced(p))
        self._add_rules_param()
        self._add_overwrite_param()
        self._add_outputs()
        self.addOutput(QgsProcessingOutputFile(self.SCENE, tr("3D scene (scene.glb)")))

    def _add_gsd_and_model_params(self, with_res: bool = False):
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD_M, tr("Pixel size (ground metres; empty: the model's own)"),
            QgsProcessingParameterNumber.Double, defaultValue=None, optional=True, minValue=0.0))
        if with_res:
            self._add_res_params()
        self._models = render_models()
        labels = [f"{m['name']}" + (f"  ({_short_licence(m['license'])})" if m.get("license") else "")
                  for m in self._models]
        self.addParameter(QgsProcessingParameterEnum(self.MODEL, tr("Model (see the help for each licence)"),
                                                     options=labels, defaultValue=0))
        self.addParameter(advanced(QgsProcessingParameterFile(
            self.MODEL_FILE, tr("Model file (.json card; instead of the list)"), QgsProcessingParameterFile.File,
            optional=True, fileFilter="geogan model card (*.json)")))

    def _advanced_params(self) -> list:
        return [
            QgsProcessingParameterRasterLayer(self.DEM, tr("Terrain DEM (optional)"), optional=True),
            QgsProcessingParameterEnum(self.DEVICE, tr("Device"), options=self.DEVICES, defaultValue=0),
            QgsProcessingParameterNumber(self.SEED, tr("Seed (same seed, same image)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=0),
            QgsProcessingParameterNumber(self.TILE_PX, tr("Tile size (model pixels; 0 = the model's training tile, "
                                                          "256)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(self.OVERLAP_PX, tr("Tile overlap (model pixels; -1 = a quarter of the "
                                                             "tile)"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=-1, minValue=-1),
            QgsProcessingParameterBoolean(self.FORCE, tr("Run even if the area is very large"), defaultValue=False),
            QgsProcessingParameterEnum(self.COMPRESSION, tr("Compression"),
                                       options=[tr(label) for _, label in self.COMPRESSIONS], defaultValue=0,
                                       optional=True),
            QgsProcessingParameterEnum(self.PRECISION, tr("Precision"), options=self.PRECISIONS, defaultValue=0,
                                       optional=True),
            fill_param(),
        ]

    def _add_outputs(self):
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.AERIAL, tr("Aerial image")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.HEIGHT, tr("Heights")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.CLASSES, tr("Class map")))

    # ------------------------------------------------------------ running
    def _model(self, parameters, context) -> str:
        model_file = self.parameterAsFile(parameters, self.MODEL_FILE, context)
        if model_file:
            return model_file
        index = self.parameterAsEnum(parameters, self.MODEL, context)
        return self._models[index]["name"] if 0 <= index < len(self._models) else DEFAULT_MODEL

    def _source_kwargs(self, parameters, context, feedback, tmpdir: Path) -> dict:
        return self._common_kwargs(parameters, context, feedback, tmpdir)

    def _options(self, parameters, context) -> dict:
        """The render options this algorithm has; those it lacks keep geogan's defaults."""
        has = self.parameterDefinition
        opts: dict = {}
        if has(self.DEM) is not None:
            dem = self.parameterAsRasterLayer(parameters, self.DEM, context)
            opts["dem"] = raster_file(dem, "DEM") if dem is not None else None
            style = self.parameterAsRasterLayer(parameters, self.STYLE_REF, context)
            if style is not None:
                opts["style_ref"] = raster_file(style, "style reference")
            opts.update(
                device=self.DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                tile_px=self.parameterAsInt(parameters, self.TILE_PX, context) or None,
                force=self.parameterAsBoolean(parameters, self.FORCE, context))
            overlap = self.parameterAsInt(parameters, self.OVERLAP_PX, context)
            opts["overlap_px"] = None if overlap < 0 else overlap
            compression = self.COMPRESSIONS[self.parameterAsEnum(parameters, self.COMPRESSION, context)][0]
            if compression != "deflate":  # the default: not sent, so a geogan without the option still runs
                opts["compression"] = compression
            precision = self.PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)]
            if precision != "auto":  # likewise
                opts["precision"] = precision
        if has(self.SEED) is not None:
            opts["seed"] = self.parameterAsInt(parameters, self.SEED, context)
        if self._mesh(parameters, context):  # only when asked: a geogan without it still runs
            opts["mesh"] = True
        return {**opts, **fill_kwargs(self, parameters, context)}

    def _mesh(self, parameters, context) -> bool:
        return self.parameterDefinition(self.MESH) is not None and \
            self.parameterAsBoolean(parameters, self.MESH, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out_dir = Path(self.parameterAsFileOutput(parameters, self.OUTPUT_DIR, context))
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QgsProcessingException(f"cannot create output folder '{out_dir}': "
                                         f"{exc.strerror}; choose a writable folder") from None
        names = self.OUTPUT_FILES + ((self.SCENE_FILE,) if self._mesh(parameters, context) else ())
        overwrite = self._overwrite([out_dir / n for n in names], parameters, context)
        gsd_m = None
        if parameters.get(self.GSD_M) not in (None, ""):
            gsd_m = self.parameterAsDouble(parameters, self.GSD_M, context) or None
        tmpdir = Path(tempfile.mkdtemp(prefix="geogan_qgis_"))
        try:
            kwargs = self._source_kwargs(parameters, context, feedback, tmpdir)
            if feedback.isCanceled():
                return {}
            kwargs.update(self._pixel_kwargs(parameters, context, gsd_m, feedback), out_dir=str(out_dir),
                          overwrite=overwrite, model=self._model(parameters, context),
                          **self._options(parameters, context))
            result = self._run("render", kwargs, feedback)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        write_class_style_if_missing(result["classes"], result["schema"])
        return self._load_outputs(result, out_dir, context)

    def _load_outputs(self, result: dict, out_dir: Path, context) -> dict:
        outputs = {self.OUTPUT_DIR: str(out_dir), self.SCENE: result.get("scene")}
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
                    KEEP_ALIVE.append(pp)
                    details.setPostProcessor(pp)
                context.addLayerToLoadOnCompletion(path, details)
        return outputs


class RenderExampleAlgorithm(RenderAlgorithm):
    """The render of geogan's bundled, fictional sample town: for trying geogan without data."""

    def name(self):
        return "render_example"

    def displayName(self):  # noqa: N802
        return tr("Render the example town (bundled sample data)")

    def shortHelpString(self):  # noqa: N802
        return tr(
            "Renders geogan's bundled sample town, a small fictional OpenStreetMap extract (placed in "
            "southern Finland), into aerial.tif, height.tif and classes.tif: a way to see what geogan makes "
            "before using your own data with 'Render synthetic aerial imagery'.<br><br><b>Models</b>:<br>"
            + models_help(render_models()))

    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_crs_param(default="EPSG:3857")
        self._add_gsd_and_model_params()
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.SEED, tr("Seed (same seed, same image)"), QgsProcessingParameterNumber.Integer, defaultValue=0)))
        self._add_overwrite_param()
        self._add_outputs()

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return True

    def _source_kwargs(self, parameters, context, feedback, tmpdir: Path) -> dict:
        return {"crs": self._output_crs(parameters, context), "example": True, "square_pixels": True}


def all_algorithms() -> list[QgsProcessingAlgorithm]:
    return [RasterizeAlgorithm(), RenderAlgorithm(), RenderExampleAlgorithm(), CreateSketchLayerAlgorithm(),
            MeshAlgorithm()]
