"""Model inputs of the render loop: the global noise field and the class maps cut from one band per tile row."""

import numpy as np
import pytest
import shapely

from geogan.features import build_features
from geogan.grid import grid_from_bbox
from geogan.noise import NOISE_CELL_PX, noise_window
from geogan.pipeline import tile_row_inputs
from geogan.rasterizer import VectorClassSource
from geogan.sketch import RasterClassSource
from geogan.sources import RawLayer, SourceReport
from geogan.tiles import TileSpec, tile_rows


def test_noise_windows_agree_where_they_overlap():
    a = noise_window(7, 1000, 2000, 256, 256)
    b = noise_window(7, 1100, 2050, 300, 100)
    assert np.array_equal(a[100:256, 50:150], b[:156, :100])
    # across negative coordinates and cell borders too
    c = noise_window(7, -70, -130, 150, 200)
    d = noise_window(7, -5, -65, 20, 20)
    assert np.array_equal(c[65:85, 65:85], d)


def test_noise_is_standard_normal_and_uncorrelated():
    z = noise_window(3, 0, 0, 512, 512).astype(np.float64)
    assert z.dtype == np.float64 and abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    for dy, dx in ((0, 1), (1, 0), (0, NOISE_CELL_PX), (NOISE_CELL_PX, 0)):
        r = np.corrcoef(z[:512 - dy, :512 - dx].ravel(), z[dy:, dx:].ravel())[0, 1]
        assert abs(r) < 0.02, (dy, dx, r)
    # neighbouring cells are different draws, not copies of one block
    c = NOISE_CELL_PX
    assert not np.array_equal(z[:c, :c], z[:c, c:2 * c])


def test_noise_depends_on_seed_and_repeats_for_the_same_seed():
    assert np.array_equal(noise_window(1, 5, 9, 64, 80), noise_window(1, 5, 9, 64, 80))
    assert not np.allclose(noise_window(1, 5, 9, 64, 80), noise_window(2, 5, 9, 64, 80))
    assert noise_window(1, 5, 9, 64, 80).shape == (64, 80)


def _town_features(schema):
    lon, lat = 25.0, 60.0
    d = 0.0012
    polys = [shapely.box(lon - d, lat - d / 2, lon - d / 3, lat + d / 3),  # a park
             shapely.Point(lon + d / 2, lat).buffer(d / 4)]  # a round building
    tags = [{"leisure": "park"}, {"building": "yes"}]
    road = shapely.LineString([(lon - 2 * d, lat - d / 5), (lon + 2 * d, lat + d / 4)])
    report = SourceReport([RawLayer("t", np.array(polys + [road], dtype=object), tags + [{"highway": "primary"}],
                                    is_osm=True)])
    grid = grid_from_bbox((lon - 2 * d, lat - d, lon + 2 * d, lat + d), "EPSG:4326", "EPSG:3857", 1.0)
    return VectorClassSource(build_features(report, schema, grid.crs, grid.center_lonlat())), grid


