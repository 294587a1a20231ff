"""A training run's settings as values (geogan.training.config): bad values are one-line errors at
construction, config -> recipe -> config round trips (shipped model cards included), `geogan train` and the
keyword API build the same config, and a run trained through the config resumes exactly.

Everything runs on tiny synthetic pairs the tests make themselves (tests/data_factory.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from data_factory import make_pairs
from geogan.dream import DreamTrainSettings
from geogan.errors import InputError
from geogan.training.config import (TERRAIN_LOSSES, ArchConfig, DataConfig, LossConfig, OptimConfig, Recipe,
                                    RuntimeConfig, ScheduleConfig, TerrainLossConfig, TrainConfig, recipe_for)
from geogan.training.terrain_chips import ChipFilters

MODELS = Path(__file__).resolve().parents[1] / "geogan" / "data" / "models"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs") / "p", n=12, size=64)


def _config(data: DataConfig | None = None, **parts) -> TrainConfig:
    return TrainConfig(data=data or DataConfig("pairs"), schedule=ScheduleConfig(steps=1), **parts)


# ---------------------------------------------------------------- bad values
BAD = [
    (lambda: ArchConfig("vae"), "unknown --arch 'vae'; use pix2pix, unet or spade"),
    (lambda: ArchConfig(ngf=0), r"ngf \(--ngf\) must be a whole number 1 or more \(got 0\)"),
    (lambda: ArchConfig(ndf=2.5), r"ndf \(--ndf\) must be a whole number"),
    (lambda: ArchConfig("spade", z_dim=0, style_encoder=True), r"z_dim \(--z-dim\)"),
    (lambda: ArchConfig("pix2pix", style_encoder=True), "--style-encoder needs --arch spade or --arch unet"),
    (lambda: ArchConfig("unet", hidden_nc=32), "--hidden-nc needs --arch spade"),
    (lambda: ArchConfig("spade", no_position_cue=True), "--no-position-cue needs --arch unet"),
    (lambda: ArchConfig("spade", style_film=True), "--style-film needs --arch spade and --style-encoder"),
    (lambda: LossConfig(gan_mode="wgan"), "unknown GAN loss 'wgan'; use hinge, vanilla or lsgan"),
    (lambda: LossConfig(l1_weight=-1.0), r"l1_weight \(--l1-weight\) must be a number 0 or more \(got -1.0\)"),
    (lambda: LossConfig(lattice_weight=float("nan")), r"lattice_weight \(--lattice-weight\) must be a number"),
    (lambda: LossConfig(fm_weight="10"), r"fm_weight \(--fm-weight\) must be a number"),
    (lambda: OptimConfig(lr=0.0), r"lr \(--lr\) must be a number above 0 \(got 0.0\)"),
    (lambda: OptimConfig(beta1=1.0), r"beta1 \(--beta1\) must be a number in \[0, 1\) \(got 1.0\)"),
    (lambda: OptimConfig(batch=0), r"batch size \(--batch-size\) must be a whole number 1 or more"),
    (lambda: OptimConfig(ratio="lots"), "--ratio 'lots' must be 'dynamic'"),
    (lambda: OptimConfig(ratio="2:x"), "--ratio '2:x'"),
    (lambda: ScheduleConfig(), r"give the length of the run: --steps N or --epochs N"),
    (lambda: ScheduleConfig(steps=-1), r"steps \(--steps\) must be a whole number 0 or more"),
    (lambda: ScheduleConfig(epochs=0), r"epochs \(--epochs\) must be a number above 0"),
    (lambda: ScheduleConfig(steps=5, checkpoint_every=0), r"checkpoint_every \(--checkpoint-every\)"),
    (lambda: ScheduleConfig(steps=5, max_seconds=-1), r"max_seconds \(--hours\)"),
    (lambda: RuntimeConfig(device="tpu"), "unknown device 'tpu'; use auto, cpu or cuda"),
    (lambda: RuntimeConfig(threads=0), r"threads \(--threads\) must be a whole number 1 or more"),
    (lambda: RuntimeConfig(seed=-1), r"seed \(--seed\) must be a whole number 0 or more"),
    (lambda: DataConfig([]), "no training data given"),
    (lambda: DataConfig(["a", "b"], label_map=["x", "y", "z"]), "2 pair folders but 3 label maps"),
    (lambda: DataConfig("a", label_map=["x", "y"]), "one pair folder but 2 label maps"),
    (lambda: DataConfig(["a", "b"], val_data="v"), "a separate validation folder works with one training folder"),
    (lambda: DataConfig("a", val_fraction=1.0), r"val_fraction \(--val-fraction\) must be a number in \[0, 1\)"),
    (lambda: TerrainLossConfig.from_dict({"bogus": 1}), r"unknown terrain loss setting\(s\) \['bogus'\]"),
    (lambda: TerrainLossConfig(height_slope_weight=-1), "height_slope_weight must be a number 0 or more"),
    (lambda: _config(name="../elsewhere"), "model name '../elsewhere' must be a plain file name"),
    (lambda: _config(terrain={"height_to_d": True}), "the terrain losses .* need --shadow"),
    (lambda: TrainConfig(data="pairs", schedule=ScheduleConfig(steps=1)), "TrainConfig.data must be a DataConfig"),
    (lambda: DreamTrainSettings(gsd_m=0), r"gsd_m \(--gsd\) must be a number above 0"),
    (lambda: DreamTrainSettings(gsd_m=4, ngf=0), r"ngf \(--ngf\) must be a whole number 1 or more"),
    (lambda: DreamTrainSettings(gsd_m=4, lr_d=-1e-4), r"lr_d \(--lr-d\) must be a number above 0"),
    (lambda: DreamTrainSettings(gsd_m=4, r1_gamma=-1), r"r1_gamma \(--r1\) must be a number 0 or more"),
    (lambda: DreamTrainSettings(gsd_m=4, betas=(0.5,)), "betas must be two numbers in"),
    (lambda: DreamTrainSettings(gsd_m=4, smooth=1.0), r"smooth must be a number in \[0, 1\)"),
    (lambda: DreamTrainSettings(gsd_m=4, gan_mode="wgan"), "unknown GAN loss 'wgan'"),
    (lambda: DreamTrainSettings(gsd_m=4, batch=0), r"batch \(--batch\) must be a whole number 1 or more"),
    (lambda: DreamTrainSettings(gsd_m=4, ema=1.0), r"ema decay 1.0 must be in \[0, 1\)"),
    (lambda: DreamTrainSettings(gsd_m=4, name="a/b"), "model name 'a/b' must be a plain file name"),
    (lambda: ChipFilters(max_source_spacing_m=0), "max_source_spacing_m must be above 0 m"),
    (lambda: ChipFilters(max_water_share=1.5), r"max_water_share must be in \[0, 1\]"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_values_are_one_line_errors_at_construction(make, message):
    with pytest.raises(InputError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_good_values_and_defaults():
    config = _config(arch=ArchConfig("spade", style_encoder=True, style_film=True, hidden_nc=32),
                     runtime=RuntimeConfig(device="cuda:1", threads=2), terrain={"flip": False})
    assert config.terrain == TerrainLossConfig(flip=False) and config.runtime.device == "cuda:1"
    assert DataConfig(["a", "b"], label_map=["x", "y"]).data == ("a", "b")  # lists become tuples: a value
    assert ScheduleConfig(epochs=2).total_steps(6, 2) == 6 and ScheduleConfig(steps=7, epochs=2).total_steps(6, 2) == 7
    assert OptimConfig().controller() is not OptimConfig().controller()  # a fresh controller per run
    assert OptimConfig(ratio="2:1").controller().d_steps == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch'"):
        TrainConfig.from_options("unet", "pairs", steps=1, batch=2)  # train()'s name is batch_size


# ---------------------------------------------------------------- config <-> recipe
ROUND_TRIP = [
    dict(arch=ArchConfig("pix2pix", ngf=8)),
    dict(arch=ArchConfig("unet", ngf=4, ndf=4, no_position_cue=True, style_encoder=True, z_dim=8),
         loss=LossConfig(kld_weight=0.0, lattice_weight=10.0, diversity_weight=5.0, fixed_pattern_weight=1.0),
         optim=OptimConfig(batch=8, lr=1e-4, beta1=0.6)),
    dict(arch=ArchConfig("spade", style_encoder=True, style_film=True, hidden_nc=32, d_params={"n_layers": 2}),
         loss=LossConfig(gan_mode="lsgan", vgg_weights="vgg19.safetensors", vgg_weight=5.0)),
    dict(arch=ArchConfig("unet", shadow=True), terrain=TERRAIN_LOSSES),
    dict(arch=ArchConfig("unet", shadow=True), terrain={"height_to_d": True, "flip": True}),
]


@pytest.mark.parametrize("parts", ROUND_TRIP, ids=["pix2pix", "unet-style", "spade-film", "terrain", "terrain-d"])
def test_config_recipe_config_round_trip(parts):
    config = _config(**parts)
    recipe = config.recipe(7)
    again = config.with_recipe(recipe)
    assert again.recipe(7) == recipe
    saved = json.loads(json.dumps(asdict(recipe)))  # as state.json and the card hold it
    assert config.with_recipe(saved).recipe(7) == recipe == Recipe.from_dict(saved)
    assert again.with_recipe(again.recipe(7)) == again  # a fixed point after one trip


def test_recipe_takes_the_configs_choices():
    config = _config(arch=ArchConfig("unet", ngf=4, ndf=6, no_position_cue=True),
                     loss=LossConfig(l1_weight=10.0, lattice_weight=10.0), optim=OptimConfig(batch=2),
                     data=DataConfig("pairs", balance=False, jitter=True))
    r = config.recipe(5)
    assert r == recipe_for("unet", 5, g_params={"ngf": 4, "padding_mode": "reflect", "upsample": "resize",
                                                "resize_levels": 4}, d_params={"ndf": 6}, l1_weight=10.0,
                           lattice_weight=10.0, batch=2, balance=False, jitter=True)
    # the saved recipe's key order (the card's JSON) is the recipe's, overrides after
    assert list(r.g_params) == ["in_nc", "out_nc", "ngf", "n_down", "dropout", "noise", "norm", "padding_mode",
                                "upsample", "resize_levels"]
    assert _config().recipe(5) == recipe_for("unet", 5)  # nothing set: the project's recipe


@pytest.mark.parametrize("name", ["fast", "recife", "style", "terrain"])
def test_shipped_model_cards_recipes_round_trip(name):
    """Every shipped card's recipe (older ones lack fields added since) reads as a Recipe, and a config made
    from it trains exactly that recipe again."""
    card = json.loads((MODELS / f"{name}.json").read_text())
    saved = card["training"]["recipe"]
    recipe = Recipe.from_dict(saved)
    n_classes = len(card["classes"])
    assert _config().with_recipe(saved).recipe(n_classes) == recipe
    assert {k: v for k, v in asdict(recipe).items() if k in saved} == saved
    with pytest.raises(InputError, match="fields this version does not know"):
        Recipe.from_dict({**saved, "future_weight": 1.0})


def test_the_default_models_command_as_a_config_trains_its_recipe():
    """docs/training.md's TrainConfig for the fast model (the default until the texture bank) gives exactly the
    recipe on its shipped card."""
    card = json.loads((MODELS / "fast.json").read_text())
    config = TrainConfig(data=DataConfig("pairs", label_map="landcoverai"),
                         schedule=ScheduleConfig(steps=5550, checkpoint_every=2500),
                         arch=ArchConfig("unet", no_position_cue=True), loss=LossConfig(lattice_weight=10.0),
                         optim=OptimConfig(batch=8, ratio="1:1"), runtime=RuntimeConfig(device="cuda"), name="default")
    assert json.loads(json.dumps(asdict(config.recipe(len(card["classes"]))))) == card["training"]["recipe"]


# ---------------------------------------------------------------- the fronts build the same value
def test_cli_and_keyword_api_build_the_same_config(pairs_dir, tmp_path, monkeypatch):
    import geogan.training.trainer as trainer
    from geogan.cli import app
    seen = {}

    def fake_train_with(config, out_dir, *, resume=False, init_from=None, progress=False):
        seen.update(config=config, out=out_dir, resume=resume, init_from=init_from)
        return trainer.TrainLog(step=1, seconds=1.0), Path(out_dir) / "export" / "m.json"

    monkeypatch.setattr(trainer, "train_with", fake_train_with)
    args = ["train", "--pairs", str(pairs_dir), "--out", str(tmp_path / "run"), "--ngf", "4", "--ndf", "6",
            "--batch-size", "2", "--lattice-weight", "10", "--ratio", "1:1", "--hours", "0.5", "--threads", "1",
            "--no-position-cue", "--name", "m", "--resume", "--seed", "3", "--val-fraction", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained to step 1" in result.output and seen["resume"] is True
    api = TrainConfig.from_options("unet", pairs_dir, steps=1000, batch_size=2, lattice_weight=10.0, ratio="1:1",
                                   max_seconds=1800.0, threads=1, name="m", seed=3, val_fraction=0.5,
                                   arch_params={"ngf": 4, "padding_mode": "reflect", "upsample": "resize",
                                                "resize_levels": 4}, disc_params={"ndf": 6})
    assert seen["config"].recipe(5) == api.recipe(5)
    assert (seen["config"].schedule, seen["config"].optim, seen["config"].runtime, seen["config"].data) == \
        (api.schedule, api.optim, api.runtime, api.data)


@pytest.mark.parametrize("args, message", [
    (["--lr", "0"], r"lr \(--lr\) must be a number above 0"),
    (["--ngf", "0"], r"ngf \(--ngf\) must be a whole number 1 or more"),
    (["--checkpoint-every", "0"], r"checkpoint_every \(--checkpoint-every\)"),
    (["--name", "a/b"], "model name 'a/b' must be a plain file name"),
])
def test_cli_refuses_bad_values_in_one_line_before_any_work(pairs_dir, tmp_path, args, message):
    import re

    from geogan.cli import app
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--pairs", str(pairs_dir), "--out", str(out), *args])
    assert result.exit_code == 2 and re.search(message, result.output), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_dream_train_cli_checks_its_settings_before_rasterizing(tmp_path):
    from geogan.cli import app
    missing = tmp_path / "nowhere.osm"  # never read: the settings are refused first
    for args, message in ((["--gsd", "0"], "gsd_m (--gsd) must be a number above 0"),
                          (["--lr-d", "-1"], "lr_d (--lr-d) must be a number above 0"),
                          (["--gan-mode", "wgan"], "unknown GAN loss 'wgan'")):
        result = CliRunner().invoke(app, ["dream-train", "--osm", str(missing), "--out", str(tmp_path / "d"), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- runs through the config resume exactly
def test_train_with_resumes_exactly_and_reads_older_state(pairs_dir, tmp_path):
    """3 steps, then resumed to 5, equal a straight 5-step run (networks, optimisers, exported weights); a
    state.json whose recipe lacks the fields added since (an older run) still resumes."""
    from geogan.models.checkpoint import load_generator, load_training_state, save_training_state
    from geogan.training.trainer import train_with

    def config(steps):
        return TrainConfig(data=DataConfig(pairs_dir, val_fraction=0.5, balance=False),
                           schedule=ScheduleConfig(steps=steps, checkpoint_every=100, sample_every=100),
                           arch=ArchConfig("unet", ngf=4, ndf=4, g_params={"n_down": 5}),
                           loss=LossConfig(lattice_weight=10.0), optim=OptimConfig(batch=2, ratio="1:1"),
                           runtime=RuntimeConfig(device="cpu", seed=2), name="tiny")

    _, straight = train_with(config(5), tmp_path / "a")
    train_with(config(3), tmp_path / "b")
    log, resumed = train_with(config(5), tmp_path / "b", resume=True)
    assert log.step == 5
    sa, ma = load_training_state(tmp_path / "a" / "state.safetensors")
    sb, mb = load_training_state(tmp_path / "b" / "state.safetensors")
    for net in ("G", "D"):
        assert all(torch.equal(sa[net][k], sb[net][k]) for k in sa[net]), net
    assert ma["recipe"] == mb["recipe"] == asdict(config(5).recipe(5)) and ma["numpy_rng"] == mb["numpy_rng"]
    ga, ca = load_generator(straight)
    gb, cb = load_generator(resumed)
    assert all(torch.equal(v, gb.state_dict()[k]) for k, v in ga.state_dict().items())
    assert ca["training"]["recipe"] == cb["training"]["recipe"] == ma["recipe"]
    # an older run: its state.json recipe without the fields added since
    tensors, meta = load_training_state(tmp_path / "b" / "state.safetensors")
    for key in ("fixed_pattern_weight", "diversity_weight", *TERRAIN_LOSSES):
        meta["recipe"].pop(key)
    save_training_state(tmp_path / "b" / "state", tensors, meta)
    log, _ = train_with(config(6), tmp_path / "b", resume=True)
    assert log.step == 6 and np.isfinite([h["loss_d"] for h in log.history]).all()
