"""The FCN-score segmenter's training (geogan.training.segmenter_fit, `geogan train-segmenter`) on tiny
synthetic pairs: the loss drops, the selected weights save and load, a run resumes exactly, bad settings are
one-line errors."""

import json

import numpy as np
import pytest
import torch

from data_factory import make_pairs
from geogan.errors import InputError, OutputError
from geogan.evaluate import load_segmenter
from geogan.training.segmenter_fit import (FitConfig, SegmenterRun, balanced_weights, fit_segmenter, load_fit_data,
                                           sample_crops, segmenter_iou, tiles_with_class)

TINY = dict(batch=4, crop_px=32, width=8, depth=3, lr=5e-3, val_every=20, log_every=10)


@pytest.fixture()
def pairs(tmp_path):
    return make_pairs(tmp_path / "pairs")  # 6 training pairs (numbers 0..5), 6 evaluation pairs


def test_selection_slice_is_cut_from_the_training_range(pairs):
    data = load_fit_data(pairs, val_fraction=0.5, select_pairs=2)
    assert len(data.images) == 4 and len(data.select_images) == 2
    assert data.card["split"] == "trained on pairs numbered < 4" and data.card["select"].startswith("pairs numbered 4..5")
    assert "LandCover.ai" in data.card["attribution"] and data.card["license"].startswith("CC BY-NC-SA 4.0")


def test_crops_are_centred_on_the_drawn_class(pairs):
    data = load_fit_data(pairs, val_fraction=0.5, select_pairs=2)
    index = tiles_with_class(data.labels, 5)
    cfg = FitConfig(batch=64, crop_px=16, class_probs=(0, 1, 0, 0, 0), scale_range=(1.0, 1.0))
    x, y = sample_crops(data.images, data.labels, index, cfg, np.random.default_rng(0))
    assert x.shape == (64, 3, 16, 16) and y.shape == (64, 16, 16) and -1 <= x.min() and x.max() <= 1
    # every crop holds building pixels (the synthetic buildings are 21 px squares; crops are centred near one)
    assert ((y == 1).flatten(1).any(1)).all()
    # the rarest class gets the largest loss weight
    w = balanced_weights(np.array([0.6, 0.01, 0.1, 0.2, 0.09]))
    assert int(w.argmax()) == 1 and int(w.argmin()) == 0


def test_loss_drops_and_the_selected_weights_save_and_load(pairs, tmp_path):
    data = load_fit_data(pairs, val_fraction=0.5, select_pairs=2)
    run = SegmenterRun(data, tmp_path / "run", FitConfig(steps=60, **TINY))
    losses = [run.train_step() for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    best = run.train()  # at the end of the schedule: validates once and exports best.*
    net, card = load_segmenter(best)
    m, iou = segmenter_iou(net, data.select_images, data.select_labels, 5)
    assert card["selection"]["miou"] == pytest.approx(m, abs=0.02) and m > 0.5
    assert card["training"]["steps"] == 60 and card["width"] == 8 and card["depth"] == 3
    assert card["classes"] == ["background", "building", "woodland", "water", "road"]
    # the file holds float16 weights that give the same predictions as the trained network
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    run.net.eval()
    with torch.no_grad():
        assert (net(x).argmax(1) == run.net(x).argmax(1)).float().mean() > 0.98


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(pairs, tmp_path):
    cfg = FitConfig(steps=6, **TINY)
    whole = fit_segmenter(pairs, tmp_path / "a" / "seg", tmp_path / "a" / "run", cfg, val_fraction=0.5, select_pairs=2)
    # run b stops after 3 of its 6 steps (as a killed run would, after a checkpoint) and is resumed
    cut = SegmenterRun(load_fit_data(pairs, val_fraction=0.5, select_pairs=2), tmp_path / "b" / "run", cfg)
    for _ in range(3):
        cut.train_step()
    cut.save_state()
    with pytest.raises(OutputError, match="--resume"):
        fit_segmenter(pairs, tmp_path / "b" / "seg", tmp_path / "b" / "run", cfg, val_fraction=0.5, select_pairs=2)
    fit_segmenter(pairs, tmp_path / "b" / "seg", tmp_path / "b" / "run", cfg, resume=True, val_fraction=0.5,
                  select_pairs=2)
    a = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-5), key
    assert json.loads(whole.with_suffix(".json").read_text())["training"]["steps"] <= 6


def test_continuing_from_a_segmenter_counts_its_steps(pairs, tmp_path):
    first = fit_segmenter(pairs, tmp_path / "a" / "seg", tmp_path / "a" / "run", FitConfig(steps=4, **TINY),
                          val_fraction=0.5, select_pairs=2)
    second = fit_segmenter(pairs, tmp_path / "b" / "seg", tmp_path / "b" / "run",
                           FitConfig(steps=3, **{**TINY, "width": 4, "depth": 2}),
                           init=first, val_fraction=0.5, select_pairs=2)
    card = json.loads(second.with_suffix(".json").read_text())
    assert card["training"]["continued_from_steps"] == 4 and card["training"]["steps"] == 7
    assert card["width"] == 8 and card["depth"] == 3  # the run takes the shape of the segmenter it continues
    with pytest.raises(InputError, match="not found"):
        fit_segmenter(pairs, tmp_path / "c" / "seg", tmp_path / "c" / "run", FitConfig(steps=1, **TINY),
                      init=tmp_path / "missing", val_fraction=0.5, select_pairs=2)


@pytest.mark.parametrize("override, words", [({"crop_px": 20}, "multiple of 8"),
                                             ({"class_probs": (1.0, 1.0)}, "one per class")])
def test_bad_settings_are_one_line_errors(pairs, tmp_path, override, words):
    with pytest.raises(InputError, match=words):
        fit_segmenter(pairs, tmp_path / "seg", tmp_path / "run", FitConfig(steps=1, **{**TINY, **override}),
                      val_fraction=0.5, select_pairs=2)


def test_train_segmenter_cli_refuses_a_used_run_folder_and_resumes(pairs, tmp_path):
    import logging

    from typer.testing import CliRunner

    from geogan.cli import app

    logger = logging.getLogger("geogan")
    saved = logger.handlers[:], logger.level, logger.propagate
    args = ["train-segmenter", "--pairs", str(pairs), "--out", str(tmp_path / "seg"), "--steps", "3", "--batch", "2",
            "--crop-px", "16", "--width", "4", "--depth", "2", "--select-pairs", "2", "--threads", "1"]
    try:
        first = CliRunner().invoke(app, args)
        again = CliRunner().invoke(app, args)
        resumed = CliRunner().invoke(app, args[:6] + ["4"] + args[7:] + ["--resume"])
        bad = CliRunner().invoke(app, args + ["--class-probs", "1,x"])
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
    assert first.exit_code == 0 and "wrote" in first.stdout, first.output
    assert again.exit_code == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(tmp_path / "seg_run" / "state.pt", weights_only=True)["step"] == 4  # the default run folder
    card = json.loads((tmp_path / "seg.json").read_text())  # the selected checkpoint (step 3 or 4)
    assert card["training"]["run_steps"] in (3, 4) and "train-segmenter" in card["training"]["command"]
    assert bad.exit_code == 2 and "--class-probs '1,x'" in bad.stderr
