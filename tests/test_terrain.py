"""Terrain: DEM reading/reprojection, heights on top of terrain, canopy texture, hillshade (known answers)."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine

from geogan.errors import InputError
from geogan.features import build_features
from geogan.grid import grid_from_bbox
from geogan.rasterizer import rasterize_classes, rasterize_heights
from geogan.sources import RawLayer, SourceReport
from geogan.terrain import (NODATA, CanopyParams, DemSource, canopy_field, check_dem_overlaps, compose_heights,
                            hillshade, read_dem_window, value_noise)

UTM = "EPSG:32635"
X0, Y0 = 400_000.0, 6_660_000.0        # about 25.2 E, 60.05 N
DEM_RES = 5.0
DEM_N = 200                             # 1 km x 1 km
HOLE = (slice(95, 101), slice(95, 101))  # 30 m x 30 m nodata hole in the middle


def plane(x, y):
    """1 m per 10 m rising east, 1 m per 20 m rising north."""
    return 100.0 + 0.1 * (np.asarray(x) - X0) + 0.05 * (np.asarray(y) - Y0)


def _write_dem(path, crs=UTM, origin=(X0, Y0 + DEM_N * DEM_RES), hole=True, n=DEM_N):
    transform = Affine(DEM_RES, 0, origin[0], 0, -DEM_RES, origin[1])
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    x, y = transform @ (cols, rows)
    z = plane(x, y).astype(np.float32)
    if hole:
        z[HOLE] = -9999.0
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="float32", transform=transform, nodata=-9999.0)
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(z, 1)
    return path


@pytest.fixture(scope="module")
def dem(tmp_path_factory):
    return _write_dem(tmp_path_factory.mktemp("dem") / "plane.tif")


def _inner_grid(margin_m=200.0, gsd=10.0):
    """An EPSG:3857 grid over the DEM's interior (600 m x 600 m in UTM)."""
    bbox = (X0 + margin_m, Y0 + margin_m, X0 + DEM_N * DEM_RES - margin_m, Y0 + DEM_N * DEM_RES - margin_m)
    return grid_from_bbox(bbox, UTM, "EPSG:3857", gsd)


def _plane_at_centres(grid):
    rows, cols = np.meshgrid(np.arange(grid.height) + 0.5, np.arange(grid.width) + 0.5, indexing="ij")
    gx, gy = grid.transform @ (cols, rows)
    ux, uy = pyproj.Transformer.from_crs(grid.crs, UTM, always_xy=True).transform(gx, gy)
    return plane(ux, uy), ux, uy


# ----------------------------------------------------------------- DEM


def test_dem_plane_reprojected_to_3857_with_hole_filled(dem):
    grid = _inner_grid()
    with DemSource(dem) as src:
        z = src.read(grid)
        warnings = src.warnings()
    assert z.dtype == np.float32 and z.shape == grid.shape_yx
    assert np.isfinite(z).all()
    want, ux, uy = _plane_at_centres(grid)
    # Pixels whose bilinear kernel (on the DEM read 2x2-averaged, 10 m) touches no filled or partial
    # block match the plane exactly (up to the warp's approximate transformer).
    m = 4
    hc0, hc1 = X0 + (HOLE[1].start - m) * DEM_RES, X0 + (HOLE[1].stop + m) * DEM_RES
    top = Y0 + DEM_N * DEM_RES
    hr0, hr1 = top - (HOLE[0].stop + m) * DEM_RES, top - (HOLE[0].start - m) * DEM_RES
    near_hole = (ux > hc0) & (ux < hc1) & (uy > hr0) & (uy < hr1)
    assert near_hole.sum() >= 4
    assert np.abs(z - want)[~near_hole].max() < 0.01
    # The hole is filled by interpolation from its edges: close to the plane, not nodata, not zero.
    assert np.abs(z - want)[near_hole].max() < 1.5
    assert any("filled" in w and "nodata DEM" in w for w in warnings)
    assert not any("no terrain" in w for w in warnings)


def test_dem_strips_are_seamless(dem):
    grid = _inner_grid()
    whole = read_dem_window(dem, grid)
    with DemSource(dem, reference_grid=grid) as src:  # as render uses it: opened once, read per strip
        strips = [src.read(grid.window(r, 0, min(17, grid.height - r), grid.width)) for r in range(0, grid.height, 17)]
    assert np.allclose(np.vstack(strips), whole, atol=1e-4, rtol=0)


def test_dem_finer_than_grid_is_decimated_and_still_right(dem):
    grid = _inner_grid(gsd=60.0)  # 12 DEM px per output px: read averaged, memory bounded
    z = read_dem_window(dem, grid)
    want, _, _ = _plane_at_centres(grid)
    err = np.abs(z - want)
    assert err.max() < 0.3 and np.median(err) < 0.005  # the largest errors are next to the filled hole


