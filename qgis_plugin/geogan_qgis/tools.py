"""Tools around a render: a sketch layer to draw a scene by hand, and a textured 3D mesh of a render."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .base import KEEP_ALIVE, SKETCH_FIELD, GeoganAlgorithm, SketchStyle, safe_name, style_sketch_layer, tr


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
        self.addParameter(QgsProcessingParameterCrs(self.CRS, tr("CRS (default: the project's)"),
                                                    defaultValue="ProjectCrs", optional=True))
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
        layer_name = safe_name(self.parameterAsString(parameters, self.LAYER_NAME, context) or "sketch")
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        if not crs.isValid():
            raise QgsProcessingException("no CRS for the sketch layer: the project has none; give CRS "
                                         "(e.g. EPSG:3857 or the UTM zone)")
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
            KEEP_ALIVE.append(pp)
            details.setPostProcessor(pp)
            context.addLayerToLoadOnCompletion(uri, details)
        return {self.OUTPUT: path}


def _mesh_files(out: str) -> list[Path]:
    """The files a mesh export writes: the .glb, or the .obj with its .mtl and texture .png."""
    out = Path(out)
    return [out] if out.suffix.lower() == ".glb" else [out, out.with_suffix(".mtl"), out.with_suffix(".png")]


def raster_file(layer, what: str) -> str:
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
        self._add_overwrite_param()
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
        overwrite = self._overwrite(_mesh_files(out), parameters, context)
        result = self._run("mesh", {
            "aerial": raster_file(aerial, "aerial image"), "height": raster_file(height, "heights"),
            "out": out, "overwrite": overwrite,
            "exaggeration": self.parameterAsDouble(parameters, self.EXAGGERATION, context),
            "max_vertices": self.parameterAsInt(parameters, self.MAX_VERTICES, context),
            "max_texture": self.parameterAsInt(parameters, self.MAX_TEXTURE, context),
        }, feedback)
        return {self.OUTPUT: result["mesh"]}
