"""Training: recipes, loss goes down, exact resume, dynamic D:G ratio, texture+height with shadows."""

import json

import numpy as np
import pytest
import torch

from data_factory import make_pairs
from geogan.errors import InputError
from geogan.models.checkpoint import load_generator
from geogan.training.pairs import PairSet, load_label_map
from geogan.training.ratio import DynamicRatio, FixedRatio, parse_ratio
from geogan.training.trainer import Trainer, recipe_for

TINY = dict(g_params={"ngf": 8, "n_down": 5}, d_params={"ndf": 8}, batch=2, balance=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = make_pairs(tmp_path_factory.mktemp("pairs") / "p", n=12, size=64)
    lm = load_label_map("landcoverai")
    return PairSet.load(d, lm, "train"), PairSet.load(d, lm, "val")


def test_recipes_follow_the_papers():
    p = recipe_for("pix2pix", 5)
    assert p.g_params["ngf"] == 64 and p.g_params["n_down"] == 8 and p.l1_weight == 100 and p.jitter
    assert p.d_arch == "patchgan" and p.gan_mode == "vanilla" and p.lr == 2e-4 and p.beta1 == 0.5 and p.batch == 1
    s = recipe_for("spade", 5)
    assert s.gan_mode == "hinge" and s.d_arch == "multiscale" and s.fm_weight > 0
    with pytest.raises(InputError):
        recipe_for("vae", 5)


def test_a_few_steps_reduce_l1(data, tmp_path):
    train, val = data
    recipe = recipe_for("unet", 5, l1_weight=100.0, **TINY)
    t = Trainer(recipe, train, tmp_path / "run", val_set=val, ratio=FixedRatio(1, 1), seed=0)
    before = t.validate()
    t.train(60, checkpoint_every=1000, sample_every=1000)
    after = t.validate()
    assert after < before * 0.85, (before, after)
    # exported model loads and carries a card with the label map's schema mapping and licence
    module, card = load_generator(tmp_path / "run" / "export" / "model.json")
    assert card["classes"] == list(train.label_map.classes) and "CC BY-NC-SA" in card["license"]
    assert card["training"]["steps"] == 60
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") >= 2


def _weights(t):
    return {k: v.clone() for k, v in t.G.state_dict().items()}


def test_resume_continues_exactly(data, tmp_path):
    train, val = data
    recipe = recipe_for("unet", 5, **TINY)
    band = dict(low=0.5, high=5.0)  # G steps every time here, and the controller state must survive resume
    straight = Trainer(recipe, train, tmp_path / "a", ratio=DynamicRatio(**band), seed=3)
    straight.train(8, checkpoint_every=100, sample_every=100)
    first = Trainer(recipe, train, tmp_path / "b", ratio=DynamicRatio(**band), seed=3)
    first.train(4, checkpoint_every=100, sample_every=100)
    second = Trainer(recipe, train, tmp_path / "b", ratio=DynamicRatio(**band), seed=99)
    assert second.resume() and second.log.step == 4
    s0, s1 = first.opt_g.state_dict()["state"], second.opt_g.state_dict()["state"]
    assert s0 and s0.keys() == s1.keys()
    assert all(torch.equal(s0[k]["exp_avg_sq"], s1[k]["exp_avg_sq"]) for k in s0)  # optimizer state restored
    second.train(8, checkpoint_every=100, sample_every=100)
    assert second.log.step == 8
    a, b = _weights(straight), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the straight run"


def test_resume_refuses_another_architecture(data, tmp_path):
    train, _ = data
    Trainer(recipe_for("unet", 5, **TINY), train, tmp_path / "r").train(1)
    other = Trainer(recipe_for("unet", 5, **{**TINY, "g_params": {"ngf": 4, "n_down": 5}}), train, tmp_path / "r")
    with pytest.raises(InputError, match="same --arch"):
        other.resume()


def test_dynamic_ratio_switches_generator_off_above_the_band():
    r = DynamicRatio(low=0.5, high=1.0, ema=0.0)
    assert r.should_step_g(0.7)  # inside the band: G keeps stepping
    assert not r.should_step_g(2.0)  # D is losing: G pauses
    assert not r.should_step_g(0.8)  # still above low: stays off (hysteresis)
    assert r.should_step_g(0.3)  # below the band: back on
    f = FixedRatio(2, 1)
    pattern = [(f.should_step_d(), f.should_step_g(0.0)) for _ in range(4)]
    assert pattern == [(True, True), (True, False), (True, True), (True, False)]
    assert isinstance(parse_ratio("3:1"), FixedRatio) and parse_ratio("dynamic:0.2:0.9").high == 0.9
    with pytest.raises(InputError):
        parse_ratio("lots")


def test_trainer_pauses_g_when_d_loss_is_forced_high(data, tmp_path):
    train, _ = data
    ratio = DynamicRatio(low=-1.0 + 1.0, high=0.001, ema=0.0)  # any real D loss is above the band
    t = Trainer(recipe_for("unet", 5, **TINY), train, tmp_path / "run", ratio=ratio)
    g_before = _weights(t)
    t.train(5, checkpoint_every=100, sample_every=100)
    assert all(torch.equal(g_before[k], v) for k, v in t.G.state_dict().items() if "running" not in k
               and "num_batches" not in k)
    lines = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lines  # the realised ratio is logged at epoch ends
    assert any("d_to_g" in l for l in lines)


class HeightPairs(PairSet):
    """Pairs plus a height map (buildings tall) for the texture+height route."""

    def batch(self, idx, rng, **kw):
        x, img = super().batch(idx, rng, flip=False)
        height = (x[:, 1:2] * 0.8 - 0.5)  # buildings high, the rest low, in [-1, 1]
        return x, img, height


def test_texture_height_with_shadow_trains_end_to_end(data, tmp_path):
    train, val = data
    hp = HeightPairs(train.images, train.labels, train.label_map, train.numbers)
    recipe = recipe_for("unet", 5, shadow=True, **TINY)
    assert recipe.g_params["out_nc"] == 4
    t = Trainer(recipe, hp, tmp_path / "run", ratio=FixedRatio(1, 1))
    t.train(12, checkpoint_every=100, sample_every=100, log_every=1)
    assert all(p.grad is not None for p in t.shadow.parameters())
    hist = [h for h in t.log.history if "loss_height" in h]
    assert hist and np.isfinite(hist[-1]["loss_height"])
    _, card = load_generator(tmp_path / "run" / "export" / "model.json")
    assert card["outputs"] == ["rgb", "height"]


def test_tensorboard_logs_and_cli_train(tmp_path):
    """`geogan train` from the command line: a short run, a resume, TensorBoard event files, samples."""
    import subprocess
    import sys
    pairs_dir = make_pairs(tmp_path / "pairs", n=6, size=128, seed=2)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "geogan.cli", "train", "--arch", "unet", "--pairs", str(pairs_dir), "--out",
            str(run), "--ngf", "4", "--batch", "1", "--checkpoint-every", "2", "--sample-every", "2",
            "--tensorboard", "--name", "tiny"]
    p = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert list((run / "samples").glob("*.png"))
    again = subprocess.run(base + ["--steps", "3"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr  # an existing run is never overwritten
    p = subprocess.run(base + ["--steps", "3", "--resume"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "trained to step 3" in p.stdout
    _, card = load_generator(run / "export" / "tiny.json")
    assert card["training"]["steps"] == 3
