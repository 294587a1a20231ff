"""The features the user chose, handed to geogan as GeoPackages.

A layer goes to geogan as exactly the features QGIS shows for it: its subset
filter (Layer Properties > Source > Query Builder), and for the INPUT parameter
"Selected features only" and the feature limit, are applied by QGIS's own
feature iteration; those features are written to a temporary GeoPackage.

OSM layers read by GDAL (from .osm/.pbf) keep only some keys as columns and put
every other tag into one hstore column, ``other_tags``; geogan would not parse
it in a GeoPackage, so its keys become columns of their own here (a building
tagged ``building:part`` or ``building:levels`` keeps its class and height).

A mask (polygons) clips what is written: features outside it are left out, features across its
edge are cut at it (like Vector > Geoprocessing > Clip).
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsHstoreUtils,
    QgsProcessingException,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

OSM_TAGS_FIELD = "other_tags"
LONLAT = QgsCoordinateReferenceSystem("EPSG:4326")
_RESERVED = {"fid", "geom", "geometry", OSM_TAGS_FIELD}  # GPKG owns fid and geom
MAX_FIELDS = 1900  # SQLite allows 2000 columns per table
MARGIN_DEG = 0.02  # features this far (about 2 km) around the extent are kept: tiles look past the edges


def crs_text(crs: QgsCoordinateReferenceSystem) -> str | None:
    """A CRS as text pyproj understands: the authority id, else WKT2."""
    if not crs.isValid():
        return None
    auth = crs.authid()
    if auth and not auth.upper().startswith("USER:"):
        return auth
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


@dataclass
class Chosen:
    """One vector input: a thread-safe feature source (selection and filter applied) and its description."""

    source: object  # QgsFeatureSource: QgsProcessingFeatureSource or QgsVectorLayerFeatureSource
    fields: QgsFields
    crs: QgsCoordinateReferenceSystem
    name: str


@dataclass
class Mask:
    """The union of the mask polygons, in ``crs``."""

    geometry: QgsGeometry
    crs: QgsCoordinateReferenceSystem
    name: str

    def in_crs(self, crs: QgsCoordinateReferenceSystem, context) -> QgsGeometry:
        geom = QgsGeometry(self.geometry)
        if crs.isValid() and self.crs.isValid() and crs != self.crs:
            geom.transform(QgsCoordinateTransform(self.crs, crs, context.transformContext()))
        return geom


def read_mask(source, name: str, feedback) -> Mask:
    """The mask polygons of ``source`` (its filter and selection applied) as one geometry."""
    polygons = []
    for feat in source.getFeatures():
        if feedback.isCanceled():
            break
        geom = feat.geometry()
        if not geom.isNull() and not geom.isEmpty():
            polygons.append(geom.makeValid())
    union = QgsGeometry.unaryUnion(polygons) if polygons else QgsGeometry()
    if union.isNull() or union.isEmpty() or union.area() <= 0:
        raise QgsProcessingException(f"the mask '{name}' has no polygons (an empty layer, or 'Selected features "
                                     "only' with nothing selected?); choose mask polygons, or leave MASK empty")
    return Mask(union, source.sourceCrs(), name)


class _Clip:
    """Features cut to a polygon (prepared once for the many tests)."""

    def __init__(self, polygon: QgsGeometry):
        self.polygon = polygon
        self.engine = QgsGeometry.createGeometryEngine(polygon.constGet())
        self.engine.prepareGeometry()

    def __call__(self, geom: QgsGeometry) -> QgsGeometry | None:
        """The part of ``geom`` inside the polygon (of the same kind: polygons stay polygons), or None."""
        if not self.engine.intersects(geom.constGet()):
            return None
        if self.engine.contains(geom.constGet()):
            return geom
        part = geom.intersection(self.polygon)
        if part.type() != geom.type() and part.isMultipart():
            part.convertGeometryCollectionToSubclass(geom.type())
        if part.isNull() or part.isEmpty() or part.type() != geom.type():
            return None  # it only touches the mask's edge
        return part


@dataclass
class Exported:
    path: str
    count: int
    extent_lonlat: QgsRectangle  # of the written features (null when none)


def area_request(extent: QgsRectangle | None, extent_crs: QgsCoordinateReferenceSystem,
                 layer_crs: QgsCoordinateReferenceSystem, context) -> QgsFeatureRequest:
    """Features around ``extent`` (plus MARGIN_DEG), or all of them without an extent."""
    request = QgsFeatureRequest()
    if extent is None or not layer_crs.isValid():
        return request
    to_lonlat = QgsCoordinateTransform(extent_crs, LONLAT, context.transformContext())
    box = to_lonlat.transformBoundingBox(extent)
    margin = max(MARGIN_DEG, 0.5 * max(box.width(), box.height()))
    box = QgsRectangle(box.xMinimum() - margin, max(-90.0, box.yMinimum() - margin),
                       box.xMaximum() + margin, min(90.0, box.yMaximum() + margin))
    to_layer = QgsCoordinateTransform(LONLAT, layer_crs, context.transformContext())
    try:
        request.setFilterRect(to_layer.transformBoundingBox(box))
    except Exception:  # noqa: BLE001 - an extent the layer's CRS cannot hold: read everything
        pass
    return request


def tag_keys(source, request: QgsFeatureRequest, fields: QgsFields, feedback) -> list[str]:
    """The OSM keys in ``other_tags`` of the chosen features that are not columns already."""
    if fields.indexOf(OSM_TAGS_FIELD) < 0:
        return []
    taken = {f.name().lower() for f in fields} | _RESERVED
    keys: dict[str, str] = {}
    req = QgsFeatureRequest(request).setFlags(QgsFeatureRequest.NoGeometry)
    req.setSubsetOfAttributes([fields.indexOf(OSM_TAGS_FIELD)])
    for feat in source.getFeatures(req):
        if feedback.isCanceled():
            break
        for key in QgsHstoreUtils.parse(str(feat[OSM_TAGS_FIELD] or "")):
            if key.lower() not in taken:
                keys.setdefault(key.lower(), key)
    return sorted(keys.values())


def _out_fields(fields: QgsFields, keys: list[str]) -> QgsFields:
    out = QgsFields()
    for f in fields:
        if f.name().lower() not in _RESERVED:
            out.append(QgsField(f))
    for key in keys:
        out.append(QgsField(key, QVariant.String, "string"))
    return out


def _writer(path: str, fields: QgsFields, chosen: Chosen, layer_name: str, context):
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer_name
    options.fileEncoding = "UTF-8"
    # geometry type GEOMETRY: layers may mix polygons and lines (GeoJSON, memory)
    writer = QgsVectorFileWriter.create(path, fields, QgsWkbTypes.Unknown, chosen.crs,
                                        context.transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"cannot export layer '{chosen.name}' for geogan: {writer.errorMessage()}")
    return writer


def export_chosen(chosen: Chosen, path: str, layer_name: str, request: QgsFeatureRequest,
                  context, feedback, mask: Mask | None = None) -> Exported:
    """Write the features of ``chosen`` that ``request`` selects (cut to ``mask``) to a GeoPackage at ``path``."""
    keys = tag_keys(chosen.source, request, chosen.fields, feedback)
    fields = _out_fields(chosen.fields, keys)
    if len(fields) > MAX_FIELDS:
        raise QgsProcessingException(
            f"layer '{chosen.name}' has {len(fields)} distinct attributes and OSM keys, more than a GeoPackage "
            f"holds ({MAX_FIELDS}); choose fewer features (a smaller extent, a filter or a selection)")
    own = [f.name() for f in chosen.fields if f.name().lower() not in _RESERVED]
    has_tags = chosen.fields.indexOf(OSM_TAGS_FIELD) >= 0
    clip = _Clip(mask.in_crs(chosen.crs, context)) if mask is not None else None
    writer = _writer(path, fields, chosen, layer_name, context)
    count, extent = 0, QgsRectangle()
    extent.setMinimal()
    for feat in chosen.source.getFeatures(request):
        if feedback.isCanceled():
            break
        geom = feat.geometry()
        if geom.isNull() or geom.isEmpty():
            continue
        if clip is not None:
            geom = clip(geom)
            if geom is None:
                continue
        tags = QgsHstoreUtils.parse(str(feat[OSM_TAGS_FIELD] or "")) if has_tags else {}
        out = QgsFeature(fields)
        out.setGeometry(geom)
        out.setAttributes([feat[n] for n in own] + [tags.get(k) for k in keys])
        writer.addFeature(out)
        extent.combineExtentWith(geom.boundingBox())
        count += 1
    del writer
    return Exported(path, count, _to_lonlat(extent, chosen.crs, context) if count else QgsRectangle())


def _to_lonlat(extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, context) -> QgsRectangle:
    if not crs.isValid():
        return extent  # geogan takes a layer without a CRS as lon/lat too (and says so)
    return QgsCoordinateTransform(crs, LONLAT, context.transformContext()).transformBoundingBox(extent)


def union_lonlat(extents: list[QgsRectangle]) -> list[float] | None:
    """xmin, ymin, xmax, ymax in lon/lat around all non-null ``extents``, or None."""
    boxes = [e for e in extents if not e.isNull()]
    if not boxes:
        return None
    total = QgsRectangle(boxes[0])
    for box in boxes[1:]:
        total.combineExtentWith(box)
    return [total.xMinimum(), total.yMinimum(), total.xMaximum(), total.yMaximum()]
