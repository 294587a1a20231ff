"""The CUDA path against the CPU path. These run only where a CUDA GPU is present (a lent GPU machine:
``python -m pytest tests/test_gpu.py``); elsewhere they are reported as skipped, not passed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_tiny_model, make_tiny_style_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(n: int, px: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.repeat(rng.integers(0, 12, (n, px // 8, px // 8), dtype=np.uint8), 8, 1), 8, 2)
    return ids, rng.standard_normal((n, 1, px, px), dtype=np.float32)


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp32"])
def test_default_model_on_cuda_matches_cpu(schema, precision):
    from geogan.infer import load_model, run_batch
    cpu, gpu = load_model("fast", schema, "cpu"), load_model("fast", schema, "cuda", precision=precision)
    assert gpu.precision == {"auto": "fp16"}.get(precision, precision)
    ids, noise = _inputs(4, 256)
    a = run_batch(cpu, ids, noise, 256, orientations=[0, 1, 5, 7])
    b = run_batch(gpu, ids, noise, 256, orientations=[0, 1, 5, 7])
    assert b.dtype == np.float32 and b.shape == a.shape == (4, 3, 256, 256) and b.flags.c_contiguous
    diff = np.abs(a - b)
    limit = {"fp16": 5e-4, "bf16": 3e-3, "fp32": 5e-4}[gpu.precision]  # fp32 on CUDA convolves in TF32
    assert diff.mean() < limit and diff.max() < 0.03


def test_fp16_overflow_is_run_again_in_fp32(tmp_path, schema):
    from geogan.infer import load_model, run_batch
    gpu = load_model(str(make_tiny_model(tmp_path / "tiny")), schema, "cuda")
    assert gpu.precision == "fp16"
    with torch.no_grad():  # activations beyond fp16's 65504, in both copies of the weights
        for module in (gpu.module, gpu.module_fp32):
            next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d)).weight.mul_(2e4)
    ids, noise = _inputs(2, 64)
    x = torch.from_numpy(gpu.onehot_table[ids]).permute(0, 3, 1, 2).cuda()
    z = torch.from_numpy(noise).cuda()
    with torch.inference_mode():
        assert not torch.isfinite(gpu.module(x.half(), noise=z.half())).all()  # the premise: fp16 overflows
        fp32 = gpu.module_fp32(x, noise=z).clamp(-1, 1).cpu().numpy()
    out = run_batch(gpu, ids, noise, 64)
    assert np.isfinite(out).all()
    assert np.abs(out - fp32).mean() < 1e-3


@pytest.mark.parametrize("arch", ["unet", "spade"])
def test_style_models_on_cuda(tmp_path, schema, arch):
    from geogan.infer import load_model, run_batch
    card = make_tiny_style_model(tmp_path / "style", arch)
    gpu = load_model(str(card), schema, "cuda")
    style = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))  # z_dim 8
    ids, noise = _inputs(3, 64, seed=1)
    styled = run_batch(dataclasses.replace(gpu, style=style), ids, noise, 64)
    assert np.isfinite(styled).all()
    assert np.abs(styled - run_batch(gpu, ids, noise, 64)).max() > 0.01  # the style reached the outputs


def test_render_on_cuda_matches_cpu(tmp_path):
    import rasterio

    import geogan
    from geogan.api import sample_osm_path
    from geogan.sources import osm_file_bounds
    x0, y0, x1, y1 = osm_file_bounds(sample_osm_path())
    cx, cy, d = (x0 + x1) / 2, (y0 + y1) / 2, 0.002
    bbox = (cx - d, cy - d, cx + d, cy + d)
    outs = {dev: geogan.render(bbox=bbox, out_dir=tmp_path / dev, device=dev, seed=3, osm=sample_osm_path())
            for dev in ("cpu", "cuda")}
    assert outs["cuda"].tiles == outs["cpu"].tiles > 4
    with rasterio.open(outs["cpu"].classes) as a, rasterio.open(outs["cuda"].classes) as b:
        assert a.transform == b.transform and (a.read() == b.read()).all()
    with rasterio.open(outs["cpu"].aerial) as a, rasterio.open(outs["cuda"].aerial) as b:
        diff = np.abs(a.read().astype(np.int16) - b.read().astype(np.int16))
    assert diff.mean() < 0.2 and diff.max() <= 3  # fp16 on the GPU; measured 0.02 and 1 on an H100
    with rasterio.open(outs["cpu"].height) as a, rasterio.open(outs["cuda"].height) as b:
        assert np.abs(a.read(1) - b.read(1)).max() < 0.05


def _pairs(tmp_path):
    from data_factory import make_pairs
    from geogan.training.datasets import PairsDataset
    d = make_pairs(tmp_path / "pairs", n=12, size=64)
    return (PairsDataset(d, size=64, split="train", val_fraction=0.5),
            PairsDataset(d, size=64, split="val", val_fraction=0.5, jitter=False, flip=False))


@pytest.mark.parametrize("arch, g_params, shadow", [
    ("unet", {"ngf": 8, "n_down": 5}, False),
    ("unet", {"ngf": 8, "n_down": 5}, True),
    ("spade", {"ngf": 4, "n_up": 4, "z_dim": 8, "use_style_encoder": True}, False),
], ids=["unet", "unet-shadow", "spade-style"])
def test_training_on_cuda_with_amp_and_channels_last(tmp_path, arch, g_params, shadow):
    """What `geogan train` does on a GPU (AMP with a gradient scaler, channels-last): losses stay finite, the
    validation L1 falls, the checkpoint resumes on the GPU and the exported model runs on the CPU."""
    from geogan.classes import load_schema
    from geogan.infer import load_model, run_batch
    from geogan.training.ratio import FixedRatio
    from geogan.training.trainer import Trainer, recipe_for
    train_ds, val_ds = _pairs(tmp_path)
    if shadow:  # the texture+height route: pairs with a height map
        from test_training import HeightPairs
        train_ds, val_ds = (HeightPairs(d.tiles.images, d.tiles.labels, d.tiles.label_map, d.tiles.numbers)
                            for d in (train_ds, val_ds))
    recipe = recipe_for(arch, 5, g_params=g_params, d_params={"ndf": 8}, batch=2, balance=False, l1_weight=100.0,
                        shadow=shadow)
    kw = dict(val_set=val_ds, ratio=FixedRatio(1, 1), seed=0, device="cuda", amp=True, channels_last=True)
    t = Trainer(recipe, train_ds, tmp_path / "run", **kw)
    assert t.scaler is not None and next(t.G.parameters()).is_cuda
    before = t.validate()
    t.train(40, checkpoint_every=20, sample_every=1000, log_every=1)
    after = t.validate()
    losses = [h["loss_l1"] for h in t.log.history if "loss_l1" in h]
    assert len(losses) == 40 and np.isfinite(losses).all()
    assert after < before, (before, after)
    again = Trainer(recipe, train_ds, tmp_path / "run", **kw)
    assert again.resume() and again.log.step == 40
    again.train(44, checkpoint_every=1000, sample_every=1000)
    assert again.log.step == 44
    cpu = load_model(str(tmp_path / "run" / "export" / "model.json"), load_schema(), "cpu")
    ids, noise = _inputs(1, 64)
    assert np.isfinite(run_batch(cpu, ids, noise, 64)).all()
