"""Exporting a generator to ONNX, for running it with onnxruntime instead of PyTorch.

``export_onnx("default", "out/default.onnx")`` writes, as one set (:mod:`geogan.outdir`):

* ``out/default.onnx``: the generator in eval mode with its batch norms folded, and the card's output
  filters (``postprocess``: forward hooks, :mod:`geogan.models.postprocess`) inside the graph, because
  the export traces the module's call, hooks included. Inputs are what :func:`geogan.infer.run_batch` feeds
  the module: ``onehot`` float32 (B, n_classes, H, W), ``noise`` float32 (B, 1, H, W) and, for a model
  with a style latent, ``style`` float32 (1, z_dim); output ``image`` (B, out_channels, H, W). B, H and W
  are free (H and W multiples of the card entry's ``size_multiple``).
* ``out/default.json``: a copy of the card with an ``onnx`` entry (file, SHA-256, opset, inputs, the
  largest difference from PyTorch measured at export) and ``out/default.safetensors``, the weights, so the
  folder is a complete model for either runtime (``--model out/default.json``, or ``$GEOGAN_MODEL_DIR``).

The export is checked before anything is written: onnxruntime runs the file on two batches (one not
square) and the largest |difference| from PyTorch must stay within :data:`MAX_GREY_DIFFERENCE`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import outdir
from .errors import InputError, OutputError, RenderError
from .onnx_infer import (INSTALL_HINT, ONNX_CARD_KEY, has_module, lcm, max_grey_difference, new_session,
                         sha256_file)
from .write import check_outputs
from .zoo import resolve_model

log = logging.getLogger("geogan")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the exporter colours its messages

#: The ONNX operator set written by default: onnxruntime 1.18 (2024) and newer run it. Newer sets (up to 28
#: with torch 2.13 and onnxruntime 1.32) gave the same outputs for the shipped models (--opset).
DEFAULT_OPSET = 21
MIN_OPSET, MAX_OPSET = 18, 28  # the exporter's lowest; the newest set onnx 1.23 defines
MAX_GREY_DIFFERENCE = 1.0  # grey levels (of 255) between the ONNX file's outputs and PyTorch's
CHECK_TILE_PX = 256  # side of the check batches (rounded up to the graph's size multiple)
MAX_BLOCKS = 1024  # the largest side the graph declares: size_multiple x this


@dataclass(frozen=True)
class ExportReport:
    onnx_path: Path
    card_path: Path
    weights_path: Path
    opset: int
    max_grey_difference: float  # the largest |ONNX - PyTorch| of the check batches, in grey levels
    seconds: float


class _Generator(nn.Module):
    """The generator called as run_batch calls it (keyword noise and style), so its forward hooks run."""

    def __init__(self, generator: nn.Module, with_style: bool):
        super().__init__()
        self.generator, self.with_style = generator, with_style

    def forward(self, onehot: torch.Tensor, noise: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if self.with_style:
            return self.generator(onehot, noise=noise, style=style)
        return self.generator(onehot, noise=noise)


def check_export_request(out: Path, opset: int) -> None:
    """Refuse a bad ``--out`` or ``--opset`` and missing packages before any work (one line each)."""
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out '{out}' must name a .onnx file (the card and weights are written beside it); "
                         "e.g. --out models/default.onnx")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset {opset!r} is not supported; give {MIN_OPSET}..{MAX_OPSET} "
                         f"(default {DEFAULT_OPSET})")
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not has_module(name)]
    if missing:
        raise InputError(f"exporting to ONNX needs the package(s) {', '.join(missing)}; {INSTALL_HINT}")


def load_for_export(card_path: Path) -> tuple[nn.Module, dict]:
    """The generator of the card at ``card_path`` in eval mode with folded batch norms, and its card. Hooks
    from the card's ``postprocess`` stay registered (they go into the graph)."""
    from .models.checkpoint import load_generator

    module, card = load_generator(card_path, device="cpu")
    module.eval()
    fold = getattr(module, "fold_batchnorm_", None)
    if fold is not None:
        fold()
    return module, card


def spatial_multiple(module: nn.Module, card: dict) -> int:
    """Input sides the graph takes: multiples of the generator's size multiple and of its lattice filter's
    period (so the filter applies to every input the graph accepts, as it does in PyTorch's renders)."""
    period = (card.get("postprocess") or {}).get("lattice_period_px") or 1
    return lcm(int(getattr(module, "size_multiple", 1)), int(period))


