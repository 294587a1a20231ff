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
from geogan.training.segmenter_fit import (FitConfig, SegmenterRun, balanced_weights, calibrate_bias, chroma_cast,
                                           class_cast,
                                           combine_fit_data, fit_segmenter, load_fit_data, lovasz_softmax,
                                           photometric_jitter, sample_crops,
                                           saved_config, segmenter_iou, tiles_with_class)

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
    # strong_aug off: on these colour-coded toy tiles 60 steps are too few to learn through the photometric jitter
    run = SegmenterRun(data, tmp_path / "run", FitConfig(steps=60, strong_aug=False, **TINY))
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
    # the exported segmenter is calibrated on the selection slice: never worse there than before
    assert set(card["calibration"]["class_bias"]) == set(card["classes"])
    assert card["selection"]["miou"] >= card["selection"]["before_calibration"]["miou"]
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
        recipe = ["--scale-range", "0.8,1.25", "--dice-weight", "0.5", "--lovasz-weight", "0", "--no-strong-aug",
                  "--cast-std", "0.1", "--class-cast-std", "0,0,0,0.2,0"]
        own = CliRunner().invoke(app, args[:4] + [str(tmp_path / "own")] + args[5:] + recipe)
        bad_range = CliRunner().invoke(app, args[:4] + [str(tmp_path / "r")] + args[5:] + ["--scale-range", "1.4"])
        bad_casts = CliRunner().invoke(app, args[:4] + [str(tmp_path / "c")] + args[5:] + ["--class-cast-std", "0,0.2"])
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
    assert own.exit_code == 0, own.output  # the whole recipe is one command: it reaches the run's settings
    cfg = saved_config(tmp_path / "own_run")
    assert (cfg.scale_range, cfg.dice_weight, cfg.lovasz_weight, cfg.strong_aug, cfg.cast_std, cfg.class_cast_std) == \
        ((0.8, 1.25), 0.5, 0.0, False, 0.1, (0.0, 0.0, 0.0, 0.2, 0.0))
    own_card = json.loads((tmp_path / "own.json").read_text())["training"]
    assert "per-class colour casts" in own_card["augmentation"] and "--no-strong-aug" in own_card["command"]
    assert bad_range.exit_code == 2 and bad_range.stderr.count("\n") == 1 and "--scale-range '1.4'" in bad_range.stderr
    assert bad_casts.exit_code == 2 and bad_casts.stderr.count("\n") == 1 and "one per class" in bad_casts.stderr


def test_lovasz_softmax_is_one_minus_iou_on_hard_predictions():
    """On one-hot predictions the Lovasz extension equals 1 - IoU of each class present, averaged."""
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 3, (2, 16, 16)))
    pred = torch.where(torch.from_numpy(rng.random((2, 16, 16)) < 0.3), torch.from_numpy(rng.integers(0, 3, (2, 16, 16))),
                       target)
    prob = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float()  # class 3 absent: not counted
    ious = [((pred == c) & (target == c)).sum().item() / ((pred == c) | (target == c)).sum().item() for c in range(3)]
    assert lovasz_softmax(prob, target).item() == pytest.approx(1 - np.mean(ious), abs=1e-6)
    assert lovasz_softmax(torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float(), target).item() == 0


