"""The resolution pyramid: models at coarser native GSDs, chosen from the requested GSD.

* ``choose_for_gsd`` (pure): the coarsest member whose native GSD is not above the request (and whose card
  range holds it), the family's own model below every member;
* ``pick_for_gsd`` finds a family's members in the zoo by their cards; paths and names without members stay;
* a render at a coarse GSD draws with the member (the outputs' GEOGAN_MODEL tag names it), also through
  ``--res`` and a preloaded ``Renderer``; a model given by path is never swapped;
* the cost follows the output: tiles per output pixel at 10 m within 3x of 0.5 m (counted, not timed),
  where the 0.5 m model alone would need over 100x;
* the training data of a member: pairs downsampled (photo block means, labels under block centres).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from PIL import Image

from conftest import make_tiny_model
from geogan.api import Renderer, render, sample_osm_path
from geogan.sources import osm_file_bounds
from geogan.zoo import choose_for_gsd, pick_for_gsd

CARDS = [{"name": "fam", "gsd_m": 0.5}, {"name": "fam_2m", "gsd_m": 2.0, "pyramid_of": "fam"},
         {"name": "fam_8m", "gsd_m": 8.0, "pyramid_of": "fam", "gsd_range_m": [8.0, 40.0]}]


@pytest.mark.parametrize("gsd_m, name", [(0.25, "fam"), (0.5, "fam"), (1.9, "fam"), (2.0, "fam_2m"),
                                         (7.9, "fam_2m"), (8.0, "fam_8m"), (10.0, "fam_8m"), (39.0, "fam_8m"),
                                         (40.0, "fam_2m"), (500.0, "fam_2m")])
def test_choose_the_coarsest_member_that_serves_the_gsd(gsd_m, name):
    assert choose_for_gsd(CARDS, gsd_m)["name"] == name


@pytest.fixture(scope="module")
def pyramid_dir(tmp_path_factory) -> Path:
    """A zoo folder with a family 'fam' (0.5 m) and its members 'fam_2m' and 'fam_8m' (tiny random U-Nets)."""
    d = tmp_path_factory.mktemp("pyramid")
    make_tiny_model(d / "fam", gsd_m=0.5)
    make_tiny_model(d / "lonely", gsd_m=0.5)
    for stem, gsd_m in (("fam_2m", 2.0), ("fam_8m", 8.0)):
        card_path = make_tiny_model(d / stem, gsd_m=gsd_m, seed=int(gsd_m))
        card = json.loads(card_path.read_text())
        card.update(pyramid_of="fam", gsd_range_m=[gsd_m, None])
        card_path.write_text(json.dumps(card))
    return d


@pytest.fixture
def zoo(pyramid_dir, monkeypatch) -> Path:
    monkeypatch.setenv("GEOGAN_MODEL_DIR", str(pyramid_dir))
    return pyramid_dir


def test_pick_for_gsd_finds_members_by_their_cards(zoo):
    assert [pick_for_gsd("fam", g) for g in (0.5, 1.0, 2.0, 5.0, 8.0, 30.0)] == \
        ["fam", "fam", "fam_2m", "fam_2m", "fam_8m", "fam_8m"]
    assert pick_for_gsd("lonely", 30.0) == "lonely"  # no members
    path = str(zoo / "fam.json")
    assert pick_for_gsd(path, 30.0) == path  # a model given by path is the user's exact choice


def _utm_bbox(half_m: float) -> tuple[float, float, float, float]:
    """A square of side 2 * half_m in EPSG:32635 around the sample town's centre, on whole 40 m."""
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform((x0 + x1) / 2,
                                                                                            (y0 + y1) / 2)
    cx, cy = round(cx / 40) * 40, round(cy / 40) * 40
    return (cx - half_m, cy - half_m, cx + half_m, cy + half_m)


def _render(out: Path, model: str, half_m: float, **area):
    return render(osm=sample_osm_path(), bbox=_utm_bbox(half_m), bbox_crs="EPSG:32635", crs="EPSG:32635",
                  out_dir=out, model=model, tile_px=64, overlap_px=16, **area)


def _model_tag(path: Path) -> str:
    with rasterio.open(path) as ds:
        return ds.tags()["GEOGAN_MODEL"]


def test_a_coarse_render_draws_with_the_member(zoo, tmp_path, one_torch_thread):
    r = _render(tmp_path / "g10", "fam", 200, gsd_m=10.0)
    assert _model_tag(r.aerial) == _model_tag(r.height) == "fam_8m"
    assert _model_tag(_render(tmp_path / "g05", "fam", 40, gsd_m=0.5).aerial) == "fam"
    # --res in a metre CRS: the ground GSD comes from the grid
    assert _model_tag(_render(tmp_path / "res2", "fam", 200, res=2.0).aerial) == "fam_2m"
    # a path is never swapped (this render draws 20x20 model pixels per output pixel)
    assert _model_tag(_render(tmp_path / "path", str(zoo / "fam.json"), 40, gsd_m=10.0).aerial) == "fam"


