"""Realism metrics (geogan.realism): the two-sample classifier test and the tile-locked periodic amplitude,
on small synthetic images made here; `geogan evaluate --realism` end to end on tiny pairs and a tiny model."""

import json

import numpy as np
import pytest

from data_factory import make_pairs
from geogan.errors import InputError
from geogan.realism import (C2stSettings, c2st, periodic_amplitude, periodic_report, real_vs_real,
                            realism_metrics)
from test_cli import geogan  # the in-process CLI runner

# small and fast: 24 images of 64 px -> 16 crops of 16 px each, 4 px after the blur; one seed (2 runs)
FAST = C2stSettings(crop_px=16, steps=100, batch=32, width=8, seeds=(0,))
COLOUR_SHIFT = (50, -30, 40)


def textured(n: int, seed: int, size: int = 64) -> np.ndarray:
    """Images of one distribution: random class-coloured blocks (as in tests/data_factory.py) plus noise."""
    rng = np.random.default_rng(seed)
    colours = np.array([(200, 200, 150), (180, 60, 60), (30, 90, 30), (40, 60, 120)], dtype=np.float64)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        lab = np.zeros((size, size), np.int64)
        for c in (1, 2, 3):
            y, x = rng.integers(0, size - size // 3, 2)
            lab[y:y + size // 3, x:x + size // 3] = c
        out[i] = np.clip(colours[lab] + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    return out


def shifted(images: np.ndarray, delta) -> np.ndarray:
    return np.clip(images.astype(np.int64) + np.asarray(delta), 0, 255).astype(np.uint8)


def checkerboard(size: int, block_px: int, amplitude: float) -> np.ndarray:
    """+-amplitude in blocks of ``block_px`` (period 2 * block_px), starting at the corner, (size, size, 1)."""
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy // block_px + xx // block_px) % 2 == 0, amplitude, -amplitude)[..., None]


def test_identical_sets_cannot_be_told_apart():
    real = textured(24, seed=0)
    res = c2st(real, real.copy(), C2stSettings(crop_px=16, steps=10, batch=16, width=4), threads=1)
    # the same crop carries both labels: no classifier can beat chance on it
    assert res["c2st_accuracy"] == pytest.approx(0.5) and res["c2st_accuracy_blur4"] == pytest.approx(0.5)
    assert res["c2st_accuracy_stderr"] == pytest.approx(0)  # every image exactly at chance
    assert len(res["c2st_runs"]["sharp"]) == 4  # two seeds, both directions
    assert res["c2st_protocol"]["crops_per_image"] == 16 and res["c2st_protocol"]["images"] == 24


def test_two_draws_of_one_distribution_are_near_chance():
    res = c2st(textured(24, seed=0), textured(24, seed=1), FAST, threads=1)
    assert 0.35 <= res["c2st_accuracy"] <= 0.65
    assert 0 < res["c2st_accuracy_stderr"] < 0.15 and 0 < res["c2st_accuracy_blur4_stderr"] < 0.15
    assert res["c2st_accuracy"] == pytest.approx(np.mean(res["c2st_runs"]["sharp"]))  # even N: the runs' mean
    assert 0.35 <= res["c2st_accuracy_blur4"] <= 0.65


def test_a_colour_shift_is_caught_sharp_and_blurred():
    real = textured(24, seed=0)
    res = c2st(real, shifted(real, COLOUR_SHIFT), FAST, threads=1)
    assert res["c2st_accuracy"] > 0.9 and res["c2st_accuracy_blur4"] > 0.9


def test_a_fine_checkerboard_is_caught_sharp_but_not_after_the_blur():
    """A 1 px checkerboard (period 2) averages away in a 4x4 pool: the blurred test is at chance."""
    real = textured(24, seed=0)
    fake = shifted(real, checkerboard(64, 1, 20).astype(np.int64))
    res = c2st(real, fake, FAST, threads=1)
    assert res["c2st_accuracy"] > 0.9
    assert 0.35 <= res["c2st_accuracy_blur4"] <= 0.65


def test_c2st_is_deterministic_for_a_seed():
    real = textured(12, seed=0)
    fake = shifted(real, (6, 0, -6))
    settings = C2stSettings(crop_px=16, steps=30, batch=16, width=4, seeds=(3,))
    assert c2st(real, fake, settings, threads=1) == c2st(real, fake, settings, threads=1)


def test_periodic_amplitude_of_a_known_lattice():
    size, a = 256, 3.0
    base = np.full((2, size, size, 3), 128.0)
    img = (base + checkerboard(size, 4, a)).astype(np.uint8)  # period 8, rms amplitude exactly a
    amp = periodic_amplitude(img)
    assert amp["8"]["rms"] == pytest.approx(a) and amp["8"]["ptp"] == pytest.approx(2 * a)
    # a pattern of period 8 shows at every multiple of 8, and averages out at 4 px (half a period flips it)
    assert amp["16"]["rms"] == pytest.approx(a) and amp["32"]["rms"] == pytest.approx(a)
    assert amp["4"]["rms"] == pytest.approx(0, abs=1e-9)
    assert amp["8"]["pooled_rms"] == pytest.approx(a)
    # a lattice of single bright dots anywhere in the cell (not only at the corner): A * sqrt(p^2 - 1) / p^2
    dots = np.full((1, size, size, 3), 100, np.uint8)
    dots[:, 3::8, 5::8] = 140
    assert periodic_amplitude(dots, (8,))["8"]["rms"] == pytest.approx(40 * np.sqrt(63) / 64)


def test_white_noise_has_almost_no_tile_locked_amplitude():
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(128, 20, (4, 256, 256, 3)), 0, 255)
    lattice = checkerboard(256, 4, 3.0)
    amp_noise = periodic_amplitude(noise.astype(np.uint8))
    # noise at random phases averages over the (256/8)^2 cells: about 20 / 32 = 0.6, far below a 3.0 lattice
    assert amp_noise["8"]["rms"] < 0.3 * 3.0
    assert amp_noise["8"]["pooled_rms"] < 0.15 * 3.0  # and over 4 images together, half that again
    with_lattice = periodic_amplitude(np.clip(noise + lattice, 0, 255).astype(np.uint8))
    assert with_lattice["8"]["rms"] == pytest.approx(np.hypot(3.0, amp_noise["8"]["rms"]), rel=0.1)
    report = periodic_report(noise.astype(np.uint8), np.clip(noise + lattice, 0, 255).astype(np.uint8))
    assert report["periodic_ratio"]["8"] > 1.5 and report["periodic_ratio"]["4"] == pytest.approx(1, abs=0.15)


def test_real_vs_real_reference_and_combined_metrics():
    real = textured(24, seed=2)
    ref = real_vs_real(real, FAST, threads=1)
    assert 0.35 <= ref["c2st_accuracy"] <= 0.65 and ref["c2st_protocol"]["images"] == 12
    res = realism_metrics(real, shifted(real, COLOUR_SHIFT), FAST, threads=1)
    assert res["c2st_accuracy"] > 0.9 and set(res["periodic_ratio"]) == {"4", "8", "16", "32"}
    json.dumps(res)  # JSON-ready


@pytest.mark.parametrize("real, fake, settings, words", [
    (np.zeros((4, 64, 64, 3), np.uint8), np.zeros((4, 32, 32, 3), np.uint8), FAST, "differ in shape"),
    (np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 64, 64, 3), np.uint8), FAST, "at least 2"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 8, 8, 3), np.uint8), FAST, "smaller than the 16 px"),
    (np.zeros((4, 64, 64, 3)), np.zeros((4, 64, 64, 3)), FAST, "uint8"),
])
def test_bad_image_sets_raise_input_errors(real, fake, settings, words):
    with pytest.raises(InputError, match=words):
        c2st(real, fake, settings)


