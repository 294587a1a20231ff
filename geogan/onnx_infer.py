"""Running an exported generator with onnxruntime, without PyTorch.

A model card may name an ONNX file of its generator (written by ``geogan export-onnx``, see
:mod:`geogan.onnx_export`)::

    "onnx": {"file": "default.onnx", "sha256": "...", "opset": 21, "size_multiple": 128,
             "inputs": ["onehot", "noise"], ...}

:func:`load_onnx_model` returns an :class:`OnnxModel`, which carries the attributes of
:class:`geogan.infer.LoadedModel` that the render pipeline reads (card, lut, device type, size multiple, ...),
and :func:`run_onnx_batch` is :func:`geogan.infer.run_batch` in numpy: the same one-hot gather, noise,
resize (bilinear, antialiased when shrinking, as ``torch.nn.functional.interpolate``), clamp and orientation.
This module imports neither torch nor anything that does; onnxruntime is imported when a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .classes import Schema
from .errors import InputError, ModelError, RenderError
from .optional import ONNX_ALTERNATIVE, has_module, torch_missing_message  # has_module: also imported from here

ONNX_CARD_KEY = "onnx"  # the model card's entry naming its ONNX file
RUNTIMES = ("auto", "torch", "onnx")
INSTALL_HINT = "pip install 'geogan[onnx]'"


@dataclass(frozen=True)
class OnnxDevice:
    """Where an ONNX model runs: onnxruntime's CPU execution provider (``type`` as torch.device's)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return f"{self.type} (onnxruntime)"


class CardModel:
    """What a loaded model (torch :class:`geogan.infer.LoadedModel` or :class:`OnnxModel`) derives from its card,
    its class lookup ``lut``, ``n_classes`` and ``device``; no torch needed."""

    @property
    def onehot_table(self) -> np.ndarray:
        """float32 (256, n_classes): row ``k`` is the model's one-hot input for schema class ``k``."""
        if self._onehot is None:
            self._onehot = np.eye(self.n_classes, dtype=np.float32)[self.lut]
        return self._onehot

    @property
    def gsd_m(self) -> float:
        return float(self.card["gsd_m"])

    @property
    def name(self) -> str:
        return str(self.card.get("name", "model"))

    @property
    def throughput_mp_s(self) -> float:
        """Output megapixels per second on this device class (from the card; conservative default)."""
        key = "throughput_mp_s_cuda" if self.device.type == "cuda" else "throughput_mp_s_cpu"
        return float(self.card.get("benchmarks", {}).get(key, 0.5))


@dataclass
class OnnxModel(CardModel):
    """A generator exported to ONNX, ready for :func:`run_onnx_batch`; the fields of LoadedModel the pipeline reads."""

    session: Any  # onnxruntime.InferenceSession
    card: dict
    lut: np.ndarray  # schema class id -> model class index
    n_classes: int
    size_multiple: int  # input sides must be multiples of this (the exported graph's)
    style: np.ndarray | None = None  # float32 (1, z_dim) for a style model: the card's default_style or zeros
    card_path: str | None = None
    device: OnnxDevice = field(default_factory=OnnxDevice)
    precision: str = "fp32"
    module: None = None  # no torch module: code that needs one (--style-ref, evaluation) refuses ONNX models
    module_fp32: None = None
    runtime: str = "onnx"
    _onehot: np.ndarray | None = None



def read_card(card_path: Path) -> dict:
    """The model card at ``card_path`` as a dict (one-line ModelError when unreadable)."""
    try:
        card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"model card {card_path}: not readable JSON ({exc}); re-export the model") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path}: top level must be a JSON object; re-export the model")
    return card


def model_name(card_path: Path, card: dict | None = None) -> str:
    """The card's model name (the file's stem where the card has none)."""
    card = read_card(card_path) if card is None else card
    return str(card.get("name", Path(card_path).stem))


