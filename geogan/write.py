"""Streaming GeoTIFF outputs: written window by window to a hidden temporary
file, converted to a Cloud-Optimized GeoTIFF (with overviews) by GDAL's COG
driver, and renamed into place only when everything succeeded. On any error
or cancel, :class:`OutputSet` removes every temporary file, so no
half-written output is ever left looking complete. The temporary files live
in a staging folder of the run's own, the output folder is locked while the
set is open, and the outputs are replaced as a set (:mod:`geogan.outdir`).

Memory stays flat in the area: incoming strips (any height, any order) are
buffered per row of 512 px blocks and a block row goes to GDAL only once it
is complete, so every compressed block is written exactly once and GDAL's
block cache, capped at ``GDAL_CACHE_BYTES`` while writing and converting,
never has to hold half-filled blocks.

Overviews are built the same way, as the block rows arrive (:class:`_Overviews`:
numpy 2x2 reductions, each level from the one above, into hidden files of
their own), so the COG conversion only compresses and copies. Computing them
at the end with GDAL (rasterio's ``build_overviews``) read the whole file back
and held Python's GIL throughout, stalling the generator threads of a render
(measured with py-spy: 0.14 s of a 1.8 s render of 1 km2).
"""

from __future__ import annotations

import errno
import functools
import math
import os
import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._env import catch_errors
from rasterio._err import CPLE_BaseError
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.windows import Window

from . import outdir
from .errors import InputError, OutputError, RenderError
from .grid import Grid