def check_side_px(multiple: int) -> int:
    """The side of the export's example and check tiles: :data:`CHECK_TILE_PX` rounded up to ``multiple``."""
    return multiple * max(1, -(-CHECK_TILE_PX // multiple))


def example_inputs(module: nn.Module, batch: int, height_px: int, width_px: int, seed: int = 0) -> tuple:
    """Real-looking inputs: one-hot blocks of random classes (16 px cells) and standard normal noise."""
    gen = np.random.default_rng(seed)
    n_classes = int(module.in_channels)
    cells = gen.integers(0, n_classes, (batch, -(-height_px // 16), -(-width_px // 16)))
    ids = np.repeat(np.repeat(cells, 16, axis=1), 16, axis=2)[:, :height_px, :width_px]
    onehot = np.eye(n_classes, dtype=np.float32)[ids].transpose(0, 3, 1, 2)
    noise = gen.standard_normal((batch, 1, height_px, width_px), dtype=np.float32)
    inputs = (torch.from_numpy(np.ascontiguousarray(onehot)), torch.from_numpy(noise))
    z_dim = int(getattr(module, "z_dim", 0) or 0)
    return inputs + (torch.zeros(1, z_dim),) if z_dim else inputs


def style_of(card: dict, z_dim: int) -> torch.Tensor:
    """The style latent run_batch gives a style model: the card's default_style, else the prior mean 0."""
    if card.get("default_style") is not None:
        return torch.tensor([card["default_style"]], dtype=torch.float32)
    return torch.zeros(1, z_dim)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines, warnings and log records kept off the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def write_onnx(wrapper: _Generator, inputs: tuple, multiple: int, opset: int, path: Path) -> None:
    """``torch.onnx.export`` (the dynamo exporter) with a free batch size and free sides (multiples of
    ``multiple``), into ``path``; an exporter failure is one RenderError line."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    height = multiple * torch.export.Dim("h_blocks", min=1, max=MAX_BLOCKS)
    width = multiple * torch.export.Dim("w_blocks", min=1, max=MAX_BLOCKS)
    shapes = {"onehot": {0: batch, 2: height, 3: width}, "noise": {0: batch, 2: height, 3: width}}
    names = ["onehot", "noise"]
    if len(inputs) == 3:
        shapes["style"] = None
        names.append("style")
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(wrapper, inputs, str(path), input_names=names, output_names=["image"],
                              opset_version=opset, dynamo=True, external_data=False, dynamic_shapes=shapes,
                              verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; one line names it
        first = _ANSI.sub("", str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        raise RenderError(f"torch.onnx.export could not export this generator with free batch and tile sizes "
                          f"({type(exc).__name__}: {first[:160]}); keep the torch runtime for it") from None


def check_against_torch(path: Path, wrapper: _Generator, card: dict, multiple: int) -> float:
    """The largest |ONNX - PyTorch| in grey levels on two batches (2 square tiles, 1 non-square)."""
    side = check_side_px(multiple)
    session = new_session(path, threads=max(1, torch.get_num_threads()))
    worst = 0.0
    z_dim = int(getattr(wrapper.generator, "z_dim", 0) or 0)
    for seed, (batch, h, w) in enumerate(((2, side, side), (1, side, side + multiple))):
        onehot, noise, *_ = example_inputs(wrapper.generator, batch, h, w, seed)
        args = (onehot, noise) + ((style_of(card, z_dim),) if z_dim else ())
        with torch.inference_mode():
            expected = wrapper(*args).numpy()
        feeds = dict(zip(("onehot", "noise", "style"), (a.numpy() for a in args)))
        got = session.run(None, feeds)[0]
        if got.shape != expected.shape or not np.isfinite(got).all():
            return float("inf")
        worst = max(worst, max_grey_difference(got, expected))
    return worst


def onnx_card(card: dict, onnx_name: str, digest: str, opset: int, multiple: int, z_dim: int,
              difference: float) -> dict:
    """The card copy: the original with the ``onnx`` entry naming ``onnx_name`` (beside the card)."""
    out = json.loads(json.dumps(card))
    out[ONNX_CARD_KEY] = {
        "file": onnx_name, "sha256": digest, "opset": opset, "size_multiple": multiple,
        "inputs": ["onehot", "noise"] + (["style"] if z_dim else []), "outputs": ["image"],
        **({"z_dim": z_dim} if z_dim else {}),
        "max_grey_difference_vs_torch": round(difference, 4),
        "exported_with": f"torch {torch.__version__.split('+')[0]}",
    }
    return out


def export_onnx(model: str, out: str | os.PathLike, opset: int = DEFAULT_OPSET,
                overwrite: bool = False) -> ExportReport:
    """Export ``model``'s generator to ``out`` (.onnx) with a card copy and the weights beside it (module doc).

    Nothing is written unless the ONNX file's outputs match PyTorch's within :data:`MAX_GREY_DIFFERENCE`.
    """
    start = time.perf_counter()
    out = Path(out)
    check_export_request(out, opset)
    card_path = resolve_model(model)
    folder = out.parent if str(out.parent) else Path(".")
    names = [out.name, out.with_suffix(".json").name, out.with_suffix(".safetensors").name]
    check_outputs([folder / n for n in names], overwrite)
    module, card = load_for_export(card_path)
    z_dim = int(getattr(module, "z_dim", 0) or 0)
    wrapper = _Generator(module, with_style=z_dim > 0).eval()
    multiple = spatial_multiple(module, card)
    with outdir.FolderLock(folder):
        staging = outdir.new_staging(folder)
        try:
            onnx_path = staging / "new" / names[0]
            side = check_side_px(multiple)
            write_onnx(wrapper, example_inputs(module, 2, side, side), multiple, opset, onnx_path)
            difference = check_against_torch(onnx_path, wrapper, card, multiple)
            if not difference <= MAX_GREY_DIFFERENCE:
                raise RenderError(f"the ONNX export of model '{card.get('name')}' differs from PyTorch by "
                                  f"{difference:.3g} grey levels (limit {MAX_GREY_DIFFERENCE:g}); nothing was written; "
                                  "try another --opset or keep the torch runtime")
            new_card = onnx_card(card, names[0], sha256_file(onnx_path), opset, multiple, z_dim, difference)
            (staging / "new" / names[1]).write_text(json.dumps(new_card, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
            shutil.copyfile(card_path.with_suffix(".safetensors"), staging / "new" / names[2])
            outdir.commit(staging, folder, names)
        except OSError as exc:
            raise OutputError(f"cannot write the ONNX export into '{folder}' ({exc.strerror or exc}); "
                              "choose a writable --out") from None
        finally:
            outdir.discard(staging)
    log.info("exported model '%s' to %s (opset %d, max |onnx - torch| %.3g grey levels)", card.get("name"), out,
             opset, difference)
    return ExportReport(folder / names[0], folder / names[1], folder / names[2], opset, difference,
                        time.perf_counter() - start)


__all__ = ["DEFAULT_OPSET", "ExportReport", "export_onnx", "MAX_GREY_DIFFERENCE"]