def choose_runtime(runtime: str, card_path: Path) -> str:
    """'torch' or 'onnx' for ``runtime`` (auto, torch, onnx): auto is torch when it is installed, else onnx
    when the card names an ONNX file and onnxruntime is installed; anything that cannot run is one line."""
    runtime = (runtime or "auto").lower()
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime '{runtime}'; use auto, torch or onnx")
    torch_ok = has_module("torch")
    if runtime == "torch" or (runtime == "auto" and torch_ok):
        if not torch_ok:
            raise InputError(torch_missing_message(f"model '{model_name(card_path)}' (--runtime torch)",
                                                   ONNX_ALTERNATIVE))
        return "torch"
    card = read_card(card_path)
    name = model_name(card_path, card)
    if ONNX_CARD_KEY not in card:
        if runtime == "auto":  # no PyTorch: a model without an ONNX file cannot run here
            raise ModelError(torch_missing_message(f"model '{name}'", ONNX_ALTERNATIVE))
        raise ModelError(f"model '{name}' ({card_path}) has no ONNX file; export one with 'geogan export-onnx "
                         f"--model {name} --out DIR/{name}.onnx' and give --model DIR/{name}.json")
    if not has_module("onnxruntime"):
        raise InputError(f"the onnx runtime needs the package onnxruntime, which is not installed; {INSTALL_HINT}")
    return "onnx"


def onnx_file(card: dict, card_path: Path) -> tuple[Path, dict]:
    """The card's ONNX file (checked: present, SHA-256 as the card says) and its card entry."""
    entry = card.get(ONNX_CARD_KEY)
    where = f"model card {card_path}"
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("file", "sha256")):
        raise ModelError(f"{where}: '{ONNX_CARD_KEY}' must be an object with 'file' and 'sha256'; export it again "
                         "with geogan export-onnx")
    path = Path(card_path).parent / entry["file"]
    if not path.is_file():
        raise ModelError(f"{where}: its ONNX file {path} does not exist; export it again with geogan export-onnx")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(f"ONNX file {path}: SHA-256 {digest[:12]}... does not match the card's "
                         f"{entry['sha256'][:12]}...; the file was changed or belongs to another card")
    return path, entry


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def class_lut(card: dict, schema: Schema) -> np.ndarray:
    """Lookup table schema id -> model class index, from the card's ``schema_to_model``."""
    classes = list(card["classes"])
    mapping = card.get("schema_to_model", {})
    lut = np.zeros(256, dtype=np.uint8)
    for c in schema.classes:
        target = mapping.get(c.name)
        if target is None:
            raise ModelError(f"model '{card.get('name')}' does not say which of its classes stands for schema class "
                             f"'{c.name}'; add it to schema_to_model in the model card")
        if target not in classes:
            raise ModelError(f"model '{card.get('name')}' maps '{c.name}' to '{target}', which is not one of its "
                             f"classes {classes}; fix the model card")
        lut[c.id] = classes.index(target)
    return lut


def new_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session of ``path`` running each call on ``threads`` threads (1: the calling
    thread only; the pipeline runs several calls at once, as it does with torch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on a shared CPU
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad or too new file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX file {path}: onnxruntime {ort.__version__} cannot load it ({first[:200]}); "
                         "export it again with geogan export-onnx or upgrade onnxruntime") from None


def load_onnx_model(card_path: str | Path, schema: Schema, device: str = "auto", precision: str = "auto",
                    threads: int = 1) -> OnnxModel:
    """The ONNX generator named by the card at ``card_path``, on the CPU in fp32 (other devices and
    precisions are refused in one line)."""
    card_path = Path(card_path)
    if (device or "auto").lower() not in ("auto", "cpu"):
        raise InputError(f"--runtime onnx runs on the CPU only, not '{device}'; use --device cpu or --runtime torch")
    if (precision or "auto").lower() not in ("auto", "fp32"):
        raise InputError(f"--runtime onnx runs in fp32 only, not '{precision}'; use --precision fp32 or "
                         "--runtime torch")
    card = read_card(card_path)
    for key in ("classes", "gsd_m"):
        if key not in card:
            raise ModelError(f"model card {card_path}: missing key {key}; re-export the model")
    path, entry = onnx_file(card, card_path)
    session = new_session(path, threads)
    style = None
    if "style" in entry.get("inputs", ()):
        z_dim = int(entry.get("z_dim", 0))
        default = card.get("default_style")
        style = np.asarray([default] if default is not None else np.zeros((1, z_dim)), dtype=np.float32)
    return OnnxModel(session, card, class_lut(card, schema), len(card["classes"]), int(entry.get("size_multiple", 1)),
                     style, str(card_path))