def overview_factors(width: int, height: int, block_px: int) -> list[int]:
    """2, 4, 8, ... until the coarsest overview fits in one block (GDAL's COG driver's own rule)."""
    factors, f = [], 2
    while math.ceil(max(width, height) / (f // 2)) > block_px:
        factors.append(f)
        f *= 2
    return factors


def _pair_sum(a: np.ndarray, axis: int, dtype) -> np.ndarray:
    """Sums of neighbouring pairs along ``axis`` (in ``dtype``); an odd last element counts twice."""
    n = a.shape[axis]
    even = [slice(None)] * a.ndim
    odd = [slice(None)] * a.ndim
    even[axis], odd[axis] = slice(0, n - 1, 2), slice(1, n, 2)
    pairs = np.add(a[tuple(even)], a[tuple(odd)], dtype=dtype)
    if n % 2 == 0:
        return pairs
    last = [slice(None)] * a.ndim
    last[axis] = slice(n - 1, n)
    return np.concatenate([pairs, np.multiply(a[tuple(last)], 2, dtype=dtype)], axis=axis)


def reduce_2x(values: np.ndarray, resampling: str, nodata: float | None = None) -> np.ndarray:
    """One overview step: (bands, rows, cols) -> (bands, ceil(rows / 2), ceil(cols / 2)).

    ``"nearest"`` keeps the top-left pixel of each 2x2 cell (GDAL's choice for factor 2); ``"average"`` is
    the mean of the cell's pixels inside the raster (an odd last row or column averages what is there),
    leaving out ``nodata`` pixels (a cell of nodata only stays nodata); integers are rounded half up.
    """
    if resampling == "nearest":
        return np.ascontiguousarray(values[:, ::2, ::2])
    if resampling != "average":
        raise ValueError(f"overview resampling '{resampling}' is not 'average' or 'nearest'")
    integer = np.issubdtype(values.dtype, np.integer)
    missing = None
    if nodata is not None:
        missing = np.isnan(values) if np.isnan(nodata) else values == nodata
        if not missing.any():
            missing = None
    if missing is None and integer and values.dtype.itemsize == 1:  # the common case: 8-bit images, exact
        total = _pair_sum(_pair_sum(values, 1, np.uint16), 2, np.uint16)
        total += 2
        total >>= 2
        return total.astype(values.dtype)
    acc = np.float64 if values.dtype.itemsize > 4 or integer else np.float32
    if missing is None:
        mean = _pair_sum(_pair_sum(values, 1, acc), 2, acc)
        mean *= 0.25
    else:
        mean = _mean_of_valid(values, ~missing, nodata, acc)
    if integer:
        mean = np.floor(mean + 0.5)
    return mean.astype(values.dtype)


def _mean_of_valid(values: np.ndarray, valid: np.ndarray, fill: float, acc) -> np.ndarray:
    """2x2 means of the ``valid`` pixels of ``values`` (``fill`` where a cell has none)."""
    total = _pair_sum(_pair_sum(np.where(valid, values, 0), 1, acc), 2, acc)
    count = _pair_sum(_pair_sum(valid, 1, np.uint8), 2, np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), fill)


def reduce_2x_alpha(values: np.ndarray) -> np.ndarray:
    """One overview step of a uint8 image whose last band is alpha: the colours are the means of the pixels
    with alpha > 0 only (0 where a cell has none; as GDAL's overviews use an alpha band), alpha the plain mean."""
    colour, alpha = values[:-1], values[-1:]
    valid = np.broadcast_to(alpha > 0, colour.shape)
    mean = np.floor(_mean_of_valid(colour, valid, 0, np.float32) + 0.5).astype(values.dtype)
    return np.concatenate([mean, reduce_2x(alpha, "average")])


STREAM_RAW_MAX_BYTES = 512 * 2**20  # hidden stream files up to this size stay uncompressed


def stream_compression(grid: Grid, spec: "RasterSpec") -> dict:
    """Creation options of an output's hidden stream file (converted to the COG at the end).

    Small ones stay uncompressed (compressing them twice costs CPU the generator could use);
    large ones are compressed with fast ZSTD so the temporary disk use stays bounded.
    """
    size = grid.width * grid.height * spec.count * np.dtype(spec.dtype).itemsize
    return {} if size <= STREAM_RAW_MAX_BYTES else {"compress": "zstd", "zstd_level": 1}


#: COG codecs an output may use: DEFLATE and ZSTD are lossless, JPEG is lossy (uint8 images only)
COG_CODECS = ("DEFLATE", "ZSTD", "JPEG")


@dataclass(frozen=True)
class RasterSpec:
    """What one output raster holds, and how its COG is compressed (``compress``, one of ``COG_CODECS``).

    ZSTD needs a reader with GDAL >= 2.3 (libtiff with zstd); JPEG is lossy, for uint8 images only,
    and 3-band RGB is stored as YCbCr (GDAL's COG driver's default; readers convert back to RGB).
    """

    path: Path
    count: int
    dtype: str
    nodata: float | None = None
    overview_resampling: str = "average"
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None
    descriptions: tuple[str, ...] = ()
    units: str | None = None
    photometric: str | None = None
    # DEFLATE in the COG: predictor (TIFF horizontal differencing "2" for images, "3" floating point,
    # "NO" for categories; None: floating point for floats, none for integers) and level (3 costs about
    # 25 % less time than 6; measured on the sample town: aerial with predictor 2 at level 3 is 26 % faster
    # and 17 % smaller than without at 6, heights 23 % faster and 2 % larger)
    predictor: str | None = None
    deflate_level: int = 6
    compress: str = "DEFLATE"
    # ZSTD in the COG: same predictor and LEVEL; measured on the sample town's aerial image, level 1 takes
    # 0.09 CPU-s against DEFLATE level 1's 0.19 at the same size (11.43 MB against 11.49 MB)
    zstd_level: int = 3
    # JPEG in the COG (full resolution and overviews), no predictor: at 90 the sample town's aerial image is
    # 1.96 MB instead of 11.49 MB (DEFLATE), 2.7 grey levels mean absolute difference, in 0.23 CPU-s
    jpeg_quality: int = 90
    # dataset metadata (GDAL tags, default domain: provenance, see geogan.provenance.output_tags)
    tags: Mapping[str, str] | None = None
    # files written beside the finished COG (e.g. class names: .aux.xml and .qml), committed with the set:
    # called with the staged COG's path, returns the paths it wrote (in the same folder)
    sidecars: Callable[[Path], Sequence[Path]] | None = None
    # the pixels that hold data (geogan.coverage.Coverage.rows: (row0, n) -> bool (n, width)); the others are
    # written as ``nodata`` (0 without one) and, with ``alpha``, 0 in the last band (an alpha band the writers
    # do not pass: 255 where covered); the COG driver turns the alpha band into an internal mask with JPEG
    coverage: Callable[[int, int], np.ndarray] | None = None
    alpha: bool = False

    def __post_init__(self) -> None:
        if self.compress not in COG_CODECS:
            raise ValueError(f"RasterSpec.compress '{self.compress}' is not one of {', '.join(COG_CODECS)}")
        if self.alpha and (self.coverage is None or self.dtype != "uint8"):
            raise ValueError(f"an alpha band ('{self.path.name}') is made from a coverage, in uint8")
        if self.compress == "JPEG" and (self.dtype != "uint8" or self.count - self.alpha not in (1, 3)):
            raise ValueError(f"JPEG is for 1- or 3-band uint8 images, not {self.count} x {self.dtype} "
                             f"('{self.path.name}'); use DEFLATE or ZSTD")


def cog_compression(spec: RasterSpec) -> dict:
    """GDAL COG driver creation options compressing ``spec``'s output (overviews the same way).

    DEFLATE and ZSTD: ``LEVEL`` and ``PREDICTOR`` (``spec.predictor``, else floating point for floats and
    none for integers); JPEG: ``QUALITY`` (and ``OVERVIEW_QUALITY``), no predictor.
    """
    if spec.compress == "JPEG":
        return {"COMPRESS": "JPEG", "QUALITY": spec.jpeg_quality, "OVERVIEW_QUALITY": spec.jpeg_quality}
    return {"COMPRESS": spec.compress, "LEVEL": spec.zstd_level if spec.compress == "ZSTD" else spec.deflate_level,
            "PREDICTOR": spec.predictor or ("YES" if spec.dtype != "uint8" else "NO")}


@functools.lru_cache(maxsize=None)
def codec_available(codec: str) -> bool:
    """Whether rasterio's GDAL writes and reads back a COG compressed with ``codec`` (a tiny in-memory probe)."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    probe = f"/vsimem/geogan-codec-probe-{codec.lower()}.tif"
    try:
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=16, height=16, count=1, dtype="uint8", crs="EPSG:3857",
                          transform=from_origin(0, 16, 1, 1)) as ds:
                ds.write(np.zeros((1, 16, 16), np.uint8))
            rasterio.shutil.copy(mem.name, probe, driver="COG", COMPRESS=codec)
            try:
                with rasterio.open(probe) as ds:
                    ds.read()
                    return ds.compression is not None and ds.compression.name.upper() == codec.upper()
            finally:
                rasterio.shutil.delete(probe)
    except _WRITE_ERRORS:
        return False


def check_codecs(codecs, option: str = "--compress") -> None:
    """Refuse before any work when rasterio's GDAL cannot write one of ``codecs`` (one line naming the fix)."""
    missing = [c for c in dict.fromkeys(codecs) if c != "DEFLATE" and not codec_available(c)]  # GDAL always has DEFLATE
    if missing:
        raise InputError(f"this rasterio's GDAL {rasterio.__gdal_version__} cannot write {' or '.join(missing)}-"
                         f"compressed GeoTIFFs; choose {option} deflate, or install a rasterio built with it")


_WRITE_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)

