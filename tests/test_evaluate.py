"""Evaluation: metrics on known inputs, and `geogan evaluate` end to end on tiny synthetic pairs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from geogan.evaluate import evaluate_model, train_segmenter
from geogan.training.pairs import VAL_FROM_NUMBER, list_pairs, load_label_map, read_pair
from data_factory import make_pairs as _pairs
from geogan.metrics import confusion, fid, kid, l1, miou, psnr, ssim


def test_metrics_on_known_inputs():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    assert l1(a, a) == 0 and ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert psnr(a, a) > 90
    b = (a + 0.2).clamp(-1, 1)
    assert 0 < l1(a, b) <= 0.1 and ssim(a, b) < 1
    # PSNR of a constant 0.1 error in [0,1] units is 20 dB
    assert psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.2)) == pytest.approx(20.0, abs=1e-4)
    conf = confusion(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    m, iou = miou(conf)
    assert iou == pytest.approx([1.0, 0.5, 0.5]) and m == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = rng.normal(loc=1.0, size=(200, 8))
    assert abs(kid(x, x)[0]) < 0.2 * kid(x, y)[0] and kid(x, y)[0] > 0.5
    assert fid(x, x) == pytest.approx(0, abs=1e-6) and fid(x, y) == pytest.approx(8.0, rel=0.3)


def test_split_is_by_file_number_and_labels_map(tmp_path):
    d = _pairs(tmp_path / "pairs")
    train, val = list_pairs(d, "train"), list_pairs(d, "val")
    assert len(train) == 6 and len(val) == 6 and not set(train) & set(val)
    image, labels = read_pair(val[0], load_label_map("landcoverai"))
    assert image.shape == (64, 64, 3) and set(np.unique(labels)) <= {0, 1, 2, 3, 4}


def test_evaluate_end_to_end(tmp_path, tiny_model):
    d = _pairs(tmp_path / "pairs")
    seg = train_segmenter(d, tmp_path / "seg" / "segmenter", steps=60, batch=4, width=8, depth=3, crop_px=32,
                          lr=5e-3, val_fraction=0.5)
    res = evaluate_model(d, str(tiny_model), segmenter=seg, val_fraction=0.5)
    assert res["pairs"] == 6
    # the segmenter learned the colour->class mapping on real images; random generator output is much worse
    assert res["fcn_miou_real"] > 0.35
    assert res["fcn_miou_generated"] < res["fcn_miou_real"]
    assert res["fcn_ratio"] == pytest.approx(res["fcn_miou_generated"] / res["fcn_miou_real"])
    for key in ("l1", "psnr", "ssim", "kid", "fid"):
        assert np.isfinite(res[key])
    for key in ("lattice_share_generated", "lattice_share_real"):  # 64 px pairs hold the 32 px lattice twice
        assert set(res[key]) == {"32"} and 0 <= res[key]["32"] < 1
    json.dumps(res)  # JSON-ready
    assert res["model_size_mb"] > 0
    # per-class colour statistics: the real colours are the data factory's class colours (+ noise)
    from data_factory import COLOURS
    lm = load_label_map("landcoverai")
    for grey, colour in COLOURS.items():
        real = res["per_class"][lm.values[(grey,)]]["real"]
        assert real["mean_rgb"] == pytest.approx(list(colour), abs=3)
    # the trivial baseline paints each class with its mean training colour: near-perfect FCN-score here
    base = evaluate_model(d, "baseline:mean-colour", segmenter=seg, val_fraction=0.5)
    assert base["fcn_ratio"] > res["fcn_ratio"] and base["l1"] < res["l1"]
    for grey, colour in COLOURS.items():
        gen = base["per_class"][lm.values[(grey,)]]["generated"]
        assert gen["mean_rgb"] == pytest.approx(list(colour), abs=3) and gen["texture"] < 1.0


def test_standard_fid_uses_a_local_torchscript_feature_network(tmp_path, tiny_model):
    """--inception takes a local TorchScript file with the inception-2015-12-05.pt calling convention."""
    from geogan.errors import InputError

    class Features(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert return_features
            return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) / 255.0

    net_path = tmp_path / "features.pt"
    torch.jit.script(Features()).save(str(net_path))
    d = _pairs(tmp_path / "pairs")
    seg = train_segmenter(d, tmp_path / "seg" / "segmenter", steps=5, batch=2, width=4, depth=2, crop_px=16,
                          val_fraction=0.5)
    # a segmenter can continue from another: the card counts all steps
    seg = train_segmenter(d, tmp_path / "seg2" / "segmenter", steps=3, batch=2, crop_px=16, val_fraction=0.5,
                          init=seg)
    assert json.loads(seg.with_suffix(".json").read_text())["training"]["steps"] == 8
    res = evaluate_model(d, "baseline:mean-colour", segmenter=seg, val_fraction=0.5, inception=net_path)
    assert np.isfinite(res["fid_inception"]) and res["fid_inception"] > 0
    assert res["inception_weights"] == str(net_path)
    (tmp_path / "not_torchscript.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="TorchScript"):
        evaluate_model(d, "baseline:mean-colour", segmenter=seg, val_fraction=0.5,
                       inception=tmp_path / "not_torchscript.pt")


def test_colour_label_maps_take_the_nearest_colour():
    from geogan.training.pairs import labels_to_ids
    lm = load_label_map("recife")
    lab = np.array([[[255, 0, 0], [250, 5, 3], [128, 127, 126], [0, 120, 250]]], dtype=np.uint8)
    ids = labels_to_ids(lab, lm)
    assert [lm.classes[i] for i in ids[0]] == ["building", "building", "road", "water"]
    from geogan.classes import load_schema
    assert set(lm.schema_to_model) == set(load_schema().names)  # every schema class has a look


def test_pix2pix_runs_in_the_papers_test_mode(tmp_path):
    """pix2pix is evaluated as Isola et al. test it: batch-norm statistics of the test batch, dropout on."""
    from conftest import make_tiny_model
    from geogan.evaluate import ModelGenerator

    card = make_tiny_model(tmp_path / "p2p", arch="pix2pix",
                           arch_params={"ngf": 4, "n_down": 4, "dropout": True, "noise": False})
    gen = ModelGenerator(str(card))
    assert gen.paper_test_mode and gen.module.training
    norms = [m for m in gen.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and any(m.track_running_stats for m in norms)
    stored = [m.running_mean.clone() for m in norms]
    labels = np.random.default_rng(0).integers(0, 5, (3, 32, 32))
    a, b, c = gen.generate(labels, seed=1), gen.generate(labels, seed=1), gen.generate(labels, seed=2)
    assert a.shape == (3, 3, 32, 32) and float(a.abs().max()) <= 1
    assert torch.equal(a, b)  # repeatable for a seed
    assert not torch.allclose(a, c)  # dropout is the noise: another seed, another image
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stored, norms))  # stored statistics untouched
    # each image is normalised with its own statistics (batch 1): alone or among others, the same output
    torch.manual_seed(1)
    alone = gen.generate(labels[:1], seed=1)
    assert torch.allclose(alone[0], a[0], atol=1e-5)