def test_dem_partial_cover_warns_and_leaves_nodata(dem):
    # Grid reaching 500 m west of the DEM: the western part has no terrain.
    bbox = (X0 - 500.0, Y0 + 200.0, X0 + 500.0, Y0 + 800.0)
    grid = grid_from_bbox(bbox, UTM, "EPSG:3857", 20.0)
    check = check_dem_overlaps(dem, grid)
    assert 0.4 < check.coverage < 0.6
    assert len(check.warnings) == 1 and "covers only" in check.warnings[0]
    with DemSource(dem) as src:
        z = src.read(grid)
        assert any("no terrain" in w for w in src.warnings())
    assert np.isnan(z[:, :5]).all() and np.isfinite(z[:, -5:]).all()
    out = compose_heights(z, np.zeros_like(z), np.zeros(z.shape, np.uint8), _schema(), 0)
    assert (out[:, :5] == NODATA).all()


def test_dem_full_cover_check_passes(dem):
    check = check_dem_overlaps(dem, _inner_grid())
    assert check.coverage == pytest.approx(1.0) and check.warnings == []


def test_dem_not_overlapping_raises_one_line(dem):
    grid = grid_from_bbox((X0 + 50_000, Y0, X0 + 51_000, Y0 + 1_000), UTM, "EPSG:3857", 10.0)
    with pytest.raises(InputError) as err:
        check_dem_overlaps(dem, grid)
    msg = str(err.value)
    assert "does not overlap" in msg and "\n" not in msg
    assert np.isnan(read_dem_window(dem, grid)).all()


def test_dem_without_crs_raises_with_fix(tmp_path):
    path = _write_dem(tmp_path / "nocrs.tif", crs=None, hole=False, n=8)
    with pytest.raises(InputError) as err:
        check_dem_overlaps(path, _inner_grid())
    msg = str(err.value)
    assert "no CRS" in msg and "gdal_edit.py -a_srs" in msg and "\n" not in msg
    with pytest.raises(InputError):
        DemSource(path)


def test_not_a_raster_and_missing_raise_one_line(tmp_path):
    bad = tmp_path / "dem.tif"
    bad.write_text("this is not\na raster\n")
    for path in (bad, tmp_path / "missing.tif"):
        with pytest.raises(InputError) as err:
            check_dem_overlaps(path, _inner_grid())
        assert "\n" not in str(err.value) and "DEM" in str(err.value)


# ----------------------------------------------------------------- heights on terrain

def _schema():
    from geogan.classes import load_schema
    return load_schema()


def _report(items):
    geoms = np.array([g for g, _ in items], dtype=object)
    return SourceReport([RawLayer("test", geoms, [t for _, t in items], is_osm=True)])


def test_building_sits_on_terrain(dem, schema):
    grid = _inner_grid(gsd=5.0)
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    cx, cy = X0 + 300.0, Y0 + 300.0  # away from the hole
    ring = [to_ll.transform(cx + dx, cy + dy) for dx, dy in ((-30, -30), (30, -30), (30, 30), (-30, 30))]
    feats = build_features(_report([(shapely.Polygon(ring), {"building": "yes", "height": "12"})]), schema,
                           grid.crs, grid.center_lonlat())
    classes, objects = rasterize_classes(feats, grid), rasterize_heights(feats, grid)
    terrain = read_dem_window(dem, grid)
    out = compose_heights(terrain, objects, classes, schema, seed=1, row0=0, col0=0, gsd_m=5.0)
    roof = objects == 12.0
    assert roof.sum() > 50
    assert np.allclose(out[roof], terrain[roof] + 12.0, atol=1e-4)
    want, _, _ = _plane_at_centres(grid)
    assert np.abs(out[roof] - (want[roof] + 12.0)).max() < 0.05
    ground = classes == schema.by_name("background").id
    assert np.array_equal(out[ground], terrain[ground])


def test_roads_water_grass_add_nothing_to_terrain(schema):
    rng = np.random.default_rng(0)
    terrain = (50.0 + rng.normal(0, 3, (40, 40))).astype(np.float32)
    ids = {n: schema.by_name(n).id for n in ("road", "water", "grass", "farmland", "building")}
    classes = np.full((40, 40), ids["road"], np.uint8)
    classes[:, 10:20] = ids["water"]
    classes[:, 20:30] = ids["grass"]
    classes[:, 30:] = ids["farmland"]
    objects = np.zeros((40, 40), np.float32)
    objects[:5, 10:15] = 9.0  # a stale object height under water is dropped
    out = compose_heights(terrain, objects, classes, schema, seed=3)
    # Bridges/tunnels: road pixels never carve or raise the terrain.
    assert np.array_equal(out, terrain)
    assert np.array_equal(compose_heights(None, objects, classes, schema, seed=3), np.zeros((40, 40), np.float32))


