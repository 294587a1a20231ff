"""Running a generator on batches of class-map tiles.

Holds the loaded model and the table that maps schema classes to the
model's own classes; turns class maps (schema ids) into one-hot tensors on
the chosen device, runs the generator under ``torch.inference_mode`` and
resizes outputs to the tile size. Noise is a pure function of (seed, pixel
position), so overlapping tiles see the same noise and renders repeat
exactly for the same seed.

torch is imported only where the torch runtime runs (loading, running and tuning a torch generator): a
render with ``runtime="onnx"`` (:mod:`geogan.onnx_infer`) goes through this module without PyTorch installed.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Iterable, Iterator, Sequence

import numpy as np

from .classes import Schema

from .errors import InputError, RenderError
from .onnx_infer import CardModel, OnnxModel, choose_runtime, class_lut, load_onnx_model, run_onnx_batch
from .zoo import resolve_model

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device(device)


@dataclass
class LoadedModel(CardModel):
    module: torch.nn.Module
    card: dict
    device: torch.device
    lut: np.ndarray  # schema class id -> model class index
    n_classes: int
    size_multiple: int
    style: torch.Tensor | None = None  # a style latent (SPADE style encoder), applied to every tile; the
    # card's ``default_style`` (e.g. the mean code of its training photos) unless --style-ref replaces it
    precision: str = "fp32"  # the generator's arithmetic (:data:`PRECISIONS`); ``module`` holds weights of it
    module_fp32: torch.nn.Module | None = None  # the fp32 generator, for batches a half precision overflows
    _onehot: np.ndarray | None = None
    card_path: str | None = None  # the model card it was loaded from (for messages)
    runtime: str = "torch"  # what runs the generator; :class:`geogan.onnx_infer.OnnxModel` says "onnx"
    reference_colours: object = None  # per-class colours of a --style-ref photo (geogan.style_reference)

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.precision)


# class_lut (schema id -> model class index) lives in geogan.onnx_infer, which imports no torch


PRECISIONS = ("fp32", "bf16", "fp16")


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name of :data:`PRECISIONS`."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> fp16 on a CUDA GPU, fp32 on CPU; bf16 and fp16 as asked (fp16 only on a GPU).

    Measured (benchmarks/gpu_bench.py, the previous default model): on an H100, fp16 weights run at 2.2x
    fp32's speed (2048 vs 947 MP/s, 64 tiles per call; bf16 1952) with a relative error of 6.2e-4 against
    float64 (at most 0.16 grey levels; bf16: 4.7e-3, 1.6 levels); the current default model: 1114-1182 MP/s
    in fp16 at 6.1e-4. On this project's CPU (AMD EPYC with AVX512-BF16),
    bf16 weights make a 4-tile call 1.4x faster at 4.0e-3 (about 1 grey level); without native bf16
    instructions it is slower than fp32, and CPUs lack fast fp16 entirely, hence fp32 by default there.
    """
    precision = (precision or "auto").lower()
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA GPU (CPUs run fp16 convolutions many times slower "
                         "than fp32); use bf16 or fp32 on CPU")
    return precision


def load_model(name_or_path: str, schema: Schema, device: str = "auto", compile: bool = False,
               precision: str = "auto", runtime: str = "auto") -> LoadedModel | OnnxModel:
    """A model ready for :func:`run_batch`. ``precision``: see :func:`resolve_precision`. ``compile``:
    ``torch.compile`` the generator (on CUDA with CUDA graphs, mode ``reduce-overhead``); the first batch
    of each shape then pays the compilation (seconds to tens of seconds). On this project's 2-core CPU it
    gains nothing (eager 31.8, compiled 32.4 ms per 4 tiles); on an H100 the previous default model's forward
    pass gained 1.5x at 64 tiles per call (fp16 weights, CUDA graphs), a render nothing
    (benchmarks/gpu_bench.py, gpu_render.py). ``runtime``: ``onnx`` runs the card's ONNX file with onnxruntime
    (:mod:`geogan.onnx_infer`; CPU, fp32); ``auto`` is torch while torch is installed."""
    card_path = resolve_model(name_or_path)
    if is_texture_bank(card_path):  # real photo patches, quilted (geogan.quilt_model): no generator to run
        from .quilt_model import load_quilt_model

        return load_quilt_model(card_path, schema)
    if choose_runtime(runtime, card_path) == "onnx":
        if compile:
            raise InputError("--compile needs the torch runtime; leave it out with --runtime onnx")
        return load_onnx_model(card_path, schema, device, precision)
    import torch

    from .models.checkpoint import load_generator

    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    module, card = load_generator(card_path, device="cpu", schema_classes=schema.names)
    module = prepare_for_inference(module, dev)
    multiple = int(getattr(module, "size_multiple", 1))
    module_fp32 = None
    if precision != "fp32":
        module_fp32, module = module, copy.deepcopy(module).to(torch_dtype(precision))
    if compile:
        module = torch.compile(module, mode="reduce-overhead" if dev.type == "cuda" else None, dynamic=False)
    style = None
    if card.get("default_style") is not None:  # a style-encoder model's look without --style-ref
        style = torch.tensor([card["default_style"]], dtype=torch.float32)
    return LoadedModel(module, card, dev, class_lut(card, schema), len(card["classes"]), multiple, style,
                       precision, module_fp32, card_path=str(card_path))


