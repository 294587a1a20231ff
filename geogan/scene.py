"""A 3D scene as 3D tools expect it: one closed solid per building, a simplified terrain, placed on the globe.

``export_scene`` reads a render's ``aerial.tif`` + ``height.tif`` and the OSM (or other vector) source it
was made from, and writes one binary glTF (``scene.glb``):

* **Buildings**: every building (part) is one glTF node (name ``building/<id>``, ``extras``: its OSM id
  where the source has one, its tags, base and top heights) holding a closed solid
  (:mod:`geogan.solids`): vertical walls from one base elevation per building (the lowest ground under
  its footprint) to the roof drawn from its OSM Simple 3D Buildings tags, as in ``height.tif``. Roofs
  are textured with the aerial image; walls get a plain material coloured by ``building:colour`` (any
  CSS colour name or hex) or a neutral default. A building outline that has ``building:part``\\ s
  inside is left out: its parts describe it.
* **Terrain**: the ground as its own mesh, textured with the aerial image, simplified where flat (a
  quadtree keeps the vertices where the ground bends by more than ``terrain_tolerance_m``, then a
  Delaunay triangulation joins them without cracks). The ground is ``--dem`` when given, else it is
  estimated from ``height.tif`` (a grey-scale opening removes buildings and trees).
* **Placement**: coordinates are metres in a local east-north-up frame (:class:`geogan.enu.EnuFrame`)
  whose origin is the raster's centre on the WGS84 ellipsoid; glTF is y-up, so glTF (X, Y, Z) =
  (east, up, -north). ``asset.extras.georeference`` records the origin, the exact 4x4 transform to
  ECEF (EPSG:4978) and how heights were taken; ``ecef_root`` puts that transform on the root node so
  the file lands on the globe directly (CesiumJS, 3D Tiles tooling).

The glTF is assembled with pygltflib; the texture is embedded as JPEG.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyproj
import shapely

from .enu import GLTF_FROM_ENU, EnuFrame, gltf_to_ecef
from .errors import InputError
from .heights import BuildingHeights, building_heights, is_building_part
from .solids import Solid, building_solid

log = logging.getLogger("geogan.scene")

DEFAULT_WALL_RGB = (0.86, 0.83, 0.77)
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"


@dataclass(frozen=True)
class SceneOptions:
    """How the scene is built (all values in metres unless named otherwise)."""

    max_texture_px: int = 4096
    terrain_tolerance_m: float = 0.25
    max_terrain_px: int = 1024  # the ground is sampled on at most this many pixels per side
    ground_window_m: float = 40.0  # opening window when the ground is estimated from height.tif
    jpeg_quality: int = 90
    ecef_root: bool = False

    def __post_init__(self) -> None:
        if not (self.max_texture_px >= 16 and self.max_terrain_px >= 2):
            raise InputError("max_texture_px must be >= 16 and max_terrain_px >= 2")
        if not (math.isfinite(self.terrain_tolerance_m) and self.terrain_tolerance_m > 0):
            raise InputError(f"terrain tolerance {self.terrain_tolerance_m} must be a positive number of metres")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"JPEG quality {self.jpeg_quality} must be 1..100")


@dataclass(frozen=True)
class Building:
    """One building (part): its footprint in lon/lat, its 3-D description and what the source says of it."""

    footprint_lonlat: object
    heights: BuildingHeights
    osm_id: str | None
    tags: dict


@dataclass
class SceneReport:
    path: Path
    buildings: int
    skipped: int
    terrain_vertices: int
    bytes: int
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- buildings from the source


def _footprints_in(geom) -> list:
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type == "LineString" and geom.is_closed and shapely.get_num_coordinates(geom) >= 4:
        geom = shapely.Polygon(geom.coords)  # a closed building:part way that GDAL reports as a line
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return []
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]


def read_buildings(paths: Sequence[Path], bbox_lonlat, rules=None) -> list[Building]:
    """Buildings and building parts of the sources inside ``bbox_lonlat``, classified by the class rules."""
    from .classes import load_schema
    from .features import utm_crs_for
    from .sources import read_sources

    schema = load_schema(rules)
    building_id = schema.by_name("building").id
    report = read_sources(list(paths), bbox_lonlat, None)
    lon0, lat0 = (bbox_lonlat[0] + bbox_lonlat[2]) / 2, (bbox_lonlat[1] + bbox_lonlat[3]) / 2
    to_m = pyproj.Transformer.from_crs("EPSG:4326", utm_crs_for(lon0, lat0), always_xy=True)
    found: list[Building] = []
    for layer in report.layers:
        ids = layer.ids if len(layer.ids) == len(layer.tags) else [None] * len(layer.tags)
        for geom, tags, osm_id in zip(layer.geometries, layer.tags, ids):
            cls = schema.classify(tags, "area")
            if cls is None or cls.class_id != building_id and not is_building_part(tags):
                continue
            for poly in _footprints_in(geom):
                poly_m = shapely.transform(poly, lambda xy: np.column_stack(to_m.transform(xy[:, 0], xy[:, 1])))
                half_w = _half_width_m(poly_m)
                found.append(Building(poly, building_heights(tags, half_width_m=half_w), osm_id, dict(tags)))
    return _drop_outlines_with_parts(found)


def _half_width_m(poly_m) -> float | None:
    rect = shapely.minimum_rotated_rectangle(poly_m)
    if rect.geom_type != "Polygon":
        return None
    xy = np.asarray(rect.exterior.coords)[:3]
    return float(min(np.hypot(*(xy[1] - xy[0])), np.hypot(*(xy[2] - xy[1]))) / 2.0)


def _drop_outlines_with_parts(buildings: list[Building]) -> list[Building]:
    """Simple 3D Buildings: an outline with parts inside is drawn by its parts only."""
    parts = [b for b in buildings if b.heights.is_part]
    if not parts:
        return buildings
    tree = shapely.STRtree([shapely.point_on_surface(p.footprint_lonlat) for p in parts])
    keep = []
    for b in buildings:
        if not b.heights.is_part and len(tree.query(b.footprint_lonlat, predicate="contains")):
            continue
        keep.append(b)
    return keep


# ----------------------------------------------------------------------------- ground


def _block_min(a: np.ndarray, k: int) -> np.ndarray:
    """Running minimum over a k-wide window along both axes (edges use the window that fits)."""
    from numpy.lib.stride_tricks import sliding_window_view

    if k <= 1:
        return a
    pad = k // 2
    for axis in (0, 1):
        padded = np.pad(a, [(pad, k - 1 - pad) if ax == axis else (0, 0) for ax in (0, 1)],
                        constant_values=np.inf)
        a = sliding_window_view(padded, k, axis=axis).min(axis=-1)
    return a


def estimate_ground(surface_m: np.ndarray, pixel_m: float, window_m: float) -> np.ndarray:
    """Ground under a surface model: a grey-scale opening (min then max filter) wider than buildings and trees."""
    k = max(1, int(round(window_m / max(pixel_m, 1e-9)))) | 1  # odd: the min and max windows are symmetric
    opened = _block_min(surface_m, k)
    opened = -_block_min(-opened, k)
    return np.minimum(opened, surface_m)  # exact for ramps away from the edges; within one window's rise there


def _fill_nan(a: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(a)
    if not bad.any():
        return a
    if bad.all():
        return np.zeros_like(a)
    out = a.copy()
    out[bad] = np.nanmin(a)
    return out


def _min_pooled(ds, factor: int, classes=None, off_ground: Sequence[int] = ()) -> np.ndarray:
    """Band 1 of ``ds`` as float64, the minimum of each ``factor`` x ``factor`` block; NaN for nodata and,
    given a class raster on the same grid, for pixels of the ``off_ground`` classes (buildings, canopy)."""
    from rasterio.windows import Window

    rows = []
    for r0 in range(0, ds.height, factor):
        window = Window(0, r0, ds.width, min(factor, ds.height - r0))
        block = ds.read(1, window=window, masked=True).astype(np.float64).filled(np.nan)
        if classes is not None:
            block[np.isin(classes.read(1, window=window), list(off_ground))] = np.nan
        pad = (-block.shape[1]) % factor
        block = np.pad(block, [(0, 0), (0, pad)], constant_values=np.nan)
        cells = block.reshape(block.shape[0], -1, factor)
        with warnings.catch_warnings():  # all-NaN cells stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append(np.nanmin(np.nanmin(cells, axis=2), axis=0))
    return np.vstack(rows)


def _ground_from_classes(hds, classes_path: Path, factor: int, rules) -> np.ndarray:
    """Ground where the class map shows open ground; filled under buildings and trees (GDAL fillnodata)."""
    import rasterio
    from rasterio.fill import fillnodata

    from .classes import load_schema
    from .terrain import CanopyParams

    schema = load_schema(rules)
    off = [schema.by_name("building").id] + [schema.by_name(n).id for n in CanopyParams().heights_m]
    with rasterio.open(classes_path) as cds:
        if (cds.width, cds.height) != (hds.width, hds.height) or cds.transform != hds.transform:
            raise InputError(f"classes '{classes_path}' is not on height.tif's grid; pass the outputs of one render")
        ground = _min_pooled(hds, factor, cds, off)
    known = np.isfinite(ground)
    if not known.any():
        return np.zeros_like(ground)
    filled = fillnodata(np.where(known, ground, 0).astype(np.float32), mask=known.astype(np.uint8),
                        max_search_distance=max(ground.shape), smoothing_iterations=0)
    return filled.astype(np.float64)


def _read_ground(hds, options: SceneOptions, dem_path: Path | None, classes_path: Path | None = None,
                 rules=None):
    """(ground metres on a grid of at most max_terrain_px per side, that grid's transform).

    From ``dem_path`` when given; else from ``height.tif`` with buildings and trees removed: by the class
    map when ``classes_path`` is given (the render's classes.tif), else by a grey-scale opening.
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    factor = max(1, math.ceil(max(hds.width, hds.height) / options.max_terrain_px))
    shape = (math.ceil(hds.height / factor), math.ceil(hds.width / factor))
    transform = hds.transform * hds.transform.scale(factor, factor)
    if dem_path is not None:
        import rasterio

        ground = np.full(shape, np.nan, np.float64)
        with rasterio.open(dem_path) as dem:
            reproject(rasterio.band(dem, 1), ground, dst_transform=transform, dst_crs=hds.crs,
                      resampling=Resampling.bilinear, dst_nodata=np.nan)
        return _fill_nan(ground), transform
    if classes_path is not None:
        return _ground_from_classes(hds, classes_path, factor, rules), transform
    surface = _fill_nan(_min_pooled(hds, factor))
    pixel_m = _pixel_metres(hds.crs, transform, shape)
    return estimate_ground(surface, pixel_m, options.ground_window_m), transform


def _pixel_metres(crs, transform, shape) -> float:
    from .grid import Grid, parse_crs

    grid = Grid(parse_crs(crs.to_wkt()), transform, shape)
    gx, gy = grid.gsd_m_at(shape[0] / 2, shape[1] / 2)
    return float((gx + gy) / 2)


def sample_ground(ground: np.ndarray, transform, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear ground height at CRS points (clamped to the grid's pixel centres)."""
    col, row = ~transform * (np.asarray(x, float), np.asarray(y, float))
    c = np.clip(np.asarray(col) - 0.5, 0, ground.shape[1] - 1)
    r = np.clip(np.asarray(row) - 0.5, 0, ground.shape[0] - 1)
    c0, r0 = np.minimum(c.astype(int), ground.shape[1] - 2), np.minimum(r.astype(int), ground.shape[0] - 2)
    fc, fr = c - c0, r - r0
    top = ground[r0, c0] * (1 - fc) + ground[r0, c0 + 1] * fc
    bottom = ground[r0 + 1, c0] * (1 - fc) + ground[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


# ----------------------------------------------------------------------------- terrain


def _leaf_fits(ground: np.ndarray, r0: int, c0: int, r1: int, c1: int, tol_m: float) -> bool:
    """Whether the block's heights stay within ``tol_m`` of the bilinear surface through its corners."""
    block = ground[r0:r1 + 1, c0:c1 + 1]
    fr = np.linspace(0.0, 1.0, block.shape[0])[:, None]
    fc = np.linspace(0.0, 1.0, block.shape[1])[None, :]
    z00, z01, z10, z11 = block[0, 0], block[0, -1], block[-1, 0], block[-1, -1]
    plane = (z00 * (1 - fc) + z01 * fc) * (1 - fr) + (z10 * (1 - fc) + z11 * fc) * fr
    return float(np.abs(block - plane).max()) <= tol_m


def terrain_points(ground: np.ndarray, tol_m: float) -> np.ndarray:
    """(K, 2) row, col of the grid points a quadtree keeps: the corners of blocks that are flat within tol."""
    h, w = ground.shape
    keep = np.zeros((h, w), bool)
    stack = [(0, 0, h - 1, w - 1)]
    while stack:
        r0, c0, r1, c1 = stack.pop()
        keep[[r0, r0, r1, r1], [c0, c1, c0, c1]] = True
        if (r1 - r0 <= 1 and c1 - c0 <= 1) or _leaf_fits(ground, r0, c0, r1, c1, tol_m):
            continue
        rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
        rows = [(r0, rm), (rm, r1)] if r1 - r0 > 1 else [(r0, r1)]
        cols = [(c0, cm), (cm, c1)] if c1 - c0 > 1 else [(c0, c1)]
        stack += [(a, b, c, d) for a, c in rows for b, d in cols]
    return np.argwhere(keep)


def delaunay_faces(points_xy: np.ndarray) -> np.ndarray:
    """(T, 3) counter-clockwise triangles joining ``points_xy`` (GEOS Delaunay), as indices into it."""
    tris = shapely.get_parts(shapely.delaunay_triangles(shapely.multipoints(points_xy)))
    corners = shapely.get_coordinates(shapely.get_exterior_ring(tris)).reshape(len(tris), 4, 2)[:, :3]
    lookup = {tuple(p): i for i, p in enumerate(np.asarray(points_xy, float).tolist())}
    faces = np.array([[lookup[tuple(p)] for p in tri] for tri in corners.tolist()], dtype=np.int64).reshape(-1, 3)
    a, b, c = (points_xy[faces[:, i]] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    faces[cross < 0] = faces[cross < 0][:, ::-1]
    return faces[cross != 0]


@dataclass(frozen=True)
class MeshPart:
    """Vertices (N, 3) in ENU metres, texture coordinates (N, 2), and triangles per material."""

    enu: np.ndarray
    uv: np.ndarray
    faces: dict  # material key -> (T, 3) indices


def terrain_part(ground: np.ndarray, transform, crs, frame: EnuFrame, tol_m: float, uv_of) -> MeshPart:
    """The simplified, textured ground mesh (vertices at the kept grid points' pixel centres)."""
    rc = terrain_points(ground, tol_m)
    rows, cols = rc[:, 0].astype(float), rc[:, 1].astype(float)
    x, y = transform * (cols + 0.5, rows + 0.5)
    enu = frame.from_crs(crs, x, y, ground[rc[:, 0], rc[:, 1]])
    faces = delaunay_faces(np.column_stack([cols, -rows]))  # -rows: north up, so triangles turn ccw from above
    return MeshPart(enu, uv_of(x, y), {"aerial": faces})


def _uv(x, y, height_px: int, width_px: int, inverse) -> np.ndarray:
    col, row = inverse * (np.asarray(x, float), np.asarray(y, float))
    return np.column_stack([np.asarray(col) / width_px, np.asarray(row) / height_px]).astype(np.float32)


# ----------------------------------------------------------------------------- buildings as mesh parts

_EARTH_RADIUS_M = 6_371_000.0


def wall_rgb(tags: dict) -> tuple[float, float, float]:
    """Linear-ish RGB 0..1 of ``building:colour`` (a CSS name or hex), else the default wall colour."""
    from PIL import ImageColor

    value = str(tags.get("building:colour") or tags.get("building:color") or "").strip()
    if value:
        try:
            r, g, b = ImageColor.getrgb(value)[:3]
            return (round(r / 255, 3), round(g / 255, 3), round(b / 255, 3))
        except ValueError:
            pass
    return DEFAULT_WALL_RGB


def _base_m(footprint_lonlat, to_crs: pyproj.Transformer, ground, gtransform) -> float:
    """One base elevation per building: the lowest ground under its outline and its centre."""
    xy = shapely.get_coordinates(footprint_lonlat)
    c = footprint_lonlat.centroid
    x, y = to_crs.transform(np.r_[xy[:, 0], c.x], np.r_[xy[:, 1], c.y])
    return float(np.min(sample_ground(ground, gtransform, x, y)))


def _solid_in_enu(b: Building, frame: EnuFrame, to_crs, ground, gtransform) -> tuple[Solid, float] | None:
    def lonlat_to_en(xy):
        return frame.from_lonlat(xy[:, 0], xy[:, 1], np.zeros(len(xy)))[:, :2]

    base = _base_m(b.footprint_lonlat, to_crs, ground, gtransform)
    solid = building_solid(shapely.transform(b.footprint_lonlat, lonlat_to_en), b.heights, base)
    return None if solid is None else (solid, base)


def place_vertices(frame: EnuFrame, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ENU and lon/lat of vertices given as (east, north) on the ellipsoid plus a height ``z``.

    A vertical wall in a building's local frame stays vertical on the globe: each vertex is lifted by
    its height along the ellipsoid normal of the ground point under it.
    """
    e, n, z = local.T
    drop = -(e * e + n * n) / (2.0 * _EARTH_RADIUS_M)  # the ellipsoid under (e, n) lies this far below
    llh = frame.to_lonlat(np.column_stack([e, n, drop]))
    return frame.from_lonlat(llh[:, 0], llh[:, 1], z), llh


def building_part(b: Building, frame: EnuFrame, to_crs, ground, gtransform, uv_of) -> tuple[MeshPart, float] | None:
    """The building's solid as a mesh part: roof faces textured, walls and bottom in the wall colour."""
    made = _solid_in_enu(b, frame, to_crs, ground, gtransform)
    if made is None:
        return None
    solid, base = made
    enu, llh = place_vertices(frame, solid.vertices)
    x, y = to_crs.transform(llh[:, 0], llh[:, 1])
    faces = {"aerial": solid.faces[:solid.roof_faces], wall_rgb(b.tags): solid.faces[solid.roof_faces:]}
    return MeshPart(enu, uv_of(x, y), faces), base


# ----------------------------------------------------------------------------- glTF


def _jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class _SceneGltf:
    """pygltflib document + binary buffer; one node per mesh part, materials shared by key."""

    def __init__(self, jpeg: bytes, extras: dict):
        from . import __version__
        from .mesh import _GlbBuilder, _pygltflib

        gl = self.gl = _pygltflib()
        self.b = _GlbBuilder(gl.GLTF2(asset=gl.Asset(version="2.0", generator=f"geogan {__version__}",
                                                     extras=extras),
                                      scene=0, scenes=[gl.Scene(nodes=[0])], nodes=[gl.Node(name="geogan", children=[])]))
        self.materials: dict = {}
        self._jpeg = jpeg

    def material(self, key) -> int:
        if key not in self.materials:
            gl, gltf = self.gl, self.b.gltf
            if key == "aerial":
                gltf.images.append(gl.Image(bufferView=self.b.add_view(self._jpeg), mimeType="image/jpeg",
                                            name="aerial"))
                gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                                wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
                gltf.textures.append(gl.Texture(sampler=len(gltf.samplers) - 1, source=len(gltf.images) - 1))
                pbr = gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=len(gltf.textures) - 1),
                                              metallicFactor=0.0, roughnessFactor=1.0)
                gltf.materials.append(gl.Material(name="aerial", pbrMetallicRoughness=pbr,
                                                  extensions={"KHR_materials_unlit": {}}))
                gltf.extensionsUsed = ["KHR_materials_unlit"]
            else:
                pbr = gl.PbrMetallicRoughness(baseColorFactor=[*key, 1.0], metallicFactor=0.0, roughnessFactor=0.9)
                gltf.materials.append(gl.Material(name="wall #%02x%02x%02x" % tuple(round(c * 255) for c in key),
                                                  pbrMetallicRoughness=pbr))
            self.materials[key] = len(gltf.materials) - 1
        return self.materials[key]

    def add(self, name: str, part: MeshPart, extras: dict | None = None) -> None:
        gl, b = self.gl, self.b
        pos = (GLTF_FROM_ENU[:3, :3] @ part.enu.T).T.astype(np.float32)
        position = b.add_accessor(pos, gl.VEC3, gl.ARRAY_BUFFER, with_min_max=True)
        textured = gl.Attributes(POSITION=position, TEXCOORD_0=b.add_accessor(part.uv.astype(np.float32), gl.VEC2,
                                                                              gl.ARRAY_BUFFER))
        plain = gl.Attributes(POSITION=position)  # walls: a colour, no texture
        dtype = np.uint16 if len(pos) < 65535 else np.uint32
        prims = [gl.Primitive(attributes=textured if key == "aerial" else plain, material=self.material(key),
                              mode=gl.TRIANGLES,
                              indices=b.add_accessor(f.astype(dtype).ravel(), gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER))
                 for key, f in part.faces.items() if len(f)]
        b.gltf.meshes.append(gl.Mesh(name=name, primitives=prims))
        b.gltf.nodes.append(gl.Node(name=name, mesh=len(b.gltf.meshes) - 1, extras=extras or {}))
        b.gltf.nodes[0].children.append(len(b.gltf.nodes) - 1)

    def glb(self, root_matrix: np.ndarray | None) -> bytes:
        if root_matrix is not None:
            self.b.gltf.nodes[0].matrix = [float(v) for v in root_matrix.T.ravel()]  # glTF: column-major
        return self.b.glb()


# ----------------------------------------------------------------------------- rasters + vectors -> scene.glb


def georeference(frame: EnuFrame, crs, dem_used: bool) -> dict:
    """What a reader needs to put the scene on the globe (stored in ``asset.extras.georeference``)."""
    enu_to_ecef = frame.enu_to_ecef()
    return {
        "frame": "local east-north-up (ENU) on the WGS84 ellipsoid, metres",
        "origin_lonlat": [frame.lon_deg, frame.lat_deg],
        "origin_ellipsoidal_height_m": 0.0,
        "gltf_axes": "glTF +X = east, +Y = up, -Z = north (glTF is y-up)",
        "enu_to_ecef_row_major": [float(v) for v in enu_to_ecef.ravel()],
        "gltf_to_ecef_column_major": [float(v) for v in gltf_to_ecef(frame).T.ravel()],
        "ecef_crs": "EPSG:4978",
        "source_crs": crs.to_string(),
        "heights": ("the DEM's values used as heights above the WGS84 ellipsoid (the DEM's own vertical datum "
                    "is not converted)" if dem_used else
                    "ground estimated from height.tif (its heights used as heights above the WGS84 ellipsoid)"),
        "to_place_a_point": "ecef = enu_to_ecef @ [east, north, up, 1]; east = X, north = -Z, up = Y",
    }


def _raster_centre_lonlat(ds) -> tuple[float, float]:
    t = pyproj.Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True)
    left, bottom, right, top = ds.bounds
    lon, lat = t.transform((left + right) / 2, (bottom + top) / 2)
    return float(lon), float(lat)


def _texture(ads, max_px: int) -> np.ndarray:
    from rasterio.enums import Resampling

    scale = min(1.0, max_px / max(ads.width, ads.height))
    shape = (3, max(1, round(ads.height * scale)), max(1, round(ads.width * scale)))
    rgb = ads.read([1, 2, 3], out_shape=shape, resampling=Resampling.average if scale < 1 else Resampling.nearest)
    return np.moveaxis(rgb, 0, -1)


def _add_buildings(doc: _SceneGltf, buildings, frame, crs, ground, gtransform, uv_of) -> int:
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    added = 0
    for i, b in enumerate(buildings):
        made = building_part(b, frame, to_crs, ground, gtransform, uv_of)
        if made is None:
            continue
        part, base = made
        extras = {"osm_id": b.osm_id, "tags": b.tags, "base_m": round(base, 3),
                  "height_m": round(b.heights.height_m, 3), "min_height_m": round(b.heights.min_height_m, 3),
                  "roof_shape": b.heights.roof_shape}
        doc.add(f"building/{b.osm_id or i}", part, extras)
        added += 1
    return added


def export_scene(osm: Sequence[Path], aerial_path: Path, height_path: Path, out_path: Path, *,
                 dem_path: Path | None = None, classes_path: Path | None = None, rules: Path | None = None,
                 options: SceneOptions = SceneOptions(), overwrite: bool = False) -> SceneReport:
    """Write ``out_path`` (.glb): building solids, terrain and placement (see the module docstring).

    ``classes_path`` (the render's classes.tif; default: the one beside ``height_path`` if present) lets
    the ground be taken from ``height.tif`` outside buildings and trees when no ``dem_path`` is given.
    """
    from .mesh import _atomic_files, _open, check_raster_pair
    from .write import check_outputs

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".glb":
        raise InputError(f"--out '{out_path}' must end in .glb: building scenes are written as binary glTF")
    check_outputs([out_path], overwrite)
    with _open(aerial_path, "aerial", "aerial.tif") as ads, _open(height_path, "height", "height.tif") as hds:
        crs = check_raster_pair(ads, hds, aerial_path, height_path)
        frame = EnuFrame(*_raster_centre_lonlat(hds))
        bbox = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(*hds.bounds)
        if classes_path is None and (Path(height_path).parent / "classes.tif").is_file():
            classes_path = Path(height_path).parent / "classes.tif"
        ground, gtransform = _read_ground(hds, options, dem_path, classes_path, rules)
        inverse, size = ~hds.transform, (hds.height, hds.width)
        texture = _texture(ads, options.max_texture_px)

    def uv_of(x, y):
        return _uv(x, y, size[0], size[1], inverse)

    buildings = read_buildings(osm, bbox, rules)
    doc = _SceneGltf(_jpeg_bytes(texture, options.jpeg_quality),
                     {"georeference": georeference(frame, crs, dem_path is not None),
                      "attribution": OSM_ATTRIBUTION, "synthetic": "aerial texture generated by geogan"})
    terrain = terrain_part(ground, gtransform, crs, frame, options.terrain_tolerance_m, uv_of)
    doc.add("terrain", terrain, {"kind": "terrain"})
    added = _add_buildings(doc, buildings, frame, crs, ground, gtransform, uv_of)
    data = doc.glb(gltf_to_ecef(frame) if options.ecef_root else None)
    with _atomic_files([out_path]) as temps:
        temps[0].write_bytes(data)
    log.info("scene: %d buildings, terrain %d vertices, %.1f MB", added, len(terrain.enu), len(data) / 1e6)
    return SceneReport(out_path, added, len(buildings) - added, len(terrain.enu), len(data))