def test_photometric_jitter_keeps_range_and_changes_the_images():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    y = photometric_jitter(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.allclose(x, y, atol=0.02)


def test_chroma_cast_tints_each_image_and_keeps_its_luma():
    x = torch.rand(64, 3, 8, 8) * 1.2 - 0.6  # no clamping at +-1 for casts within 3 std
    y = chroma_cast(x, 0.1, torch.Generator().manual_seed(0))
    shift = (y - x).mean((2, 3))  # (B, 3): one offset per image, the same at every pixel
    assert torch.allclose(y - x, shift[:, :, None, None].expand_as(x), atol=1e-6)
    assert torch.allclose(shift.sum(1), torch.zeros(64), atol=1e-5)  # R + G + B kept: a tint, not a brightness change
    assert 0.05 < float(shift.std()) < 0.15 and float(shift.abs().max()) > 0.1  # about the asked-for std per axis
    yellow = torch.tensor([1.0, 1.0, -2.0]) / 6 ** 0.5
    assert float((shift @ yellow).abs().mean()) > 0.03  # casts along the yellow-blue axis (turbid vs clear water)
    assert torch.equal(chroma_cast(x, 0.0, torch.Generator()), x)


def test_class_cast_tints_only_that_class_and_keeps_its_luma():
    x = torch.rand(32, 3, 24, 24) * 1.2 - 0.6
    labels = torch.zeros(32, 24, 24, dtype=torch.long)
    labels[:, :, 12:] = 3  # right half water, left half background
    y = class_cast(x, labels, (0.0, 0.0, 0.0, 0.1, 0.0), torch.Generator().manual_seed(0))
    far_left, far_right = (y - x)[..., :8], (y - x)[..., 16:]  # 4+ px from the class edge
    assert torch.equal(far_left, torch.zeros_like(far_left))  # the other class keeps its colours
    shift = far_right.mean((2, 3))  # one offset per image over the class's pixels
    assert torch.allclose(far_right, shift[:, :, None, None].expand_as(far_right), atol=1e-6)
    assert torch.allclose(shift.sum(1), torch.zeros(32), atol=1e-5) and 0.05 < float(shift.std()) < 0.15
    edge = (y - x)[0, :, 0, 9:15].abs().sum(0)  # softened across the edge: partial casts on both sides
    assert 0 < float(edge[2]) < float(edge[-1]) and float(edge[0]) < float(edge[-1])
    assert torch.equal(class_cast(x, labels, None, torch.Generator()), x)
    assert torch.equal(class_cast(x, labels, (0.0,) * 5, torch.Generator()), x)


def test_a_run_saved_before_the_lovasz_and_photometric_terms_resumes_with_its_own_recipe(pairs, tmp_path):
    run = SegmenterRun(load_fit_data(pairs, val_fraction=0.5, select_pairs=2), tmp_path / "run",
                       FitConfig(steps=2, **TINY))
    run.save_state()
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    old = json.loads(state["config"])
    del old["lovasz_weight"], old["strong_aug"], old["cast_std"], old["class_cast_std"]  # as written before these
    state["config"] = json.dumps(old)
    torch.save(state, tmp_path / "run" / "state.pt")
    cfg = saved_config(tmp_path / "run", steps=5)
    assert cfg.lovasz_weight == 0 and cfg.strong_aug is False and cfg.cast_std == 0 and cfg.steps == 5
    assert cfg.class_cast_std is None
    assert FitConfig().lovasz_weight > 0 and FitConfig().strong_aug  # new runs: the current recipe


def test_two_pair_sets_train_together_and_carry_both_cards(pairs, tmp_path):
    other = make_pairs(tmp_path / "other", seed=5)
    a, b = (load_fit_data(p, val_fraction=0.5, select_pairs=2) for p in (pairs, other))
    both = combine_fit_data([a, b])
    assert len(both.images) == len(a.images) + len(b.images) and len(both.select_images) == 4
    assert both.card["data"] == "pairs + other" and both.card["license"].count("CC BY-NC-SA 4.0") == 2
    out = fit_segmenter(pairs, tmp_path / "seg", tmp_path / "run", FitConfig(steps=2, **TINY), val_fraction=0.5,
                        select_pairs=2, also=((other, "landcoverai"),))
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["data"] == "pairs + other" and "other: pairs numbered 4..5" in card["selection"]["pairs"]
    bad = replace_classes(b)
    with pytest.raises(InputError, match="same classes"):
        combine_fit_data([a, bad])


def replace_classes(data):
    from dataclasses import replace

    return replace(data, classes=("ground", "roof"))


def test_calibration_undoes_a_shifted_class_prior():
    """A segmenter whose logits favour one class (as class-balanced training shifts the class priors) gets an
    offset against that class from the selection slice, and its mIoU back."""

    class Shifted(torch.nn.Module):  # reads the class id written in the image; logits one-hot + a prior shift
        def forward(self, x):
            ids = torch.round((x[:, 0] + 1) * 127.5).long()
            return torch.nn.functional.one_hot(ids, 5).permute(0, 3, 1, 2).float() + torch.tensor(
                [0.0, 1.5, 0.0, 0.0, 0.0])[None, :, None, None]

    labels = np.random.default_rng(0).integers(0, 5, (4, 16, 16)).astype(np.uint8)
    images = np.repeat(labels[..., None], 3, -1)
    assert segmenter_iou(Shifted(), images, labels, 5)[0] < 0.1  # everything read as class 1
    bias = calibrate_bias(Shifted(), images, labels, 5)
    assert bias[1] - np.delete(bias, 1).max() < -0.5  # class 1 pushed down against the others

    class Fixed(Shifted):
        def forward(self, x):
            return super().forward(x) + torch.from_numpy(bias)[None, :, None, None]

    assert segmenter_iou(Fixed(), images, labels, 5)[0] == 1.0


@pytest.mark.parametrize("shape", [(16, 16), (16, 24)])
def test_flipped_predictions_are_mapped_back_to_their_pixels(shape):
    """Test-time flips (and the transpose of square tiles) are undone before averaging: a segmenter that reads
    the class id written in each pixel predicts every pixel right on a layout with no symmetry."""
    from geogan.models.segmenter import predict_classes

    class Reader(torch.nn.Module):
        def forward(self, x):
            ids = torch.round((x[:, 0] + 1) * 127.5).long()
            return torch.nn.functional.one_hot(ids, 5).permute(0, 3, 1, 2).float() * 3

    labels = np.random.default_rng(1).integers(0, 5, (2,) + shape).astype(np.uint8)
    x = torch.from_numpy(np.repeat(labels[..., None], 3, -1)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.array_equal(predict_classes(Reader(), x).numpy(), labels)


def test_a_reversed_scale_range_is_refused_from_python_too(pairs, tmp_path):
    with pytest.raises(InputError, match=r"scale_range \(2\.0, 1\.0\).*--scale-range"):
        fit_segmenter(pairs, tmp_path / "seg", tmp_path / "run", FitConfig(steps=4, scale_range=(2.0, 1.0), **TINY))
    assert not (tmp_path / "run").exists()