#: GDAL's block cache while an :class:`OutputSet` is open (GDAL's default is 5 % of RAM). Whole
#: block rows are written at once, so the cache never needs more than a few rows of blocks.
GDAL_CACHE_BYTES = 16 * 2**20


@contextmanager
def capped_gdal_cache(max_bytes: int = GDAL_CACHE_BYTES) -> Iterator[None]:
    """Lower GDAL's (process-wide) block cache limit to ``max_bytes`` for the block, then restore it."""
    previous = get_gdal_config("GDAL_CACHEMAX")
    if isinstance(previous, int) and previous <= max_bytes:
        yield
        return
    set_gdal_config("GDAL_CACHEMAX", max_bytes)
    try:
        yield
    finally:
        if isinstance(previous, int):
            set_gdal_config("GDAL_CACHEMAX", previous)


class _BlockRows:
    """Rows of one raster, collected until a whole row of blocks can be written.

    Holds at most the block rows that have started but not finished (one
    when strips arrive in order), each ``block_px`` rows by the full width.
    """

    def __init__(self, height: int, width: int, bands: int, dtype: str, block_px: int) -> None:
        self.height, self.width, self.bands, self.dtype = height, width, bands, np.dtype(dtype)
        self.block_px = block_px
        self._pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # block row -> (values, rows filled)

    @property
    def empty(self) -> bool:
        """No block row is waiting for rows."""
        return not self._pending

    def _rows_in(self, block: int) -> int:
        return min(self.block_px, self.height - block * self.block_px)

    def add(self, row0: int, values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Take ``values`` (bands, rows, width) at ``row0``; yield (row0, values) of completed block rows."""
        n = values.shape[1]
        for block in range(row0 // self.block_px, (row0 + n - 1) // self.block_px + 1):
            top = block * self.block_px
            lo, hi = max(row0, top), min(row0 + n, top + self._rows_in(block))
            if lo == top and hi == top + self._rows_in(block):  # the strip covers the whole block row
                yield top, values[:, lo - row0:hi - row0]
                continue
            if block not in self._pending:
                self._pending[block] = (np.empty((self.bands, self._rows_in(block), self.width), self.dtype),
                                        np.zeros(self._rows_in(block), dtype=bool))
            buf, filled = self._pending[block]
            buf[:, lo - top:hi - top] = values[:, lo - row0:hi - row0]
            filled[lo - top:hi - top] = True
            if filled.all():
                del self._pending[block]
                yield top, buf

    def leftovers(self, fill: float) -> Iterator[tuple[int, np.ndarray]]:
        """Unfinished block rows (only when some rows were never written), whole, with ``fill`` in the rows
        never written (what GDAL puts in blocks nobody wrote: the nodata value, else 0)."""
        for block, (buf, filled) in sorted(self._pending.items()):
            buf[:, ~filled] = fill
            yield block * self.block_px, buf
        self._pending.clear()


def masked_rows(spec: RasterSpec, row0: int, values: np.ndarray) -> np.ndarray:
    """``values`` (bands, rows, width) at ``row0`` with ``spec.coverage`` applied: ``spec.nodata`` (else 0)
    outside it, and with ``spec.alpha`` an alpha band added (255 inside, 0 outside)."""
    valid = spec.coverage(row0, values.shape[1])
    fill = np.asarray(spec.nodata if spec.nodata is not None else 0).astype(values.dtype)
    out = np.where(valid[None], values, fill)
    if spec.alpha:
        out = np.concatenate([out, np.where(valid, 255, 0).astype(out.dtype)[None]])
    return out


def _open_hidden(path: Path, grid: Grid, spec: "RasterSpec", block_px: int, **extra) -> rasterio.io.DatasetWriter:
    """A hidden tiled GeoTIFF for ``spec``'s values on ``grid``, compressed only when large
    (:func:`stream_compression`); ``extra``: more creation options."""
    return rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=spec.count,
                         dtype=spec.dtype, crs=grid.crs.to_wkt(), transform=grid.transform, nodata=spec.nodata,
                         tiled=True, blockxsize=block_px, blockysize=block_px, BIGTIFF="IF_SAFER",
                         **stream_compression(grid, spec), **extra)


class _Overviews:
    """The overview levels (factors 2, 4, 8, ...) of one output, built while its block rows arrive.

    Each level is a hidden uncompressed GeoTIFF of its own, fed whole block rows of the level above
    reduced 2x2 by :func:`reduce_2x`. Level ``k`` has blocks of ``block_px / 2**k`` px while that stays a
    multiple of 16, so a block row of the level above makes exactly one block row of the next, written at
    once; below that, halves are collected (by a :class:`_BlockRows`, like the full-resolution rows).
    Memory: the temporaries of one reduction (the COG driver re-tiles the levels to ``block_px``).
    """

    def __init__(self, paths: list[Path], grid: Grid, spec: "RasterSpec", block_px: int) -> None:
        self.spec = spec
        self.paths = paths  # hidden files, factor 2 first
        self._levels: list[tuple[rasterio.io.DatasetWriter, _BlockRows]] = []
        height, width, level_block_px = grid.height, grid.width, block_px
        try:
            for i, path in enumerate(paths, start=1):
                height, width = -(-height // 2), -(-width // 2)
                if level_block_px % 32 == 0:  # TIFF blocks are multiples of 16 px
                    level_block_px //= 2
                level = Grid(grid.crs, grid.transform * rasterio.Affine.scale(2 ** i), (height, width))
                ds = _open_hidden(path, level, spec, level_block_px)
                self._levels.append((ds, _BlockRows(height, width, spec.count, spec.dtype, level_block_px)))
        except BaseException:
            self.close()
            raise

    def add(self, row0: int, rows: np.ndarray, level: int = 0) -> None:
        """Take a whole block row (``row0``, ``rows``) of level ``level`` (0: full resolution)."""
        if level >= len(self._levels):
            return
        resampling = self.spec.overview_resampling.lower()
        reduced = reduce_2x_alpha(rows) if self.spec.alpha and resampling == "average" else \
            reduce_2x(rows, resampling, self.spec.nodata)
        ds, block_rows = self._levels[level]
        for top, done in block_rows.add(row0 // 2, reduced):
            ds.write(done, window=Window(0, top, done.shape[2], done.shape[1]))
            self.add(top, done, level + 1)

    def close(self) -> None:
        for ds, _ in self._levels:
            ds.close()

    def check_complete(self) -> None:
        """Every level got all its rows (true when the full-resolution rows all arrived)."""
        for ds, block_rows in self._levels:
            if not block_rows.empty:
                raise RuntimeError(f"overview {ds.name} is missing rows")


def _with_overviews(src: Path, vrt: Path, overviews: list[Path]) -> None:
    """Write ``vrt``: ``src`` (georeferencing, colours, descriptions, nodata) with ``overviews`` on its bands."""
    rasterio.shutil.copy(src, vrt, driver="VRT")
    tree = ET.parse(vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        for path in overviews:
            ov = ET.SubElement(band, "Overview")
            ET.SubElement(ov, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
            ET.SubElement(ov, "SourceBand").text = band.get("band")
    tree.write(vrt)


_SPACE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file size limit reached"}
if hasattr(errno, "EDQUOT"):
    _SPACE_ERRNOS[errno.EDQUOT] = "disk quota exceeded"
_PROBE_BYTES = 2**20


def _space_errno(exc: BaseException, folder: Path | None) -> int | None:
    """ENOSPC, EDQUOT or EFBIG when the failed write ``exc`` came from a full disk, a quota or a file size limit.

    GDAL's errors carry no errno, so a write of ``_PROBE_BYTES`` random bytes into ``folder`` asks the OS.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno if exc.errno in _SPACE_ERRNOS else None
    if folder is None or not folder.is_dir():
        return None
    probe = folder / f"probe-{secrets.token_hex(4)}"
    try:
        with open(probe, "wb") as f:
            f.write(os.urandom(_PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as probe_exc:
        return probe_exc.errno if probe_exc.errno in _SPACE_ERRNOS else None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def _write_failed(path: Path, exc: BaseException, need_bytes: int = 0, folder: Path | None = None) -> RenderError:
    """One line for a failed write of ``path``: a full disk, quota or file size limit named as such (with
    ``need_bytes``, what the whole set may need), anything else with the first line of GDAL's message."""
    code = _space_errno(exc, folder)
    need = f" (needs up to about {max(1, math.ceil(need_bytes / 1e6))} MB)" if need_bytes else ""
    if code == errno.EFBIG:
        return RenderError(f"file size limit reached while writing '{path}'{need}; raise the limit (ulimit -f), "
                           "free disk space or choose another --out")
    if code is not None:
        return RenderError(f"{_SPACE_ERRNOS[code]} while writing '{path}'{need}; free disk space or choose "
                           "another --out")
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return RenderError(f"writing '{path}' failed ({first}); check free disk space and write permission, then rerun")


def _loaded_libtiffs() -> list:
    """The libtiff libraries loaded in this process (Linux; elsewhere none), as ctypes handles."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "/libtiff" in line}
    except OSError:
        return []
    libs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
            lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            continue
        libs.append(lib)
    return libs


_libtiff_quiet = {"depth": 0, "saved": []}
_libtiff_quiet_lock = threading.Lock()


@contextmanager
def libtiff_quiet() -> Iterator[None]:
    """No libtiff error lines on stderr while the block runs (process-wide, nestable).

    GDAL reports a failed write of a GeoTIFF as an exception, and libtiff's default handler also prints
    ``_tiffWriteProc: No space left on device.`` for every failed write: 6-8 lines for one full disk.
    """
    with _libtiff_quiet_lock:
        if _libtiff_quiet["depth"] == 0:
            _libtiff_quiet["saved"] = [(lib, lib.TIFFSetErrorHandler(None)) for lib in _loaded_libtiffs()]
        _libtiff_quiet["depth"] += 1
    try:
        yield
    finally:
        with _libtiff_quiet_lock:
            _libtiff_quiet["depth"] -= 1
            if _libtiff_quiet["depth"] == 0:
                for lib, previous in _libtiff_quiet["saved"]:
                    lib.TIFFSetErrorHandler(previous)
                _libtiff_quiet["saved"] = []


@contextmanager
def _gdal_quiet() -> Iterator[None]:
    """GDAL's messages in this thread go to the ``rasterio`` logger (silent unless configured) instead of
    stderr; the failure itself still raises. A full disk otherwise prints 7-13 GDAL lines."""
    with catch_errors():
        yield


def _check_directory(parent: Path) -> None:
    """Create ``parent`` if needed; refuse one that cannot be created or written."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory '{parent}' ({exc.strerror}); "
                          "choose a writable --out") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory '{parent}' is not writable; choose a writable --out")


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse before any work: an unwritable directory, another run writing there (:mod:`geogan.outdir`), or
    existing outputs without overwrite. What killed runs left in the directories is finished or deleted first."""
    paths = [Path(p) for p in paths]
    for parent in dict.fromkeys(p.parent for p in paths):
        _check_directory(parent)
        outdir.prepare(parent)
    for path in paths:
        if path.exists() and not overwrite:
            raise OutputError(f"'{path}' already exists; pass --overwrite to replace it or choose another --out")
        if path.exists() and path.is_dir():
            raise OutputError(f"'{path}' is a directory; choose another output name")


def _set_folder(specs: Mapping[str, RasterSpec]) -> Path:
    folders = {os.path.abspath(spec.path.parent) for spec in specs.values()}
    if len(folders) != 1:
        raise ValueError(f"an OutputSet writes into one directory, not {len(folders)}: {sorted(folders)}")
    return next(iter(specs.values())).path.parent


class OutputSet:
    """Several rasters on one grid, written together and committed together.

    Use as a context manager: entering locks the output directory (another run writing there is refused) and
    makes this run's staging folder; leaving the block normally converts all outputs to COGs and replaces
    the directory's outputs of these names as a set (:func:`geogan.outdir.commit`); leaving it with an
    exception deletes the staging folder. GDAL's block cache is capped while the set is open.
    Different outputs may be written (and finished) from different threads, one thread per output.
    """

    def __init__(self, grid: Grid, specs: Mapping[str, RasterSpec], block_px: int = 512) -> None:
        self.grid = grid
        self.specs = dict(specs)
        self.block_px = block_px
        self.folder = _set_folder(self.specs)
        self._datasets: dict[str, rasterio.io.DatasetWriter] = {}
        self._rows: dict[str, _BlockRows] = {}
        self._overviews: dict[str, _Overviews] = {}
        self._factors = overview_factors(grid.width, grid.height, block_px)
        self._finished: set[str] = set()
        self._sidecars: dict[str, list[str]] = {}
        self._lock: outdir.FolderLock | None = None
        self._staging: Path | None = None
        self._scope = ExitStack()

    def need_bytes(self) -> int:
        """About the most disk the set may take: every output uncompressed with overviews, plus the
        temporaries of the largest while it is converted."""
        raw = [self.grid.width * self.grid.height * s.count * np.dtype(s.dtype).itemsize for s in self.specs.values()]
        return int((sum(raw) + max(raw)) * 4 / 3)

    def _temp(self, spec: RasterSpec, stage: str) -> Path:
        """This run's temporary file ``stage`` of ``spec``; stage "cog" is the finished output."""
        assert self._staging is not None
        if stage == "cog":
            return self._staging / "new" / spec.path.name
        return self._staging / f"{spec.path.name}.{stage}"

    def _failed(self, spec: RasterSpec, exc: BaseException) -> RenderError:
        return _write_failed(spec.path, exc, self.need_bytes(), self._staging)

    def __enter__(self) -> "OutputSet":
        self._scope.enter_context(capped_gdal_cache())
        self._scope.enter_context(libtiff_quiet())
        try:
            _check_directory(self.folder)
            self._lock = outdir.FolderLock(self.folder).acquire()
            outdir.recover(self.folder)
            try:
                self._staging = outdir.new_staging(self.folder)
            except OSError as exc:
                raise self._failed(next(iter(self.specs.values())), exc) from None
            self._open_all()
        except BaseException:
            self._cleanup()
            self._scope.close()
            raise
        return self

    def _open_all(self) -> None:
        for key, spec in self.specs.items():
            try:
                with _gdal_quiet():
                    self._open(key, spec)
            except _WRITE_ERRORS as exc:
                raise self._failed(spec, exc) from None

    def _open(self, key: str, spec: RasterSpec) -> None:
        ds = _open_hidden(self._temp(spec, "stream"), self.grid, spec, self.block_px,
                          **({"photometric": spec.photometric} if spec.photometric else {}),
                          **({"alpha": "YES"} if spec.alpha else {}))
        self._datasets[key] = ds
        if spec.colormap:
            ds.write_colormap(1, dict(spec.colormap))
        for i, d in enumerate(spec.descriptions, start=1):
            ds.set_band_description(i, d)
        if spec.units:
            ds.update_tags(1, units=spec.units)
            ds.units = tuple([spec.units] * spec.count)
        if spec.tags:
            ds.update_tags(**dict(spec.tags))
        self._rows[key] = _BlockRows(self.grid.height, self.grid.width, spec.count, spec.dtype, self.block_px)
        if self._factors:
            ovr_paths = [self._temp(spec, f"ovr{f}") for f in self._factors]
            self._overviews[key] = _Overviews(ovr_paths, self.grid, spec, self.block_px)

    def write(self, key: str, row0: int, values: np.ndarray) -> None:
        """Write rows starting at ``row0`` (full width); ``values`` is (bands, rows, cols) or (rows, cols).

        Strips may come in any order and any height; rows reach the file when
        their row of blocks is complete (or at the end).
        """
        arr = values if values.ndim == 3 else values[None]
        if self.specs[key].coverage is not None:
            arr = masked_rows(self.specs[key], row0, arr)
        for top, rows in self._rows[key].add(row0, arr):
            self._write_rows(key, top, rows)

    def _write_rows(self, key: str, row0: int, rows: np.ndarray) -> None:
        ds = self._datasets[key]
        rows = rows.astype(ds.dtypes[0], copy=False)
        try:
            with _gdal_quiet():
                ds.write(rows, window=Window(0, row0, rows.shape[2], rows.shape[1]))
                if key in self._overviews:
                    self._overviews[key].add(row0, rows)
        except _WRITE_ERRORS as exc:
            raise self._failed(self.specs[key], exc) from None

    def finish(self, key: str) -> None:
        """All rows of ``key`` are written: close it and convert it to a (still hidden) COG now.

        Optional: the outputs not finished by hand are finished when the set commits.
        """
        spec = self.specs[key]
        for row0, rows in self._rows[key].leftovers(spec.nodata if spec.nodata is not None else 0):
            self._write_rows(key, row0, rows)
        stream, vrt, cog = (self._temp(spec, stage) for stage in ("stream", "vrt", "cog"))
        overviews = self._overviews.get(key)
        try:
            with _gdal_quiet():
                self._datasets[key].close()
                if overviews is not None:
                    overviews.close()
                    overviews.check_complete()
                    # the COG driver copies existing overviews (it would otherwise compute them itself, writing
                    # and compressing them in a temporary file of its own first)
                    _with_overviews(stream, vrt, overviews.paths)
                rasterio.shutil.copy(
                    stream if overviews is None else vrt, cog, driver="COG", **cog_compression(spec),
                    OVERVIEWS="NONE" if overviews is None else "FORCE_USE_EXISTING", BLOCKSIZE=self.block_px,
                    BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
                )
        except _WRITE_ERRORS as exc:
            raise self._failed(spec, exc) from None
        for path in [stream, vrt, *(overviews.paths if overviews is not None else ())]:
            path.unlink(missing_ok=True)
        if spec.sidecars is not None:
            try:
                self._sidecars[key] = [Path(p).name for p in spec.sidecars(cog)]
            except _WRITE_ERRORS as exc:
                raise self._failed(spec, exc) from None
        self._finished.add(key)

    def output_names(self) -> list[str]:
        """The file names the set replaces in its folder: every output and the sidecars written beside them."""
        return [name for key, spec in self.specs.items() for name in [spec.path.name, *self._sidecars.get(key, ())]]

    def _commit(self) -> None:
        for key in self.specs:
            if key not in self._finished:
                self.finish(key)
        assert self._staging is not None
        try:
            outdir.commit(self._staging, self.folder, self.output_names())
        except OSError as exc:
            if not outdir.is_committed(self._staging):
                raise self._failed(next(iter(self.specs.values())), exc) from None
            raise RenderError(f"replacing the outputs in '{self.folder}' failed ({exc.strerror or exc}); the next "
                              "geogan run into this directory finishes it") from None

    def _cleanup(self) -> None:
        with _gdal_quiet():
            for closable in [*self._datasets.values(), *self._overviews.values()]:
                try:
                    closable.close()
                except Exception:
                    pass
        if self._staging is not None:
            outdir.discard(self._staging)
            self._staging = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._scope:
            if exc_type is not None:
                self._cleanup()
                return
            try:
                self._commit()
            except BaseException:
                self._cleanup()
                raise
            self._cleanup()
