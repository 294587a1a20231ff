"""Inference speed-ups of the generator keep its outputs: batch norm folding, the noise pyramid,
channels-last CPU inference (deterministic, batch- and thread-invariant: local and Dask renders match)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geogan.classes import load_schema
from geogan.infer import load_model, prepare_for_inference
from geogan.models.checkpoint import load_generator
from geogan.models.normalization import NoiseInjection, fold_batchnorm, noise_pyramid, resize_noise
from geogan.models.unet import UNetGenerator
from geogan.zoo import resolve_model

#: largest |difference| allowed between the folded/channels-last model and the checkpoint as trained
#: (outputs are in [-1, 1]; one uint8 level is 2/255 = 7.8e-3). Measured: 8.6e-7 for the default model.
FOLD_TOLERANCE = 1e-5


def _labels(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, 5, size=(batch, size, size)))
    return F.one_hot(ids, 5).permute(0, 3, 1, 2).float()


def _noise(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _trained_looking_unet() -> UNetGenerator:
    torch.manual_seed(0)
    net = UNetGenerator(in_nc=5, ngf=8, n_down=5, dropout=False, noise=True)
    with torch.no_grad():  # non-trivial running statistics and noise scales
        net.train()(_labels(4, 64), _noise(4, 64))
        for m in net.modules():
            if isinstance(m, NoiseInjection):
                m.weight.normal_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
    return net.eval()


@pytest.mark.parametrize("conv", [torch.nn.Conv2d(6, 5, 4, 2, 1, bias=False),
                                  torch.nn.ConvTranspose2d(6, 5, 4, 2, 1, bias=False),
                                  torch.nn.Conv2d(6, 5, 3, 1, 1, bias=True)])
def test_fold_batchnorm_equals_conv_then_norm(conv):
    norm = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.1, 3.0)
        norm.weight.normal_()
        norm.bias.normal_()
    norm.eval()
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(conv, norm)(x), norm(conv(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        fold_batchnorm(conv, torch.nn.BatchNorm2d(5).train())


def test_noise_pyramid_matches_resize_noise():
    z = _noise(2, 256)
    for k, level in enumerate(noise_pyramid(z, 6), start=1):
        torch.testing.assert_close(level, resize_noise(z, (256 >> k, 256 >> k)), rtol=0, atol=1e-5)


def test_folded_unet_within_tolerance_of_the_trained_one():
    net = _trained_looking_unet()
    labels, noise = _labels(2, 64, seed=3), _noise(2, 64, seed=4)
    with torch.inference_mode():
        expected = net(labels, noise)
        fast = prepare_for_inference(net, torch.device("cpu"))
        got = fast(labels, noise)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert (got - expected).abs().max().item() <= FOLD_TOLERANCE


def test_default_model_inference_is_close_deterministic_and_batch_and_thread_invariant():
    """Deterministic bit for bit; across batch sizes and thread counts equal within float rounding: oneDNN picks
    other kernels for the default model's 3x3 resize-convolutions at other batch sizes, and on some CPUs at
    other thread counts (measured: at most 3e-7 here; thread counts differed on a 16-core machine). Local
    renders and Dask workers run the same batches, on single-threaded calls on machines of up to 4 cores, so
    there they match bit for bit (tests/test_distributed.py, a no-position-cue model among them)."""
    model = load_model("fast", load_schema(), "cpu")
    reference, _ = load_generator(resolve_model("fast"))
    labels, noise = _labels(3, 128, seed=5), _noise(3, 128, seed=6)
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            batched = model.module(labels, noise=noise)
            again = model.module(labels, noise=noise)
            assert (batched - reference.eval()(labels, noise=noise)).abs().max().item() <= FOLD_TOLERANCE
            one_thread = [model.module(labels[i:i + 1], noise=noise[i:i + 1]) for i in range(3)]
            torch.set_num_threads(2)
            two_threads = [model.module(labels[i:i + 1].contiguous(), noise=noise[i:i + 1]) for i in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert (batched - torch.cat(one_thread)).abs().max().item() <= 1e-6
    assert all((a - b).abs().max().item() <= 1e-6 for a, b in zip(one_thread, two_threads))
    assert torch.equal(again, batched)


def test_precision_defaults_and_refusals():
    from geogan.errors import InputError
    from geogan.infer import resolve_precision
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("auto", cuda) == "fp16"
    assert resolve_precision("BF16", cpu) == "bf16" and resolve_precision("fp32", cuda) == "fp32"
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(InputError, match="unknown precision 'fp64'"):
        resolve_precision("fp64", cpu)


def test_bf16_on_cpu_is_close_to_fp32(schema):
    """The shipped model in bf16: within about one grey level of fp32 (0.14 levels on average)."""
    from geogan.infer import load_model, run_batch
    fp32, bf16 = load_model("fast", schema, "cpu"), load_model("fast", schema, "cpu", precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32" and fp32.module_fp32 is None
    assert {p.dtype for p in bf16.module.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.module_fp32.parameters()} == {torch.float32}
    rng = np.random.default_rng(0)
    ids = np.repeat(np.repeat(rng.integers(0, 12, (2, 32, 32), dtype=np.uint8), 8, 1), 8, 2)
    noise = rng.standard_normal((2, 1, 256, 256), dtype=np.float32)
    a, b = run_batch(fp32, ids, noise, 256), run_batch(bf16, ids, noise, 256)
    assert b.dtype == np.float32 and b.shape == a.shape
    diff = np.abs(a - b)
    assert 0 < diff.mean() < 0.003 and diff.max() < 0.03  # [-1, 1]: 0.003 = 0.4 grey levels


@pytest.mark.parametrize("arch", ["unet", "spade"])
def test_bf16_style_models_on_cpu(tmp_path, schema, arch):
    """Both architectures with a style encoder run in bf16; the encoder itself runs in fp32."""
    from PIL import Image

    from conftest import make_tiny_style_model
    from geogan.infer import encode_style, load_model, run_batch
    card = make_tiny_style_model(tmp_path / "m", arch)
    fp32, bf16 = load_model(str(card), schema, "cpu"), load_model(str(card), schema, "cpu", precision="bf16")
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref.png"
    Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(ref)
    style = encode_style(bf16, ref)
    assert style.dtype == torch.float32 and torch.allclose(style, encode_style(fp32, ref))
    ids = np.repeat(np.repeat(rng.integers(0, 12, (2, 8, 8), dtype=np.uint8), 8, 1), 8, 2)
    noise = rng.standard_normal((2, 1, 64, 64), dtype=np.float32)
    styled = run_batch(dataclasses.replace(bf16, style=style), ids, noise, 64)
    assert styled.dtype == np.float32 and np.isfinite(styled).all()
    assert np.abs(styled - run_batch(bf16, ids, noise, 64)).max() > 0.01  # the style reached the outputs