def test_bad_settings_raise_input_errors():
    with pytest.raises(InputError, match="multiple of the blur"):
        C2stSettings(crop_px=30)
    with pytest.raises(InputError, match="even batch"):
        C2stSettings(batch=7)
    with pytest.raises(InputError, match="threads"):
        c2st(textured(4, 0), textured(4, 1), FAST, threads=0)


def test_evaluate_realism_cli(tmp_path, tiny_model):
    from geogan.evaluate import train_segmenter

    pairs = make_pairs(tmp_path / "pairs", n=16)
    seg = train_segmenter(pairs, tmp_path / "seg" / "segmenter", steps=5, batch=2, width=4, depth=2, crop_px=16,
                          val_fraction=0.5)
    out = tmp_path / "res.json"
    common = ["evaluate", "--pairs", pairs, "--model", tiny_model, "--segmenter", seg, "--val-fraction", "0.5",
              "--threads", "1"]
    ran = geogan(*common, "--realism", "--c2st-steps", "30", "--c2st-crop", "16", "--json", out)
    assert ran.returncode == 0, ran.stderr
    res = json.loads(out.read_text())
    assert 0 <= res["c2st_accuracy"] <= 1 and 0 <= res["c2st_accuracy_blur4"] <= 1
    assert res["c2st_protocol"]["steps"] == 30 and res["c2st_protocol"]["images"] == 8
    assert set(res["periodic_ratio"]) == {"4", "8", "16", "32"}
    assert "c2st_accuracy_blur4" in ran.stdout and "tile-locked amplitude" in ran.stdout
    # without --realism: no realism keys, no realism table
    plain = geogan(*common, "--json", tmp_path / "plain.json")
    assert plain.returncode == 0 and "c2st_accuracy" not in json.loads((tmp_path / "plain.json").read_text())
    assert "realism" not in plain.stdout
    # bad input: one line, exit 2, nothing written
    for bad, words in ((["--c2st-crop", "128"], "smaller than the 128 px crops"),
                       (["--c2st-crop", "30"], "multiple of the blur"),
                       (["--threads", "0"], "threads must be >= 1")):
        out_bad = tmp_path / "bad.json"
        ran = geogan(*common, "--realism", "--c2st-steps", "5", *bad, "--json", out_bad)
        errors = [line for line in ran.stderr.splitlines() if line.startswith("error:")]
        assert ran.returncode == 2 and len(errors) == 1 and words in errors[0], ran.stderr
        assert "Traceback" not in ran.stderr and not out_bad.exists()


