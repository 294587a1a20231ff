"""Stitching dream tiles into one seamless class map of any size (:func:`dream_map`), and calibrating the
per-class gains that keep thin streets through the blending."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..blend import StripBlender
from ..errors import InputError, TooLargeError
from ..noise import GOLD, M1, M2, splitmix64
from ..options import with_options
from ..streets import join_streets
from .model import DreamModel, PathLike, ProgressFn, _atomic, load_dream_model, resolve_dream_model, sample_tiles
from .stats import STREET_CLASSES, stitched_stats

MAX_DREAM_PX = 20_000 ** 2
#: Street joining in :func:`dream_map` (dream pixels; 4 m with the shipped model). Measured on four 200 px
#: dreams (seeds 0-3): roads in pieces at least 16 px long 40 % -> 85 % (real OSM tiles 91 %), road pieces
#: per 1,000 px 2.3 -> 0.7; a 20 degree cone and 10 px gaps drew a web of diagonal cracks instead.
STREET_JOIN_GAP_PX = 8
STREET_JOIN_CONE_DEG = 10.0
STREET_MIN_LENGTH_PX = 12


def _hashed_normals(seed: int, iy: np.ndarray, ix: np.ndarray, dim: int) -> np.ndarray:
    """Standard normals ``(len, dim)`` that depend only on (seed, lattice row, lattice column, channel)."""
    with np.errstate(over="ignore"):
        ch = np.arange(dim, dtype=np.uint64)
        key = np.uint64(seed & 0xFFFFFFFF) * GOLD + np.uint64(0x5DEECE66D)
        iy = iy.astype(np.int64).astype(np.uint64)[:, None]
        ix = ix.astype(np.int64).astype(np.uint64)[:, None]
        z = splitmix64(key + iy * M2 + splitmix64(ix * GOLD + M1) + ch[None, :] * M1)
    u1 = ((z >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)
    u2 = ((z & np.uint64(0xFFFFFF)).astype(np.float64) + 0.5) / float(1 << 24)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)


def tile_latents(seed: int, centers_yx: np.ndarray, spacing_px: float, z_dim: int) -> np.ndarray:
    """Latents ``float32 (N, z_dim)`` for tiles centred at ``centers_yx`` (N, 2) pixel positions.

    A lattice of i.i.d. standard-normal latents every ``spacing_px`` pixels (keyed by seed and lattice
    index, so the field does not depend on the map's size) is interpolated bilinearly and divided by
    the root of the summed squared weights, so each tile's latent is still N(0, I) while nearby tiles
    share most of it.
    """
    c = np.asarray(centers_yx, dtype=np.float64) / float(spacing_px)
    i0 = np.floor(c).astype(np.int64)
    f = c - i0
    z = np.zeros((len(c), z_dim))
    wsq = np.zeros(len(c))
    for dy in (0, 1):
        for dx in (0, 1):
            w = (f[:, 0] if dy else 1 - f[:, 0]) * (f[:, 1] if dx else 1 - f[:, 1])
            z += w[:, None] * _hashed_normals(seed, i0[:, 0] + dy, i0[:, 1] + dx, z_dim)
            wsq += w * w
    return (z / np.sqrt(wsq)[:, None]).astype(np.float32)


def remove_specks(class_map: np.ndarray, min_px: int) -> np.ndarray:
    """Merge 8-connected patches smaller than ``min_px`` pixels into their largest neighbour (GDAL sieve)."""
    if min_px <= 1:
        return class_map
    import rasterio.features

    return rasterio.features.sieve(class_map.astype(np.uint8), int(min_px), connectivity=8).astype(np.uint8)


def _candidate_latents(seed: int, z_smooth: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int,
                       spread: float) -> np.ndarray:
    """``(N, k, z_dim)``: candidate 0 is the smooth latent, the others it plus position-hashed noise."""
    n, dim = z_smooth.shape
    out = np.repeat(z_smooth[:, None, :], k, axis=1)
    for j in range(1, k):
        key = (seed * 0x9E3779B1 + j * 0x85EBCA77 + 0x2545F491) & 0xFFFFFFFF
        noise = _hashed_normals(key, rows, cols, dim)
        out[:, j] = (z_smooth + spread * noise) / math.sqrt(1.0 + spread * spread)
    return out.astype(np.float32)


def _laid_down(neighbours: list[tuple[int, int, np.ndarray]], window: np.ndarray, n_classes: int) -> np.ndarray:
    """Weighted class probabilities that placed neighbour tiles put on a tile's footprint ``(K, T, T)``.

    ``neighbours``: (dy, dx, probs) with the neighbour's top-left relative to the tile's.
    """
    t = window.shape[0]
    acc = np.zeros((n_classes, t, t), dtype=np.float32)
    for dy, dx, probs in neighbours:
        if abs(dy) >= t or abs(dx) >= t:
            continue
        ys, yn = slice(max(0, dy), t + min(0, dy)), slice(max(0, -dy), t - max(0, dy))
        xs, xn = slice(max(0, dx), t + min(0, dx)), slice(max(0, -dx), t - max(0, dx))
        acc[:, ys, xs] += probs[:, yn, xn] * window[yn, xn]
    return acc


def _class_prior(model: DreamModel, n: int = 64) -> np.ndarray:
    """Mean softmax class probabilities ``(K,)`` of ``n`` fixed latents (the model's class fractions)."""
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(12345))
    with torch.inference_mode():
        probs = torch.softmax(model.generator.logits(z.to(model.device)), 1)
    return probs.mean((0, 2, 3)).cpu().numpy().astype(np.float32)


def _tile_grid(tile_px: int, h: int, w: int, overlap_px: int | None) -> tuple[int, int, int, int]:
    """``(overlap, stride, tile rows, tile columns)`` of :func:`dream_map`'s tiles over an ``h`` x ``w`` map."""
    t = tile_px
    overlap = t // 2 if overlap_px is None else int(overlap_px)
    if not 0 <= overlap <= t // 2:
        raise InputError(f"dream_map: overlap {overlap} px must be in 0..{t // 2} (half the {t} px tile)")
    stride = t - overlap
    n_rows = 1 if h <= t else 1 + math.ceil((h - t) / stride)
    n_cols = 1 if w <= t else 1 + math.ceil((w - t) / stride)
    return overlap, stride, n_rows, n_cols


def _class_gain(model: DreamModel, class_gains: Sequence[float] | None) -> np.ndarray | None:
    """``(K, 1, 1)`` factors on the blended probabilities (None: none); ``class_gains`` None: the card's."""
    if class_gains is None:
        class_gains = model.card.get("class_gains")
    if class_gains is None or not len(class_gains):
        return None
    if len(class_gains) != model.n_classes or not all(float(g) > 0 for g in class_gains):
        raise InputError(f"dream_map: class_gains must be {model.n_classes} positive numbers, got {class_gains}")
    return np.asarray(class_gains, dtype=np.float32)[:, None, None]


def _best_candidate(probs: np.ndarray, c: int, row: list[np.ndarray], prev_row: list[np.ndarray], stride: int,
                    window: np.ndarray, class_w: np.ndarray) -> int:
    """Index of the candidate tile (``probs`` ``(candidates, K, T, T)``) at column ``c`` agreeing best with
    what its placed neighbours (left, upper-left, upper, upper-right) laid down on the overlaps."""
    neighbours = []
    if c > 0:
        neighbours.append((0, -stride, row[c - 1]))
    for dc in (-1, 0, 1):
        if prev_row and 0 <= c + dc < len(prev_row):
            neighbours.append((-stride, dc * stride, prev_row[c + dc]))
    if not neighbours:
        return 0
    laid = _laid_down(neighbours, window, len(class_w)) * window
    agree = (probs * laid[None]).sum(axis=(2, 3)) @ class_w
    return int(np.argmax(agree))


def _place_row(model: DreamModel, z: np.ndarray, row0: int, stride: int, blender: StripBlender,
               prev_row: list[np.ndarray], class_w: np.ndarray, batch_tiles: int) -> list[np.ndarray]:
    """Generate one tile row's candidates (latents ``z`` ``(columns, candidates, z_dim)``), add the chosen
    tiles' softmax maps to ``blender`` and return them."""
    t, candidates = model.tile_px, z.shape[1]
    row: list[np.ndarray] = []
    for c0 in range(0, len(z), batch_tiles):
        chunk = z[c0:c0 + batch_tiles]
        with torch.inference_mode():
            logits = model.generator.logits(torch.from_numpy(chunk.reshape(-1, model.z_dim)).to(model.device))
            probs = torch.softmax(logits, 1).cpu().numpy().reshape(len(chunk), candidates, -1, t, t)
        for i in range(len(chunk)):
            c = c0 + i
            pick = 0
            if candidates > 1:
                pick = _best_candidate(probs[i], c, row, prev_row, stride, blender.weights, class_w)
            tile = probs[i, pick]
            row.append(tile)
            blender.add(row0, c * stride, tile)
    return row


def _clean_up(class_map: np.ndarray, min_speck_px: int, join_gap_px: int) -> np.ndarray:
    """Sieve specks away and join road and path pieces along their direction."""
    out = remove_specks(class_map, min_speck_px)
    if join_gap_px > 0:
        for street in STREET_CLASSES:
            out = join_streets(out, street, max_gap_px=join_gap_px, cone_deg=STREET_JOIN_CONE_DEG,
                               min_length_px=STREET_MIN_LENGTH_PX)
    return out


@dataclass(frozen=True)
class StitchSettings:
    """How :func:`dream_map` stitches tiles into one map (the fields are its keyword options).

    ``overlap_px`` (None: half a tile) between tiles ``tile - overlap`` apart; ``latent_spacing_tiles``:
    the latent lattice's spacing in tile strides; ``candidates`` latents tried per tile, variations of
    relative size ``spread``; ``balance``: how much rare classes weigh in the candidates' agreement;
    ``sharpen``: the blend window's power; ``class_gains``: per-class factors on the blended probabilities
    (None: the card's, ``[]``: none); ``min_speck_px``, ``join_gap_px``: the clean-up; ``batch_tiles``:
    tiles per generator call.
    """

    overlap_px: int | None = None
    latent_spacing_tiles: float = 2.0
    candidates: int = 8
    spread: float = 1.0
    min_speck_px: int = 4
    join_gap_px: int = STREET_JOIN_GAP_PX
    batch_tiles: int = 16
    balance: float = 1.0
    sharpen: float = 1.0
    class_gains: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise InputError(f"dream_map: candidates must be >= 1, got {self.candidates}")


def _check_map_shape(shape_yx: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in shape_yx)
    if h < 1 or w < 1:
        raise InputError(f"dream_map: shape {shape_yx} must be positive")
    if h * w > MAX_DREAM_PX:
        raise TooLargeError(f"a {w}x{h} px dream does not fit in memory; raise the GSD or shrink the bbox")
    return h, w


def _class_weights(model: DreamModel, st: StitchSettings) -> np.ndarray:
    """Each class's weight in the candidates' agreement with their neighbours."""
    if st.balance > 0 and st.candidates > 1:
        return (_class_prior(model) + 0.01) ** -float(st.balance)
    return np.ones(model.n_classes, dtype=np.float32)


def _row_latents(model: DreamModel, seed: int, r: int, n_cols: int, stride: int, st: StitchSettings) -> np.ndarray:
    """The candidate latents ``(columns, candidates, z_dim)`` of tile row ``r``."""
    t = model.tile_px
    centers = np.stack([np.full(n_cols, r * stride + t / 2.0), np.arange(n_cols) * stride + t / 2.0], axis=1)
    return _candidate_latents(seed, tile_latents(seed, centers, st.latent_spacing_tiles * stride, model.z_dim),
                              np.full(n_cols, r), np.arange(n_cols), st.candidates, st.spread)


def dream_map(model: DreamModel, shape_yx: tuple[int, int], seed: int = 0, stitch: StitchSettings | None = None, *,
              progress: ProgressFn | None = None, **options) -> np.ndarray:
    """Dream a class map ``uint8 shape_yx`` (schema ids) of any size, at the model's native GSD.

    ``stitch`` (or its fields as keyword ``options``, e.g. ``candidates=1``; an unknown name is an
    :class:`~geogan.options.UnknownOptionError`) says how: see :class:`StitchSettings`.
    Overlapping tiles (``overlap_px``, default half a tile) start ``tile - overlap`` apart, in raster
    order. Each tile's latent starts from :func:`tile_latents` (a smooth function of position, lattice
    spacing ``latent_spacing_tiles`` tile strides, so neighbours share latents); with ``candidates`` > 1
    it also tries ``candidates - 1`` position-hashed variations (noise of relative size ``spread``) and
    keeps the one whose tile agrees best with what its already placed neighbours (left, upper-left,
    upper, upper-right) laid down on the overlaps, so that unrelated tile contents do not meet at the
    blend's crossover line. The chosen tiles' softmax maps are blended with
    :func:`geogan.blend.blend_weights` windows before the argmax; then patches under
    ``min_speck_px`` pixels are sieved away, and road and path pieces are joined along their own
    direction across gaps up to ``join_gap_px`` (:func:`geogan.streets.join_streets`; 0: not joined).
    Deterministic: the same seed gives the same map.

    ``balance``: the candidates' agreement with their neighbours counts each class with weight
    ``(model's mean class probability + 0.01) ** -balance``, so that continuing a road counts more
    than agreeing on open ground (at 0, candidates full of background win and stitched maps lose
    their streets). ``sharpen``: blend window raised to this power (> 1: narrower crossovers).
    ``class_gains``: per-class factors on the blended probabilities before the argmax (None: the
    card's ``class_gains`` from :func:`calibrate_thin_gains`, if any; ``[]``: none). Blending
    averages thin, uncertain classes (roads, paths, houses) away against confident open ground; the
    gains undo that. Compute: ``candidates`` generator runs per tile. Memory: a strip of
    ``n_classes x tile x width`` floats, the previous tile row's chosen tiles, plus the uint8 map.
    """
    st = with_options(stitch or StitchSettings(), options, "dream_map")
    h, w = _check_map_shape(shape_yx)
    overlap, stride, n_rows, n_cols = _tile_grid(model.tile_px, h, w, st.overlap_px)
    blender = StripBlender((h, w), model.n_classes, model.tile_px, overlap)
    if st.sharpen != 1.0:
        blender.weights = blender.weights ** float(st.sharpen)
    class_w = _class_weights(model, st)
    gain = _class_gain(model, st.class_gains)
    out = np.zeros((h, w), dtype=np.uint8)
    model.generator.eval()
    prev_row: list[np.ndarray] = []
    for r in range(n_rows):
        z = _row_latents(model, seed, r, n_cols, stride, st)
        prev_row = _place_row(model, z, r * stride, stride, blender, prev_row, class_w, st.batch_tiles)
        for r0, strip in blender.finish_row(last=r == n_rows - 1):
            out[r0:r0 + strip.shape[1]] = (strip if gain is None else strip * gain).argmax(0).astype(np.uint8)
        if progress is not None:
            progress((r + 1) / n_rows, f"dream tile row {r + 1}/{n_rows}")
    return _clean_up(out, st.min_speck_px, st.join_gap_px)


#: Thin classes that blending overlapping tiles erodes, calibrated by :func:`calibrate_thin_gains`.
THIN_GROUPS = {"roads": (2,), "paths": (3,)}


def calibrate_thin_gains(model: DreamModel, targets: dict | None = None, shape_yx: tuple[int, int] = (160, 160),
                         seeds: Sequence[int] = (0, 1), steps: int = 6, rounds: int = 2, max_gain: float = 3.0,
                         **kwargs) -> tuple[list[float], dict]:
    """Class gains for :func:`dream_map` that keep the streets the stitching would blend away.

    Blending overlapping tiles' probabilities averages thin, uncertain lines (roads, paths) away
    against confident open ground: a model whose tiles are 4 % road stitches to 1 %. (Buildings
    shrink too, but a building gain eats the background, with which they are near-tied, rather than
    grass and farmland.) One gain per group of :data:`THIN_GROUPS` (the other classes keep 1) is
    found by bisection on its logarithm (``steps`` halvings of ``[1 / max_gain, max_gain]``,
    ``rounds`` passes over the groups) so that ``seeds`` stitched maps of ``shape_yx`` have the
    group's fraction in ``targets`` (default: the model's own independent tiles', so stitching is
    faithful to the model; a group missing from ``targets`` keeps gain 1).
    Returns ``(gains, stats)``: the gain vector and :func:`stitched_stats` of the maps with it, plus
    the targets. Deterministic.
    """
    groups = {name: [k for k in cl if k < model.n_classes] for name, cl in THIN_GROUPS.items()}
    if targets is None:
        tiles = sample_tiles(model.generator, 256, seed=1)
        targets = {name: float(np.isin(tiles, cl).mean()) for name, cl in groups.items()}
    gain = {name: 1.0 for name in groups}

    def vector():
        out = [1.0] * model.n_classes
        for name, cl in groups.items():
            for k in cl:
                out[k] = float(gain[name])
        return out

    def dream_now():
        return [dream_map(model, shape_yx, seed, class_gains=vector(), **kwargs) for seed in seeds]

    for _ in range(max(0, int(rounds))):
        for name, cl in groups.items():
            if name not in targets:
                continue
            lo, hi = -math.log(max_gain), math.log(max_gain)
            for _ in range(max(0, int(steps))):
                gain[name] = math.exp(0.5 * (lo + hi))
                if np.mean([np.isin(m, cl).mean() for m in dream_now()]) < targets[name]:
                    lo = math.log(gain[name])
                else:
                    hi = math.log(gain[name])
            gain[name] = round(math.exp(0.5 * (lo + hi)), 3)
    stats = stitched_stats(dream_now(), model.n_classes, model.tile_px)
    stats.update(shape=list(shape_yx), seeds=list(seeds), targets={k: round(v, 4) for k, v in targets.items()})
    return vector(), stats


def calibrate_dream_model(path: PathLike, **kwargs) -> Path:
    """Calibrate an exported dream model's stitching in place: :func:`calibrate_thin_gains` into the
    card's ``class_gains`` (used by :func:`dream_map`) and its stitched-map statistics into
    ``training.stats.stitched``. The weights are not touched. Returns the card path."""
    card_path = resolve_dream_model(path)
    model = load_dream_model(card_path)
    card = dict(model.card)
    card.pop("class_gains", None)
    model.card = card
    gains, stats = calibrate_thin_gains(model, **kwargs)
    card["class_gains"] = gains
    card.setdefault("training", {}).setdefault("stats", {})["stitched"] = stats
    _atomic(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8"))
    return card_path