def run_onnx_batch(model: OnnxModel, class_maps: np.ndarray, noise: np.ndarray, out_px: int,
                   orientations: Sequence[int] | None = None) -> np.ndarray:
    """:func:`geogan.infer.run_batch` for an :class:`OnnxModel`: float32 (B, C, out_px, out_px) in [-1, 1]."""
    m = class_maps.shape[-1]
    if class_maps.shape[-2] % model.size_multiple or m % model.size_multiple:
        raise InputError(f"tile {class_maps.shape[-2]}x{m} px is not a multiple of {model.size_multiple} px, which "
                         f"the ONNX file of model '{model.name}' needs; use a tile size that is")
    onehot = np.ascontiguousarray(np.take(model.onehot_table, class_maps, axis=0).transpose(0, 3, 1, 2))
    feeds = {"onehot": onehot, "noise": np.ascontiguousarray(noise, dtype=np.float32)}
    if model.style is not None:
        feeds["style"] = model.style
    out = model.session.run(None, feeds)[0]
    if not np.isfinite(out.sum(dtype=np.float32)) and not np.isfinite(out).all():
        raise RenderError(f"model '{model.name}' ({model.card_path}) produced NaN/inf values with onnxruntime; "
                          "its ONNX file is broken: export it again, or use --runtime torch")
    if out.shape[-1] != out_px or out.shape[-2] != out_px:
        out = resize_bilinear(out, out_px)
    np.clip(out, -1, 1, out=out)
    if orientations is not None and any(orientations):
        out = np.stack([unorient(o, k) for o, k in zip(out, orientations)])
    return out


def unorient(a: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`geogan.noise.orient` (code ``k``) for a (C, n, n) array."""
    a = np.rot90(a, -(k % 4), axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if k >= 4 else a)


def resize_weights(in_px: int, out_px: int) -> np.ndarray:
    """float32 (out_px, in_px): torch's bilinear ``interpolate`` (align_corners False) along one axis, with
    the triangle filter widened by the scale when shrinking (``antialias=True``, as run_batch asks then)."""
    scale = in_px / out_px
    support = max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_px, in_px), dtype=np.float64)
    for i in range(out_px):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_px)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j - centre + 0.5) * inv), 0.0, None)
        total = w.sum()
        weights[i, lo:hi] = w / total if total > 0 else 0.0
    return weights.astype(np.float32)


def resize_bilinear(x: np.ndarray, out_px: int) -> np.ndarray:
    """(B, C, h, w) float32 resized to (B, C, out_px, out_px) by :func:`resize_weights` along each axis."""
    wy = resize_weights(x.shape[-2], out_px)
    wx = resize_weights(x.shape[-1], out_px)
    return np.matmul(wy, np.matmul(x, wx.T)).astype(np.float32, copy=False)


def grey_levels(a: np.ndarray) -> np.ndarray:
    """Generator outputs in [-1, 1] as the 8-bit grey levels the renders write (the pipeline's rounding)."""
    return np.clip(np.rint((np.asarray(a, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def max_grey_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a - b| in grey levels (1 level = 2/255 of the [-1, 1] range), before rounding."""
    return float(np.abs(np.clip(a, -1, 1) - np.clip(b, -1, 1)).max() * 127.5) if a.size else 0.0


def lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


__all__ = ["ONNX_CARD_KEY", "RUNTIMES", "OnnxModel", "choose_runtime", "load_onnx_model", "run_onnx_batch",
           "resize_bilinear", "grey_levels", "max_grey_difference"]
