"""A texture-bank model (card ``"arch": "quilt"``) in the render pipeline: whole output strips quilted from real
photo patches (:mod:`geogan.quilt`) instead of generator tiles.

Quilting is a pure function of the class map around each world pixel, so a strip is drawn from its class map
with ``quilt.margin_px`` pixels of context on every side and agrees exactly with its neighbours: no tile
overlap or blending is needed, and strips, Dask blocks and neighbouring renders join without a seam. No torch
is needed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .classes import Schema
from .errors import ModelError
from .onnx_infer import CardModel, class_lut, read_card
from .quilt import QuiltSettings, TextureBank, load_bank, margin_px, synthesize


@dataclass(frozen=True)
class NumpyDevice:
    """Where a texture bank runs: numpy on the CPU (``type`` as torch.device's)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return "cpu (numpy, texture bank)"


@dataclass
class QuiltModel(CardModel):
    """The fields of :class:`geogan.infer.LoadedModel` the pipeline reads, for a texture bank."""

    bank: TextureBank
    card: dict
    lut: np.ndarray  # schema class id -> model class index
    n_classes: int
    size_multiple: int = 1
    style: None = None
    card_path: str | None = None
    device: NumpyDevice = field(default_factory=NumpyDevice)
    precision: str = "uint8 photos"
    module: None = None  # no torch module: --style-ref and generator training refuse texture banks
    module_fp32: None = None
    runtime: str = "quilt"
    reference_colours: object = None  # per-class colours of a --style-ref photo (geogan.style_reference)
    _onehot: np.ndarray | None = None


def settings_of(card: dict) -> QuiltSettings:
    """The card's ``quilt`` settings (its keys are :class:`QuiltSettings` fields)."""
    try:
        return QuiltSettings(**card.get("quilt", {}))
    except TypeError as exc:
        raise ModelError(f"model card '{card.get('name')}': bad quilt settings ({exc}); fix its 'quilt' entry") from None


@functools.lru_cache(maxsize=2)
def _cached_bank(path: str, mtime_ns: int, settings: QuiltSettings) -> TextureBank:
    return load_bank(Path(path), settings)


def load_quilt_model(card_path: str | Path, schema: Schema) -> QuiltModel:
    """The texture bank named by the card at ``card_path`` (its ``bank`` file, beside the card)."""
    card_path = Path(card_path)
    card = read_card(card_path)
    bank_file = card_path.parent / str(card.get("bank", card_path.with_suffix(".npz").name))
    if not bank_file.is_file():
        raise ModelError(f"model card {card_path}: its texture bank {bank_file.name} is missing; reinstall geogan "
                         "or rebuild the bank with 'geogan build-bank'")
    bank = _cached_bank(str(bank_file), bank_file.stat().st_mtime_ns, settings_of(card))
    if list(bank.classes) != list(card["classes"]):
        raise ModelError(f"texture bank {bank_file.name} has classes {list(bank.classes)}, its card "
                         f"{list(card['classes'])}; rebuild the bank with 'geogan build-bank'")
    return QuiltModel(bank, card, class_lut(card, schema), len(card["classes"]), card_path=str(card_path))


def look_of(model: QuiltModel, seed: int) -> int:
    """The bank look a render with ``seed`` uses: the card's ``look`` for seed 0; any other seed draws a look
    with the share of the bank's photos it holds, so renders with many seeds take each look as often as the
    photos show it (a rare flight's colours are not as common as the usual ones)."""
    if seed == 0:
        return int(model.card.get("look", 0))
    looks = model.bank.looks
    photos = np.bincount(looks[looks >= 0], minlength=model.bank.n_looks)
    return int(np.random.default_rng(seed).choice(len(photos), p=photos / photos.sum()))


def strip_inputs(model: QuiltModel, feats, grid, rows: tuple[int, int], scale: float, offset_rc: tuple[int, int]
                 ) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """(model class ids with the quilting margin, their world origin, the output rows the inner part covers) for
    output rows ``rows`` of ``grid`` at ``scale`` model pixels per output pixel. ``offset_rc``: the world pixel of
    ``grid``'s (0, 0) (output pixels), which anchors the quilting lattice."""
    a, b = rows
    m = margin_px(model.bank.settings)
    r0, r1 = math.floor(a * scale), math.ceil(b * scale)
    w = math.ceil(grid.width * scale)
    # the model-resolution grid: output pixel (r, c) is model pixel (r * scale, c * scale)
    model_grid = grid if scale == 1 else grid.resized(max(1, round(grid.height * scale)),
                                                      max(1, round(grid.width * scale)))
    window = model_grid.window(r0 - m, -m, r1 - r0 + 2 * m, w + 2 * m)
    classes = model.lut[feats.classes(window)].astype(np.uint8)
    origin = (r0 - m + round(offset_rc[0] * scale), -m + round(offset_rc[1] * scale))
    return classes, origin, (r0 / scale, r1 / scale)


def quilt_strip(model: QuiltModel, classes: np.ndarray, origin: tuple[int, int], span: tuple[float, float],
                rows: tuple[int, int], width: int, seed: int) -> np.ndarray:
    """The output rows ``rows`` quilted from :func:`strip_inputs`: at scale 1 exact, uint8 RGB (3, rows, width) as
    quilted (a quarter of float32's memory for the strips in flight); otherwise float32 (3, rows, width) in [-1, 1],
    quilted on the model-resolution pixels covering the rows and resampled (antialiased)."""
    rgb = synthesize_columns(model.bank, classes, origin, seed=seed, look=look_of(model, seed))
    if rgb.shape[:2] == (rows[1] - rows[0], width):
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    out = rgb.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1
    return _resample(out, span, rows[0], rows[1], width)


QUILT_CHUNK_PX = 1024  # output columns quilted at once: a strip's working memory follows this, not the area's width


def synthesize_columns(bank: TextureBank, classes: np.ndarray, origin: tuple[int, int], *, seed: int, look: int,
                       chunk_px: int = QUILT_CHUNK_PX) -> np.ndarray:
    """:func:`geogan.quilt.synthesize` of a strip, ``chunk_px`` output columns at a time (each with its margin):
    the same pixels, since every pixel depends only on the class map within the margin and its world position,
    with a working memory bounded by the chunk, not by the strip's width."""
    m = margin_px(bank.settings)
    width = classes.shape[1] - 2 * m
    if width <= chunk_px:
        return synthesize(bank, classes, origin, seed=seed, look=look)
    parts = [synthesize(bank, classes[:, c:min(c + chunk_px, width) + 2 * m], (origin[0], origin[1] + c),
                        seed=seed, look=look) for c in range(0, width, chunk_px)]
    return np.concatenate(parts, axis=1)


def _resample(strip: np.ndarray, span: tuple[float, float], a: int, b: int, width: int) -> np.ndarray:
    """``strip`` (C, h, w) covering output rows ``span`` resized to output pixels (PIL, antialiased when
    shrinking) and cut to rows ``a .. b``."""
    from PIL import Image

    lo, hi = span
    rows_out = max(1, round(hi - lo))
    out = np.stack([np.asarray(Image.fromarray(band).resize((width, rows_out), Image.Resampling.BILINEAR,
                                                            reducing_gap=None)) for band in strip])
    start = int(round(a - lo))
    out = out[:, start:start + (b - a)]
    if out.shape[1] < b - a:  # rounding left a row short: repeat the last
        out = np.concatenate([out, np.repeat(out[:, -1:], b - a - out.shape[1], 1)], 1)
    return out


def quilt_rows(model: QuiltModel, feats, grid, spec, plan, *, first_row: int, stop_row: int, seed: int,
               on_batch, offset_rc: tuple[int, int], n_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`geogan.pipeline.blend_tile_rows` for a texture bank: per tile row, the output rows it owns.

    Strips are independent (each is quilted from its own class map and margin), so up to ``os.cpu_count()``
    (at most 4) are quilted at once in threads (numpy's large gathers and products release the GIL); yielded in
    order."""
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor


    todo = []
    for r in range(first_row, stop_row):
        a = r * spec.stride_px
        b = grid.height if r == n_rows - 1 else min(grid.height, (r + 1) * spec.stride_px)
        if a < b:
            todo.append((r, a, b))
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(workers, thread_name_prefix="geogan-quilt") as pool:
        pending: deque = deque()
        for r, a, b in todo:
            if on_batch is not None:
                on_batch(spec.count(grid.width))
            # class maps are drawn here, in this thread (class sources are not shared across threads)
            classes, origin, span = strip_inputs(model, feats, grid, (a, b), plan.model_px_by_row[r] / spec.tile_px,
                                                 offset_rc)
            pending.append((a, pool.submit(quilt_strip, model, classes, origin, span, (a, b), grid.width, seed)))
            if len(pending) > workers:
                a0, fut = pending.popleft()
                yield a0, fut.result()
        while pending:
            a0, fut = pending.popleft()
            yield a0, fut.result()
