"""3D scenes: building solids (watertight, vertical walls, roofs as in height.tif), terrain and placement."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
import trimesh
from rasterio.transform import from_origin

from geogan.enu import GLTF_FROM_ENU, EnuFrame
from geogan.heights import building_heights, roof_heights_m
from geogan.scene import SceneOptions, delaunay_faces, estimate_ground, export_scene, terrain_points
from geogan.solids import building_solid

from osm_factory import offset_lonlat, write_osm

LON0, LAT0 = 24.95, 60.17  # a made-up town; UTM 35N, about -1.3 deg grid convergence at the zone's west edge
SHAPES = ["flat", "gabled", "hipped", "pyramidal", "skillion", "gambrel", "mansard", "half-hipped", "round",
          "dome", "onion", "saltbox", "butterfly", "cone"]
FOOTPRINTS = {
    "rectangle": shapely.Polygon([(0, 0), (20, 0), (20, 10), (0, 10)]),
    "turned": shapely.affinity.rotate(shapely.Polygon([(0, 0), (20, 0), (20, 10), (0, 10)]), 27, origin=(0, 0)),
    "L": shapely.Polygon([(0, 0), (20, 0), (20, 8), (8, 8), (8, 20), (0, 20)]),
    "courtyard": shapely.Polygon([(0, 0), (30, 0), (30, 30), (0, 30)], [[(10, 10), (10, 20), (20, 20), (20, 10)]]),
}


def _tags(shape: str) -> dict:
    return {"building": "yes", "height": "12", "min_height": "1", "roof:shape": shape, "roof:height": "4"}


def _wall_up_components(vertices: np.ndarray, faces: np.ndarray, up: np.ndarray) -> np.ndarray:
    n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return np.abs(n @ up)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(FOOTPRINTS))
def test_every_roof_shape_gives_a_closed_solid_with_vertical_walls(shape, name):
    footprint = FOOTPRINTS[name]
    h = building_heights(_tags(shape), half_width_m=5.0)
    solid = building_solid(footprint, h, base_m=100.0)
    mesh = trimesh.Trimesh(solid.vertices, solid.faces, process=True)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert solid.vertices[:, 2].min() == pytest.approx(101.0)  # base + min_height
    up_walls = _wall_up_components(solid.vertices, solid.faces[solid.roof_faces:], np.array([0, 0, 1.0]))
    walls = up_walls[up_walls < 0.5]  # the rest are the bottom's faces
    assert len(walls) >= 4 and walls.max() <= math.sin(math.radians(0.5))
    # the roof's vertices lie on the surface height.tif draws for the same tags
    top = solid.vertices[solid.top]
    expect = roof_heights_m(h.roof_shape, footprint, top[:, :2], h.height_m, h.roof_height_m,
                            h.roof_direction_deg, h.roof_across)
    assert np.allclose(top[:, 2] - 100.0, expect, atol=1e-3)


@pytest.mark.parametrize("shape", ["flat", "gabled", "hipped", "pyramidal", "skillion", "half-hipped", "mansard"])
def test_planar_roofs_reach_their_ridge_exactly(shape):
    for name in ("rectangle", "turned"):
        solid = building_solid(FOOTPRINTS[name], building_heights(_tags(shape), half_width_m=5.0))
        assert solid.vertices[:, 2].max() == pytest.approx(12.0, abs=1e-3), name


def test_ridge_of_a_gabled_roof_runs_along_the_long_side():
    solid = building_solid(FOOTPRINTS["rectangle"], building_heights(_tags("gabled"), half_width_m=5.0))
    ridge = solid.vertices[np.isclose(solid.vertices[:, 2], 12.0)]
    assert np.allclose(ridge[:, 1], 5.0) and np.ptp(ridge[:, 0]) == pytest.approx(20.0)


def test_ground_estimate_removes_buildings_and_keeps_slopes():
    rows, cols = np.mgrid[0:200, 0:200]
    slope = 0.05 * cols  # 0.1 m per metre at 0.5 m pixels
    surface = slope.astype(float).copy()
    surface[50:80, 50:90] += 15.0  # a 15 x 20 m building
    ground = estimate_ground(surface, pixel_m=0.5, window_m=40.0)
    inner = np.s_[:, 80:120]  # a window (80 px) away from the left and right edges
    assert np.abs(ground[inner] - slope[inner]).max() < 1e-9
    assert np.abs(ground - slope).max() <= 80 * 0.05 + 1e-9  # at the edges: within one window's rise


def test_terrain_is_simplified_where_flat_and_keeps_relief():
    flat = np.zeros((257, 257))
    assert len(terrain_points(flat, 0.25)) == 4
    hill = np.fromfunction(lambda r, c: 10 * np.exp(-((r - 128) ** 2 + (c - 128) ** 2) / 2000), (257, 257))
    pts = terrain_points(hill, 0.25)
    assert 4 < len(pts) < 257 * 257 / 4
    faces = delaunay_faces(np.column_stack([pts[:, 1], -pts[:, 0]]).astype(float))
    # the triangulated surface stays within the tolerance of the full grid (checked at every pixel centre)
    tri = shapely.polygons(np.column_stack([pts[:, 1], -pts[:, 0]])[faces])
    area = shapely.area(tri).sum()
    assert area == pytest.approx(256 * 256)


# ----------------------------------------------------------------------------- a small town, end to end


def _town(tmp: Path) -> tuple[Path, dict]:
    """Buildings with several roofs, a coloured one, an outline with two parts.

    Returns the OSM file and {way id: (tags, half the footprint's short side in metres)} of what is drawn.
    """
    nodes, ways, expected = {}, [], {}

    def ring(wid, east, north, w, d, tags, ring_m=None):
        pts = ring_m or [(0, 0), (w, 0), (w, d), (0, d)]
        refs = []
        for dx, dy in pts:
            nid = len(nodes) + 1
            nodes[nid] = offset_lonlat(LON0, LAT0, east + dx, north + dy)
            refs.append(nid)
        ways.append((wid, refs + [refs[0]], tags))
        expected[wid] = (tags, min(w, d) / 2.0)  # tags and half the short side

    ring(11, -60, -40, 20, 10, {"building": "house", "height": "10", "roof:shape": "gabled", "roof:height": "4"})
    ring(12, -20, -40, 16, 12, {"building": "yes", "building:levels": "3", "roof:shape": "hipped"})
    ring(13, 20, -40, 12, 12, {"building": "yes", "height": "14", "roof:shape": "pyramidal", "roof:height": "5",
                               "building:colour": "red"})
    ring(14, -60, 10, 14, 9, {"building": "yes", "height": "9", "roof:shape": "skillion", "roof:height": "3",
                              "roof:direction": "S"})
    ring(15, -20, 10, 30, 20, {"building": "yes", "height": "20"})  # outline with parts (not drawn)
    ring(16, -20, 10, 15, 20, {"building:part": "yes", "height": "20", "min_height": "6"})
    ring(17, -5, 10, 15, 20, {"building:part": "yes", "height": "8"})
    osm = write_osm(tmp / "town.osm", nodes, ways)
    del expected[15]
    return osm, expected


def _rasters(tmp: Path, slope_per_m: float = 0.05) -> tuple[Path, Path, Path, pyproj.CRS]:
    """aerial.tif, height.tif (flat), dem.tif (a plane rising to the east) in UTM 35N around the town."""
    crs = pyproj.CRS.from_epsg(32635)
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(LON0, LAT0)
    size, gsd = 400, 0.5
    transform = from_origin(x0 - 100, y0 + 100, gsd, gsd)
    profile = dict(driver="GTiff", width=size, height=size, crs=crs.to_wkt(), transform=transform)
    rng = np.random.default_rng(0)
    paths = tmp / "aerial.tif", tmp / "height.tif", tmp / "dem.tif"
    with rasterio.open(paths[0], "w", count=3, dtype="uint8", **profile) as ds:
        ds.write(rng.integers(40, 200, (3, size, size), dtype=np.uint8))
    with rasterio.open(paths[1], "w", count=1, dtype="float32", nodata=-9999, **profile) as ds:
        ds.write(np.zeros((1, size, size), np.float32))
    cols = np.arange(size)[None, :].repeat(size, 0)
    dem = 50.0 + slope_per_m * (x0 - 100 + (cols + 0.5) * gsd - x0)
    with rasterio.open(paths[2], "w", count=1, dtype="float32", **profile) as ds:
        ds.write(dem[None].astype(np.float32))
    return *paths, crs


def _glb_parts(path: Path):
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()

    def acc(i):
        a = gltf.accessors[i]
        v = gltf.bufferViews[a.bufferView]
        dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}[a.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[a.type]
        arr = np.frombuffer(blob, dtype, a.count * width, (v.byteOffset or 0) + (a.byteOffset or 0))
        return arr.reshape(a.count, width) if width > 1 else arr

    nodes = {}
    for node in gltf.nodes[1:]:
        mesh = gltf.meshes[node.mesh]
        pos = acc(mesh.primitives[0].attributes.POSITION).astype(np.float64)
        faces = {gltf.materials[p.material].name: acc(p.indices).reshape(-1, 3).astype(np.int64)
                 for p in mesh.primitives}
        nodes[node.name] = (node, pos, faces)
    return gltf, nodes


@pytest.fixture(scope="module")
def town_scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scene")
    osm, expected = _town(tmp)
    aerial, height, dem, crs = _rasters(tmp)
    out = tmp / "scene.glb"
    report = export_scene([osm], aerial, height, out, dem_path=dem)
    return out, report, expected, dem, crs


def test_scene_has_one_node_per_building_with_its_id_and_tags(town_scene):
    out, report, expected, *_ = town_scene
    gltf, nodes = _glb_parts(out)
    buildings = {n: v for n, v in nodes.items() if n.startswith("building/")}
    assert report.buildings == len(buildings) == len(expected)
    assert {n for n in buildings} == {f"building/way/{i}" for i in expected}
    for name, (node, _, _) in buildings.items():
        assert node.extras["osm_id"] == name.removeprefix("building/")
        assert node.extras["tags"] == expected[int(name.split("/")[-1])][0]
    assert "terrain" in nodes
    red = buildings["building/way/13"][2]
    assert any(k.startswith("wall #ff0000") for k in red)


def test_scene_solids_are_watertight_and_stand_on_the_lowest_ground(town_scene):
    out, _, expected, dem, crs = town_scene
    gltf, nodes = _glb_parts(out)
    frame = EnuFrame(*gltf.asset.extras["georeference"]["origin_lonlat"])
    with rasterio.open(dem) as ds:
        dem_arr, dem_tr = ds.read(1), ds.transform
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for name, (node, pos, faces) in nodes.items():
        if not name.startswith("building/"):
            continue
        all_faces = np.concatenate(list(faces.values()))
        mesh = trimesh.Trimesh(pos, all_faces, process=True)
        assert mesh.is_watertight and mesh.is_winding_consistent, name
        enu = (np.linalg.inv(GLTF_FROM_ENU[:3, :3]) @ pos.T).T
        llh = frame.to_lonlat(enu)
        walls = _wall_up_components(pos, all_faces, np.array([0, 1.0, 0]))
        assert walls[walls < 0.5].max() <= math.sin(math.radians(0.5)), name
        # base: the lowest DEM value under the outline; top: base + the tags' height
        x, y = to_crs.transform(llh[:, 0], llh[:, 1])
        col, row = ~dem_tr * (x, y)
        under = dem_arr[np.clip(row.astype(int), 0, 399), np.clip(col.astype(int), 0, 399)]
        tags, half_width_m = expected[int(name.split("/")[-1])]
        h = building_heights(tags, half_width_m=half_width_m)
        base = node.extras["base_m"]
        assert base == pytest.approx(under.min(), abs=0.1)
        assert llh[:, 2].max() - base == pytest.approx(h.height_m, abs=0.02), name
        assert llh[:, 2].min() - base == pytest.approx(h.min_height_m, abs=0.02), name


def test_a_point_known_in_lonlat_lands_within_half_a_metre(town_scene):
    out, *_ = town_scene
    gltf, nodes = _glb_parts(out)
    geo = gltf.asset.extras["georeference"]
    m = np.array(geo["enu_to_ecef_row_major"]).reshape(4, 4)
    _, pos, _ = nodes["building/way/11"]
    enu = (np.linalg.inv(GLTF_FROM_ENU[:3, :3]) @ pos.T).T
    corner = enu[np.argmin(enu[:, 0] + enu[:, 1] + enu[:, 2])]  # the south-west bottom corner
    ecef = m @ np.r_[corner, 1.0]
    lon, lat, _ = pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(*ecef[:3])
    want_lon, want_lat = offset_lonlat(LON0, LAT0, -60, -40)
    _, _, dist = pyproj.Geod(ellps="WGS84").inv(lon, lat, want_lon, want_lat)
    assert dist < 0.5


def test_ecef_root_puts_the_globe_transform_on_the_root_node(tmp_path):
    osm, _ = _town(tmp_path)
    aerial, height, _, _ = _rasters(tmp_path)
    out = export_scene([osm], aerial, height, tmp_path / "s.glb", options=SceneOptions(ecef_root=True)).path
    gltf, _ = _glb_parts(out)
    root = np.array(gltf.nodes[0].matrix).reshape(4, 4).T
    geo = gltf.asset.extras["georeference"]
    assert np.allclose(root, np.array(geo["gltf_to_ecef_column_major"]).reshape(4, 4).T)
    assert np.linalg.norm(root[:3, 3]) == pytest.approx(6.36e6, rel=0.01)  # the origin is on the globe


def _validator() -> list[str] | None:
    root = Path(__file__).resolve().parents[1] / ".tools" / "node"
    if shutil.which("node") is None or not (root / "node_modules" / "gltf-validator").is_dir():
        return None
    return ["node", "-e", (
        "const v=require(process.argv[1]);const d=new Uint8Array(require('fs').readFileSync(process.argv[2]));"
        "v.validateBytes(d).then(r=>console.log(JSON.stringify(r.issues)))"),
        str(root / "node_modules" / "gltf-validator")]


def test_khronos_validator_reports_no_errors(town_scene):
    cmd = _validator()
    if cmd is None:
        pytest.skip("the Khronos glTF validator is not installed (bash scripts/install_node_tools.sh)")
    out, *_ = town_scene
    issues = json.loads(subprocess.run(cmd + [str(out)], capture_output=True, text=True, check=True,
                                       timeout=120).stdout)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]


def test_mesh_cli_writes_a_scene_and_refuses_scene_options_without_osm(tmp_path):
    from typer.testing import CliRunner

    from geogan.cli import app

    osm, _ = _town(tmp_path)
    aerial, height, dem, _ = _rasters(tmp_path)
    out = tmp_path / "cli.glb"
    args = ["mesh", "--osm", str(osm), "--aerial", str(aerial), "--height", str(height), "--out", str(out)]
    result = CliRunner().invoke(app, args + ["--dem", str(dem)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = CliRunner().invoke(app, ["mesh", "--aerial", str(aerial), "--height", str(height), "--out",
                                      str(tmp_path / "x.glb"), "--ecef"])
    assert result.exit_code == 2 and "need --osm" in result.output
    result = CliRunner().invoke(app, args[:-1] + [str(tmp_path / "x.obj")])
    assert result.exit_code == 2 and ".glb" in result.output
