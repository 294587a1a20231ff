"""Texture-by-numbers image quilting: aerial imagery assembled from real photo patches that match the class map.

A *texture bank* holds real aerial photos and their class maps (the training pairs). To draw a class map, the
map is covered by a lattice of ``patch_px`` blocks overlapping by ``overlap_px`` (Efros & Freeman, "Image
Quilting for Texture Synthesis and Transfer", SIGGRAPH 2001, used with a correspondence map as in its
texture-transfer section and in Hertzmann et al.'s "Image Analogies" texture-by-numbers). For every block
the bank's patches whose class layout matches best are found, and one is chosen that also agrees with its
already chosen neighbours in their overlap; neighbours are joined along a minimum-error boundary cut.

Everything is keyed by *world* position so that any window of the world can be drawn on its own and agrees
exactly with every other window that overlaps it (strips, tiles, Dask blocks and neighbouring renders join
without a seam):

* the block lattice is anchored at world pixel (0, 0): block (i, j) covers rows ``i*S .. i*S+P`` and columns
  ``j*S .. j*S+P`` (``S = P - O``);
* blocks at (even, even) are chosen from their own class layout and a hash of (seed, i, j); the blocks
  between two of them also by their overlap with both, and the (odd, odd) blocks by their overlap with all
  four neighbours, so a pixel depends only on the class map within ``margin_px(settings)`` pixels of it;
* the bank's patches are restricted to one *look* (a cluster of photos of similar colour: one flight, one
  season; :mod:`geogan.quilt_looks`), chosen by the seed, so a render has the consistent radiometry of one
  survey;
* patches holding *white water* (foam, rapids, weirs, sun glint: water far brighter than the bank's water
  normally is, :mod:`geogan.quilt_foam`) are never drawn, so calm rivers and lakes get no white blobs.

Pure functions over numpy arrays (no torch); no file I/O except
:func:`save_bank` / :func:`load_bank`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import InputError, ModelError
from .quilt_foam import foamy_at, white_water_cells


@dataclass(frozen=True)
class QuiltSettings:
    """How patches are cut from the bank and assembled."""

    patch_px: int = 32
    overlap_px: int = 9  # step 23 px: a lattice period that is no multiple of 4, 8, 16 or 32 px
    bank_stride_px: int = 8  # bank patches start every this many pixels in each photo
    cell_px: int = 8  # class-layout descriptor: class fractions on cells of this size
    candidates: int = 24  # best class-layout matches considered per block
    label_weight: float = 2000.0  # cost of a fully mismatching class layout, in squared grey levels
    near_best: float = 1.1  # a block picks at random (hashed) among candidates within this factor of the best
    region_blocks: int = 8  # blocks of one region prefer patches of one photo (hashed per region) ...
    photo_weight: float = 0.05  # ... by this much class-layout distance (sum of squared cell-share differences)
    min_pure_patches: int = 64  # a region's photo with fewer single-class patches of a class than this defers
    # to the class-layout search over the whole pool (a photo with the most road would be a railway yard)
    uniform_classes: tuple[str, ...] = ("water",)  # drawn from one photo per render (class_photo_patches)
    feather_px: int = 1  # seams are blended over 2 x this + 1 pixels
    search_stride_px: int = 16  # mixed blocks search the bank's patches on this grid (pure blocks: all patches)
    search_max_patches: int = 24000  # at most about this many of a look's patches are searched (a hashed sample)
    foam_mads: float = 2.0  # water cells brighter than the bank's water median by this many MADs ...
    foam_min_levels: float = 32.0  # ... and at least this many grey levels are white water: never drawn (quilt_foam)

    def __post_init__(self) -> None:
        if not (0 < 2 * self.overlap_px < self.patch_px) or self.patch_px % self.cell_px:
            raise InputError(f"quilt patches of {self.patch_px} px need 0 < 2 x overlap ({self.overlap_px}) < patch "
                             f"and a patch that is a multiple of the cell size {self.cell_px}")
        if self.bank_stride_px < 1 or self.candidates < 1 or self.near_best < 1:
            raise InputError("quilt settings need bank_stride_px >= 1, candidates >= 1 and near_best >= 1")

    @property
    def step_px(self) -> int:
        return self.patch_px - self.overlap_px


def margin_px(settings: QuiltSettings) -> int:
    """Class-map context needed around a window: a pixel depends on blocks up to two block steps away."""
    return settings.patch_px + 2 * settings.step_px


@dataclass(frozen=True)
class TextureBank:
    """Real photos and their class maps, with the patch index and class-layout descriptors."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # uint8 (N, H, W) model class ids
    looks: np.ndarray  # int (N,) look of each photo, 0 = the most common, -1: in every look (quilt_looks)
    classes: tuple[str, ...]
    settings: QuiltSettings = QuiltSettings()
    index: np.ndarray = field(init=False, repr=False)  # int32 (M, 3): photo, row, col of each patch
    searched: np.ndarray = field(init=False, repr=False)  # patch numbers on the search grid (search_stride_px)
    descriptors: np.ndarray = field(init=False, repr=False)  # float32 (len(searched), D)
    pure: np.ndarray = field(init=False, repr=False)  # int (M,): class of single-class patches, else -1
    foam_table: np.ndarray = field(init=False, repr=False)  # int32 (N, H/cell + 1, W/cell + 1) white-water cells
    foamy: np.ndarray = field(init=False, repr=False)  # bool (M,): patches touching white water (never drawn)
    labels_2x: np.ndarray = field(init=False, repr=False)  # uint8 (N, H/2, W/2): every other pixel of the class maps

    def __post_init__(self) -> None:
        n, h, w, _ = self.images.shape
        if self.labels.shape != (n, h, w) or len(self.looks) != n or n == 0:
            raise ModelError("texture bank photos, class maps and looks disagree in number or size")
        if int(self.labels.max()) >= len(self.classes):
            raise ModelError(f"texture bank class maps hold ids beyond its {len(self.classes)} classes")
        s = self.settings
        ys = np.arange(0, h - s.patch_px + 1, s.bank_stride_px)
        xs = np.arange(0, w - s.patch_px + 1, s.bank_stride_px)
        i, y, x = np.meshgrid(np.arange(n), ys, xs, indexing="ij")
        index = np.stack([i.ravel(), y.ravel(), x.ravel()], 1).astype(np.int32)
        object.__setattr__(self, "index", index)
        on_grid = (index[:, 1] % s.search_stride_px == 0) & (index[:, 2] % s.search_stride_px == 0)
        searched = np.flatnonzero(on_grid)
        object.__setattr__(self, "searched", searched)
        object.__setattr__(self, "descriptors",
                           bank_descriptors(self.labels, index[searched], len(self.classes), s))
        object.__setattr__(self, "pure", patch_classes(self.labels, index, s.patch_px))
        water = self.classes.index("water") if "water" in self.classes else None
        table = white_water_cells(self.images, self.labels, water, s.cell_px, s.foam_mads, s.foam_min_levels)
        object.__setattr__(self, "foam_table", table)
        object.__setattr__(self, "foamy", self.foamy_at(*index.T))
        object.__setattr__(self, "labels_2x", np.ascontiguousarray(self.labels[:, ::2, ::2]))

    def foamy_at(self, i: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """bool: whether the patches of photos ``i`` at (``y``, ``x``) (any position inside the photo) hold white
        water (foam, rapids, glint: :mod:`geogan.quilt_foam`), which is never drawn."""
        return foamy_at(self.foam_table, i, y, x, self.settings.patch_px, self.settings.cell_px)

    @property
    def n_looks(self) -> int:
        return max(int(self.looks.max()) + 1, 1)


def cell_fractions(labels: np.ndarray, n_classes: int, cell_px: int) -> np.ndarray:
    """float32 (..., H/cell, W/cell, C): the share of each class on each ``cell_px`` cell of ``labels`` (..., H, W)
    (whole cells only)."""
    *lead, h, w = labels.shape
    hc, wc = h // cell_px, w // cell_px
    out = np.empty((*lead, hc, wc, n_classes), np.float32)
    rows = labels[..., :hc * cell_px, :wc * cell_px].reshape(*lead, hc, cell_px, wc * cell_px)
    per_column = np.uint8 if cell_px < 256 else np.int32
    for c in range(n_classes):  # counted down each cell's columns (contiguous rows), then across them
        columns = (rows == c).sum(-2, dtype=per_column)
        out[..., c] = columns.reshape(*lead, hc, wc, cell_px).sum(-1, dtype=np.int32) / float(cell_px * cell_px)
    return out


def bank_descriptors(labels: np.ndarray, index: np.ndarray, n_classes: int, s: QuiltSettings) -> np.ndarray:
    """Descriptors of the bank patches at ``index`` (cell fractions of the whole photos, cut per patch)."""
    k = s.patch_px // s.cell_px
    out = np.empty((len(index), k * k * n_classes), np.float32)
    cells = None
    if s.bank_stride_px % s.cell_px == 0:
        cells = cell_fractions(labels[:, :labels.shape[1] // s.cell_px * s.cell_px,
                                      :labels.shape[2] // s.cell_px * s.cell_px], n_classes, s.cell_px)
    for a in range(0, len(index), 65536):
        i, y, x = index[a:a + 65536].T
        if cells is not None:
            cy, cx = y // s.cell_px, x // s.cell_px
            rows = cy[:, None] + np.arange(k)
            cols = cx[:, None] + np.arange(k)
            d = cells[i[:, None, None], rows[:, :, None], cols[:, None, :]]
        else:
            d = cell_fractions(patches(labels, i, y, x, s.patch_px), n_classes, s.cell_px)
        out[a:a + 65536] = d.reshape(len(i), -1)
    return out


def patches(arrays: np.ndarray, i: np.ndarray, y: np.ndarray, x: np.ndarray, size: int | tuple[int, int]
            ) -> np.ndarray:
    """``arrays[i, y:y+h, x:x+w]`` for every (i, y, x), stacked; ``size``: h = w, or (h, w).

    A gather of whole patch rows: ``arrays`` is viewed as overlapping runs of ``w`` pixels (one per start pixel,
    no copy), so each patch is ``h`` row copies instead of ``h x w`` pixel lookups."""
    h, w = (size, size) if isinstance(size, int) else size
    n, rows, cols = arrays.shape[:3]
    i, y, x = (np.asarray(v, np.intp) for v in (i, y, x))
    if i.size and (i.min() < 0 or i.max() >= n or y.min() < 0 or y.max() + h > rows or x.min() < 0
                   or x.max() + w > cols):
        raise IndexError(f"patches of {h}x{w} px reach outside arrays of shape {arrays.shape}")
    flat = np.ascontiguousarray(arrays).reshape(-1)
    per_px = int(np.prod(arrays.shape[3:], dtype=np.int64))
    runs = as_strided(flat, shape=(max(flat.size // per_px - w + 1, 0), w * per_px),
                      strides=(per_px * flat.itemsize, flat.itemsize), writeable=False)
    start = ((i * rows + y) * cols + x).reshape(-1, 1) + np.arange(h) * cols
    return runs[start].reshape(*i.shape, h, w, *arrays.shape[3:])


# ------------------------------------------------------------------------------------------------ hashing


def hash_uniform(seed: int, *keys: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers that are a pure function of (seed, keys) (splitmix64 finaliser), any key shape."""
    with np.errstate(over="ignore"):
        h = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        for k in keys:
            h = (h ^ np.asarray(k).astype(np.int64).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h = h ^ (h >> np.uint64(31))
        h = h * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(29))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# ------------------------------------------------------------------------------------------------ choosing


@dataclass(frozen=True)
class Lattice:
    """The world blocks a window needs: block rows ``i0 .. i0+ni`` and columns ``j0 .. j0+nj``."""

    i0: int
    j0: int
    ni: int
    nj: int

    @classmethod
    def for_window(cls, r0: int, c0: int, h: int, w: int, s: QuiltSettings) -> "Lattice":
        """Blocks covering world rows ``r0 .. r0+h`` and columns ``c0 .. c0+w``, plus two blocks on each side."""
        step, p = s.step_px, s.patch_px
        i0, i1 = -((p - 1 - r0) // step) - 2, (r0 + h - 1) // step + 2
        j0, j1 = -((p - 1 - c0) // step) - 2, (c0 + w - 1) // step + 2
        return cls(i0, j0, i1 - i0 + 1, j1 - j0 + 1)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        return np.meshgrid(np.arange(self.i0, self.i0 + self.ni), np.arange(self.j0, self.j0 + self.nj),
                           indexing="ij")


def patch_classes(labels: np.ndarray, index: np.ndarray, patch_px: int) -> np.ndarray:
    """int (M,): the class of the patches at ``index`` that hold a single class, -1 for mixed patches: the min
    and max class id over each patch, from those of cells of gcd(patch, positions) pixels."""
    from math import gcd
    from numpy.lib.stride_tricks import sliding_window_view

    g = gcd(patch_px, int(np.gcd.reduce(index[:, 1:].ravel())) or patch_px)
    n, h, w = labels.shape
    rows = labels[:, :h // g * g, :w // g * g].reshape(n, h // g, g, w // g * g)
    k = patch_px // g
    cell_lo = rows.min(2).reshape(n, h // g, w // g, g).min(-1)  # down each cell's columns, then across them
    cell_hi = rows.max(2).reshape(n, h // g, w // g, g).max(-1)
    lo = sliding_window_view(cell_lo, (k, k), axis=(1, 2)).min((-2, -1))
    hi = sliding_window_view(cell_hi, (k, k), axis=(1, 2)).max((-2, -1))
    i, y, x = index[:, 0], index[:, 1] // g, index[:, 2] // g
    lo, hi = lo[i, y, x].astype(np.int64), hi[i, y, x]
    return np.where(lo == hi, lo, -1)


def pure_class(descriptors: np.ndarray, n_classes: int) -> np.ndarray:
    """int (M,): the class of patches holding a single class, -1 for mixed patches."""
    share = descriptors.reshape(len(descriptors), -1, n_classes).mean(1)
    cls = share.argmax(1)
    return np.where(share[np.arange(len(cls)), cls] > 1 - 1e-6, cls, -1)


def candidates(bank: TextureBank, query: np.ndarray, pool: np.ndarray, seed: int, keys: tuple[np.ndarray, ...]
               ) -> np.ndarray:
    """int (B, K) bank patch numbers: ``candidates`` patches of ``pool`` whose class layout is nearest.

    Blocks of ``region_blocks`` x ``region_blocks`` prefer one photo of the pool (hashed per region): coherent
    colour and light. A block of one class draws its candidates from that photo's patches of the class (else
    see ``min_pure_patches``); mixed blocks search the pool's patches on a ``search_stride_px`` grid by class layout.
    """
    s = bank.settings
    n_cls = len(bank.classes)
    qd = cell_fractions(query, n_cls, s.cell_px).reshape(len(query), -1)
    q_pure = pure_class(qd, n_cls)
    photos = np.unique(bank.index[pool, 0])
    region = [kk // s.region_blocks for kk in keys]
    preferred = photos[(hash_uniform(seed, *region, 6) * len(photos)).astype(np.int64)]
    out = np.full((len(query), s.candidates), -1, np.int64)
    pool_pure = np.where(bank.foamy[pool], -1, bank.pure[pool])  # white water is never drawn
    groups: dict[tuple[int, int], np.ndarray] = {}
    pure_blocks = np.flatnonzero(q_pure >= 0)
    draws = hash_uniform(seed, keys[0][pure_blocks, None], keys[1][pure_blocks, None], np.arange(s.candidates), 3)
    for b, u in zip(pure_blocks, draws):
        c, ph = int(q_pure[b]), int(preferred[b])
        key = (c, ph)
        if key not in groups:
            if bank.classes[c] in s.uniform_classes:  # one photo's texture for the whole render
                groups[key] = class_photo_patches(bank, pool, c, seed)
            else:  # the region's photo's patches of the class; too few: searched as mixed blocks are
                mine = pool[(pool_pure == c) & (bank.index[pool, 0] == ph)]
                groups[key] = mine if len(mine) >= s.min_pure_patches else mine[:0]
        choices = groups[key]
        if len(choices):
            out[b] = choices[(u * len(choices)).astype(np.int64)]
    mixed = np.flatnonzero(out[:, 0] < 0)
    if len(mixed):
        out[mixed] = search(bank, qd[mixed], pool, preferred[mixed], seed)
    return out


def class_photo_patches(bank: TextureBank, pool: np.ndarray, c: int, seed: int) -> np.ndarray:
    """The single-class ``c`` patches of one photo of the pool for the whole render (a pure function of the seed):
    one of the photos with at least ``min_pure_patches`` of them, else the one with the most (patches of white
    water left out). Water is one lake's texture, not a patchwork of calm and rippled lakes from region to region."""
    mine = pool[(bank.pure[pool] == c) & ~bank.foamy[pool]]
    if not len(mine):
        return mine
    photos, counts = np.unique(bank.index[mine, 0], return_counts=True)
    enough = photos[counts >= bank.settings.min_pure_patches]
    photo = enough[int(hash_uniform(seed, c, 7) * len(enough))] if len(enough) else photos[counts.argmax()]
    return mine[bank.index[mine, 0] == photo]


SEARCH_ROWS = 64  # blocks searched at once: 64 x 24,000 patches hold ~18 MB per quilting thread


def search(bank: TextureBank, qd: np.ndarray, pool: np.ndarray, preferred: np.ndarray, seed: int) -> np.ndarray:
    """int (B, K): the pool patches on the search grid nearest to descriptors ``qd`` (B, D), preferring each
    block's ``preferred`` photo by ``photo_weight`` and breaking ties by a hash per patch (numpy: a BLAS matrix
    product and a partial sort)."""
    s = bank.settings
    # rows of bank.descriptors: the pool's patches, less those all of one uniform class (open water: drawn by
    # class_photo_patches; they would only pad the search of a mixed block, and lake photos are in every look)
    uniform = [c for c, name in enumerate(bank.classes) if name in s.uniform_classes]
    # and less those holding white water (never drawn)
    rows = np.flatnonzero(np.isin(bank.searched, pool) & ~np.isin(bank.pure[bank.searched], uniform)
                          & ~bank.foamy[bank.searched])
    if len(rows) > s.search_max_patches:  # a large look: a fixed, hashed sample bounds the cost per block
        rows = rows[hash_uniform(0, bank.searched[rows], 8) < s.search_max_patches / len(rows)]
    if not len(rows):
        raise ModelError("texture bank look holds no patch on its search grid; rebuild the bank with more photos")
    grid = bank.searched[rows]
    k = min(s.candidates, len(grid))
    desc = bank.descriptors[rows]
    base = (desc * desc).sum(1) + hash_uniform(seed, grid, 4).astype(np.float32) * 1e-3
    # the bank's patches are numbered photo by photo, so each photo's patches are one run of columns
    photo = bank.index[grid, 0]
    first, stop = np.searchsorted(photo, preferred, "left"), np.searchsorted(photo, preferred, "right")
    other_photo = np.float32(s.photo_weight)
    out = np.empty((len(qd), s.candidates), np.int64)
    for a in range(0, len(qd), SEARCH_ROWS):  # (rows x patches) float32 distances and int64 partition per batch
        dist = (2 * qd[a:a + SEARCH_ROWS]) @ desc.T
        np.subtract(base, dist, out=dist)
        for row, lo, hi in zip(dist, first[a:a + SEARCH_ROWS], stop[a:a + SEARCH_ROWS]):
            row[:lo] += other_photo  # the cost of leaving the preferred photo
            row[hi:] += other_photo
        top = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < len(grid) else np.tile(np.arange(k), (len(dist), 1))
        out[a:a + SEARCH_ROWS] = np.pad(grid[top], ((0, 0), (0, s.candidates - k)), mode="edge")
    return out


def pick(cost: np.ndarray, u: np.ndarray, near_best: float) -> np.ndarray:
    """Per row of ``cost`` (B, K): a column among those within ``near_best`` x the row's best, chosen by ``u``."""
    best = cost.min(1, keepdims=True)
    ok = cost <= best * near_best + 1e-6
    nth = np.floor(u * ok.sum(1)).astype(np.int64)
    return np.argmax(np.cumsum(ok, 1) > nth[:, None], axis=1)


def min_cut_masks(err: np.ndarray) -> np.ndarray:
    """bool (B, H, W): for overlap errors (B, H, W) of a vertical seam, True right of the minimum-error cut.

    Dynamic programming over rows (Efros & Freeman 2001), vectorised over the B seams.
    """
    b, h, w = err.shape
    acc = np.full((b, h, w + 2), np.inf)  # one column of inf on each side: no special case at the edges
    acc[:, :, 1:-1] = err
    for r in range(1, h):
        prev = acc[:, r - 1]
        acc[:, r, 1:-1] += np.minimum(np.minimum(prev[:, :-2], prev[:, 1:-1]), prev[:, 2:])
    cols, seams, step = np.arange(w), np.arange(b)[:, None], np.arange(3)
    mask = np.zeros((b, h, w), bool)
    c = acc[:, -1, 1:-1].argmin(1)
    for r in range(h - 1, -1, -1):
        mask[:, r] = cols[None] >= c[:, None]
        if r:
            c = np.clip(c + acc[seams, r - 1, c[:, None] + step].argmin(1) - 1, 0, w - 1)
    return mask


def look_pool(bank: TextureBank, look: int) -> np.ndarray:
    """Bank patch numbers of one look (``look`` modulo the bank's looks) and of the photos in every look."""
    photos = np.flatnonzero((bank.looks == look % bank.n_looks) | (bank.looks < 0))
    return np.flatnonzero(np.isin(bank.index[:, 0], photos))


# ------------------------------------------------------------------------------------------------ drawing


def block_pass(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """0 for blocks at (even, even), 1 for (even, odd) and (odd, even), 2 for (odd, odd) world block indices."""
    return (i % 2) + (j % 2)


NEIGHBOURS = {"left": (0, -1, "right"), "right": (0, 1, "left"), "top": (-1, 0, "bottom"), "bottom": (1, 0, "top")}


def synthesize(bank: TextureBank, labels: np.ndarray, origin_rc: tuple[int, int], *, seed: int = 0,
               look: int | None = None, pool: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H - 2m, W - 2m, 3): the picture of the inner window of a class map with ``m = margin_px``.

    ``labels``: uint8 (H, W) model class ids whose pixel (0, 0) is world pixel ``origin_rc``; the result is the
    picture of world rows ``origin_r + m .. origin_r + H - m`` (and the same for columns), identical to that of
    any other window covering those pixels. ``look``: which look of the bank (default: from the seed);
    ``pool``: bank patch numbers to draw from instead (evaluation on selected photos).

    Blocks are chosen in three passes: (even, even) blocks from their class layout alone, then the blocks
    between two of those (matching both in the overlap), then the (odd, odd) blocks between four.
    """
    s = bank.settings
    m = margin_px(s)
    h, w = labels.shape
    if h <= 2 * m or w <= 2 * m:
        raise InputError(f"a quilted window needs more than {2 * m} px of class map in each direction (got {h}x{w})")
    r0, c0 = origin_rc[0] + m, origin_rc[1] + m
    lat = Lattice.for_window(r0, c0, h - 2 * m, w - 2 * m, s)
    bi, bj = lat.grid()
    ys, xs = bi * s.step_px - origin_rc[0], bj * s.step_px - origin_rc[1]  # block corners in ``labels``
    if ys.min() < 0 or xs.min() < 0 or ys.max() + s.patch_px > h or xs.max() + s.patch_px > w:
        raise InputError("quilt margin too small for its block lattice")  # a bug, not a user error
    if pool is None:
        pool = look_pool(bank, seed if look is None else look)
    query = patches(labels[None], np.zeros(ys.size, np.int64), ys.ravel(), xs.ravel(), s.patch_px)
    # candidates as (photo, row, col) triplets, photo -1 where there is none
    cand = np.concatenate([bank.index[candidates(bank, query, pool, seed, (bi.ravel(), bj.ravel()))].astype(np.int64),
                           placement(bank, pool, bi.ravel(), bj.ravel(), seed)[:, None]], 1)
    chosen = np.zeros((lat.ni, lat.nj, s.patch_px, s.patch_px, 3), np.float32)
    chosen_at = np.full((lat.ni, lat.nj, 3), -1, np.int64)
    canvas = np.zeros((lat.ni * s.step_px + s.overlap_px, lat.nj * s.step_px + s.overlap_px, 3), np.float32)
    level = block_pass(bi, bj)
    for p in range(3):
        inner = np.zeros_like(level, bool)
        inner[p // 2:lat.ni - p // 2, p // 2:lat.nj - p // 2] = True  # blocks whose earlier neighbours exist
        blocks = np.argwhere((level == p) & (inner if p else True))
        flat = blocks[:, 0] * lat.nj + blocks[:, 1]
        sides = known_sides(blocks, level, p)
        at = np.concatenate([cand[flat], continuations(bank, chosen_at, blocks, sides)], 1)  # (B, K', 3)
        ci, cy, cx = (np.where(at[..., 0] >= 0, at[..., t], 0) for t in range(3))
        valid = (at[..., 0] >= 0) & ~bank.foamy_at(ci, cy, cx)  # white water is never drawn
        # class-layout mismatch on every other pixel (a quarter of the gather; seams are decided on colour)
        mism = (patches(bank.labels_2x, ci, cy // 2, cx // 2, s.patch_px // 2)
                != query[flat][:, None, ::2, ::2]).mean((2, 3))
        cost = s.label_weight * mism + overlap_costs(bank, (ci, cy, cx), chosen, blocks, sides)
        cost[~valid] = np.inf
        pick_at = pick(cost, hash_uniform(seed, bi.ravel()[flat], bj.ravel()[flat], 10 + p), s.near_best)
        one = np.arange(len(blocks)), pick_at
        patch = patches(bank.images, ci[one], cy[one], cx[one], s.patch_px).astype(np.float32)
        chosen[blocks[:, 0], blocks[:, 1]] = patch
        chosen_at[blocks[:, 0], blocks[:, 1]] = at[one]
        paste(canvas, patch, blocks, seam_masks(patch, chosen, blocks, sides, s), s)
    top, left = r0 - lat.i0 * s.step_px, c0 - lat.j0 * s.step_px
    return np.clip(canvas[top:top + h - 2 * m, left:left + w - 2 * m] + 0.5, 0, 255).astype(np.uint8)


def within(bank: TextureBank, photo: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """int (..., 3) triplets (photo, y, x), photo -1 where the patch would leave its photo."""
    _, h, w, _ = bank.images.shape
    p = bank.settings.patch_px
    ok = (photo >= 0) & (y >= 0) & (x >= 0) & (y <= h - p) & (x <= w - p)
    return np.stack([np.where(ok, photo, -1), y, x], -1).astype(np.int64)


def placement(bank: TextureBank, pool: np.ndarray, bi: np.ndarray, bj: np.ndarray, seed: int) -> np.ndarray:
    """int (B, 3): per block, the patch of its region's placed photo: each region of ``region_blocks`` blocks lays
    one pool photo (hashed) over itself at a hashed offset, so where the class layout allows, whole regions copy
    one coherent piece of a real photo."""
    s, (_, h, w, _) = bank.settings, bank.images.shape
    photos = np.unique(bank.index[pool, 0])
    ri, rj = bi // s.region_blocks, bj // s.region_blocks
    photo = photos[(hash_uniform(seed, ri, rj, 7) * len(photos)).astype(np.int64)]
    span = (s.region_blocks - 1) * s.step_px + s.patch_px
    oy = (hash_uniform(seed, ri, rj, 8) * max(1, h - span + 1)).astype(np.int64)
    ox = (hash_uniform(seed, ri, rj, 9) * max(1, w - span + 1)).astype(np.int64)
    return within(bank, photo, oy + (bi - ri * s.region_blocks) * s.step_px, ox + (bj - rj * s.region_blocks) * s.step_px)


def continuations(bank: TextureBank, chosen_at: np.ndarray, blocks: np.ndarray, sides: dict[str, np.ndarray]
                  ) -> np.ndarray:
    """int (B, 4, 3): per side with a chosen neighbour, the patch that continues the neighbour's photo into this
    block (the neighbour's patch shifted by one block step; any position, not only the bank's grid), or photo -1."""
    s = bank.settings
    out = np.full((len(blocks), len(NEIGHBOURS), 3), -1, np.int64)
    for k, (side, (di, dj, _)) in enumerate(NEIGHBOURS.items()):
        b = np.flatnonzero(sides[side])
        photo, y, x = chosen_at[blocks[b, 0] + di, blocks[b, 1] + dj].T
        out[b, k] = within(bank, photo, y - di * s.step_px, x - dj * s.step_px)
    return out


def known_sides(blocks: np.ndarray, level: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """Per side, bool (B,): whether the neighbour there belongs to an earlier pass (its patch is chosen)."""
    out = {}
    for side, (di, dj, _) in NEIGHBOURS.items():
        i, j = blocks[:, 0] + di, blocks[:, 1] + dj
        ok = (i >= 0) & (j >= 0) & (i < level.shape[0]) & (j < level.shape[1])
        out[side] = ok & (level[np.clip(i, 0, level.shape[0] - 1), np.clip(j, 0, level.shape[1] - 1)] < p)
    return out


def _strips(a: np.ndarray, side: str, o: int, step: int) -> np.ndarray:
    """The part of patches ``a`` (..., P, P, 3) that overlaps the neighbour on ``side`` (left/right/top/bottom)."""
    return {"left": a[..., :, :o, :], "right": a[..., :, step:, :],
            "top": a[..., :o, :, :], "bottom": a[..., step:, :, :]}[side]


STRIP_AT = {"left": (0, 0), "right": (0, 1), "top": (0, 0), "bottom": (1, 0)}  # strip origin in block steps


def overlap_costs(bank: TextureBank, where: tuple[np.ndarray, np.ndarray, np.ndarray], chosen: np.ndarray,
                  blocks: np.ndarray, sides: dict[str, np.ndarray]) -> np.ndarray:
    """(B, K) mean squared difference of each candidate (photo, row, col arrays (B, K)) with its chosen
    neighbours, over the overlap strips only (gathered straight from the bank's photos)."""
    s = bank.settings
    ci, cy, cx = where
    total = np.zeros(ci.shape, np.float32)
    count = np.zeros(len(blocks), np.float32)
    for side, (di, dj, theirs) in NEIGHBOURS.items():
        b = np.flatnonzero(sides[side])
        if not len(b):
            continue
        nb = _strips(chosen[blocks[b, 0] + di, blocks[b, 1] + dj], theirs, s.overlap_px, s.step_px)
        oy, ox = (v * s.step_px for v in STRIP_AT[side])
        diff = patches(bank.images, ci[b], cy[b] + oy, cx[b] + ox, nb.shape[1:3]) - nb[:, None]  # float32
        total[b] += np.square(diff, out=diff).mean((2, 3, 4))
        count[b] += 1
    return total / np.maximum(count, 1)[:, None]


def seam_masks(patch: np.ndarray, chosen: np.ndarray, blocks: np.ndarray, sides: dict[str, np.ndarray],
               s: QuiltSettings) -> np.ndarray:
    """bool (B, P, P): where each new patch (B, P, P, 3) replaces the canvas: all but the far side of the
    minimum-error cut in the overlap with each chosen neighbour."""
    o, step = s.overlap_px, s.step_px
    mask = np.ones(patch.shape[:3], bool)
    for side, (di, dj, theirs) in NEIGHBOURS.items():
        b = np.flatnonzero(sides[side])
        if not len(b):
            continue
        nb = chosen[blocks[b, 0] + di, blocks[b, 1] + dj]
        err = ((_strips(patch[b], side, o, step) - _strips(nb, theirs, o, step)) ** 2).sum(-1)
        if side == "left":
            mask[b, :, :o] &= min_cut_masks(err)
        elif side == "right":
            mask[b, :, step:] &= min_cut_masks(err[:, :, ::-1])[:, :, ::-1]
        elif side == "top":
            mask[b, :o, :] &= min_cut_masks(err.transpose(0, 2, 1)).transpose(0, 2, 1)
        else:
            mask[b, step:, :] &= min_cut_masks(err[:, ::-1].transpose(0, 2, 1)).transpose(0, 2, 1)[:, ::-1]
    return mask


def feathered(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """float32 (B, P, P) weights of new patches: each seam mask box-averaged over (2r+1)^2 pixels (the patch edge
    continued outward, so a full mask stays 1), so the cut is a short blend, not a step."""
    if radius_px <= 0:
        return mask.astype(np.float32)
    r = radius_px
    m = np.pad(mask.astype(np.float32), ((0, 0), (r, r), (r, r)), mode="edge")
    c = np.cumsum(np.cumsum(np.pad(m, ((0, 0), (1, 0), (1, 0))), 1), 2)
    k = 2 * r + 1
    return (c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]) / float(k * k)


def paste(canvas: np.ndarray, patch: np.ndarray, blocks: np.ndarray, mask: np.ndarray, s: QuiltSettings) -> None:
    """Blend each patch into the lattice canvas with its feathered seam mask, in world raster order of the blocks.

    The blocks of one pass on one block row lie at least two block steps apart and do not overlap (2 x step >
    patch), so they are blended together through one strided view of the canvas; rows follow in order."""
    p, step = s.patch_px, s.step_px
    alpha = feathered(mask, s.feather_px)[..., None]
    starts = np.flatnonzero(np.diff(blocks[:, 0], prepend=-1))  # blocks come row by row (np.argwhere order)
    for a, b in zip(starts, [*starts[1:], len(blocks)]):
        js = blocks[a:b, 1]
        dj = int(js[1] - js[0]) if b - a > 1 else 2
        apart = dj * step >= p and not np.any(np.diff(js) != dj)  # evenly spaced, not overlapping
        for a0, b0 in ([(a, b)] if apart else [(k, k + 1) for k in range(a, b)]):
            band = canvas[blocks[a0, 0] * step:blocks[a0, 0] * step + p, blocks[a0, 1] * step:]
            rs, cs, ch = band.strides
            regions = as_strided(band, shape=(b0 - a0, p, p, band.shape[2]), strides=(dj * step * cs, rs, cs, ch))
            regions += alpha[a0:b0] * (patch[a0:b0] - regions)


def synthesize_tile(bank: TextureBank, labels: np.ndarray, *, seed: int = 0, look: int | None = None,
                    pool: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W, 3) for a lone class map (no world context): its edges are continued by reflection."""
    m = margin_px(bank.settings)
    padded = np.pad(labels, m, mode="reflect")
    return synthesize(bank, padded, (-m, -m), seed=seed, look=look, pool=pool)


# ------------------------------------------------------------------------------------------------ the bank


def save_bank(path: Path, bank: TextureBank, quality: int = 92) -> None:
    """The bank as one .npz: photos as JPEG (``quality``), class maps compressed, looks and class names."""
    from PIL import Image

    blobs = []
    for img in bank.images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=0)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    sizes = np.array([len(b) for b in blobs], np.int64)
    with open(path, "wb") as f:
        np.savez_compressed(f, jpeg=np.concatenate(blobs), jpeg_sizes=sizes, labels=bank.labels,
                            looks=bank.looks.astype(np.int16), classes=np.array(bank.classes))


def load_bank(path: Path, settings: QuiltSettings = QuiltSettings()) -> TextureBank:
    """A bank written by :func:`save_bank`."""
    from PIL import Image

    try:
        with np.load(path, allow_pickle=False) as z:
            data, sizes, labels = z["jpeg"], z["jpeg_sizes"], z["labels"]
            looks, classes = z["looks"].astype(np.int64), tuple(str(c) for c in z["classes"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"texture bank {path} cannot be read ({exc}); rebuild it with 'geogan build-bank'") from None
    ends = np.cumsum(sizes)
    images = np.empty((*labels.shape, 3), np.uint8)
    for k, (e, n) in enumerate(zip(ends, sizes)):
        photo = Image.open(io.BytesIO(data[e - n:e].tobytes()))
        if photo.size != labels.shape[:0:-1]:
            raise ModelError(f"texture bank {path}: photo {k} is {photo.size[0]}x{photo.size[1]} px, its class map "
                             f"{labels.shape[2]}x{labels.shape[1]}; rebuild it with 'geogan build-bank'")
        images[k] = np.asarray(photo if photo.mode == "RGB" else photo.convert("RGB"))
    return TextureBank(images, labels, looks, classes, settings)


def select_photos(labels: np.ndarray, water_class: int | None, max_water_photos: int, seed: int = 0) -> np.ndarray:
    """Indices of the photos a bank keeps: all but a seeded sample of ``max_water_photos`` of those that are
    more than 90 % water (LandCover.ai holds hundreds of near-identical lake tiles)."""
    n = len(labels)
    if water_class is None:
        return np.arange(n)
    share = (labels == water_class).mean((1, 2))
    watery = np.flatnonzero(share > 0.9)
    keep = np.random.default_rng(seed).permutation(watery)[:max_water_photos]
    return np.sort(np.concatenate([np.flatnonzero(share <= 0.9), keep]))
