"""3D export: a textured terrain mesh (OBJ or binary glTF) from ``aerial.tif`` + ``height.tif``.

The mesh is a regular grid of triangles, one vertex per sampled *pixel centre*
of the height raster (every ``step``-th row and column, plus always the last
row and column so the mesh spans the whole raster), textured with the aerial
image through a UV per vertex.

Coordinates (decisions, also written into every output's metadata):

* **Origin**: the raster's **lower-left corner** (the outer corner of the
  bottom-left pixel, i.e. ``(left, bottom)`` of the raster bounds). Model
  coordinates are **ground metres** from that corner: x grows east, y grows
  north, so every vertex has x, y > 0 (the first vertex lies half a pixel in).
  Ground metres per pixel come from PROJ's local scale at the raster centre
  (:meth:`geogan.grid.Grid.gsd_m_at`), so EPSG:4326 (degrees) and EPSG:3857
  rasters are not distorted. To place the mesh back in the CRS::

      crs_x = origin_x + x * crs_units_per_metre_x
      crs_y = origin_y + y * crs_units_per_metre_y

  (one scale for the whole raster: exact for a small area, an approximation
  over hundreds of kilometres).
* **Heights**: z = height (metres) x exaggeration.
* **Axes**: :func:`grid_mesh` and OBJ output are z-up (x east, y north, z up,
  like the CRS). glTF is y-up by specification, so :func:`write_glb` stores
  (x, z, -y): glTF +X = east, +Y = up, -Z = north.
* **Nodata** (the raster's nodata value, -9999 in geogan's ``height.tif``, or
  NaN/inf): every triangle that touches a nodata vertex is **dropped**, so gaps
  stay holes instead of cliffs. The nodata vertices stay in the vertex arrays
  (the grid stays regular: N = rows x cols) with z set to the **minimum valid
  height**, so bounding boxes and accessor min/max are not polluted by -9999.
* **UVs**: u = (col + 0.5) / width, v = (row + 0.5) / height with the origin
  at the image's top-left corner (glTF's convention); the OBJ writer flips v
  (OBJ's origin is bottom-left). A downsampled texture covers the same bounds,
  so UVs stay aligned.

Georeferencing metadata: glTF ``asset.extras`` (CRS WKT, origin, scale, axes),
a ``# ...`` comment block at the top of the OBJ, and a sidecar ``.prj`` (ESRI
WKT) next to either output.

The GLB is assembled with pygltflib (``GLTF2`` buffer views, accessors, an
unlit material with the PNG texture embedded); OBJ + MTL are plain text.

Outputs are written to hidden ``.NAME.partial`` files and renamed into place
only when every file of the set is complete; on error they are removed.
"""

from __future__ import annotations

import io
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import InputError, RenderError

log = logging.getLogger("geogan.mesh")

DEFAULT_MAX_VERTICES = 1_000_000
DEFAULT_MAX_TEXTURE = 4096
SUFFIXES = (".obj", ".glb")
_ROW_BLOCK = 256  # raster rows read at a time when sampling the height raster


# --------------------------------------------------------------------------- grid maths


def sample_index(n: int, step: int) -> np.ndarray:
    """Pixel indices sampled along an axis of ``n`` pixels: 0, step, 2*step, ... and always n - 1."""
    if n < 1 or step < 1:
        raise InputError(f"cannot sample {n} pixels with step {step}; the step must be >= 1")
    idx = np.arange(0, n, step, dtype=np.int64)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx


def vertex_count(shape_yx: tuple[int, int], step: int) -> int:
    """Number of mesh vertices for a raster of ``shape_yx`` pixels sampled every ``step`` pixels."""
    h, w = shape_yx
    return (math.ceil((h - 1) / step) + 1) * (math.ceil((w - 1) / step) + 1)


def choose_step(shape_yx: tuple[int, int], max_vertices: int = DEFAULT_MAX_VERTICES) -> int:
    """The smallest grid step whose mesh has at most ``max_vertices`` vertices.

    A 4096 x 4096 raster with the default 1,000,000 gives step 5 (672,400 vertices).
    """
    h, w = (int(v) for v in shape_yx)
    if h < 2 or w < 2:
        raise InputError(f"the height raster is {w}x{h} px; a mesh needs at least 2x2 pixels")
    if max_vertices < 4:
        raise InputError(f"--max-vertices {max_vertices} is too small; give at least 4")
    step = max(1, int(math.sqrt(h * w / max_vertices)))  # count(k) >= h*w/k**2, so no smaller step fits
    while vertex_count((h, w), step) > max_vertices:
        step += 1
    return step