@pytest.mark.parametrize("source", ["features", "raster"])
def test_band_cut_class_maps_equal_each_tiles_own_window(schema, source):
    feats, grid = _town_features(schema)
    if source == "raster":  # a sketch-like class raster on a coarser grid of its own
        coarse = grid.resized(grid.height // 3, grid.width // 3)
        feats = RasterClassSource(feats.classes(coarse), coarse)
    spec = TileSpec(64, 16)
    rows = tile_rows(grid.shape_yx, spec)
    assert len(rows) > 2 and len(rows[0]) > 3
    drawn = 0
    for row in rows:
        inputs = tile_row_inputs(feats, grid, spec, row, spec.tile_px, seed=5)
        for tile in row:
            classes, noise = inputs(tile)
            own = feats.classes(grid.window(tile.row0, tile.col0, spec.tile_px, spec.tile_px))
            assert np.array_equal(classes, own)
            assert np.array_equal(noise, noise_window(5, tile.row0, tile.col0, spec.tile_px, spec.tile_px))
            drawn += int((classes > 0).sum())
    assert drawn > 0  # the test saw features, not only background


def test_rescaled_tiles_get_their_own_window(schema):
    feats, grid = _town_features(schema)
    spec = TileSpec(64, 16)
    row = tile_rows(grid.shape_yx, spec)[1]
    inputs = tile_row_inputs(feats, grid, spec, row, 32, seed=5)  # model at half the output resolution
    tile = row[2]
    classes, noise = inputs(tile)
    assert classes.shape == noise.shape == (32, 32)
    want = feats.classes(grid.window(tile.row0, tile.col0, 64, 64).resized(32, 32))
    assert np.array_equal(classes, want)
    assert np.array_equal(noise, noise_window(5, tile.row0 // 2, tile.col0 // 2, 32, 32))


def test_osm_reads_size_gdals_node_index_to_the_file_and_restore_the_setting(tmp_path):
    import pyogrio

    from geogan.sources import osm_tmp_size
    small = tmp_path / "a.osm"
    small.write_text("<osm version='0.6'></osm>")
    assert pyogrio.get_gdal_config_option("OSM_MAX_TMPFILE_SIZE") is None
    with osm_tmp_size(small):
        assert pyogrio.get_gdal_config_option("OSM_MAX_TMPFILE_SIZE") in (4, "4")
    assert pyogrio.get_gdal_config_option("OSM_MAX_TMPFILE_SIZE") is None
    pyogrio.set_gdal_config_options({"OSM_MAX_TMPFILE_SIZE": "50"})
    try:
        with osm_tmp_size(small):  # a user's own setting wins
            assert pyogrio.get_gdal_config_option("OSM_MAX_TMPFILE_SIZE") in (50, "50")
    finally:
        pyogrio.set_gdal_config_options({"OSM_MAX_TMPFILE_SIZE": None})


def test_surface_strips_computed_in_column_pieces_join_exactly(schema, tmp_path, monkeypatch):
    """Class map and heights (DEM + buildings + canopy) do not depend on the column chunking."""
    import rasterio
    from rasterio.transform import from_origin

    import importlib
    R = importlib.import_module("geogan.pipeline")
    from geogan.terrain import DemSource

    lon, lat = 25.0, 60.0
    d = 0.0012
    # (no edge exactly through pixel centres: there GDAL's rounding depends on the window's origin)
    wood = shapely.box(lon - 2 * d, lat - d, lon - d / 7, lat + d)
    house = shapely.box(lon + d / 4, lat - d / 8, lon + d / 2, lat + d / 8)
    report = SourceReport([RawLayer("t", np.array([wood, house], dtype=object),
                                    [{"landuse": "forest"}, {"building": "yes", "height": "12"}], is_osm=True)])
    grid = grid_from_bbox((lon - 2 * d, lat - d, lon + 2 * d, lat + d), "EPSG:4326", "EPSG:3857", 1.0)
    feats = VectorClassSource(build_features(report, schema, grid.crs, grid.center_lonlat()))
    left, bottom, right, top = grid.bounds
    yy, xx = np.mgrid[0:40, 0:60].astype(np.float32)
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=60, height=40, count=1, dtype="float32", crs="EPSG:3857",
                       transform=from_origin(left - 50, top + 50, (right - left + 100) / 60,
                                             (top - bottom + 100) / 40)) as ds:
        ds.write(100 + 3 * xx + 2 * yy + 5 * np.sin(xx / 4), 1)
    with DemSource(dem, reference_grid=grid) as src:
        spec = R.make_height_spec(grid, src)
        whole = R._surface(feats, grid, schema, spec, 3, 100, 60)
        monkeypatch.setattr(R, "SURFACE_CHUNK_PX", 37)
        pieces = R._surface(feats, grid, schema, spec, 3, 100, 60)
    assert grid.width > 3 * 37
    assert np.array_equal(whole[0], pieces[0])
    # GDAL's warper rounds the DEM's bilinear resampling slightly differently per window: < 0.1 mm
    np.testing.assert_allclose(whole[1], pieces[1], rtol=0, atol=1e-4)
    # the test covers all three terms: terrain varies, a building and canopy stand on it
    wood_id, building_id = schema.by_name("woodland").id, schema.by_name("building").id
    assert {wood_id, building_id} <= set(np.unique(whole[0]).tolist())
    assert np.ptp(whole[1][whole[0] == 0]) > 10


def test_clipping_long_shapes_to_the_window_burns_the_same_pixels(schema):
    """A long, many-vertex road polygon burns the same pixels clipped to a window as whole."""
    from rasterio import features as rio_features

    from geogan.rasterizer import burnable, rasterize_classes

    lon, lat = 25.0, 60.0
    xs = np.linspace(lon - 0.01, lon + 0.01, 400)
    road = shapely.LineString(np.column_stack([xs, lat + 0.0004 * np.sin(xs * 3000)]))
    report = SourceReport([RawLayer("t", np.array([road], dtype=object), [{"highway": "primary"}], is_osm=True)])
    grid = grid_from_bbox((lon - 0.012, lat - 0.002, lon + 0.012, lat + 0.002), "EPSG:4326", "EPSG:3857", 1.0)
    feats = build_features(report, schema, grid.crs, grid.center_lonlat())
    burnt = 0
    for c0 in (0, 300, 655):
        win = grid.window(grid.height // 2 - 48, c0, 96, 256)
        whole = np.zeros(win.shape_yx, np.uint8)
        rio_features.rasterize(zip(feats.geometries, feats.class_ids.tolist()), out=whole, transform=win.transform)
        assert np.array_equal(rasterize_classes(feats, win), whole)
        burnt += int((whole > 0).sum())
        clipped = burnable(feats.geometries, [1], win)
        if clipped:  # far fewer vertices to visit on every scanline
            n_clipped = sum(len(ring) for polygon, _ in clipped for ring in polygon["coordinates"])
            assert n_clipped < shapely.get_num_coordinates(feats.geometries[0]) / 3
    assert burnt > 1000  # the road crossed the windows
    assert burnable(feats.geometries, [1], grid.window(10_000, 10_000, 8, 8)) == []  # nothing there: no shapes


def test_band_pieces_bound_the_band_and_match_tile_windows(schema, monkeypatch):
    """With band pieces of 2 tiles, tiles from several pieces still equal their own windows."""
    import importlib
    R = importlib.import_module("geogan.pipeline")
    monkeypatch.setattr(R, "BAND_TILES", 2)
    feats, grid = _town_features(schema)
    spec = TileSpec(64, 16)
    row = tile_rows(grid.shape_yx, spec)[2]
    assert len(row) > 2 * 2  # several pieces
    inputs = R.tile_row_inputs(feats, grid, spec, row, spec.tile_px, seed=9)
    for tile in row:
        classes, noise = inputs(tile)
        assert np.array_equal(classes, feats.classes(grid.window(tile.row0, tile.col0, 64, 64)))
        assert np.array_equal(noise, noise_window(9, tile.row0, tile.col0, 64, 64))


def test_concurrent_generator_calls_keep_order_values_and_thread_setting(tiny_model):
    """run_batches with two single-threaded streams gives each batch's output in input order, equal to one
    call at a time with two threads, and puts the torch thread count back."""
    import torch

    from geogan.classes import load_schema
    from geogan.infer import CUDA_STREAMS, cpu_streams, load_model, run_batch, run_batches
    model = load_model(str(tiny_model), load_schema(), "cpu")
    rng = np.random.default_rng(0)
    items = [(i, rng.integers(0, 12, (2, 64, 64)).astype(np.uint8), rng.standard_normal((2, 1, 64, 64)).astype(np.float32))
             for i in range(7)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        serial = [run_batch(model, m, z, 64) for _, m, z in items]
        out = list(run_batches(model, iter(items), 64, streams=2, threads_per_stream=1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [k for k, _ in out] == list(range(7))
    for (_, got), want in zip(out, serial):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert cpu_streams(torch.device("cpu"), 2) == (2, 1)
    assert cpu_streams(torch.device("cpu"), 16) == (4, 4)
    assert cpu_streams(torch.device("cpu"), 1) == (1, 1)
    assert cpu_streams(torch.device("cuda"), 16) == (CUDA_STREAMS, 16)


def test_tile_orientations_are_inverted_exactly_and_spread_over_all_eight():
    import torch

    from geogan.noise import orient, tile_orientation
    a = np.arange(2 * 5 * 5).reshape(2, 5, 5)
    seen = {orient(a, k).tobytes() for k in range(8)}
    assert len(seen) == 8  # eight different orientations

    from geogan.infer import _unorient_tensor
    for k in range(8):  # run_batch turns outputs back in torch: the exact inverse
        assert np.array_equal(_unorient_tensor(torch.from_numpy(orient(a, k).copy()), k).numpy(), a)
    ks = [tile_orientation(7, r, c) for r in range(0, 192 * 20, 192) for c in range(0, 192 * 20, 192)]
    assert set(ks) == set(range(8)) and max(np.bincount(ks)) < 0.2 * len(ks)
    assert ks == [tile_orientation(7, r, c) for r in range(0, 192 * 20, 192) for c in range(0, 192 * 20, 192)]
    assert ks != [tile_orientation(8, r, c) for r in range(0, 192 * 20, 192) for c in range(0, 192 * 20, 192)]


def test_which_models_turn_their_tiles(tiny_model):
    """Models trained on flipped/turned tiles turn each render tile; height models (lit from one side) and
    cards that say rotate_tiles: false do not."""
    import dataclasses

    from geogan.classes import load_schema
    from geogan.infer import load_model
    from geogan.pipeline import turns_tiles
    m = load_model(str(tiny_model), load_schema(), "cpu")
    with_card = lambda **kw: dataclasses.replace(m, card={**m.card, **kw})
    assert turns_tiles(with_card(training={"recipe": {"flip": True}}))
    assert not turns_tiles(with_card(training={"recipe": {"flip": False}}))
    assert not turns_tiles(with_card(outputs=["rgb", "height"]))
    assert not turns_tiles(with_card(rotate_tiles=False, training={"recipe": {"flip": True}}))
    assert turns_tiles(load_model("fast", load_schema(), "cpu"))
    assert not turns_tiles(load_model("terrain", load_schema(), "cpu"))


def test_automatic_tiles_hold_the_model_s_training_size():
    """Without --tile-size, output tiles cover 256 model pixels at the output GSD (a quarter overlap), so the
    generator always sees inputs of the size it was trained on."""
    from geogan.classes import load_schema
    from geogan.infer import load_model, model_input_px
    from geogan.pipeline import auto_tile_spec
    m = load_model("fast", load_schema(), "cpu")  # native 0.5 m
    for gsd_m, tile in ((0.5, 256), (1.0, 128), (0.25, 512), (0.6, 208), (4.0, 32), (100.0, 32)):
        spec = auto_tile_spec(m, gsd_m)
        assert (spec.tile_px, spec.overlap_px) == (tile, tile // 4)
        if tile > 32:
            assert model_input_px(spec.tile_px, gsd_m, m.gsd_m, m.size_multiple) == 256