def test_a_preloaded_renderer_uses_the_pyramid_too(zoo, tmp_path, one_torch_thread):
    renderer = Renderer("fam", device="cpu")
    r8 = renderer.render(osm=sample_osm_path(), bbox=_utm_bbox(200), bbox_crs="EPSG:32635", crs="EPSG:32635",
                         gsd_m=8.0, out_dir=tmp_path / "a", tile_px=64)
    r05 = renderer.render(osm=sample_osm_path(), bbox=_utm_bbox(40), bbox_crs="EPSG:32635", crs="EPSG:32635",
                          gsd_m=0.5, out_dir=tmp_path / "b", tile_px=64)
    assert _model_tag(r8.aerial) == "fam_8m" and _model_tag(r05.aerial) == "fam"


def test_cost_follows_the_output_pixels(zoo, tmp_path, one_torch_thread):
    """Three renders of about 240 x 240 output pixels at 0.5, 2 and 10 m: the tiles the generator runs per output
    pixel stay within 3x of the 0.5 m render's (the 0.5 m model alone would run over 100x as many at 10 m)."""
    from geogan.anchor import canonical_grid
    from geogan.pipeline import native_plan
    from geogan.tiles import TileSpec

    per_px = {}
    for gsd_m in (0.5, 2.0, 10.0):
        r = _render(tmp_path / f"g{gsd_m}", "fam", 120 * gsd_m, gsd_m=gsd_m)
        assert abs(r.grid.height - 240) <= 1 and abs(r.grid.width - 240) <= 1
        per_px[gsd_m] = r.tiles / (r.grid.height * r.grid.width)
    assert per_px[10.0] <= 3 * per_px[0.5] and per_px[2.0] <= 3 * per_px[0.5], per_px
    spec = TileSpec(64, 16)
    base_tiles = native_plan(canonical_grid(r.grid, 0.5, spec.tile_px, spec.stride_px).grid, spec).tiles
    assert base_tiles / (r.grid.height * r.grid.width) > 100 * per_px[0.5]


def test_downsampled_pairs_keep_block_means_and_centre_labels(tmp_path):
    from geogan.training.pairs import load_label_map
    from geogan.training.pyramid import PyramidLevel, downsample_pair, write_downsampled_pairs

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    labels = np.zeros((32, 32, 3), np.uint8)
    labels[:, 18:] = 176  # water from column 18: under the centre of the third 8 px block (column 20)
    small = downsample_pair(np.concatenate([image, labels], 1), 8)
    assert small.shape == (4, 8, 3)
    assert np.array_equal(small[:, :4], np.round(image.reshape(4, 8, 4, 8, 3).mean((1, 3))).astype(np.uint8))
    assert small[0, 4:, 0].tolist() == [0, 0, 176, 176]
    src = tmp_path / "pairs"
    src.mkdir()
    Image.fromarray(np.concatenate([image, labels], 1)).save(src / "pair_0007.png")
    toml = write_downsampled_pairs(src, tmp_path / "x8", 8)
    lm = load_label_map(toml)
    assert lm.gsd_m == 4.0 and lm.classes == load_label_map("landcoverai").classes
    assert (tmp_path / "x8" / "pair_0007.png").is_file()  # the number (validation split) kept
    level = PyramidLevel.for_tile(64)
    assert 64 % 2 ** level.n_down == 0 and 64 // 2 ** level.n_down >= 4


def test_a_teacher_draws_the_pictures_a_member_learns(tmp_path, tiny_model):
    from geogan.evaluate import ModelGenerator, to_uint8_images
    from geogan.training.pairs import load_label_map
    from geogan.training.pyramid import box_mean, write_downsampled_pairs

    labels = np.zeros((32, 32, 3), np.uint8)
    labels[:, 16:] = 74  # woodland on the right
    photo = np.full((32, 32, 3), 200, np.uint8)
    src = tmp_path / "pairs"
    src.mkdir()
    Image.fromarray(np.concatenate([photo, labels], 1)).save(src / "pair_0003.png")
    toml = write_downsampled_pairs(src, tmp_path / "t4", 4, teacher=str(tiny_model), seed=5)
    small = np.asarray(Image.open(tmp_path / "t4" / "pair_0003.png").convert("RGB"))
    ids = (labels[..., 0] == 74).astype(np.uint8) * 2  # woodland is class 2 of the tiny model
    drawn = to_uint8_images(ModelGenerator(str(tiny_model)).generate(ids[None], seed=5 * 100_003 + 3, batch=1))[0]
    assert np.array_equal(small[:, :8], box_mean(drawn, 4))  # the teacher's picture, averaged; not the photo
    assert "picture: model 'tiny'" in load_label_map(toml).data
