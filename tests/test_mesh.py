"""3D export (geogan.mesh): grid maths, OBJ and GLB files read back (pygltflib, trimesh), errors, atomic writes."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pyproj
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from geogan.errors import InputError, OutputError, RenderError
from geogan.mesh import (choose_step, export_mesh, glb_bytes, grid_mesh, sample_index, vertex_count,
                         vertex_normals)

trimesh = pytest.importorskip("trimesh")  # a dev extra (pip install -e .[dev])

H, W = 48, 64
PX = 0.5
LEFT, TOP = 500_000.0, 6_700_000.0  # UTM 35N, on the central meridian (scale 0.9996)
CRS = "EPSG:32635"
BOX = (slice(10, 20), slice(20, 30))  # the 10 m "building"
NODATA_PX = (30, 40)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def box_heights() -> np.ndarray:
    h = np.zeros((H, W), np.float32)
    h[BOX] = 10.0
    return h


def write_pair(d: Path, *, height: np.ndarray | None = None, aerial_bands: int = 3, aerial_crs: str | None = None,
               aerial_shift: float = 0.0, nodata: bool = True, crs: str = CRS, left: float = LEFT, top: float = TOP,
               px_xy: tuple[float, float] = (PX, PX)) -> tuple[Path, Path]:
    """aerial.tif (red = 3 x column, green = 200 on the building) + height.tif with one nodata pixel."""
    h = box_heights() if height is None else height
    if nodata:
        h = h.copy()
        h[NODATA_PX] = -9999
    prof = dict(driver="GTiff", width=h.shape[1], height=h.shape[0], crs=crs,
                transform=Affine(px_xy[0], 0, left, 0, -px_xy[1], top))
    hp, ap = d / "height.tif", d / "aerial.tif"
    with rasterio.open(hp, "w", count=1, dtype="float32", nodata=-9999, **prof) as ds:
        ds.write(h, 1)
    rgb = np.zeros((aerial_bands, h.shape[0], h.shape[1]), np.uint8)
    rgb[0] = np.arange(h.shape[1], dtype=np.uint8)[None, :] * 3
    rgb[min(1, aerial_bands - 1)][BOX] = 200
    prof.update(crs=aerial_crs or crs, transform=Affine(px_xy[0], 0, left + aerial_shift, 0, -px_xy[1], top))
    with rasterio.open(ap, "w", count=aerial_bands, dtype="uint8", **prof) as ds:
        ds.write(rgb)
    return ap, hp


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("pair"))


# ----------------------------------------------------------------------------- grid maths


@pytest.mark.parametrize("step, nv, nf", [(1, H * W, 2 * (H - 1) * (W - 1)),
                                          (2, 25 * 33, 2 * 24 * 32)])
def test_grid_mesh_counts(step, nv, nf):
    v, uv, f = grid_mesh(box_heights(), (PX, PX), step, 1.0)
    assert v.dtype == np.float32 and uv.dtype == np.float32 and f.dtype == np.uint32
    assert v.shape == (nv, 3) and uv.shape == (nv, 2) and f.shape == (nf, 3)
    assert vertex_count((H, W), step) == nv
    assert int(f.max()) == nv - 1 and int(f.min()) == 0


@pytest.mark.parametrize("exaggeration", [1.0, 2.5])
def test_building_height_and_positions(exaggeration):
    v, uv, f = grid_mesh(box_heights(), (PX, PX), 1, exaggeration)
    grid = v.reshape(H, W, 3)
    assert np.all(grid[BOX][..., 2] == np.float32(10.0 * exaggeration))
    ground = np.ones((H, W), bool)
    ground[BOX] = False
    assert np.all(grid[ground][:, 2] == 0)
    # pixel centres, origin at the lower-left corner, x east, y north
    assert np.allclose(grid[0, 0, :2], (0.5 * PX, (H - 0.5) * PX))
    assert np.allclose(grid[-1, -1, :2], ((W - 0.5) * PX, 0.5 * PX))
    # uv origin top-left at pixel centres
    uvg = uv.reshape(H, W, 2)
    assert np.allclose(uvg[0, 0], (0.5 / W, 0.5 / H)) and np.allclose(uvg[-1, -1], (1 - 0.5 / W, 1 - 0.5 / H))
    # counter-clockwise seen from above: every face normal points up on this terrain
    a, b, c = (v[f[:, k]].astype(np.float64) for k in range(3))
    assert np.all(np.cross(b - a, c - a)[:, 2] > 0)
    n = vertex_normals(v, f)
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    assert np.allclose(n.reshape(H, W, 3)[40, 5], (0, 0, 1))


def test_step_keeps_last_row_and_exact_building():
    v, _, _ = grid_mesh(box_heights(), (PX, PX), 3, 1.0)
    rows, cols = sample_index(H, 3), sample_index(W, 3)
    assert rows[-1] == H - 1 and cols[-1] == W - 1
    grid = v.reshape(len(rows), len(cols), 3)
    inside = np.isin(rows, np.arange(10, 20))[:, None] & np.isin(cols, np.arange(20, 30))[None, :]
    assert np.all(grid[inside][:, 2] == 10) and np.all(grid[~inside][:, 2] == 0)
    assert np.isclose(grid[-1, -1, 0], (W - 0.5) * PX)  # the mesh spans the whole raster


def test_nodata_drops_touching_triangles_and_fills_min():
    h = box_heights() + 3.0
    h[NODATA_PX] = np.nan
    v, _, f = grid_mesh(h, (PX, PX), 1, 2.0)
    assert len(v) == H * W  # the grid stays regular
    assert len(f) == 2 * (H - 1) * (W - 1) - 6  # an interior vertex touches six triangles
    k = NODATA_PX[0] * W + NODATA_PX[1]
    assert k not in f
    assert v[k, 2] == 6.0  # minimum valid height x exaggeration
    with pytest.raises(InputError, match="no valid heights"):
        grid_mesh(np.full((4, 4), np.nan), (1.0, 1.0), 1, 1.0)


def test_choose_step_for_4k_raster():
    step = choose_step((4096, 4096), 1_000_000)
    assert vertex_count((4096, 4096), step) <= 1_000_000 < vertex_count((4096, 4096), step - 1)
    assert step == 5
    assert choose_step((8192, 8192), 250_000) == 17
    assert choose_step((H, W), 10**9) == 1
    with pytest.raises(InputError, match="max-vertices"):
        choose_step((H, W), 3)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3000), st.integers(2, 3000), st.integers(4, 200_000))
def test_choose_step_is_smallest_that_fits(h, w, max_v):
    step = choose_step((h, w), max_v)
    assert vertex_count((h, w), step) <= max_v
    assert step == 1 or vertex_count((h, w), step - 1) > max_v
    assert vertex_count((h, w), step) == len(sample_index(h, step)) * len(sample_index(w, step))


# ----------------------------------------------------------------------------- files read back with pygltflib / trimesh

_NP_DTYPE = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_INT: np.uint32, pygltflib.UNSIGNED_SHORT: np.uint16}
_N_COMPONENTS = {pygltflib.SCALAR: 1, pygltflib.VEC2: 2, pygltflib.VEC3: 3}
GROUND_PX_M = PX / 0.9996  # UTM's scale factor on the central meridian: one CRS metre is 1/0.9996 ground metres


def load_gltf(data: bytes) -> pygltflib.GLTF2:
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert gltf.asset.version == "2.0"
    return gltf


def accessor_array(gltf: pygltflib.GLTF2, i: int) -> np.ndarray:
    """The data of accessor ``i`` as an (count, components) array, read from the GLB's binary chunk."""
    acc = gltf.accessors[i]
    view = gltf.bufferViews[acc.bufferView]
    blob = gltf.binary_blob()
    dtype = np.dtype(_NP_DTYPE[acc.componentType])
    n = acc.count * _N_COMPONENTS[acc.type]
    assert view.byteLength == n * dtype.itemsize and view.byteOffset % 4 == 0
    assert view.byteOffset + view.byteLength <= len(blob)
    arr = np.frombuffer(blob, dtype, n, view.byteOffset + (acc.byteOffset or 0))
    return arr.reshape(acc.count, _N_COMPONENTS[acc.type])