def is_texture_bank(card_path) -> bool:
    """Whether the card at ``card_path`` describes a texture bank (``"arch": "quilt"``) rather than a generator."""
    from .onnx_infer import read_card

    return read_card(card_path).get("arch") == "quilt"


def prepare_for_inference(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Eval mode on ``device``, batch norms folded into convolutions where the
    architecture supports it, and the channels-last layout (oneDNN's fast
    CPU convolutions; NCHW costs a layout conversion around every layer)."""
    import torch

    module = module.to(device).eval()
    fold = getattr(module, "fold_batchnorm_", None)
    if fold is not None:
        fold()
    module = module.to(memory_format=torch.channels_last)  # oneDNN on CPU and cuDNN tensor cores on GPU
    if device.type == "cpu":
        keep_freed_memory()
    return module


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed activation buffers instead of returning them to the OS.

    By default every tensor above the mmap threshold is a fresh ``mmap`` whose pages fault in again
    on each forward pass; keeping them (allocations up to 8 MB, trimming above 32 MB free) makes a CPU
    forward pass 10-15 % faster (benchmarks/bench.py); larger thresholds raised the peak memory of wide
    renders (16 km² vs 1 km² RSS ratio over 1.2). Once per process; a no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 8 * 2**20) and libc.mallopt(_M_TRIM_THRESHOLD, 32 * 2**20))
    except (OSError, AttributeError):
        return False


STYLE_CROP_PX = 256  # the style encoder's input size (the training crops')
MAX_STYLE_CROPS = 16


def _reference_pixels(path, gsd_m: float) -> np.ndarray:
    """(3, H, W) uint8-range float32 pixels of a reference image; a georeferenced one in a metric CRS is
    resampled to ``gsd_m`` so the encoder sees textures at the scale it was trained on."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
        scale = 1.0
        if ds.crs is not None and ds.crs.is_projected and ds.crs.linear_units_factor[1] > 0 and \
                not ds.transform.is_identity:
            ref_gsd_m = abs(ds.transform.a) * ds.crs.linear_units_factor[1]
            scale = ref_gsd_m / gsd_m
        shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        return ds.read(indexes=bands, out_shape=(3, *shape), resampling=Resampling.average).astype(np.float32)


def encode_style(model: LoadedModel, image_path) -> torch.Tensor:
    """The style latent of a reference aerial image (any raster GDAL reads; first 3 bands).

    The mean of the encoder's latent over up to ``MAX_STYLE_CROPS`` evenly spread 256 px crops of the
    image at the model's GSD (a georeferenced image in a metric CRS is resampled to it; otherwise its
    pixels are taken as they are); an image smaller than one crop is stretched to it.
    """
    from pathlib import Path

    import torch
    import torch.nn.functional as F

    path = Path(image_path)
    if model.runtime == "onnx":
        raise InputError(f"--style-ref needs the torch runtime (the ONNX file of model '{model.name}' has no "
                         "style encoder); use --runtime torch")
    module = model.module_fp32 if model.module_fp32 is not None else model.module  # the encoder runs in fp32
    encoder = getattr(module, "encode_style", None)
    if encoder is None or getattr(module, "style_encoder", None) is None:
        raise InputError(f"model '{model.name}' has no style encoder, so --style-ref cannot set its look; "
                         "use a model trained with --style-encoder (e.g. --model style)")
    if not path.is_file():
        raise InputError(f"style reference '{path}' does not exist; give an aerial image (GeoTIFF or PNG)")
    try:
        arr = _reference_pixels(path, model.gsd_m)
    except Exception:
        raise InputError(f"style reference '{path}' is not a readable image; give a GeoTIFF or PNG") from None
    x = torch.from_numpy(arr)[None] / 127.5 - 1
    c = STYLE_CROP_PX
    h, w = x.shape[-2:]
    if h < c or w < c:
        crops = F.interpolate(x, size=(c, c), mode="bilinear", align_corners=False, antialias=True)
    else:
        side = int(MAX_STYLE_CROPS ** 0.5)
        ys = np.linspace(0, h - c, min(side, h // c)).round().astype(int)
        xs = np.linspace(0, w - c, min(side, w // c)).round().astype(int)
        crops = torch.cat([x[..., y:y + c, x0:x0 + c] for y in ys for x0 in xs])
    with torch.inference_mode():
        _, mu, _ = encoder(crops.to(model.device))
    return mu.mean(0, keepdim=True).detach()


def model_input_px(tile_px: int, tile_gsd_m: float, native_gsd_m: float, multiple: int) -> int:
    """Model pixels for a tile so that one model pixel is ``native_gsd_m`` on the ground.

    Rounded to a multiple of the model's size multiple; within 1 % of the
    tile size it stays the tile size (no resampling at the native GSD).
    """
    exact = tile_px * tile_gsd_m / native_gsd_m
    if abs(exact - tile_px) <= 0.01 * tile_px and tile_px % multiple == 0:
        return tile_px
    return max(multiple, int(round(exact / multiple)) * multiple)


def run_batch(model: LoadedModel, class_maps: np.ndarray, noise: np.ndarray, out_px: int,
              orientations: Sequence[int] | None = None) -> np.ndarray:
    """Generate outputs for a batch of schema-id class maps.

    Parameters
    ----------
    class_maps : uint8 (B, m, m) schema class ids at model resolution
    noise : float32 (B, 1, m, m)
    out_px : output size; outputs are resized (bilinear, antialiased) when m differs
    orientations : per tile, the :func:`geogan.noise.orient` code its inputs were turned by; the outputs
        are turned back (:func:`_unorient_tensor`)

    Returns
    -------
    float32 (B, C, out_px, out_px) in [-1, 1]
    """
    if model.runtime == "onnx":
        return run_onnx_batch(model, class_maps, noise, out_px, orientations)
    import torch
    import torch.nn.functional as F

    dev = model.device
    with torch.inference_mode():
        # one gather of table rows gives (B, m, m, C): as NCHW, the channels-last layout the model runs in
        # (np.take: 4x faster than the same gather by fancy indexing)
        if dev.type == "cpu":
            onehot = torch.from_numpy(np.take(model.onehot_table, class_maps, axis=0)).permute(0, 3, 1, 2)
            z = torch.from_numpy(noise)
        else:  # send the uint8 ids, gather on the device; host buffers pinned (page-locked) for fast copies
            table = torch.from_numpy(model.onehot_table).to(dev)
            onehot = table[_to_device(class_maps, dev).long()].permute(0, 3, 1, 2)
            z = _to_device(noise, dev)
        out = _generate(model.module, model.style, onehot, z, model.dtype)
        finite = all_finite(out)
        if not finite and model.module_fp32 is not None:  # a half precision overflowed: this batch in fp32
            out = _generate(model.module_fp32, model.style, onehot, z, torch.float32)
            finite = all_finite(out)
        if not finite:
            raise non_finite_output_error(model)
        out = out.float()
        if out.shape[-1] != out_px:
            out = F.interpolate(out, size=(out_px, out_px), mode="bilinear", align_corners=False,
                                antialias=out.shape[-1] > out_px)
        out = out.clamp_(-1, 1)
        if orientations is not None and any(orientations):
            out = torch.stack([_unorient_tensor(o, k) for o, k in zip(out, orientations)])
        return out.numpy() if dev.type == "cpu" else _to_host(out)


def all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds no NaN or inf: a NaN or inf makes its float32 sum non-finite, and only then is
    every element tested (a sum that overflows on huge finite values is no NaN). The sum costs 0.06 ms
    for 4 tiles of 3 x 256 x 256 on one CPU thread; ``isfinite(t).all()`` on every batch cost 2.1 ms."""
    import torch

    return bool(torch.isfinite(t.sum(dtype=torch.float32))) or bool(torch.isfinite(t).all())


def non_finite_output_error(model: LoadedModel) -> RenderError:
    """The generator gave NaN or inf even in fp32 (clamping them would write black or white pixels)."""
    where = f"model '{model.name}'" + (f" ({model.card_path})" if model.card_path else "")
    tried = "in fp32" if model.precision == "fp32" else f"in {model.precision} and again in fp32"
    return RenderError(f"{where} produced NaN/inf values {tried} on {model.device.type}; its weights are broken or "
                       "it overflows on this input: try --device cpu or another --model, or retrain it")


def _generate(module: torch.nn.Module, style: torch.Tensor | None, onehot: torch.Tensor, z: torch.Tensor,
              dtype: torch.dtype) -> torch.Tensor:
    """The generator on inputs cast to its weights' ``dtype``."""
    onehot, z = onehot.to(dtype), z.to(dtype)
    if style is None:
        return module(onehot, noise=z)
    return module(onehot, noise=z, style=style.to(onehot.device, dtype))


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device`` through a page-locked staging copy (a pageable copy of a 64-tile batch's
    outputs took 38 ms on an H100 machine, benchmarks/gpu_bench.py)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).pin_memory().to(device, non_blocking=True)


def _to_host(t: torch.Tensor) -> np.ndarray:
    """A device tensor as a numpy array, copied into page-locked host memory."""
    import torch

    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t.contiguous(), non_blocking=True)
    torch.cuda.current_stream(t.device).synchronize()
    return host.numpy()


def _unorient_tensor(t: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`geogan.noise.orient` (code ``k``) for a (C, n, n) tensor."""
    import torch

    t = torch.rot90(t, -(k % 4), dims=(-2, -1))
    return torch.flip(t, dims=(-1,)) if k >= 4 else t


MAX_CPU_STREAMS = 4  # generator calls in flight at once on CPU (each holds one batch's activations)
CUDA_STREAMS = 2  # generator calls in flight on a CUDA GPU: one batch's inputs and outputs cross the bus while
# the other's runs (its end-to-end effect alone is unmeasured: with all session-7 GPU changes together an H100
# rendered 16 km2 in 3.3-3.8 s instead of 4.4-5.4 s; benchmarks/gpu_render.py)


def cpu_streams(device: torch.device, threads: int | None = None) -> tuple[int, int]:
    """(generator calls in flight, torch threads per call) for ``device`` and ``threads`` torch threads.

    On CPU the threads are split into up to ``MAX_CPU_STREAMS`` concurrent calls: each call's convolutions
    then synchronise fewer threads, and a call keeps its pace when another thread of the render (writing,
    rasterizing) takes a core. Measured on the 2-core VM (benchmarks/bench.py): the default model at
    8.0 ms per 256 px tile as two 1-thread calls against 9.2-11.1 ms as one 2-thread call, and the end-to-end
    render's generator calls slowed by the writer threads far less. ``CUDA_STREAMS`` calls on CUDA, each with
    all the threads.
    """
    threads = default_threads() if threads is None else int(threads)
    if device.type == "cuda":
        return CUDA_STREAMS, max(1, threads)
    if device.type != "cpu" or threads < 2:
        return 1, max(1, threads)
    streams = min(MAX_CPU_STREAMS, threads)
    return streams, max(1, threads // streams)


def default_threads() -> int:
    """torch's threads per op once torch is imported (the torch runtime, or a caller that set them); without
    torch (the onnx runtime) the CPUs this process may run on."""
    if sys.modules.get("torch") is not None:
        return sys.modules["torch"].get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def seed_torch(seed: int) -> None:
    """Seed torch's global generator when torch is imported (a torch model's random draws); without torch
    nothing can draw from it."""
    if sys.modules.get("torch") is not None:
        sys.modules["torch"].manual_seed(seed)


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads per op (threads started inside it keep that), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_batches(model: LoadedModel, batches: Iterable[tuple], out_px: int, *,
                streams: int = 1, threads_per_stream: int | None = None) -> Iterator[tuple[Hashable, np.ndarray]]:
    """:func:`run_batch` over ``(key, class_maps, noise[, orientations])`` items, ``streams`` at once; yields
    ``(key, output)`` in input order. Items are drawn at most ``streams + 1`` ahead of what has been yielded:
    one batch waits in the pool's queue, so a call that ends starts the next at once instead of idling while
    the caller blends and prepares inputs."""
    if streams <= 1:
        for key, *args in batches:
            yield key, run_batch(model, args[0], args[1], out_px, *args[2:])
        return
    thread_limit = torch_threads(threads_per_stream or 1) if model.runtime == "torch" else nullcontext()
    with thread_limit, \
            ThreadPoolExecutor(streams, thread_name_prefix="geogan-generator") as pool:
        pending: deque = deque()
        for key, *args in batches:
            pending.append((key, pool.submit(run_batch, model, args[0], args[1], out_px, *args[2:])))
            if len(pending) > streams:
                key0, future = pending.popleft()
                yield key0, future.result()
        while pending:
            key0, future = pending.popleft()
            yield key0, future.result()