def _mesh_from_samples(z: np.ndarray, rows: np.ndarray, cols: np.ndarray, full_shape: tuple[int, int],
                       pixel_size_m: tuple[float, float],
                       exaggeration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mesh from heights ``z`` (nr, nc) sampled at raster ``rows`` x ``cols``; NaN = nodata."""
    h, w = full_shape
    px, py = (float(v) for v in pixel_size_m)
    if not (math.isfinite(px) and math.isfinite(py) and px > 0 and py > 0):
        raise InputError(f"pixel size {pixel_size_m} m must be two positive numbers")
    if not (math.isfinite(exaggeration) and exaggeration > 0):
        raise InputError(f"--exaggeration {exaggeration} must be a positive number, e.g. 1.0 or 2.5")
    nr, nc = len(rows), len(cols)
    if nr < 2 or nc < 2:
        raise InputError(f"the height raster is {w}x{h} px; a mesh needs at least 2x2 pixels")
    z = np.asarray(z, dtype=np.float64)
    valid = np.isfinite(z)
    if not valid.any():
        raise InputError("the height raster holds no valid heights (all nodata); pass a height.tif with data")
    zmin = float(z[valid].min())
    zz = np.where(valid, z, zmin) * float(exaggeration)

    xs = (cols.astype(np.float64) + 0.5) * px
    ys = (h - rows.astype(np.float64) - 0.5) * py
    gx, gy = np.meshgrid(xs, ys)
    vertices = np.column_stack([gx.ravel(), gy.ravel(), zz.ravel()]).astype(np.float32)
    gu, gv = np.meshgrid((cols + 0.5) / w, (rows + 0.5) / h)
    uvs = np.column_stack([gu.ravel(), gv.ravel()]).astype(np.float32)

    idx = np.arange(nr * nc, dtype=np.uint32).reshape(nr, nc)
    nw, ne, sw, se = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # counter-clockwise seen from above (+z): SW-SE-NE and SW-NE-NW
    tris = np.stack([np.stack([sw, se, ne], -1), np.stack([sw, ne, nw], -1)], axis=2).reshape(-1, 3)
    ok = valid.ravel()
    faces = tris[ok[tris].all(axis=1)]
    return vertices, uvs, np.ascontiguousarray(faces, dtype=np.uint32)


def grid_mesh(height_m: np.ndarray, pixel_size_m: tuple[float, float], step: int = 1,
              exaggeration: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular-grid triangle mesh of a height raster.

    height_m : (rows, cols) heights in metres; NaN/inf mark nodata.
    pixel_size_m : ground metres per pixel along x (columns) and y (rows).
    step : sample every ``step``-th pixel (the last row/column is always kept).
    exaggeration : z = height x exaggeration.

    Returns ``vertices`` float32 (N, 3) in metres (x east, y north from the
    raster's lower-left corner, z up), ``uvs`` float32 (N, 2) (origin top-left)
    and ``faces`` uint32 (M, 3), counter-clockwise seen from above. Triangles
    touching nodata are dropped; nodata vertices get the minimum valid height.
    """
    a = np.asarray(height_m)
    if a.ndim != 2:
        raise InputError(f"height array has shape {a.shape}; give a 2-D (rows, cols) array")
    rows, cols = sample_index(a.shape[0], int(step)), sample_index(a.shape[1], int(step))
    return _mesh_from_samples(a[np.ix_(rows, cols)], rows, cols, a.shape, pixel_size_m, exaggeration)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals, float32 (N, 3); unreferenced vertices get +z."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = np.zeros_like(v)
    if len(f):
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        flat = f.ravel()
        for k in range(3):
            n[:, k] = np.bincount(flat, weights=np.repeat(fn[:, k], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1)
    bad = length <= 1e-12
    n[bad] = (0.0, 0.0, 1.0)
    length[bad] = 1.0
    return (n / length[:, None]).astype(np.float32)


# --------------------------------------------------------------------------- georeference


@dataclass(frozen=True)
class Georef:
    """Where the mesh sits: model (x, y) metres -> CRS = origin + (x, y) * crs_units_per_metre."""

    crs_wkt: str
    origin: tuple[float, float]
    crs_units_per_metre: tuple[float, float]
    crs_name: str = ""
    prj_wkt: str = ""
    exaggeration: float = 1.0
    origin_lonlat: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self, axes: str) -> dict:
        d = {
            "crs": self.crs_name,
            "crs_wkt": self.crs_wkt,
            "origin": list(self.origin),
            "origin_is": "lower-left corner of the raster (left, bottom), in CRS units",
            "crs_units_per_metre": list(self.crs_units_per_metre),
            "units": "metre",
            "axes": axes,
            "z_exaggeration": self.exaggeration,
        }
        if self.origin_lonlat is not None:
            d["origin_lonlat"] = list(self.origin_lonlat)
        d.update(self.extra)
        return d


_GLB_AXES = ("glTF +X = east, +Y = up, -Z = north; crs_x = origin[0] + X * crs_units_per_metre[0], "
             "crs_y = origin[1] - Z * crs_units_per_metre[1]")
_OBJ_AXES = ("x = east, y = north, z = up; crs_x = origin[0] + x * crs_units_per_metre[0], "
             "crs_y = origin[1] + y * crs_units_per_metre[1]")


# --------------------------------------------------------------------------- atomic file sets


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


@contextmanager
def _atomic_files(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths``; rename them all into place on success (in order), else delete."""
    temps = [_partial(Path(p)) for p in paths]
    try:
        yield temps
        for tmp, final in zip(temps, paths):
            os.replace(tmp, final)
    except OSError as exc:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise RenderError(f"writing '{paths[-1]}' failed ({exc.strerror or exc}); "
                          "check free disk space and permissions") from None
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def _texture_array(texture: np.ndarray) -> np.ndarray:
    t = np.asarray(texture)
    if t.ndim == 3 and t.shape[0] in (3, 4) and t.shape[2] not in (3, 4):
        t = np.moveaxis(t, 0, -1)  # bands-first (rasterio) -> bands-last
    if t.ndim != 3 or t.shape[2] not in (3, 4) or t.dtype != np.uint8:
        raise InputError(f"texture has shape {t.shape} and dtype {t.dtype}; give an (H, W, 3) uint8 RGB image")
    return np.ascontiguousarray(t[..., :3])


def _png_bytes(texture: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_texture_array(texture), "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _check_mesh(vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray,
                normals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    t = np.ascontiguousarray(uvs, dtype=np.float32)
    f = np.ascontiguousarray(faces, dtype=np.uint32)
    if v.ndim != 2 or v.shape[1] != 3 or t.shape != (len(v), 2) or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"mesh arrays have shapes {v.shape}, {t.shape}, {f.shape}; "
                         "give vertices (N, 3), uvs (N, 2) and faces (M, 3)")
    if len(f) == 0:
        raise InputError("the mesh has no triangles (every triangle touches nodata); "
                         "pass a height raster with valid heights or a smaller --step")
    if int(f.max()) >= len(v):
        raise InputError(f"face index {int(f.max())} is out of range for {len(v)} vertices")
    n = None if normals is None else np.ascontiguousarray(normals, dtype=np.float32)
    if n is not None and n.shape != v.shape:
        raise InputError(f"normals have shape {n.shape}; give one (N, 3) normal per vertex")
    return v, t, f, n


def _write_prj(path: Path, georef: Georef) -> None:
    path.write_text((georef.prj_wkt or georef.crs_wkt) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- OBJ


def _write_rows(fh, fmt: str, arr: np.ndarray, chunk: int = 65536) -> None:
    for i in range(0, len(arr), chunk):
        part = arr[i:i + chunk]
        fh.write((fmt * len(part)) % tuple(part.ravel().tolist()))


def obj_sidecars(path: Path, georef: bool = True) -> list[Path]:
    """Files an OBJ export writes: ``.png``, ``.mtl``, (``.prj``) and the ``.obj`` itself (last)."""
    path = Path(path)
    out = [path.with_suffix(".png"), path.with_suffix(".mtl")]
    if georef:
        out.append(path.with_suffix(".prj"))
    return out + [path]


def write_obj(path: Path, vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray, texture: np.ndarray, *,
              normals: np.ndarray | None = None, georef: Georef | None = None) -> Path:
    """Write ``path`` (.obj) with ``.mtl``, ``.png`` texture and, given ``georef``, a ``.prj`` beside it.

    Arrays as returned by :func:`grid_mesh` (z-up; written as is). Faces are
    ``f v/vt`` or, with ``normals``, ``f v/vt/vn`` (1-based). Existing files are replaced.
    """
    path = Path(path)
    v, t, f, n = _check_mesh(vertices, uvs, faces, normals)
    png = _png_bytes(texture)
    finals = obj_sidecars(path, georef is not None)
    png_path, mtl_path = finals[0], finals[1]
    with _atomic_files(finals) as temps:
        temps[0].write_bytes(png)
        temps[1].write_text(
            "# geogan terrain material\n"
            "newmtl aerial\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
            f"d 1.0\nillum 1\nmap_Kd {png_path.name}\n", encoding="utf-8")
        if georef is not None:
            _write_prj(temps[2], georef)
        with open(temps[-1], "w", encoding="utf-8", newline="\n") as fh:
            fh.write(f"# geogan terrain mesh: {len(v)} vertices, {len(f)} triangles\n")
            if georef is not None:
                for key, value in georef.to_dict(_OBJ_AXES).items():
                    text = " ".join(str(x) for x in value) if isinstance(value, list) else str(value)
                    fh.write(f"# {key}: {' '.join(text.split())}\n")
            fh.write(f"mtllib {mtl_path.name}\no terrain\n")
            _write_rows(fh, "v %.4f %.4f %.4f\n", v)
            uv = t.astype(np.float64)
            uv[:, 1] = 1.0 - uv[:, 1]  # OBJ's texture origin is bottom-left
            _write_rows(fh, "vt %.7f %.7f\n", uv)
            if n is not None:
                _write_rows(fh, "vn %.5f %.5f %.5f\n", n)
            fh.write("usemtl aerial\n")
            f1 = f.astype(np.int64) + 1
            if n is not None:
                _write_rows(fh, "f %d/%d/%d %d/%d/%d %d/%d/%d\n", np.repeat(f1, 3, axis=1))
            else:
                _write_rows(fh, "f %d/%d %d/%d %d/%d\n", np.repeat(f1, 2, axis=1))
    return path


# --------------------------------------------------------------------------- glTF (binary)

_UINT16_MAX_VERTICES = 65535  # uint16 index 65535 is glTF's reserved primitive-restart value


def _pygltflib():
    """The pygltflib module (imported on first use: it is only needed for .glb output)."""
    try:
        import pygltflib
    except ImportError:
        raise RenderError("writing .glb needs pygltflib, a geogan dependency that is missing here; "
                          "pip install 'pygltflib>=1.16' (or write .obj)") from None
    return pygltflib


def _to_y_up(xyz: np.ndarray) -> np.ndarray:
    """z-up (x east, y north, z up) -> glTF y-up: (x, y, z) -> (x, z, -y)."""
    return np.ascontiguousarray(np.column_stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]]), dtype=np.float32)


class _GlbBuilder:
    """A pygltflib ``GLTF2`` plus the one binary buffer its buffer views point into (4-byte aligned)."""

    def __init__(self, gltf):
        self.gl = _pygltflib()
        self.gltf = gltf
        self.blob = bytearray()

    def add_view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.gltf.bufferViews.append(self.gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data),
                                                        target=target))
        self.blob.extend(data)
        return len(self.gltf.bufferViews) - 1

    def add_accessor(self, arr: np.ndarray, accessor_type: str, target: int, with_min_max: bool = False) -> int:
        """An accessor over ``arr`` (float32 VEC2/VEC3 rows, or a flat uint16/uint32 SCALAR index array)."""
        gl = self.gl
        component = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint16): gl.UNSIGNED_SHORT,
                     np.dtype(np.uint32): gl.UNSIGNED_INT}[arr.dtype]
        count = int(arr.size) if accessor_type == gl.SCALAR else int(arr.shape[0])
        acc = gl.Accessor(bufferView=self.add_view(np.ascontiguousarray(arr).tobytes(), target),
                          componentType=component, count=count, type=accessor_type)
        if with_min_max:
            acc.min = [float(x) for x in arr.min(axis=0)]
            acc.max = [float(x) for x in arr.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def add_unlit_texture_material(self, png: bytes) -> int:
        """A material showing the embedded PNG as base colour, unlit (the photo already holds its lighting)."""
        gl, gltf = self.gl, self.gltf
        gltf.images.append(gl.Image(bufferView=self.add_view(png), mimeType="image/png", name="aerial"))
        gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                        wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
        gltf.textures.append(gl.Texture(sampler=len(gltf.samplers) - 1, source=len(gltf.images) - 1))
        gltf.materials.append(gl.Material(
            name="aerial",
            pbrMetallicRoughness=gl.PbrMetallicRoughness(
                baseColorTexture=gl.TextureInfo(index=len(gltf.textures) - 1), metallicFactor=0.0,
                roughnessFactor=1.0),
            extensions={"KHR_materials_unlit": {}}))
        gltf.extensionsUsed = ["KHR_materials_unlit"]
        return len(gltf.materials) - 1

    def glb(self) -> bytes:
        """The binary glTF: pygltflib writes the header, the JSON chunk and the BIN chunk."""
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.gltf.buffers = [self.gl.Buffer(byteLength=len(self.blob))]
        self.gltf.set_binary_blob(bytes(self.blob))
        return b"".join(self.gltf.save_to_bytes())


def glb_bytes(vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray, texture: np.ndarray, *,
              normals: np.ndarray | None = None, georef: Georef | None = None, name: str = "terrain") -> bytes:
    """A binary glTF 2.0 file, built with pygltflib: one mesh (POSITION, NORMAL, TEXCOORD_0, indices)
    with one unlit material textured by an embedded PNG.

    Input arrays are z-up (as from :func:`grid_mesh`); they are stored y-up
    as the glTF spec requires: (x, y, z) -> (x, z, -y). Indices are uint16
    when there are at most 65,535 vertices, else uint32. ``georef`` goes to
    ``asset.extras``.
    """
    from . import __version__

    gl = _pygltflib()
    v, t, f, n = _check_mesh(vertices, uvs, faces, normals)
    index_dtype = np.uint16 if len(v) <= _UINT16_MAX_VERTICES else np.uint32
    asset = gl.Asset(version="2.0", generator=f"geogan {__version__}")
    if georef is not None:
        asset.extras = georef.to_dict(_GLB_AXES)
    b = _GlbBuilder(gl.GLTF2(asset=asset, scene=0, scenes=[gl.Scene(nodes=[0])],
                             nodes=[gl.Node(mesh=0, name=name)]))

    attributes = gl.Attributes(POSITION=b.add_accessor(_to_y_up(v), gl.VEC3, gl.ARRAY_BUFFER, with_min_max=True))
    if n is not None:
        attributes.NORMAL = b.add_accessor(_to_y_up(n), gl.VEC3, gl.ARRAY_BUFFER)
    attributes.TEXCOORD_0 = b.add_accessor(t, gl.VEC2, gl.ARRAY_BUFFER)
    indices = b.add_accessor(f.astype(index_dtype).ravel(), gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER)
    material = b.add_unlit_texture_material(_png_bytes(texture))
    b.gltf.meshes.append(gl.Mesh(name=name, primitives=[
        gl.Primitive(attributes=attributes, indices=indices, material=material, mode=gl.TRIANGLES)]))
    return b.glb()


def write_glb(path: Path, vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray, texture: np.ndarray, *,
              normals: np.ndarray | None = None, georef: Georef | None = None) -> Path:
    """Write a binary glTF (see :func:`glb_bytes`) and, given ``georef``, a ``.prj`` beside it."""
    path = Path(path)
    data = glb_bytes(vertices, uvs, faces, texture, normals=normals, georef=georef, name=path.stem or "terrain")
    finals = ([path.with_suffix(".prj")] if georef is not None else []) + [path]
    with _atomic_files(finals) as temps:
        if georef is not None:
            _write_prj(temps[0], georef)
        temps[-1].write_bytes(data)
    return path


# --------------------------------------------------------------------------- rasters -> mesh file


def output_paths(out_path: Path) -> list[Path]:
    """Every file ``export_mesh`` writes for ``out_path`` (the main file last)."""
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"--out '{out_path}' has an unsupported suffix '{out_path.suffix}'; "
                         "use .obj (with .mtl + .png) or .glb (binary glTF)")
    if suffix == ".obj":
        return obj_sidecars(out_path)
    return [out_path.with_suffix(".prj"), out_path]


def _open(path: Path, what: str, hint: str):
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.exists():
        raise InputError(f"--{what} '{path}' does not exist; pass the {hint} written by 'geogan render'")
    if path.is_dir():
        raise InputError(f"--{what} '{path}' is a directory; pass the {hint} file")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"--{what} '{path}' is not a readable raster ({first}); pass a GeoTIFF") from None


def _read_height_samples(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Heights at ``rows`` x ``cols`` as float64 with NaN for nodata, reading a block of rows at a time."""
    from rasterio.windows import Window

    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    nodata = ds.nodata
    i = 0
    for start in range(0, ds.height, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, ds.height)
        sel = rows[(rows >= start) & (rows < stop)]
        if not len(sel):
            continue
        block = ds.read(1, window=Window(0, start, ds.width, stop - start))
        out[i:i + len(sel)] = block[np.ix_(sel - start, cols)]
        i += len(sel)
    if nodata is not None and not math.isnan(nodata):
        out[out == nodata] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def _same_bounds(a, b) -> bool:
    tol = 0.01 * min(abs(a.transform.a), abs(a.transform.e), abs(b.transform.a), abs(b.transform.e))
    return all(abs(x - y) <= tol for x, y in zip(a.bounds, b.bounds))


def _fmt_bounds(ds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in ds.bounds) + ")"


def check_raster_pair(ads, hds, aerial_path: Path, height_path: Path):
    """Check that an open aerial (RGB, 8 bit) and height (1 band) raster pair from one render fit together;
    returns their CRS (a pyproj CRS). One-line InputErrors name what is wrong and the fix."""
    from .grid import parse_crs

    swap = " (did you swap --aerial and --height?)" if ads.count == 1 and hds.count >= 3 else ""
    if ads.count not in (3, 4):
        raise InputError(f"--aerial '{aerial_path}' has {ads.count} band(s); it needs 3 (RGB){swap}")
    if hds.count != 1:
        raise InputError(f"--height '{height_path}' has {hds.count} bands; it needs 1 (heights in metres){swap}")
    if ads.dtypes[0] != "uint8":
        raise InputError(f"--aerial '{aerial_path}' is {ads.dtypes[0]}; it needs 8-bit RGB "
                         "(convert with gdal_translate -ot Byte -scale)")
    if hds.crs is None or ads.crs is None:
        which = "height" if hds.crs is None else "aerial"
        raise InputError(f"--{which} '{height_path if which == 'height' else aerial_path}' has no CRS; "
                         "pass georeferenced GeoTIFFs (e.g. from 'geogan render')")
    hcrs, acrs = parse_crs(hds.crs.to_wkt()), parse_crs(ads.crs.to_wkt())
    if hcrs != acrs:
        raise InputError(f"--aerial is in {acrs.to_string()} but --height in {hcrs.to_string()}; "
                         "pass the pair from one render (or gdalwarp one onto the other's grid)")
    for ds, what in ((hds, "height"), (ads, "aerial")):
        tr = ds.transform
        if tr.b != 0 or tr.d != 0 or tr.a <= 0 or tr.e >= 0:
            raise InputError(f"--{what} has a rotated or flipped grid; warp it north-up first (gdalwarp)")
    if not _same_bounds(hds, ads):
        raise InputError(f"--aerial and --height cover different areas ({_fmt_bounds(ads)} vs "
                         f"{_fmt_bounds(hds)}); pass the aerial.tif and height.tif of the same render")
    return hcrs


def _check_mesh_options(step: int | None, max_texture: int, exaggeration: float) -> None:
    if step is not None and int(step) < 1:
        raise InputError(f"--step {step} must be 1 or more")
    if max_texture < 16:
        raise InputError(f"--max-texture {max_texture} is too small; give at least 16 (e.g. 4096)")
    if not (math.isfinite(exaggeration) and exaggeration > 0):
        raise InputError(f"--exaggeration {exaggeration} must be a positive number, e.g. 1.0 or 2.5")


def _read_texture(ads, max_texture: int) -> np.ndarray:
    """The aerial image as (rows, cols, 3) uint8, averaged down to at most ``max_texture`` px on its longer side."""
    from rasterio.enums import Resampling

    scale = min(1.0, max_texture / max(ads.width, ads.height))
    th, tw = max(1, round(ads.height * scale)), max(1, round(ads.width * scale))
    texture = ads.read([1, 2, 3], out_shape=(3, th, tw),
                       resampling=Resampling.average if scale < 1 else Resampling.nearest)
    return np.moveaxis(texture, 0, -1)


def _prj_wkt(crs) -> str:
    """The CRS as the WKT1 a ``.prj`` holds (ESRI flavour, else GDAL's; "" when WKT1 cannot express it)."""
    try:
        return crs.to_wkt("WKT1_ESRI") or crs.to_wkt("WKT1_GDAL") or ""
    except Exception:  # pragma: no cover - a CRS that WKT1 cannot express
        return ""


def _lonlat_or_none(crs, x: float, y: float) -> tuple[float, float] | None:
    """(lon, lat) in degrees of the point (x, y) of ``crs``, or None when it has none."""
    try:
        from .grid import _to_lonlat

        lon, lat = _to_lonlat(crs).transform(x, y)
    except Exception:  # pragma: no cover
        return None
    return (float(lon), float(lat)) if math.isfinite(lon) and math.isfinite(lat) else None


def _georef(crs, grid, gsd_xy: tuple[float, float], step: int, exaggeration: float) -> Georef:
    """Where the mesh lies: its origin (the lower left corner of the height ``grid``, in ``crs``: the height
    raster's own CRS), its CRS and CRS units per ground metre."""
    left, bottom = grid.bounds[0], grid.bounds[1]
    res_x, res_y = grid.res_xy
    h, w = grid.shape_yx
    return Georef(
        crs_wkt=crs.to_wkt(), origin=(float(left), float(bottom)),
        crs_units_per_metre=(float(res_x / gsd_xy[0]), float(res_y / gsd_xy[1])), crs_name=crs.to_string(),
        prj_wkt=_prj_wkt(crs), exaggeration=float(exaggeration), origin_lonlat=_lonlat_or_none(crs, left, bottom),
        extra={"grid_step_px": step, "raster_size_px": [w, h],
               "nodata": "triangles touching nodata dropped; nodata vertices at the minimum valid height"},
    )


def export_mesh(aerial_path: Path, height_path: Path, out_path: Path, *, exaggeration: float = 1.0,
                max_vertices: int = DEFAULT_MAX_VERTICES, step: int | None = None,
                max_texture: int = DEFAULT_MAX_TEXTURE, overwrite: bool = False) -> Path:
    """Write a textured terrain mesh of ``height_path`` draped with ``aerial_path`` to ``out_path``.

    ``out_path`` ends in ``.obj`` (also writes ``.mtl``, ``.png``, ``.prj``) or
    ``.glb`` (also writes ``.prj``). The grid step is ``step`` if given, else
    the smallest step that keeps the mesh at most ``max_vertices`` vertices.
    The texture is the aerial image, downsampled to at most ``max_texture``
    pixels on its longer side. The two rasters must share CRS and bounds
    (their resolutions may differ). Returns ``out_path``.
    """
    from .grid import Grid
    from .write import check_outputs

    out_path = Path(out_path)
    finals = output_paths(out_path)
    _check_mesh_options(step, max_texture, exaggeration)
    with _open(aerial_path, "aerial", "aerial.tif") as ads, _open(height_path, "height", "height.tif") as hds:
        hcrs = check_raster_pair(ads, hds, aerial_path, height_path)
        h, w = hds.height, hds.width
        if step is None:
            step = choose_step((h, w), int(max_vertices))
        elif h < 2 or w < 2:
            raise InputError(f"the height raster is {w}x{h} px; a mesh needs at least 2x2 pixels")
        step = int(step)
        check_outputs(finals, overwrite)

        grid = Grid(hcrs, hds.transform, (h, w))
        gsd_xy = grid.gsd_m_at(h / 2, w / 2)
        rows, cols = sample_index(h, step), sample_index(w, step)
        z = _read_height_samples(hds, rows, cols)
        vertices, uvs, faces = _mesh_from_samples(z, rows, cols, (h, w), gsd_xy, exaggeration)
        texture = _read_texture(ads, max_texture)
        georef = _georef(hcrs, grid, gsd_xy, step, exaggeration)

    normals = vertex_normals(vertices, faces)
    writer = write_obj if out_path.suffix.lower() == ".obj" else write_glb
    writer(out_path, vertices, uvs, faces, texture, normals=normals, georef=georef)
    log.info("mesh: %d vertices, %d triangles (step %d), texture %dx%d px", len(vertices), len(faces), step,
             texture.shape[1], texture.shape[0])
    return out_path