def load_trimesh(path: Path) -> trimesh.Trimesh:
    mesh = trimesh.load(path, force="mesh")
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def z_up(mesh: trimesh.Trimesh, path: Path) -> np.ndarray:
    """Vertices as x east, y north, z up: glTF's y-up (X, Y, Z) is (east, up, -north)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    return np.column_stack([v[:, 0], -v[:, 2], v[:, 1]]) if path.suffix == ".glb" else v


def pixel_of(xyz_m: np.ndarray, ground_px_m: tuple[float, float] = (GROUND_PX_M, GROUND_PX_M),
             height_px: int = H) -> tuple[np.ndarray, np.ndarray]:
    """Raster (row, col) of vertices from their ground metres (origin at the raster's lower-left corner)."""
    col = np.rint(xyz_m[:, 0] / ground_px_m[0] - 0.5).astype(int)
    row = np.rint(height_px - 0.5 - xyz_m[:, 1] / ground_px_m[1]).astype(int)
    return row, col


def texture_pixel_of(uv_bottom_left: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Texture (row, col) whose pixel contains each UV (trimesh keeps UVs with OBJ's bottom-left origin)."""
    w, h = size_wh
    return (np.floor((1.0 - uv_bottom_left[:, 1]) * h).astype(int),
            np.floor(uv_bottom_left[:, 0] * w).astype(int))


def test_glb_reads_back_with_pygltflib(pair, tmp_path):
    aerial, height = pair
    out = export_mesh(aerial, height, tmp_path / "model.glb", exaggeration=2.0, step=1)
    assert out == tmp_path / "model.glb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.glb", "model.prj"]
    data = out.read_bytes()
    assert data[:4] == b"glTF" and int.from_bytes(data[8:12], "little") == len(data)
    gltf = load_gltf(data)
    assert gltf.asset.generator.startswith("geogan ")
    assert gltf.buffers[0].byteLength == len(gltf.binary_blob())
    prim = gltf.meshes[gltf.nodes[gltf.scenes[gltf.scene].nodes[0]].mesh].primitives[0]
    assert prim.mode == pygltflib.TRIANGLES
    pos_acc = gltf.accessors[prim.attributes.POSITION]
    pos = accessor_array(gltf, prim.attributes.POSITION)
    assert pos_acc.count == H * W and pos_acc.type == pygltflib.VEC3
    assert pos_acc.min == pos.min(0).tolist() and pos_acc.max == pos.max(0).tolist()
    assert pos_acc.min[1] == 0.0 and pos_acc.max[1] == 20.0  # y-up: the 10 m building x 2, ground at 0
    assert pos_acc.max[2] < 0 < pos_acc.max[0]  # -Z = north: the whole raster lies at negative Z
    assert gltf.bufferViews[pos_acc.bufferView].target == pygltflib.ARRAY_BUFFER
    idx_acc = gltf.accessors[prim.indices]
    assert idx_acc.componentType == pygltflib.UNSIGNED_SHORT  # 3072 vertices fit uint16
    assert gltf.bufferViews[idx_acc.bufferView].target == pygltflib.ELEMENT_ARRAY_BUFFER
    idx = accessor_array(gltf, prim.indices).reshape(-1, 3)
    assert len(idx) == 2 * (H - 1) * (W - 1) - 6 and idx.max() < len(pos)
    assert NODATA_PX[0] * W + NODATA_PX[1] not in idx
    normals = accessor_array(gltf, prim.attributes.NORMAL)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5) and normals[:, 1].min() >= 0
    uv = accessor_array(gltf, prim.attributes.TEXCOORD_0)
    assert np.allclose(uv[0], (0.5 / W, 0.5 / H)) and np.allclose(uv[-1], (1 - 0.5 / W, 1 - 0.5 / H))
    # the material: unlit, textured by an embedded PNG of the aerial image
    mat = gltf.materials[prim.material]
    assert "KHR_materials_unlit" in mat.extensions and gltf.extensionsUsed == ["KHR_materials_unlit"]
    tex = gltf.textures[mat.pbrMetallicRoughness.baseColorTexture.index]
    assert gltf.samplers[tex.sampler].wrapS == pygltflib.CLAMP_TO_EDGE
    image = gltf.images[tex.source]
    view = gltf.bufferViews[image.bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    assert image.mimeType == "image/png" and png.startswith(PNG_MAGIC)
    img = Image.open(io.BytesIO(png))
    assert img.size == (W, H) and img.mode == "RGB"
    assert np.asarray(img)[15, 25, 1] == 200  # building pixel
    # georeference in asset.extras: CRS + origin; a vertex maps back onto its pixel centre
    extras = gltf.asset.extras
    assert pyproj.CRS.from_wkt(extras["crs_wkt"]).to_epsg() == 32635 and extras["crs"] == "EPSG:32635"
    assert extras["origin"] == [LEFT, TOP - H * PX] and extras["z_exaggeration"] == 2.0
    assert extras["grid_step_px"] == 1 and extras["raster_size_px"] == [W, H]
    sx, sy = extras["crs_units_per_metre"]
    assert sx == pytest.approx(0.9996, abs=1e-6)
    x, z = pos[5 * W + 7, 0], pos[5 * W + 7, 2]  # row 5, col 7
    assert extras["origin"][0] + x * sx == pytest.approx(LEFT + 7.5 * PX, abs=1e-3)
    assert extras["origin"][1] - z * sy == pytest.approx(TOP - 5.5 * PX, abs=1e-3)
    assert "PROJCS" in (tmp_path / "model.prj").read_text()


def test_glb_loads_in_trimesh(pair, tmp_path):
    aerial, height = pair
    out = export_mesh(aerial, height, tmp_path / "model.glb", exaggeration=2.0, step=1)
    mesh = load_trimesh(out)
    assert len(mesh.vertices) == H * W and len(mesh.faces) == 2 * (H - 1) * (W - 1) - 6
    xyz = z_up(mesh, out)
    half = 0.5 * GROUND_PX_M
    assert np.allclose(xyz.min(0), (half, half, 0.0), atol=1e-4)
    assert np.allclose(xyz.max(0), (W * GROUND_PX_M - half, H * GROUND_PX_M - half, 20.0), atol=1e-4)
    image = mesh.visual.material.baseColorTexture
    assert image.size == (W, H)
    # every vertex's UV lands on the texture pixel under it, and that pixel has the aerial's colour
    row, col = pixel_of(xyz)
    assert (row.min(), row.max(), col.min(), col.max()) == (0, H - 1, 0, W - 1)
    trow, tcol = texture_pixel_of(np.asarray(mesh.visual.uv), image.size)
    assert np.array_equal(trow, row) and np.array_equal(tcol, col)
    rgb = np.asarray(image.convert("RGB"))[trow, tcol].astype(int)
    assert np.array_equal(rgb[:, 0], 3 * col)
    in_box = (row >= 10) & (row < 20) & (col >= 20) & (col < 30)
    assert np.all(rgb[in_box, 1] == 200) and np.all(rgb[~in_box, 1] == 0)
    assert np.allclose(xyz[in_box, 2], 20.0)


def test_glb_uint32_indices_for_big_meshes(tmp_path):
    v, uv, f = grid_mesh(np.zeros((300, 300), np.float32), (1.0, 1.0), 1, 1.0)
    data = glb_bytes(v, uv, f, np.zeros((4, 4, 3), np.uint8))
    gltf = load_gltf(data)
    prim = gltf.meshes[0].primitives[0]
    assert gltf.accessors[prim.indices].componentType == pygltflib.UNSIGNED_INT
    assert accessor_array(gltf, prim.indices).max() == 300 * 300 - 1
    assert prim.attributes.NORMAL is None and not gltf.asset.extras
    (tmp_path / "big.glb").write_bytes(data)
    mesh = load_trimesh(tmp_path / "big.glb")
    assert len(mesh.vertices) == 300 * 300 and len(mesh.faces) == 2 * 299 * 299
    assert np.allclose(z_up(mesh, tmp_path / "big.glb").max(0), (299.5, 299.5, 0.0))


def test_glb_without_pygltflib_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygltflib", None)  # makes "import pygltflib" fail
    v, uv, f = grid_mesh(np.zeros((3, 3), np.float32), (1.0, 1.0), 1, 1.0)
    with pytest.raises(RenderError) as e:
        glb_bytes(v, uv, f, np.zeros((4, 4, 3), np.uint8))
    assert "pip install" in one_line(e) and ".obj" in one_line(e)


def test_obj_reads_back(pair, tmp_path):
    aerial, height = pair
    out = export_mesh(aerial, height, tmp_path / "model.obj", step=2, max_texture=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mtl", "model.obj", "model.png", "model.prj"]
    lines = out.read_text().splitlines()
    kinds = [l.split(" ", 1)[0] for l in lines]
    nv = 25 * 33
    assert kinds.count("v") == nv and kinds.count("vt") == nv and kinds.count("vn") == nv
    faces = [l for l in lines if l.startswith("f ")]
    assert 0 < len(faces) <= 2 * 24 * 32
    corners = np.array([[int(i) for i in c.split("/")] for l in faces for c in l.split()[1:]])
    assert corners.shape[1] == 3 and corners.min() == 1 and corners.max() <= nv
    assert "mtllib model.mtl" in lines and "usemtl aerial" in lines
    assert any(l.startswith("# crs: EPSG:32635") for l in lines)
    assert f"# origin: {LEFT} {TOP - H * PX}" in lines
    zs = np.array([float(l.split()[3]) for l in lines if l.startswith("v ")])
    assert set(np.unique(zs)) == {0.0, 10.0}
    vts = np.array([[float(x) for x in l.split()[1:]] for l in lines if l.startswith("vt ")])
    assert vts.min() > 0 and vts.max() < 1 and vts[0, 1] > 0.9  # first vertex (top row) near v = 1
    assert "map_Kd model.png" in (tmp_path / "model.mtl").read_text()
    with Image.open(tmp_path / "model.png") as img:
        assert img.size == (32, 24)  # downsampled to --max-texture, aspect kept


def test_obj_loads_in_trimesh(pair, tmp_path):
    aerial, height = pair
    out = export_mesh(aerial, height, tmp_path / "model.obj", step=2, max_texture=32)
    mesh = load_trimesh(out)
    # trimesh's OBJ reader keeps only the vertices faces use: all but the lone nodata vertex (row 30, col 40)
    assert len(mesh.vertices) == 25 * 33 - 1 and len(mesh.faces) == 2 * 24 * 32 - 6
    xyz = z_up(mesh, out)
    half = 0.5 * GROUND_PX_M
    assert np.allclose(xyz.min(0), (half, half, 0.0), atol=1e-3)
    assert np.allclose(xyz.max(0), (W * GROUND_PX_M - half, H * GROUND_PX_M - half, 10.0), atol=1e-3)
    row, col = pixel_of(xyz)
    assert not np.any((row == NODATA_PX[0]) & (col == NODATA_PX[1]))
    image = mesh.visual.material.image
    assert image.size == (32, 24)
    # the texture is half size: each vertex's UV lands in the texture pixel covering its raster pixel
    trow, tcol = texture_pixel_of(np.asarray(mesh.visual.uv), image.size)
    assert np.array_equal(trow, row // 2) and np.array_equal(tcol, col // 2)
    in_box = (row >= 10) & (row < 20) & (col >= 20) & (col < 30)
    green = np.asarray(image.convert("RGB"))[trow, tcol, 1]
    assert np.all(green[in_box] == 200) and np.all(green[~in_box] == 0)
    assert np.allclose(xyz[in_box, 2], 10.0) and np.allclose(xyz[~in_box, 2], 0.0)


def geodesic_m(crs: str, a_xy: tuple[float, float], b_xy: tuple[float, float]) -> float:
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    (lon1, lon2), (lat1, lat2) = to_lonlat.transform([a_xy[0], b_xy[0]], [a_xy[1], b_xy[1]])
    return float(pyproj.Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2])


def obj_georef(path: Path) -> dict[str, list[str]]:
    return {k: v.split() for k, v in (l[2:].split(": ", 1) for l in path.read_text().splitlines()
                                      if l.startswith("# ") and ": " in l)}


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
@pytest.mark.parametrize("crs, px_crs", [("EPSG:3857", (1.0, 1.0)), ("EPSG:4326", (1e-5, 1e-5))])
def test_ground_metres_in_mercator_and_degrees(tmp_path, crs, px_crs, suffix):
    """At 60 N a 3857 'metre' is ~0.5 ground m and 1e-5 deg is ~0.56 m east / ~1.11 m north: no distortion."""
    left, top = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(25.0, 60.0)
    aerial, height = write_pair(tmp_path, crs=crs, left=left, top=top, px_xy=px_crs)
    out = export_mesh(aerial, height, tmp_path / f"model{suffix}", step=1)
    xyz = z_up(load_trimesh(out), out)
    mid_row_y = top - (H / 2) * px_crs[1]
    mid_col_x = left + (W / 2) * px_crs[0]
    # the span between the outer pixel centres, measured on the ellipsoid
    width_m = geodesic_m(crs, (left + 0.5 * px_crs[0], mid_row_y), (left + (W - 0.5) * px_crs[0], mid_row_y))
    height_m = geodesic_m(crs, (mid_col_x, top - 0.5 * px_crs[1]), (mid_col_x, top - (H - 0.5) * px_crs[1]))
    span = xyz.max(0) - xyz.min(0)
    # 5e-3: geogan takes EPSG:3857's scale from PROJ (1 / cos(lat), the sphere's), 0.25 % off the ellipsoid at 60 N
    assert span[0] == pytest.approx(width_m, rel=5e-3) and span[1] == pytest.approx(height_m, rel=5e-3)
    if crs == "EPSG:3857":
        assert span[:2] == pytest.approx(((W - 1) * 0.5, (H - 1) * 0.5), rel=2e-3)  # cos(60 deg) = 0.5
    else:
        px_m = span[:2] / (W - 1, H - 1)
        assert px_m[1] / px_m[0] == pytest.approx(2.0, rel=0.01)  # a degree of latitude is ~2x one of longitude
    # the georeference maps the first vertex (row 0, col 0) back onto its pixel centre
    if suffix == ".glb":
        extras = load_gltf(out.read_bytes()).asset.extras
        origin, scale = extras["origin"], extras["crs_units_per_metre"]
    else:
        meta = obj_georef(out)
        origin, scale = [float(v) for v in meta["origin"]], [float(v) for v in meta["crs_units_per_metre"]]
    first = xyz[np.lexsort((-xyz[:, 1], xyz[:, 0]))[0]]  # west-most, then north-most vertex
    assert origin == pytest.approx([left, top - H * px_crs[1]])
    assert origin[0] + first[0] * scale[0] == pytest.approx(left + 0.5 * px_crs[0], abs=0.01 * px_crs[0])
    assert origin[1] + first[1] * scale[1] == pytest.approx(top - 0.5 * px_crs[1], abs=0.01 * px_crs[1])


# ----------------------------------------------------------------------------- errors and atomic writes


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def test_input_errors(pair, tmp_path):
    aerial, height = pair
    with pytest.raises(InputError) as e:
        export_mesh(tmp_path / "nope.tif", height, tmp_path / "m.glb")
    assert "does not exist" in one_line(e)
    with pytest.raises(InputError) as e:
        export_mesh(aerial, height, tmp_path / "m.stl")
    assert ".obj" in one_line(e) and ".glb" in one_line(e)
    with pytest.raises(InputError) as e:  # swapped inputs
        export_mesh(height, aerial, tmp_path / "m.glb")
    assert "band" in one_line(e) and "swap" in one_line(e)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    a2, h2 = write_pair(shifted, aerial_shift=5.0)
    with pytest.raises(InputError) as e:
        export_mesh(a2, h2, tmp_path / "m.glb")
    assert "different areas" in one_line(e)
    other = tmp_path / "other"
    other.mkdir()
    a3, h3 = write_pair(other, aerial_crs="EPSG:32634")
    with pytest.raises(InputError) as e:
        export_mesh(a3, h3, tmp_path / "m.glb")
    assert "EPSG:32634" in one_line(e)
    with pytest.raises(InputError) as e:
        export_mesh(aerial, height, tmp_path / "m.glb", exaggeration=0)
    one_line(e)
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob(".*partial"))


def test_existing_output_needs_overwrite(pair, tmp_path):
    aerial, height = pair
    (tmp_path / "model.png").write_bytes(b"mine")  # an OBJ export would replace it
    with pytest.raises(OutputError) as e:
        export_mesh(aerial, height, tmp_path / "model.obj")
    assert "--overwrite" in one_line(e)
    assert (tmp_path / "model.png").read_bytes() == b"mine"
    export_mesh(aerial, height, tmp_path / "model.obj", overwrite=True, step=4)
    assert (tmp_path / "model.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("suffix, target", [(".obj", "_write_rows"), (".glb", "_write_prj")])
def test_failure_leaves_no_partial_files(pair, tmp_path, monkeypatch, suffix, target):
    import geogan.mesh as mesh

    real = getattr(mesh, target)
    calls = []

    def failing(*args, **kwargs):
        real(*args, **kwargs)  # something is half written
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mesh, target, failing)
    with pytest.raises(RenderError) as e:
        export_mesh(*pair, tmp_path / f"model{suffix}", step=4)
    assert calls and "No space left" in one_line(e)
    assert list(tmp_path.iterdir()) == []


def test_cli_mesh(pair, tmp_path):
    import typer
    from typer.testing import CliRunner

    from geogan.mesh_cli import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    aerial, height = pair
    runner = CliRunner()
    out = tmp_path / "m.glb"
    res = runner.invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out", str(out),
                              "--max-vertices", "500", "--exaggeration", "3"])
    assert res.exit_code == 0, res.output
    assert out.exists() and "wrote" in res.stdout
    gltf = load_gltf(out.read_bytes())
    pos = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert pos.count <= 500 and pos.max[1] == 30.0
    res = runner.invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out", str(out),
                              "--step", "2", "--max-vertices", "10"])
    assert res.exit_code == 2
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "exclusive" in errors[0]
    res = runner.invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out", str(out)])
    assert res.exit_code == 2 and "already exists" in res.stderr
