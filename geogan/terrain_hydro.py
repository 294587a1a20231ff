"""Raster hydrology and smoothing for terrain: pure numpy functions (arrays in, arrays out).

Used by :mod:`geogan.terrain_relief` (shaping generated terrain so water is flat and everything drains)
and :mod:`geogan.terrain_eval` (measuring drainage on generated and real DEMs).

- :func:`box_blur` / :func:`gaussian_blur`: edge-reflected separable box filters (three box passes
  approximate a Gaussian), cost independent of the radius;
- :func:`cone_envelope_m`: the upper envelope of cones of a given slope standing on seed pixels (valley
  walls around carved rivers);
- :func:`label_components`: 8-connected component labels (a depth-first fill);
- :func:`priority_flood`: Priority-Flood depression filling (Barnes, Lehman & Mulla 2014) from outlet
  pixels, optionally with a small ``epsilon`` so filled areas keep a gradient towards their spill point,
  returning the closing order and each pixel's upstream parent (the flood tree) for carving;
- :func:`d8_receivers`, :func:`drains_to`: steepest-descent (D8) flow and where it ends;
- :func:`flow_accumulation`: D8 contributing area in pixels.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

#: the 8 neighbours (row, col offsets) and their distances in pixels
D8_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
D8_DIST = tuple(math.hypot(dr, dc) for dr, dc in D8_OFFSETS)


# ---------------------------------------------------------------- smoothing
def box_blur(a: np.ndarray, radius_px: int, axis: int) -> np.ndarray:
    """Mean over ``2 * radius_px + 1`` pixels along ``axis`` (edges reflected), float64."""
    a = np.asarray(a, dtype=np.float64)
    r = int(radius_px)
    if r <= 0:
        return a.copy()
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    p = np.pad(a, pad, mode="symmetric" if n > 1 else "edge") if r < n else np.pad(a, pad, mode="edge")
    c = np.cumsum(p, axis=axis)
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / (2 * r + 1)


def _three_tap(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur by the kernel [w, 1 - 2w, w] per axis, w = sigma^2 / 2 (variance sigma^2; 0.707 px: [1, 2, 1] / 4,
    which removes a one-pixel checkerboard entirely); edges replicated."""
    w = sigma_px ** 2 / 2.0
    out = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 1)
        p = np.pad(out, pad, mode="edge")
        lo, mid, hi = (np.take(p, np.arange(k, k + a.shape[axis]), axis=axis) for k in range(3))
        out = w * (lo + hi) + (1.0 - 2.0 * w) * mid
    return out


def gaussian_blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Approximate Gaussian blur, float64, NaN-free input: three box passes per axis of matched variance
    (sigma ``sqrt(r (r + 1))`` for boxes of ``2r + 1``, the nearest to ``sigma_px``) above 1 px, a three-tap
    kernel of exactly that variance up to 1 px."""
    a = np.asarray(a, dtype=np.float64)
    if sigma_px <= 0.0:
        return a.copy()
    if sigma_px <= 1.0:
        return _three_tap(a, sigma_px)
    r = max(1, int(round((math.sqrt(4.0 * sigma_px ** 2 + 1.0) - 1.0) / 2.0)))  # 3 boxes of 2r+1: var = r(r+1)
    out = a
    for axis in (0, 1):
        for _ in range(3):
            out = box_blur(out, r, axis)
    return out


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary dilation by ``steps`` pixels with the 3x3 square (8 neighbours), edges not wrapped."""
    m = np.asarray(mask, dtype=bool).copy()
    for _ in range(max(int(steps), 0)):
        n = m.copy()
        n[1:] |= m[:-1]
        n[:-1] |= m[1:]
        n[:, 1:] |= n[:, :-1].copy()
        n[:, :-1] |= n[:, 1:].copy()
        m = n
    return m


def cone_envelope_m(peaks_m: np.ndarray, fall_per_m: float, gsd_m: float) -> np.ndarray:
    """Max over the finite ``peaks_m`` pixels p of ``peaks_m[p] - fall_per_m * distance(p)``, i.e. cones of slope
    ``fall_per_m`` on each peak (8-neighbour chamfer distance: 1 and sqrt 2 pixels); -inf where no cone reaches.
    NaN / -inf pixels are not peaks. Two row sweeps (down, then up; the 3x3 chamfer needs no more), each row
    taking the row before it and then spreading along itself by running maxima."""
    env = np.where(np.isfinite(peaks_m), np.asarray(peaks_m, dtype=np.float64), -np.inf)
    h, w = env.shape
    step = max(float(fall_per_m), 0.0) * float(gsd_m)
    diag = step * math.sqrt(2.0)
    ramp = np.arange(w) * step
    for rows in (range(h), range(h - 1, -1, -1)):
        prev = None
        for r in rows:
            row = env[r]
            if prev is not None:
                row = np.maximum(row, prev - step)
                row[1:] = np.maximum(row[1:], prev[:-1] - diag)
                row[:-1] = np.maximum(row[:-1], prev[1:] - diag)
            right = np.maximum.accumulate(row + ramp) - ramp
            left = np.maximum.accumulate((row - ramp)[::-1])[::-1] + ramp
            env[r] = prev = np.maximum(right, left)
    return env


def erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary erosion by ``steps`` pixels with the 3x3 square; pixels outside the array count as set."""
    return ~dilate(~np.asarray(mask, dtype=bool), steps)


# ---------------------------------------------------------------- components
def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: labels 1..n (0 outside, numbered in raster order) and n."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    lab = [0] * (h * w)
    todo = bytearray(mask.astype(np.uint8).tobytes())
    offs = [(dr * w + dc, dr, dc) for dr, dc in D8_OFFSETS]
    n = 0
    for s in np.flatnonzero(mask).tolist():
        if not todo[s]:
            continue
        n += 1
        todo[s] = 0
        stack = [s]
        while stack:
            c = stack.pop()
            lab[c] = n
            r, col = divmod(c, w)
            for off, dr, dc in offs:
                if 0 <= r + dr < h and 0 <= col + dc < w and todo[c + off]:
                    todo[c + off] = 0
                    stack.append(c + off)
    return np.asarray(lab, dtype=np.int32).reshape(h, w), n


# ---------------------------------------------------------------- priority flood
def edge_mask(shape_yx: tuple[int, int]) -> np.ndarray:
    """True on the outermost ring of pixels."""
    m = np.zeros(shape_yx, dtype=bool)
    m[0], m[-1], m[:, 0], m[:, -1] = True, True, True, True
    return m


def priority_flood(z: np.ndarray, outlets: np.ndarray, epsilon_m: float = 0.0,
                   domain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill every depression of ``z`` that has no downhill path to an ``outlets`` pixel.

    Flooding starts at the outlets (kept as they are) and spreads lowest-first (Priority-Flood); a pixel
    reached from a higher neighbour is raised to that neighbour's level, plus ``epsilon_m`` when it is not
    above it by more, so with ``epsilon_m > 0`` every pixel has a strictly descending path to an outlet.
    ``domain``: the pixels that take part (default all); others are neither flooded nor crossed.
    Returns ``(filled z float64, closing order of flat indices, parent flat index or -1)``; the parent is
    the pixel a pixel was reached from (its downstream neighbour on the flood tree).
    """
    zf = np.asarray(z, dtype=np.float64).ravel().copy()
    h, w = np.shape(z)
    dom = np.ones(h * w, bool) if domain is None else np.asarray(domain, bool).ravel()
    closed = bytearray((~dom).astype(np.uint8).tobytes())
    parent = [-1] * (h * w)
    order: list[int] = []
    seeds = np.flatnonzero(np.asarray(outlets, bool).ravel() & dom)
    heap = [(zf[i], int(i)) for i in seeds]
    heapq.heapify(heap)
    for i in seeds:
        closed[int(i)] = 1
    zl = zf.tolist()
    eps = float(epsilon_m)
    offs = [(dr * w + dc, dr, dc) for dr, dc in D8_OFFSETS]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        zc, c = pop(heap)
        order.append(c)
        r, col = divmod(c, w)
        for off, dr, dc in offs:
            rr, cc = r + dr, col + dc
            if rr < 0 or rr >= h or cc < 0 or cc >= w:
                continue
            n = c + off
            if closed[n]:
                continue
            closed[n] = 1
            parent[n] = c
            zn = zl[n]
            if zn <= zc + eps:
                zn = zc + eps if eps > 0 else zc
                zl[n] = zn
            push(heap, (zn, n))
    return np.asarray(zl).reshape(h, w), np.asarray(order, dtype=np.int64), np.asarray(parent, dtype=np.int64)


def depression_depth_m(z: np.ndarray, outlets: np.ndarray) -> np.ndarray:
    """How much water each pixel would hold: depression-filled ``z`` minus ``z`` (0 where it drains)."""
    filled, _, _ = priority_flood(z, outlets)
    return filled - np.asarray(z, dtype=np.float64)


# ---------------------------------------------------------------- D8 flow
def d8_receivers(z: np.ndarray) -> np.ndarray:
    """Flat index of each pixel's steepest strictly-downhill neighbour, or its own index (pit, flat)."""
    z = np.asarray(z, dtype=np.float64)
    h, w = z.shape
    p = np.pad(z, 1, constant_values=np.inf)
    best = np.zeros((h, w))
    rec = np.arange(h * w).reshape(h, w)
    idx = rec.copy()
    for (dr, dc), dist in zip(D8_OFFSETS, D8_DIST):
        drop = (z - p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]) / dist
        better = drop > best
        best = np.where(better, drop, best)
        rec = np.where(better, idx + dr * w + dc, rec)
    return rec.ravel()


def drains_to(z: np.ndarray, outlets: np.ndarray) -> np.ndarray:
    """Whether each pixel's D8 path ends on an ``outlets`` pixel (paths stop at outlets and at pits)."""
    out = np.asarray(outlets, bool).ravel()
    rec = d8_receivers(z)
    rec = np.where(out, np.arange(rec.size), rec)
    for _ in range(int(math.ceil(math.log2(max(rec.size, 2)))) + 1):
        rec = rec[rec]
    return out[rec].reshape(np.shape(z))


def flow_accumulation(z: np.ndarray) -> np.ndarray:
    """D8 contributing area of each pixel in pixels (itself included), int64."""
    z = np.asarray(z, dtype=np.float64)
    rec = d8_receivers(z).tolist()
    acc = [1] * len(rec)
    for i in np.argsort(-z.ravel(), kind="stable").tolist():
        j = rec[i]
        if j != i:
            acc[j] += acc[i]
    return np.asarray(acc, dtype=np.int64).reshape(z.shape)