def test_evaluate_realism_only_on_a_chosen_split(tmp_path, tiny_model):
    """The benchmark's path: no segmenter, the split from an explicit first pair number."""
    from geogan.evaluate import evaluate_realism
    from geogan.training.pairs import VAL_FROM_NUMBER

    pairs = make_pairs(tmp_path / "pairs", n=16)
    settings = C2stSettings(crop_px=16, steps=20, batch=16, seeds=(0,))
    res = evaluate_realism(pairs, str(tiny_model), val_from=VAL_FROM_NUMBER, settings=settings, threads=1)
    assert res["pairs"] == 8 and res["split"] == f"pairs numbered >= {VAL_FROM_NUMBER}"
    base = evaluate_realism(pairs, "baseline:mean-colour", val_from=VAL_FROM_NUMBER, max_pairs=6,
                            settings=settings, threads=1)
    assert base["pairs"] == 6 and base["model"] == "baseline-mean-colour"
    assert all(np.isfinite(v) for v in base["periodic_ratio"].values())
    with pytest.raises(InputError, match="no val pairs"):
        evaluate_realism(pairs, str(tiny_model), val_from=10_000, settings=settings)


def test_realism_benchmark_script_writes_and_merges_rows(tmp_path, tiny_model, monkeypatch, capsys):
    """benchmarks/realism.py: model rows and the real-vs-real reference into one JSON; --append merges."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import realism as bench

    pairs = make_pairs(tmp_path / "pairs", n=16)
    out = tmp_path / "realism.json"
    base = ["realism.py", "--pairs", str(pairs), "--first", "900", "--steps", "5", "--threads", "1", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", base + ["--model", "baseline:mean-colour", "--reference"])
    bench.main()
    rows = json.loads(out.read_text())["results"]
    assert [r["model"] for r in rows] == ["baseline-mean-colour", bench.REFERENCE_NAME]
    assert rows[0]["split"] == "pairs numbered >= 900" and rows[0]["pairs"] == 8
    assert rows[1]["pairs"] == 8 and rows[1]["c2st_protocol"]["images"] == 4  # 4 photos against 4
    monkeypatch.setattr(sys, "argv", base + ["--model", str(tiny_model), "--append"])
    bench.main()
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["results"]] == ["baseline-mean-colour", bench.REFERENCE_NAME, "tiny"]
    assert "| tiny |" in saved["table"] and "| tiny |" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", base + ["--model", "no-such-model"])
    with pytest.raises(SystemExit, match="error: .*no-such-model"):
        bench.main()
