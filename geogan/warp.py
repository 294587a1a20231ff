"""Streaming warp of the canonical strips onto the output grid.

The generator releases the canonical grid's rows top to bottom (:mod:`geogan.anchor`); the output grid
may have another CRS, pixel size and rotation relative to it. :class:`StripWarper` cuts the output into
strips and knows, for each, the canonical rows it needs (the strip's outline, densified, transformed to
canonical pixels, plus the resampling kernel's margin). Fed canonical strips in order, it emits each
output strip as soon as its rows are there and drops canonical rows no later output strip needs, so its
memory grows with the width only.

Every output pixel is a pure function of its position and the canonical pixels: its centre is placed in
the canonical grid exactly (PROJ at nodes every ``NODE_PX`` output pixels, bilinear in between: under
1e-5 px off for any conformal pair of CRSs at these scales) and sampled bilinearly (float64). So the same
place comes out the same in every render, whatever the output's extent or its cut into strips. GDAL's
warper (``rasterio.warp.reproject``) was tried first: it always uses GDAL's approximate transformer
(rasterio 1.4 offers no way to turn it off), which places pixels up to 0.05 px differently depending on
the destination and source windows; two renders of one place then differed by up to 36 grey levels on
a noisy generator. Resampling (:func:`samples_per_px`): bilinear while an output pixel is at most
``BILINEAR_MAX_RATIO`` canonical pixels on the ground; coarser, the mean of n x n bilinear samples per
output pixel (n the ratio rounded up: every canonical pixel under it counts). An output on the canonical
lattice (same CRS and pixel size, whole-pixel offset) is an exact copy.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pyproj

from .anchor import WARP_MARGIN_PX, edge_points
from .errors import RenderError
from .grid import Grid

BILINEAR_MAX_RATIO = 1.5  # output pixel / canonical pixel (ground) up to which bilinear is used
STRIP_CANONICAL_ROWS = 256  # canonical rows an output strip needs, roughly (sets the output strip height)
MIN_STRIP_ROWS, MAX_STRIP_ROWS = 16, 1024


NODE_PX = 16  # output samples between the points placed exactly with PROJ


def samples_per_px(ratio: float) -> int:
    """Bilinear samples per output pixel and axis: 1 up to ``BILINEAR_MAX_RATIO`` canonical pixels per output
    pixel, else the ratio rounded up (their mean: an average over the output pixel)."""
    return 1 if ratio <= BILINEAR_MAX_RATIO else int(math.ceil(ratio - 1e-9))


@dataclass(frozen=True)
class OutStrip:
    """Output rows ``row0 .. row0 + rows`` and the canonical rows ``src_lo .. src_hi`` they are made from."""

    row0: int
    rows: int
    src_lo: int
    src_hi: int


def strip_height(ratio_y: float, height: int) -> int:
    """Output rows per strip: about ``STRIP_CANONICAL_ROWS`` canonical rows each."""
    rows = int(round(STRIP_CANONICAL_ROWS / max(ratio_y, 1e-9)))
    return max(1, min(height, max(MIN_STRIP_ROWS, min(MAX_STRIP_ROWS, rows))))


def integer_shift(src: Grid, dst: Grid) -> tuple[int, int] | None:
    """(row, col) of ``dst``'s (0, 0) pixel in ``src`` when ``dst`` lies on ``src``'s lattice, else None."""
    if src.crs != dst.crs or src.res_xy != dst.res_xy:
        return None
    rx, ry = src.res_xy
    col = (dst.transform.c - src.transform.c) / rx
    row = (src.transform.f - dst.transform.f) / ry
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def plan_strips(src: Grid, dst: Grid, rows_per_strip: int, margin_px: int) -> list[OutStrip]:
    """The output strips and the canonical rows each needs (clipped to ``src``)."""
    shift = integer_shift(src, dst)
    to_src = None if shift is not None or src.crs == dst.crs else pyproj.Transformer.from_crs(dst.crs, src.crs, always_xy=True)
    inverse = ~src.transform
    out = []
    for row0 in range(0, dst.height, rows_per_strip):
        n = min(rows_per_strip, dst.height - row0)
        if shift is not None:
            lo, hi = row0 + shift[0], row0 + n + shift[0]
        else:
            xs, ys = edge_points(dst.window(row0, 0, n, dst.width))
            if to_src is not None:
                xs, ys = to_src.transform(xs, ys)
            _, rows = inverse * (np.asarray(xs, float), np.asarray(ys, float))
            lo = int(math.floor(np.min(rows))) - margin_px
            hi = int(math.ceil(np.max(rows))) + margin_px
        out.append(OutStrip(row0, n, max(0, lo), min(src.height, hi)))
    return out


class StripWarper:
    """Warp canonical strips (pushed in order) onto ``dst`` strip by strip.

    ``push(row0, rgb_u8, terrain_m)`` takes canonical rows ``row0 ..`` (uint8 RGB (3, rows, width) and, for
    height models, float32 terrain (rows, width)) and returns the output strips now complete, as
    ``(row0, rgb (3, rows, dst.width) uint8, terrain (rows, dst.width) float32 or None)``.
    ``strips``: only these output strips (a run of another warper's ``strips``, e.g. one block of a
    worker-written render, :mod:`geogan.blocks`), fed canonical rows from ``first_row``.
    """

    def __init__(self, src: Grid, dst: Grid, ratio: float, margin_px: int = WARP_MARGIN_PX, *,
                 strips: tuple[OutStrip, ...] | None = None, first_row: int = 0) -> None:
        self.src, self.dst = src, dst
        self.samples = samples_per_px(ratio)
        self.shift = integer_shift(src, dst)
        self.strips = list(strips) if strips is not None else \
            plan_strips(src, dst, strip_height(ratio, dst.height), margin_px + int(math.ceil(ratio)))
        self.next_strip = 0  # the next output strip to emit
        self._base = first_row  # canonical row of the buffers' first row
        self._rgb = np.zeros((3, 0, src.width), np.uint8)
        self._terrain: np.ndarray | None = None
        self._to_src = None if src.crs == dst.crs else pyproj.Transformer.from_crs(dst.crs, src.crs, always_xy=True)

    @property
    def done(self) -> bool:
        return self.next_strip == len(self.strips)

    def push(self, row0: int, rgb: np.ndarray, terrain_m: np.ndarray | None = None
             ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        if row0 != self._base + self._rgb.shape[1]:
            raise ValueError(f"canonical rows must come in order: got row {row0}, expected "
                             f"{self._base + self._rgb.shape[1]}")
        self._rgb = np.concatenate([self._rgb, rgb], axis=1)
        if terrain_m is not None:
            self._terrain = terrain_m if self._terrain is None or not self._terrain.shape[0] else \
                np.concatenate([self._terrain, terrain_m], axis=0)
        out = []
        end = self._base + self._rgb.shape[1]
        while self.next_strip < len(self.strips) and self.strips[self.next_strip].src_hi <= end:
            out.append(self._emit(self.strips[self.next_strip]))
            self.next_strip += 1
        self._drop()
        return out

    def _drop(self) -> None:
        """Forget canonical rows no remaining output strip needs."""
        end = self._base + self._rgb.shape[1]
        keep = min(self.strips[self.next_strip].src_lo, end) if self.next_strip < len(self.strips) else end
        cut = max(0, keep - self._base)
        if cut:
            self._rgb = self._rgb[:, cut:].copy()
            if self._terrain is not None:
                self._terrain = self._terrain[cut:].copy()
            self._base += cut

    def _emit(self, s: OutStrip) -> tuple[int, np.ndarray, np.ndarray | None]:
        a, b = s.src_lo - self._base, s.src_hi - self._base
        rgb = self._rgb[:, a:b]
        terrain = None if self._terrain is None else self._terrain[a:b]
        if self.shift is not None:
            r, c = s.row0 + self.shift[0] - s.src_lo, self.shift[1]
            cut = (slice(r, r + s.rows), slice(c, c + self.dst.width))
            return s.row0, rgb[(slice(None),) + cut].copy(), None if terrain is None else terrain[cut].copy()
        window = self.dst.window(s.row0, 0, s.rows, self.dst.width)
        node_rows = _node_rows(self.src, window, self._to_src, self.samples)  # PROJ once per strip
        u_range = [(float(u.min()), float(u.max())) for u, _ in between_node_rows(*node_rows, self.samples)]
        c0 = max(0, int(math.floor(min(lo for lo, _ in u_range) - 0.5)))
        c1 = min(self.src.width, int(math.ceil(max(hi for _, hi in u_range) + 0.5)))

        def pieces() -> Iterator[tuple[np.ndarray, np.ndarray]]:  # the same coordinates again, a piece at a time
            for u, v in between_node_rows(*node_rows, self.samples):
                v -= s.src_lo
                u -= c0
                if min(u.min(), v.min()) < 0.5 - 1e-6 or v.max() > b - a - 0.5 + 1e-6 or u.max() > c1 - c0 - 0.5 + 1e-6:
                    raise RenderError(f"internal error: output rows {s.row0}..{s.row0 + s.rows} reach past the "
                                      "generator pixels planned for them; please report this render's options")
                yield u, v
        shape = (s.rows, self.dst.width)
        return s.row0, sample_columns(rgb[:, :, c0:c1], pieces(), self.samples, shape), \
            None if terrain is None else sample_columns(terrain[:, c0:c1], pieces(), self.samples, shape)


WARP_CHUNK_PX = 1024  # output columns sampled at once: a strip's warp temporaries follow this, not the grid's width


def between_node_rows(h: int, nodes: np.ndarray, samples: int, chunk_px: int = WARP_CHUNK_PX
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pixel coordinates ``(u, v)`` in the source grid (pixel (i, j) spans i..i+1, j..j+1) of ``samples`` x
    ``samples`` points per output pixel (at the centres of its sub-pixels), from a strip's node rows
    (:func:`_node_rows`: PROJ once per strip), in pieces of ``chunk_px`` output columns, left to right: float64
    arrays (rows * samples, piece cols * samples).

    PROJ places the points every ``NODE_PX`` samples (and the last); the others are bilinear between them: along
    the node rows for the whole width, then between the node rows piece by piece (per column: the pieces hold the
    values the whole strip would), so the temporaries follow ``chunk_px``, not the width."""
    step = chunk_px * samples
    for c in range(0, nodes.shape[2], step):
        piece = _between_nodes(nodes[:, :, c:c + step], h, axis=1)
        yield piece[0], piece[1]