def test_canopy_mean_and_range(schema):
    woodland = schema.by_name("woodland").id
    shape = (384, 384)
    classes = np.full(shape, woodland, np.uint8)
    canopy = CanopyParams(heights_m={"woodland": 15.0}, variation=0.3)
    out = compose_heights(np.zeros(shape, np.float32), np.zeros(shape, np.float32), classes, schema, seed=7,
                          canopy=canopy, row0=1000, col0=-500, gsd_m=1.0)
    assert abs(float(out.mean()) - 15.0) < 0.5
    assert out.min() >= 15.0 * 0.7 - 1e-3 and out.max() <= 15.0 * 1.3 + 1e-3
    assert out.std() > 0.5  # it varies
    # A building in the wood: the building height wins where it is taller.
    objects = np.zeros(shape, np.float32)
    objects[:10, :10] = 30.0
    out2 = compose_heights(None, objects, classes, schema, seed=7, canopy=canopy, row0=1000, col0=-500, gsd_m=1.0)
    assert (out2[:10, :10] == 30.0).all() and np.array_equal(out2[10:], out[10:])


def test_canopy_is_seamless_across_overlapping_windows(schema):
    woodland = schema.by_name("woodland").id

    def window(r0, c0, h, w):
        classes = np.full((h, w), woodland, np.uint8)
        return compose_heights(np.zeros((h, w), np.float32), np.zeros((h, w), np.float32), classes, schema,
                               seed=11, row0=r0, col0=c0, gsd_m=0.5)

    a = window(100, 200, 64, 96)
    b = window(140, 250, 64, 96)      # overlaps a on rows 140..163, cols 250..295
    assert np.array_equal(a[40:, 50:], b[:24, :46])
    # Smooth: neighbouring pixels differ far less than the range.
    assert np.abs(np.diff(a, axis=1)).max() < 1.5
    # Another seed gives another texture.
    assert not np.array_equal(canopy_field(11, 0, 0, (32, 32), 0.5), canopy_field(12, 0, 0, (32, 32), 0.5))


def test_value_noise_negative_offsets_and_range():
    n = value_noise(5, 0, -70, -33, (50, 60), 7.3)
    assert n.min() >= -1 and n.max() <= 1 and abs(float(n.mean())) < 0.5
    assert np.array_equal(n[20:, 13:], value_noise(5, 0, -50, -20, (30, 47), 7.3))


def test_canopy_params_validated():
    with pytest.raises(InputError):
        CanopyParams(heights_m={"woodland": -1.0})
    with pytest.raises(InputError):
        CanopyParams(variation=2.0)


# ----------------------------------------------------------------- hillshade


def test_hillshade_flat_is_uniform_sin_altitude():
    hs = hillshade(np.full((20, 30), 123.0, np.float32), (2.0, 2.0), altitude_deg=45)
    assert hs.dtype == np.uint8 and hs.shape == (20, 30)
    assert (hs == round(255 * math.sin(math.radians(45)))).all()
    assert (np.abs(hillshade(np.zeros((5, 5)), (1.0, 1.0), altitude_deg=30).astype(int) - 127.5) <= 1).all()


def test_hillshade_nw_facing_slope_brighter_than_se():
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    # Rows go south, cols go east. Rising towards the south-east: the face looks north-west.
    nw_face = 0.5 * (cols + rows)
    se_face = -nw_face
    hs_nw = hillshade(nw_face, (1.0, 1.0))
    hs_se = hillshade(se_face, (1.0, 1.0))
    flat = round(255 * math.sin(math.radians(45)))
    assert (hs_nw > flat).all() and (hs_se < flat).all()
    assert (hs_nw == hs_nw[0, 0]).all()  # a plane shades uniformly, edges included
    # Light from the south-east swaps them; z_factor steepens.
    assert (hillshade(se_face, (1.0, 1.0), azimuth_deg=135) == hs_nw).all()
    assert (hillshade(se_face, (1.0, 1.0), z_factor=3.0) < hs_se).all()


def test_hillshade_strips_with_neighbour_rows_match_whole():
    rng = np.random.default_rng(1)
    z = np.cumsum(rng.normal(0, 1, (40, 25)), axis=0) + np.cumsum(rng.normal(0, 1, (40, 25)), axis=1)
    whole = hillshade(z, (1.5, 1.0))
    parts = []
    for r0 in range(0, 40, 16):
        r1 = min(40, r0 + 16)
        parts.append(hillshade(z[r0:r1], (1.5, 1.0), above=z[r0 - 1] if r0 else None,
                               below=z[r1] if r1 < 40 else None))
    assert np.array_equal(np.vstack(parts), whole)


def test_hillshade_nodata_gives_zero():
    z = np.zeros((5, 5), np.float32)
    z[2, 2] = NODATA
    hs = hillshade(z, (1.0, 1.0))
    assert hs[2, 2] == 0 and hs[1, 1] == 0 and hs[0, 0] > 0
