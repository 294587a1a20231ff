"""The segmenter that reads style-reference photos (geogan/data/models/segmenter_styles.*, issue 25): trained on
two pair sets at once (`geogan train-segmenter --pairs A --label-map a --pairs B --label-map b`), selected on
blocks spread over each set's training range, and the one `render --style-ref` reads references with."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from data_factory import make_pairs
from geogan.errors import InputError
from geogan.training.segmenter_fit import load_fit_data, select_slices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from geogan.cli import app

    logger = logging.getLogger("geogan")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        return CliRunner().invoke(app, args)
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


def test_train_segmenter_cli_trains_on_two_pair_sets_each_with_its_label_map(tmp_path):
    first, second = make_pairs(tmp_path / "first"), make_pairs(tmp_path / "second", seed=5)
    base = ["train-segmenter", "--out", str(tmp_path / "seg"), "--steps", "2", "--batch", "2", "--crop-px", "16",
            "--width", "4", "--depth", "2", "--select-pairs", "2", "--threads", "1"]
    res = _invoke(base + ["--pairs", str(first), "--label-map", "landcoverai", "--pairs", str(second),
                          "--label-map", "landcoverai"])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "seg.json").read_text())
    assert card["training"]["data"] == "first + second"
    assert "first: pairs numbered" in card["selection"]["pairs"] and "second: pairs numbered" in card["selection"]["pairs"]
    assert card["license"].count("CC BY-NC-SA 4.0") == 2 and " AND " in card["license"]
    # the card's command repeats the options as given
    assert card["training"]["command"].count("--pairs ") == 2 and card["training"]["command"].count("--label-map") == 2


def test_train_segmenter_cli_refuses_label_maps_that_do_not_match_the_pair_sets(tmp_path):
    first, second = make_pairs(tmp_path / "first"), make_pairs(tmp_path / "second", seed=5)
    res = _invoke(["train-segmenter", "--out", str(tmp_path / "seg"), "--pairs", str(first), "--pairs", str(second),
                   "--pairs", str(first), "--label-map", "landcoverai", "--label-map", "landcoverai"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "3 --pairs but 2 --label-map" in res.stderr and not (tmp_path / "seg.json").exists()


def test_selection_blocks_spread_over_the_range_with_their_neighbours_left_out():
    train, select = select_slices(100, 12, blocks=3, guard=2)
    assert len(select) == 12 and not set(train) & set(select)
    runs = np.split(select, np.flatnonzero(np.diff(select) > 1) + 1)
    assert [len(r) for r in runs] == [4, 4, 4] and runs[0][0] > 5 and runs[-1][-1] < 95  # inside the range
    for r in runs:  # neither the block nor its 2 neighbours on each side are trained on
        assert not set(train) & set(range(r[0] - 2, r[-1] + 3))
    assert len(train) == 100 - 12 - 3 * 4
    one_train, one_select = select_slices(100, 12)  # one block: the last pairs, nothing else left out
    assert list(one_select) == list(range(88, 100)) and list(one_train) == list(range(88))


def test_selection_blocks_in_the_card(tmp_path):
    pairs = make_pairs(tmp_path / "pairs", n=80)  # 40 training pairs (numbers 0..39), 40 evaluation pairs
    data = load_fit_data(pairs, val_fraction=0.5, select_pairs=6, select_blocks=2)
    assert len(data.select_images) == 6 and len(data.images) == 40 - 6 - 2 * 2 * 4
    assert data.card["select"].startswith("pairs numbered 8..10, 28..30 (held out of training")
    assert data.card["split"] == "trained on pairs numbered 0..3, 15..23, 35..39"
    with pytest.raises(InputError, match="selection block"):
        load_fit_data(pairs, val_fraction=0.5, select_pairs=20, select_blocks=4)


def test_style_references_are_read_by_the_segmenter_of_both_sets():
    from geogan.style_reference import STYLE_SEGMENTER, load_style_segmenter
    from geogan.zoo import builtin_model_dir

    assert STYLE_SEGMENTER == "segmenter_styles"
    net, card = load_style_segmenter()
    assert card["classes"] == ["background", "building", "woodland", "water", "road"]
    assert "landcoverai-pairs" in card["training"]["data"] and "recife-pairs" in card["training"]["data"]
    assert "CC BY-NC-SA 4.0" in card["license"] and "no licence stated" in card["license"]
    assert (builtin_model_dir() / "segmenter_styles.safetensors").stat().st_size < 5_000_000
    # the FCN-score judge is another model, unchanged by this one
    judge = json.loads((builtin_model_dir() / "segmenter_landcoverai.json").read_text())
    assert judge["training"]["data"] == "landcoverai-pairs"


def test_read_style_reference_uses_the_style_segmenter(tmp_path):
    """A reference read with the default segmenter reads as with segmenter_styles given by name, not as with
    the FCN-score judge (segmenter_landcoverai)."""
    from PIL import Image

    from geogan.classes import load_schema
    from geogan.infer import load_model
    from geogan.style_reference import load_style_segmenter, read_style_reference

    rng = np.random.default_rng(0)
    photo = np.zeros((256, 256, 3), np.uint8)
    photo[:] = (90, 110, 70)  # vegetation-like ground
    photo[:, 128:] = (40, 70, 60)  # dark water-like half
    photo[100:150, 30:90] = (170, 90, 70)  # a red roof
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    ref = tmp_path / "ref.png"
    Image.fromarray(photo).save(ref)
    model = load_model("style", load_schema(), "cpu")
    default = read_style_reference(model, ref)
    named = read_style_reference(model, ref, load_style_segmenter("segmenter_styles"))
    judge = read_style_reference(model, ref, load_style_segmenter("segmenter_landcoverai"))
    np.testing.assert_allclose(default.share, named.share, atol=1e-6)
    np.testing.assert_allclose(default.mean_lab, named.mean_lab, atol=1e-4)
    assert np.abs(default.share - judge.share).max() > 1e-3
