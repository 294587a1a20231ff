"""3D export (geogan.mesh): grid maths, OBJ and GLB files read back, errors and atomic writes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from geogan.errors import InputError, OutputError, RenderError
from geogan.mesh import (choose_step, export_mesh, glb_bytes, grid_mesh, sample_index, vertex_count,
                         vertex_normals)

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


def write_pair(d: Path, *, height: np.ndarray | None = None, aerial_bands: int = 3, aerial_crs: str = CRS,
               aerial_shift: float = 0.0, nodata: bool = True) -> tuple[Path, Path]:
    h = box_heights() if height is None else height
    if nodata:
        h = h.copy()
        h[NODATA_PX] = -9999
    prof = dict(driver="GTiff", width=h.shape[1], height=h.shape[0], crs=CRS,
                transform=Affine(PX, 0, LEFT, 0, -PX, TOP))
    hp, ap = d / "height.tif", d / "aerial.tif"
    with rasterio.open(hp, "w", count=1, dtype="float32", nodata=-9999, **prof) as ds:
        ds.write(h, 1)
    rgb = np.zeros((aerial_bands, h.shape[0], h.shape[1]), np.uint8)
    rgb[0] = np.arange(h.shape[1], dtype=np.uint8)[None, :] * 3
    rgb[min(1, aerial_bands - 1)][BOX] = 200
    prof.update(crs=aerial_crs, transform=Affine(PX, 0, LEFT + aerial_shift, 0, -PX, TOP))
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


# ----------------------------------------------------------------------------- file readers


def read_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<II", data, 12)
    assert jtype == 0x4E4F534A and jlen % 4 == 0
    gltf = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<II", data, 20 + jlen)
    assert btype == 0x004E4942 and blen % 4 == 0
    assert 28 + jlen + blen == len(data)
    return gltf, data[28 + jlen:28 + jlen + blen]


_NP = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
_NC = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}


def accessor(gltf: dict, binary: bytes, i: int) -> np.ndarray:
    acc = gltf["accessors"][i]
    view = gltf["bufferViews"][acc["bufferView"]]
    dt = np.dtype(_NP[acc["componentType"]])
    n = acc["count"] * _NC[acc["type"]]
    assert view["byteLength"] == n * dt.itemsize
    arr = np.frombuffer(binary, dt, n, view["byteOffset"] + acc.get("byteOffset", 0))
    return arr.reshape(acc["count"], _NC[acc["type"]])


def test_glb_reads_back(pair, tmp_path):
    aerial, height = pair
    out = export_mesh(aerial, height, tmp_path / "model.glb", exaggeration=2.0, step=1)
    assert out == tmp_path / "model.glb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.glb", "model.prj"]
    gltf, binary = read_glb(out.read_bytes())
    assert gltf["asset"]["version"] == "2.0" and gltf["buffers"][0]["byteLength"] == len(binary)
    for view in gltf["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(binary)
    prim = gltf["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(attrs)
    pos_acc = gltf["accessors"][attrs["POSITION"]]
    pos = accessor(gltf, binary, attrs["POSITION"])
    assert len(pos) == H * W and pos_acc["min"] == pos.min(0).tolist() and pos_acc["max"] == pos.max(0).tolist()
    assert pos_acc["max"][1] == 20.0  # y-up: the 10 m building x 2
    assert gltf["bufferViews"][pos_acc["bufferView"]]["target"] == 34962
    idx_acc = gltf["accessors"][prim["indices"]]
    assert idx_acc["componentType"] == 5123  # 3072 vertices fit uint16
    assert gltf["bufferViews"][idx_acc["bufferView"]]["target"] == 34963
    idx = accessor(gltf, binary, prim["indices"]).reshape(-1, 3)
    assert len(idx) == 2 * (H - 1) * (W - 1) - 6 and idx.max() < len(pos)
    normals = accessor(gltf, binary, attrs["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5) and normals[:, 1].min() >= 0
    assert accessor(gltf, binary, attrs["TEXCOORD_0"]).shape == (H * W, 2)
    # the texture: an embedded PNG of the aerial image
    mat = gltf["materials"][prim["material"]]
    tex = gltf["textures"][mat["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = gltf["images"][tex["source"]]
    view = gltf["bufferViews"][image["bufferView"]]
    png = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    assert image["mimeType"] == "image/png" and png.startswith(PNG_MAGIC)
    import io
    img = Image.open(io.BytesIO(png))
    assert img.size == (W, H) and img.mode == "RGB"
    assert np.asarray(img)[15, 25, 1] == 200  # building pixel
    # georeference: CRS + origin; a vertex maps back onto its pixel centre
    import pyproj
    extras = gltf["asset"]["extras"]
    assert pyproj.CRS.from_wkt(extras["crs_wkt"]).to_epsg() == 32635
    assert extras["origin"] == [LEFT, TOP - H * PX]
    sx, sy = extras["crs_units_per_metre"]
    assert sx == pytest.approx(0.9996, abs=1e-6)
    x, z = pos[5 * W + 7, 0], pos[5 * W + 7, 2]  # row 5, col 7
    assert extras["origin"][0] + x * sx == pytest.approx(LEFT + 7.5 * PX, abs=1e-3)
    assert extras["origin"][1] - z * sy == pytest.approx(TOP - 5.5 * PX, abs=1e-3)
    assert "PROJCS" in (tmp_path / "model.prj").read_text()


def test_glb_uint32_indices_for_big_meshes():
    v, uv, f = grid_mesh(np.zeros((300, 300), np.float32), (1.0, 1.0), 1, 1.0)
    gltf, binary = read_glb(glb_bytes(v, uv, f, np.zeros((4, 4, 3), np.uint8)))
    prim = gltf["meshes"][0]["primitives"][0]
    assert gltf["accessors"][prim["indices"]]["componentType"] == 5125
    assert accessor(gltf, binary, prim["indices"]).max() == 300 * 300 - 1
    assert "NORMAL" not in prim["attributes"] and "extras" not in gltf["asset"]


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
    gltf, _ = read_glb(out.read_bytes())
    pos = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert pos["count"] <= 500 and pos["max"][1] == 30.0
    res = runner.invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out", str(out),
                              "--step", "2", "--max-vertices", "10"])
    assert res.exit_code == 2
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "exclusive" in errors[0]
    res = runner.invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out", str(out)])
    assert res.exit_code == 2 and "already exists" in res.stderr