def _node_rows(src: Grid, dst: Grid, to_src: pyproj.Transformer | None, samples: int) -> tuple[int, np.ndarray]:
    """(rows of samples, float64 (2, node rows, cols * samples)): :func:`between_node_rows`' (u, v) on the rows
    of its nodes, interpolated between the nodes along each row."""
    h, w = dst.height * samples, dst.width * samples
    nodes_r = np.linspace(0.0, h - 1.0, max(2, math.ceil((h - 1) / NODE_PX) + 1)) if h > 1 else np.zeros(1)
    nodes_c = np.linspace(0.0, w - 1.0, max(2, math.ceil((w - 1) / NODE_PX) + 1)) if w > 1 else np.zeros(1)
    rows, cols = np.meshgrid((nodes_r + 0.5) / samples, (nodes_c + 0.5) / samples, indexing="ij")
    xs, ys = dst.transform * (cols, rows)
    if to_src is not None:
        xs, ys = to_src.transform(xs, ys)
    u, v = ~src.transform * (np.asarray(xs, float), np.asarray(ys, float))
    return h, _between_nodes(np.stack([u, v]), w, axis=2)


def _between_nodes(nodes: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``nodes`` linearly interpolated to ``n`` evenly spread samples along ``axis``, the first and last on the
    first and last node (``align_corners=True``)."""
    k = nodes.shape[axis]
    pos = np.arange(n, dtype=np.float64) * ((k - 1) / (n - 1)) if n > 1 and k > 1 else np.zeros(n)
    i0 = np.minimum(pos.astype(np.intp), k - 1)
    i1 = np.minimum(i0 + 1, k - 1)
    shape = [1] * nodes.ndim
    shape[axis] = n
    frac = (pos - i0).reshape(shape)
    return np.take(nodes, i0, axis=axis) * (1.0 - frac) + np.take(nodes, i1, axis=axis) * frac


def sample(values: np.ndarray, u: np.ndarray, v: np.ndarray, samples: int) -> np.ndarray:
    """Bilinear samples of ``values`` ((bands,) rows, cols) at pixel coordinates (u, v), averaged over each
    ``samples`` x ``samples`` block; uint8 rounded to nearest, float32 as they are.

    With torch imported (the torch runtime) torch's ``grid_sample`` does it, else numpy in the same arithmetic
    (:func:`_bilinear`): the two differ only where a uint8 value falls within 1e-9 of a half level (5 of
    204,800 pixels, by 1, on a synthetic rotation). numpy takes about twice torch's time for this step (8 vs
    4 ms for 3 bands of 256 x 800 px on one thread; 3.4 vs 1.8 s in a sample-town render on the busy 2-core
    VM), which is why torch keeps it when it is there."""
    return sample_columns(values, [(u, v)], samples, (u.shape[0] // samples, u.shape[1] // samples))


def sample_columns(values: np.ndarray, uv: Iterable[tuple[np.ndarray, np.ndarray]], samples: int,
                   shape: tuple[int, int]) -> np.ndarray:
    """:func:`sample` of ``shape`` (rows, cols) output pixels at the coordinates ``uv``: pieces of
    consecutive columns (each a multiple of ``samples`` wide, :func:`between_node_rows`), left to right. Every
    output pixel is computed as :func:`sample` computes it, with float64 temporaries the size of a piece: torch's
    ``grid_sample`` reads ``values`` widened to float64 only in the columns the piece's points fall in
    (:func:`_widened_columns`)."""
    bands = values[None] if values.ndim == 2 else values
    result = np.empty((len(bands),) + tuple(shape), np.uint8 if values.dtype == np.uint8 else np.float32)
    torch = sys.modules.get("torch")
    if torch is None:
        _fill_columns(result, uv, lambda u, v: _bilinear_mean(bands, u, v, samples))
    else:
        _fill_columns(result, uv, lambda u, v: _samples_torch(torch, _widened_columns(torch, bands, u), u, v,
                                                                 samples))
    return result[0] if values.ndim == 2 else result


def _widened_columns(torch, bands: np.ndarray, u: np.ndarray):
    """float64 (1, bands, rows, cols) tensor of ``bands`` as ``grid_sample`` reads it at column coordinates ``u``:
    the whole width in its shape and strides (``grid_sample`` places the points by it), in memory only the
    columns around ``u`` (two more each side than bilinear sampling reads), laid out so that their rows follow
    one another (the view's rows overlap in the columns outside, which are never read; the buffer's first and
    last elements, reachable only there, are zeros)."""
    n, h, w = bands.shape
    lo = max(0, int(math.floor(float(u.min()))) - 3)
    hi = min(w, int(math.ceil(float(u.max()))) + 3)
    span = hi - lo
    buf = torch.empty((n * h - 1) * span + w, dtype=torch.float64)  # what the view's last element needs
    buf[:lo] = 0
    buf[n * h * span + lo:] = 0
    view = buf.as_strided((1, n, h, w), (n * h * span, h * span, span, 1))
    view[0, :, :, lo:hi] = torch.from_numpy(np.ascontiguousarray(bands[:, :, lo:hi]))
    return view


def _fill_columns(result: np.ndarray, uv: Iterable[tuple[np.ndarray, np.ndarray]], sampled) -> None:
    """Write ``sampled(u, v)`` (float64 (bands, rows, piece cols)) of each piece into ``result``'s columns, left to
    right: uint8 rounded to nearest, float32 as they are."""
    c = 0
    for u, v in uv:
        out = sampled(u, v)
        if result.dtype == np.uint8:
            np.rint(out, out=out)
            np.clip(out, 0, 255, out=out)
        result[:, :, c:c + out.shape[2]] = out  # exact: whole numbers 0..255 to uint8, float64 to float32 as astype
        c += out.shape[2]


def _bilinear_mean(bands: np.ndarray, u: np.ndarray, v: np.ndarray, samples: int) -> np.ndarray:
    """:func:`_bilinear` averaged over ``samples`` x ``samples`` blocks."""
    out = _bilinear(bands, u, v)
    if samples > 1:
        rows, cols = u.shape[0] // samples, u.shape[1] // samples
        out = out.reshape(len(bands), rows, samples, cols, samples).mean(axis=(2, 4))
    return out


def _samples_torch(torch, x, u: np.ndarray, v: np.ndarray, samples: int) -> np.ndarray:
    """float64 (bands, rows, cols): :func:`_bilinear` by torch's ``grid_sample`` of ``x`` (float64 (1, bands,
    rows, cols) tensor), averaged over ``samples`` x ``samples`` blocks."""
    h, w = x.shape[-2:]
    grid = torch.from_numpy(np.stack([u * (2.0 / w) - 1.0, v * (2.0 / h) - 1.0], axis=-1)[None])
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if samples > 1:
        out = torch.nn.functional.avg_pool2d(out, samples)
    return out[0].numpy()


def _bilinear(bands: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float64 (bands, *u.shape): bilinear samples of (bands, rows, cols) at pixel coordinates (u, v), where
    pixel (i, j) spans i..i+1, j..j+1; points past the edge take the edge's values. The arithmetic of torch's
    ``grid_sample`` (``padding_mode="border"``, ``align_corners=False``, :func:`_samples_torch`) step by step.
    ``np.take`` on flat indices: 6x faster than fancy indexing of the bands."""
    h, w = bands.shape[-2:]
    x = np.clip(((u * (2.0 / w) - 1.0 + 1.0) * w - 1.0) / 2.0, 0.0, w - 1.0)
    y = np.clip(((v * (2.0 / h) - 1.0 + 1.0) * h - 1.0) / 2.0, 0.0, h - 1.0)
    c0, r0 = np.floor(x), np.floor(y)
    fx, fy = x - c0, y - r0
    weights = ((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx)
    c0, r0 = c0.astype(np.intp), r0.astype(np.intp)
    c1 = np.minimum(c0 + 1, w - 1)
    top, bottom = r0 * w, np.minimum(r0 + 1, h - 1) * w
    corners = (top + c0, top + c1, bottom + c0, bottom + c1)
    out, term = np.empty((len(bands),) + u.shape), np.empty(u.shape)
    for b, band in enumerate(bands):
        flat = band.reshape(-1)  # gathered in its own dtype (uint8: 5x faster than float64), then widened exactly
        np.multiply(np.take(flat, corners[0]), weights[0], out=out[b])
        for corner, weight in zip(corners[1:], weights[1:]):
            out[b] += np.multiply(np.take(flat, corner), weight, out=term)
    return out
