"""Training: datasets and the split, recipes, loss goes down, exact resume, Ctrl-C, D:G ratio, shadows, CLI.

Everything runs on tiny synthetic pairs the tests make themselves (tests/data_factory.py).
Torch runs single-threaded here: on a busy 2-core machine two OpenMP threads are many times slower.
"""

import json
import math

import numpy as np
import pytest
import torch

from data_factory import COLOURS, make_pairs
from geogan.errors import InputError, OutputError
from geogan.models.checkpoint import load_generator
from geogan.training.datasets import (PairsDataset, class_histograms, load_pairset, split_by_number, tile_weights,
                                      val_from_number)
from geogan.training.pairs import PairSet, load_label_map
from geogan.training.ratio import DynamicRatio, FixedRatio, parse_ratio
from geogan.training.trainer import Trainer, recipe_for, train

TINY = dict(g_params={"ngf": 8, "n_down": 5}, d_params={"ndf": 8}, batch=2, balance=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs") / "p", n=12, size=64)


@pytest.fixture(scope="module")
def data(pairs_dir):
    """(train, val) datasets: numbers 0-5 train, 902-907 val (half and half)."""
    return (PairsDataset(pairs_dir, size=64, split="train", val_fraction=0.5),
            PairsDataset(pairs_dir, size=64, split="val", val_fraction=0.5, jitter=False, flip=False))


# ---------------------------------------------------------------- datasets
def test_split_is_by_file_number(tmp_path):
    files = [tmp_path / f"pair_{i:04d}.png" for i in range(1024)]
    train_f, val_f = split_by_number(files)
    assert len(val_f) == 128 and min(int(f.stem[-4:]) for f in val_f) == 896 == val_from_number(files)
    train_f, val_f = split_by_number(files[::-1], val_every=10)  # order of the input does not matter
    assert len(val_f) == 102 and val_f[0].name == "pair_0009.png" and val_f[1].name == "pair_0019.png"
    assert not set(train_f) & set(val_f) and len(train_f) + len(val_f) == 1024
    even = [tmp_path / f"pair_{i:04d}.png" for i in range(0, 1854, 2)]  # Recife-style numbering
    assert len(split_by_number(even, val_fraction=0.125)[1]) == 116
    with pytest.raises(InputError):
        split_by_number(files, val_every=10, val_fraction=0.1)


def test_pairs_dataset_items_are_one_hot_deterministic_and_augmented(data, pairs_dir):
    train_ds, val_ds = data
    assert len(train_ds) == 6 and len(val_ds) == 6 and min(val_ds.numbers) >= 900
    x, img = train_ds[0]
    assert x.shape == (5, 64, 64) and img.shape == (3, 64, 64)
    assert torch.all(x.sum(0) == 1) and -1 <= img.min() and img.max() <= 1
    again = train_ds[0]
    assert torch.equal(x, again[0]) and torch.equal(img, again[1])  # a function of (seed, epoch, index)
    train_ds.set_epoch(1)
    other = [train_ds[i][1] for i in range(6)]
    train_ds.set_epoch(0)
    assert any(not torch.equal(o, train_ds[i][1]) for i, o in enumerate(other))  # other epoch, other jitter
    # without augmentation an item is the file itself; labels follow the label map's values
    xv, iv = val_ds[0]
    lm = val_ds.label_map
    cls = xv.argmax(0).numpy()
    for value, colour in COLOURS.items():
        m = cls == lm.classes.index(lm.values[(value,)])
        if m.any():
            mean = ((iv.permute(1, 2, 0).numpy()[m] + 1) * 127.5).mean(0)
            assert np.abs(mean - colour).max() < 6
    # random crops when the output is smaller than the tiles; a DataLoader batches items
    small = PairsDataset(pairs_dir, size=32, split="train", val_fraction=0.5)
    xb, ib = next(iter(torch.utils.data.DataLoader(small, batch_size=3, sampler=small.sampler())))
    assert xb.shape == (3, 5, 32, 32) and ib.shape == (3, 3, 32, 32)


def test_label_map_mismatch_and_tolerance(tmp_path):
    from PIL import Image
    d = tmp_path / "p"
    d.mkdir()
    lab = np.zeros((16, 16, 3), np.uint8)
    lab[:8] = (250, 3, 2)  # anti-aliased red: building
    lab[8:] = (0, 125, 250)  # near azure: water
    Image.fromarray(np.concatenate([np.full_like(lab, 99), lab], 1)).save(d / "pair_0001.png")
    ps = load_pairset([d / "pair_0001.png"], "recife")
    assert {ps.label_map.classes[i] for i in np.unique(ps.labels)} == {"building", "water"}
    with pytest.raises(InputError, match="label map"):  # colour labels read with a grey legend
        load_pairset([d / "pair_0001.png"], "landcoverai")


def test_class_balanced_weights_favour_rare_classes():
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[:3] = 3  # three water tiles
    labels[3, :2] = 1  # one tile with a building
    hist = class_histograms(labels, 5)
    assert hist.shape == (4, 5) and np.allclose(hist.sum(1), 1)
    for mode in ("mixture", "dominant"):
        w = tile_weights(hist, mode=mode, power=1.0)
        assert w.sum() == pytest.approx(1) and w[3] > w[0]
    assert np.allclose(tile_weights(hist, power=0), 0.25)


def test_label_maps_cover_the_schema():
    from geogan.classes import load_schema
    names = set(load_schema().names)
    for name in ("landcoverai", "recife"):
        lm = load_label_map(name)
        assert set(lm.schema_to_model) == names and set(lm.schema_to_model.values()) <= set(lm.classes)
        assert lm.license and lm.gsd_m > 0
    assert "CC BY-NC-SA" in load_label_map("landcoverai").license


# ---------------------------------------------------------------- recipes and training
def test_recipes_follow_the_papers():
    p = recipe_for("pix2pix", 5)
    assert p.g_params["ngf"] == 64 and p.g_params["n_down"] == 8 and p.l1_weight == 100 and p.jitter
    assert p.d_arch == "patchgan" and p.gan_mode == "vanilla" and p.lr == 2e-4 and p.beta1 == 0.5 and p.batch == 1
    s = recipe_for("spade", 5)
    assert s.gan_mode == "hinge" and s.d_arch == "multiscale" and s.fm_weight > 0
    with pytest.raises(InputError):
        recipe_for("vae", 5)


def test_a_few_steps_reduce_l1(data, tmp_path):
    train_ds, val_ds = data
    recipe = recipe_for("unet", 5, l1_weight=100.0, **TINY)
    t = Trainer(recipe, train_ds, tmp_path / "run", val_set=val_ds, ratio=FixedRatio(1, 1), seed=0)
    before = t.validate()
    t.train(60, checkpoint_every=1000, sample_every=30, log_every=10)
    after = t.validate()
    assert after < before * 0.85, (before, after)
    # exported model loads and carries a card with the label map's schema mapping and licence
    module, card = load_generator(tmp_path / "run" / "export" / "model.json")
    assert card["classes"] == list(train_ds.classes) and "CC BY-NC-SA" in card["license"]
    assert card["training"]["steps"] == 60 and card["metrics"]["val_l1"] == pytest.approx(after, rel=1e-3)
    assert card["outputs"] == ["rgb"] and "height_scale_m" not in card  # no height keys on an RGB model
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum("loss_l1" in rec for rec in lines) == 6
    epochs = [rec for rec in lines if "d_to_g" in rec]  # 6 pairs / batch 2: an epoch is 3 steps
    assert len(epochs) == 20 and epochs[0]["d_to_g"] == 1.0
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.png")) == \
        ["step_0000030.png", "step_0000060.png"]


def _weights(t):
    return {k: v.clone() for k, v in t.G.state_dict().items()}


def test_lattice_equivariance_and_diversity_losses_are_logged_and_can_be_added_when_resuming(pairs_dir, tmp_path):
    kw = dict(batch_size=2, arch_params={"ngf": 4, "n_down": 5}, disc_params={"ndf": 4}, val_fraction=0.5,
              checkpoint_every=100, sample_every=100, device="cpu", log_every=1)
    train("unet", pairs_dir, tmp_path / "run", steps=2, **kw)
    train("unet", pairs_dir, tmp_path / "run", steps=4, resume=True, lattice_weight=10.0, equivariance_weight=5.0,
          diversity_weight=10.0, **kw)
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for key in ("loss_lattice", "loss_equivariance", "diversity"):
        values = [r.get(key) for r in recs if r.get("g_step")]
        assert values[:2] == [None, None] and all(v is not None and v >= 0 for v in values[2:])
    _, card = load_generator(tmp_path / "run" / "export" / "model.json")
    assert card["training"]["recipe"]["lattice_weight"] == 10.0
    assert card["training"]["recipe"]["diversity_weight"] == 10.0


def test_fixed_pattern_loss_runs_the_generator_in_eval_mode_and_leaves_it_training(data, tmp_path):
    train_ds, _ = data
    running = {}
    for weight in (100.0, 0.0):
        recipe = recipe_for("unet", 5, g_params={"ngf": 4, "n_down": 5}, d_params={"ndf": 4}, batch=2,
                            balance=False, fixed_pattern_weight=weight)
        t = Trainer(recipe, train_ds, tmp_path / f"run{weight}", ratio=FixedRatio(1, 1), seed=0)
        modes = []
        t.G.register_forward_pre_hook(lambda module, args: modes.append(module.training))
        rec = t.step()
        assert t.G.training
        running[weight] = {k: v.clone() for k, v in t.G.state_dict().items() if "running" in k}
        if weight:
            assert math.isfinite(rec["fixed_pattern_std"])
            assert modes == [True, False]  # the batch in train mode, the uniform samples in eval mode
        else:
            assert "fixed_pattern_std" not in rec and modes == [True]
    # batch-norm statistics come from the training batch only, not from the uniform samples
    assert running[100.0].keys() == running[0.0].keys() and running[0.0]
    for k, v in running[0.0].items():
        assert torch.equal(v, running[100.0][k]), k


def test_kld_weight_zero_feeds_the_generator_the_plain_style_code(data, tmp_path):
    """kld_weight 0: no sampling, G gets the encoder's mean (with KL, a sample around it)."""
    train_ds, _ = data
    seen = {}
    for kld in (0.0, 0.05):
        recipe = recipe_for("spade", 5, g_params={"ngf": 4, "n_up": 4, "z_dim": 4, "use_style_encoder": True},
                            d_params={"ndf": 4}, batch=2, balance=False, kld_weight=kld)
        t = Trainer(recipe, train_ds, tmp_path / f"k{kld}", ratio=FixedRatio(1, 1), seed=0)
        encode, forward = t.G.encode_style, t.g_fwd

        def spy_encode(img, encode=encode):
            z, mu, logvar = encode(img)
            seen["mu"] = mu.detach().clone()
            return z, mu, logvar

        def spy_forward(x, encode=None, forward=forward, **kw):
            seen["style"] = kw.get("style").detach().clone()
            return forward(x, **kw)

        t.G.encode_style, t.g_fwd = spy_encode, spy_forward
        t.step()
        assert torch.equal(seen["style"], seen["mu"]) == (kld == 0.0)


def test_init_from_starts_a_new_recipe_from_an_earlier_run(pairs_dir, tmp_path):
    """--init-from: a SPADE run with style FiLM starts from a run without it; the shared tensors are copied,
    only the new FiLM layers keep their (zero) initialisation; a run of another architecture is refused."""
    kw = dict(batch_size=2, disc_params={"ndf": 4}, val_fraction=0.5, checkpoint_every=100, sample_every=100,
              device="cpu")
    base = {"ngf": 4, "n_up": 4, "z_dim": 4, "use_style_encoder": True}
    train("spade", pairs_dir, tmp_path / "a", steps=2, arch_params=base, **kw)
    recipe = recipe_for("spade", 5, g_params={**base, "style_film": True}, d_params={"ndf": 4}, batch=2, balance=False)
    ds = PairsDataset(pairs_dir, size=64, split="train", val_fraction=0.5)
    t = Trainer(recipe, ds, tmp_path / "b")
    missing = t.init_from(tmp_path / "a")
    assert missing and all("style_film" in k for k in missing)
    from geogan.models.checkpoint import load_training_state
    src = load_training_state(tmp_path / "a" / "state.safetensors")[0]
    assert torch.equal(t.G.state_dict()["fc.weight"], src["G"]["fc.weight"])
    assert torch.equal(t.D.state_dict()[next(iter(src["D"]))], src["D"][next(iter(src["D"]))])
    other = Trainer(recipe_for("unet", 5, **TINY), ds, tmp_path / "c")
    with pytest.raises(InputError, match="does not fit"):
        other.init_from(tmp_path / "a")


def test_resume_continues_exactly(data, tmp_path):
    train_ds, _ = data
    recipe = recipe_for("unet", 5, **TINY)
    band = dict(low=0.5, high=5.0)  # G steps every time here, and the controller state must survive resume
    straight = Trainer(recipe, train_ds, tmp_path / "a", ratio=DynamicRatio(**band), seed=3)
    straight.train(8, checkpoint_every=100, sample_every=100)
    first = Trainer(recipe, train_ds, tmp_path / "b", ratio=DynamicRatio(**band), seed=3)
    first.train(4, checkpoint_every=100, sample_every=100)
    second = Trainer(recipe, train_ds, tmp_path / "b", ratio=DynamicRatio(**band), seed=99)
    assert second.resume() and second.log.step == 4
    s0, s1 = first.opt_g.state_dict()["state"], second.opt_g.state_dict()["state"]
    assert s0 and s0.keys() == s1.keys()
    assert all(torch.equal(s0[k]["exp_avg_sq"], s1[k]["exp_avg_sq"]) for k in s0)  # optimizer state restored
    assert second.ratio.loss_ema == first.ratio.loss_ema
    second.train(8, checkpoint_every=100, sample_every=100)
    assert second.log.step == 8
    a, b = _weights(straight), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the straight run"
    da, db = straight.D.state_dict(), second.D.state_dict()
    assert all(torch.equal(da[k], db[k]) for k in da)


def test_ctrl_c_saves_a_checkpoint_that_resumes(data, tmp_path, monkeypatch):
    train_ds, _ = data
    recipe = recipe_for("unet", 5, **TINY)
    t = Trainer(recipe, train_ds, tmp_path / "r", ratio=FixedRatio(1, 1))
    real_step = t.step

    def step():
        if t.log.step == 3:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(t, "step", step)
    t.train(10, checkpoint_every=100, sample_every=100)  # returns normally after saving
    assert t.log.step == 3 and (tmp_path / "r" / "export" / "model.json").is_file()
    again = Trainer(recipe, train_ds, tmp_path / "r", ratio=FixedRatio(1, 1))
    assert again.resume() and again.log.step == 3


def test_train_function_exports_and_never_overwrites(pairs_dir, tmp_path):
    kw = dict(batch_size=2, arch_params={"ngf": 4, "n_down": 5}, disc_params={"ndf": 4}, val_fraction=0.5,
              checkpoint_every=100, sample_every=100, device="cpu")
    log, card_path = train("unet", pairs_dir, tmp_path / "run", epochs=1, **kw)
    assert log.step == 3  # 6 training pairs, batch 2
    _, card = load_generator(card_path)
    assert card["training"]["train_pairs"] == 6 and card["training"]["val_pairs"] == 6
    assert "LandCover.ai" in card["training"]["attribution"] and card["metrics"]["val_l1"] > 0
    with pytest.raises(OutputError, match="--resume"):
        train("unet", pairs_dir, tmp_path / "run", steps=4, **kw)
    log, _ = train("unet", pairs_dir, tmp_path / "run", steps=4, resume=True, **kw)
    assert log.step == 4


def test_resume_refuses_another_architecture(data, tmp_path):
    train_ds, _ = data
    Trainer(recipe_for("unet", 5, **TINY), train_ds, tmp_path / "r").train(1)
    other = Trainer(recipe_for("unet", 5, **{**TINY, "g_params": {"ngf": 4, "n_down": 5}}), train_ds, tmp_path / "r")
    with pytest.raises(InputError, match="same --arch"):
        other.resume()


# ---------------------------------------------------------------- D:G ratio
def test_dynamic_ratio_switches_generator_off_above_the_band():
    r = DynamicRatio(low=0.5, high=1.0, ema=0.0)
    assert r.should_step_g(0.7)  # inside the band: G keeps stepping
    assert not r.should_step_g(2.0)  # D is losing: G pauses
    assert not r.should_step_g(0.8)  # still above low: stays off (hysteresis)
    assert r.should_step_g(0.3)  # below the band: back on
    for d, g in ((True, True), (True, False), (True, False), (True, True)):
        r.record(d, g)
    c = r.take_counts()
    assert (c.d_steps, c.g_steps, c.ratio) == (4, 2, 2.0) and r.take_counts().d_steps == 0
    f = FixedRatio(2, 1)
    pattern = [(f.should_step_d(), f.should_step_g(0.0)) for _ in range(4)]
    assert pattern == [(True, True), (True, False), (True, True), (True, False)]
    restored = DynamicRatio(low=0.5, high=1.0, ema=0.0)
    restored.load_state(DynamicRatio(low=0.5, high=1.0, g_on=False, loss_ema=3.0).state())
    assert not restored.g_on and restored.loss_ema == 3.0
    assert isinstance(parse_ratio("3:1"), FixedRatio) and parse_ratio("dynamic:0.2:0.9").high == 0.9
    with pytest.raises(InputError):
        parse_ratio("lots")


def test_trainer_pauses_g_when_d_loss_is_forced_high(data, tmp_path):
    train_ds, _ = data
    ratio = DynamicRatio(low=0.0, high=0.001, ema=0.0)  # any real D loss is above the band
    t = Trainer(recipe_for("unet", 5, **TINY), train_ds, tmp_path / "run", ratio=ratio)
    g_before = _weights(t)
    t.train(6, checkpoint_every=100, sample_every=100)
    assert all(torch.equal(g_before[k], v) for k, v in t.G.state_dict().items() if "running" not in k
               and "num_batches" not in k)
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [rec for rec in lines if "d_to_g" in rec]
    assert len(epochs) == 2 and all(rec["g_steps"] == 0 and rec["d_steps"] == 3 for rec in epochs)


# ---------------------------------------------------------------- texture + height
class HeightPairs(PairSet):
    """Pairs plus a height map (buildings tall) for the texture+height route."""

    def batch(self, idx, rng, **kw):
        x, img = super().batch(idx, rng, flip=False)
        height = (x[:, 1:2] * 0.8 - 0.5)  # buildings high, the rest low, in [-1, 1]
        return x, img, height


def test_texture_height_with_shadow_trains_end_to_end(data, tmp_path):
    train_ds, _ = data
    tiles = train_ds.tiles
    hp = HeightPairs(tiles.images, tiles.labels, tiles.label_map, tiles.numbers)
    recipe = recipe_for("unet", 5, shadow=True, **TINY)
    assert recipe.g_params["out_nc"] == 4
    t = Trainer(recipe, hp, tmp_path / "run", val_set=hp, ratio=FixedRatio(1, 1))
    t.train(4, checkpoint_every=100, sample_every=100, log_every=1)
    assert all(p.grad is not None for p in t.shadow.parameters())
    hist = [h for h in t.log.history if "loss_height" in h]
    assert hist and np.isfinite(hist[-1]["loss_height"])
    _, card = load_generator(tmp_path / "run" / "export" / "model.json")
    assert card["outputs"] == ["rgb", "height"]


# ---------------------------------------------------------------- command line
def test_cli_train_resume_and_tensorboard(tmp_path):
    """`geogan train` from the command line: a short run, a refusal, a resume, TensorBoard files, samples.
    The resume is a real process (the run's state carries over between processes); the short run and the
    refusals run in-process (test_cli.geogan: same exit code and stderr, no interpreter start-up each)."""
    import subprocess
    import sys

    from test_cli import geogan
    pairs_dir = make_pairs(tmp_path / "pairs", n=6, size=128, seed=2)
    run = tmp_path / "run"
    args = ["train", "--arch", "unet", "--pairs", str(pairs_dir), "--out",
            str(run), "--ngf", "4", "--batch-size", "1", "--checkpoint-every", "2", "--sample-every", "2",
            "--tensorboard", "--name", "tiny", "--no-position-cue", "--threads", "1"]
    base = [sys.executable, "-m", "geogan.cli", *args]
    p = geogan(*args, "--steps", "2")
    assert p.returncode == 0, p.stderr
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert list((run / "samples").glob("*.png"))
    again = geogan(*args, "--steps", "3")
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    p = subprocess.run(base + ["--steps", "3", "--resume"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "trained to step 3" in p.stdout
    _, card = load_generator(run / "export" / "tiny.json")
    assert card["training"]["steps"] == 3
    assert {k: card["arch_params"][k] for k in ("padding_mode", "upsample", "resize_levels")} == \
        {"padding_mode": "reflect", "upsample": "resize", "resize_levels": 4}
    bad = geogan(*args[:-2], "--steps", "1", "--label-map", "nowhere.toml", "--out", tmp_path / "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "label map" in bad.stderr
    spade = [("spade" if a == "unet" else a) for a in args[:-2]]
    bad = geogan(*spade, "--steps", "1", "--out", tmp_path / "z")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--no-position-cue needs --arch unet" in bad.stderr
    assert not (tmp_path / "z").exists()
    small = make_pairs(tmp_path / "small", n=4, size=64)
    only_small = [str(small) if a == str(pairs_dir) else a for a in args[:-2]]  # --pairs repeats: replace it
    p = geogan(*only_small, "--steps", "1", "--out", tmp_path / "y")
    assert p.returncode == 2 and "multiples of 128" in p.stderr and p.stderr.count("\n") == 1


def test_spade_style_encoder_trains_and_sets_the_look(data, tmp_path):
    """--style-encoder: the photo's encoded style drives G during training (KL term logged, encoder learns);
    the exported model encodes a reference photo, and different references give different outputs."""
    from geogan.classes import load_schema
    from geogan.infer import encode_style, load_model, run_batch

    train_ds, val_ds = data
    recipe = recipe_for("spade", 5, g_params={"ngf": 4, "n_up": 4, "z_dim": 8, "use_style_encoder": True},
                        d_params={"ndf": 8}, batch=2, balance=False)
    t = Trainer(recipe, train_ds, tmp_path / "run", val_set=val_ds, ratio=FixedRatio(1, 1), seed=0)
    enc_before = {k: v.clone() for k, v in t.G.style_encoder.state_dict().items()}
    t.train(6, checkpoint_every=1000, sample_every=1000, log_every=1)
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    kld = [r["loss_kld"] for r in recs if "loss_kld" in r]
    assert len(kld) == 6 and all(np.isfinite(kld)) and all(k >= 0 for k in kld)
    changed = [not torch.equal(v, t.G.style_encoder.state_dict()[k]) for k, v in enc_before.items()]
    assert any(changed)  # the encoder is trained through the generator's losses
    card_path = tmp_path / "run" / "export" / "model.json"
    _, card = load_generator(card_path)
    assert card["arch_params"]["use_style_encoder"] and card["arch_params"]["z_dim"] == 8
    model = load_model(str(card_path), load_schema(), "cpu")
    refs = []
    for i, colour in enumerate(((250, 250, 250), (10, 60, 10))):
        from PIL import Image
        p = tmp_path / f"ref{i}.png"
        Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(p)
        refs.append(encode_style(model, p))
    assert refs[0].shape == (1, 8) and not torch.allclose(refs[0], refs[1])
    import dataclasses
    maps = np.zeros((1, 64, 64), np.uint8)
    noise = np.zeros((1, 1, 64, 64), np.float32)
    outs = [run_batch(dataclasses.replace(model, style=r), maps, noise, 64) for r in refs]
    assert not np.array_equal(outs[0], outs[1])  # the reference reaches the output (6 steps learn no look)


def _recife_coloured(grey_dir, out_dir):
    """The same pairs with Recife's colour labels (yellow ground, red buildings, green vegetation, blue sea...)."""
    from PIL import Image
    colours = {0: (255, 255, 0), 45: (255, 0, 0), 74: (0, 255, 0), 176: (0, 0, 255), 255: (127, 127, 127)}
    out_dir.mkdir()
    for f in sorted(grey_dir.glob("*.png")):
        pair = np.array(Image.open(f).convert("RGB"))
        w = pair.shape[1] // 2
        lab = np.zeros((pair.shape[0], w, 3), np.uint8)
        for grey, rgb in colours.items():
            lab[pair[:, w:, 0] == grey] = rgb
        Image.fromarray(np.concatenate([pair[:, :w], lab], 1)).save(out_dir / f.name)
    return out_dir


def test_two_pair_sets_train_one_model_with_their_own_label_maps(pairs_dir, tmp_path):
    """LandCover.ai-style grey pairs and Recife-style colour pairs, each read with its own label map onto one
    class list, train one model; the card names both data sets and both licences."""
    recife_dir = _recife_coloured(pairs_dir, tmp_path / "recife")
    kw = dict(batch_size=2, arch_params={"ngf": 4, "n_down": 5}, disc_params={"ndf": 4}, val_fraction=0.5,
              checkpoint_every=100, sample_every=100, device="cpu")
    log, card_path = train("unet", [pairs_dir, recife_dir], tmp_path / "run", steps=2,
                           label_map=["landcoverai", "recife_landcoverai"], **kw)
    _, card = load_generator(card_path)
    assert card["training"]["train_pairs"] == 12 and card["training"]["val_pairs"] == 12
    assert "LandCover.ai" in card["training"]["data"] and "Recife" in card["training"]["data"]
    assert "CC BY-NC-SA" in card["license"] and "unknown" in card["license"]
    assert "Boguszewski" in card["training"]["attribution"] and "Pernambuco" in card["training"]["attribution"]
    # both sets' labels were read: the merged set holds the same class ids twice (the colours encode the same map)
    train_set, _, _ = __import__("geogan.training.trainer", fromlist=["_load_data"])._load_data(
        [pairs_dir, recife_dir], ["landcoverai", "recife_landcoverai"], None, 0.5, True)
    assert np.array_equal(train_set.labels[:6], train_set.labels[6:])
    with pytest.raises(InputError, match="different classes"):
        train("unet", [pairs_dir, recife_dir], tmp_path / "bad", steps=1, label_map=["landcoverai", "recife"], **kw)
    with pytest.raises(InputError, match="label maps"):
        train("unet", [pairs_dir, recife_dir], tmp_path / "bad2", steps=1,
              label_map=["landcoverai", "recife_landcoverai", "recife"], **kw)
