"""Streaming GeoTIFF outputs: written window by window to a hidden temporary
file, converted to a Cloud-Optimized GeoTIFF (with overviews) by GDAL's COG
driver, and renamed into place only when everything succeeded. On any error
or cancel, :class:`OutputSet` removes every temporary file, so no
half-written output is ever left looking complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError
from rasterio.windows import Window

from .errors import OutputError, RenderError
from .grid import Grid


@dataclass(frozen=True)
class RasterSpec:
    """What one output raster holds."""

    path: Path
    count: int
    dtype: str
    nodata: float | None = None
    overview_resampling: str = "average"
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None
    descriptions: tuple[str, ...] = ()
    units: str | None = None
    photometric: str | None = None


_WRITE_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)


def _write_failed(path: Path, exc: BaseException) -> RenderError:
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return RenderError(f"writing '{path}' failed ({first}); check free disk space and write permission, then rerun")


def _partial(path: Path, stage: str) -> Path:
    return path.with_name(f".{path.name}.{stage}.partial")


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse before any work: unwritable directory or existing outputs without overwrite."""
    for path in paths:
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output directory '{parent}' ({exc.strerror}); "
                              "choose a writable --out") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory '{parent}' is not writable; choose a writable --out")
        if path.exists() and not overwrite:
            raise OutputError(f"'{path}' already exists; pass --overwrite to replace it or choose another --out")
        if path.exists() and path.is_dir():
            raise OutputError(f"'{path}' is a directory; choose another output name")


class OutputSet:
    """Several rasters on one grid, written together and committed together.

    Use as a context manager: leaving the block normally converts all outputs
    to COGs and renames them into place; leaving it with an exception deletes
    every temporary file.
    """

    def __init__(self, grid: Grid, specs: Mapping[str, RasterSpec], block_px: int = 512) -> None:
        self.grid = grid
        self.specs = dict(specs)
        self.block_px = block_px
        self._datasets: dict[str, rasterio.io.DatasetWriter] = {}
        self._temps: list[Path] = []

    def __enter__(self) -> "OutputSet":
        try:
            for key, spec in self.specs.items():
                tmp = _partial(spec.path, "stream")
                self._temps.append(tmp)
                profile = dict(
                    driver="GTiff", width=self.grid.width, height=self.grid.height, count=spec.count,
                    dtype=spec.dtype, crs=self.grid.crs.to_wkt(), transform=self.grid.transform,
                    nodata=spec.nodata, tiled=True, blockxsize=self.block_px, blockysize=self.block_px,
                    compress="zstd", BIGTIFF="IF_SAFER",
                )
                if spec.photometric:
                    profile["photometric"] = spec.photometric
                ds = rasterio.open(tmp, "w", **profile)
                self._datasets[key] = ds
                if spec.colormap:
                    ds.write_colormap(1, dict(spec.colormap))
                for i, d in enumerate(spec.descriptions, start=1):
                    ds.set_band_description(i, d)
                if spec.units:
                    ds.update_tags(1, units=spec.units)
                    ds.units = tuple([spec.units] * spec.count)
        except Exception:
            self._cleanup()
            raise
        return self

    def write(self, key: str, row0: int, values: np.ndarray) -> None:
        """Write rows starting at ``row0`` (full width); ``values`` is (bands, rows, cols) or (rows, cols)."""
        ds = self._datasets[key]
        arr = values if values.ndim == 3 else values[None]
        window = Window(0, row0, arr.shape[2], arr.shape[1])
        try:
            ds.write(arr.astype(ds.dtypes[0], copy=False), window=window)
        except _WRITE_ERRORS as exc:
            raise _write_failed(self.specs[key].path, exc) from None

    def _commit(self) -> None:
        for key, ds in self._datasets.items():
            try:
                ds.close()
            except _WRITE_ERRORS as exc:
                raise _write_failed(self.specs[key].path, exc) from None
        finals = []
        for key, spec in self.specs.items():
            src = _partial(spec.path, "stream")
            cog = _partial(spec.path, "cog")
            self._temps.append(cog)
            try:
                rasterio.shutil.copy(
                    src, cog, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES" if spec.dtype != "uint8" else "NO",
                    OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=spec.overview_resampling.upper(), BLOCKSIZE=self.block_px,
                    BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
                )
            except _WRITE_ERRORS as exc:
                raise _write_failed(spec.path, exc) from None
            src.unlink(missing_ok=True)
            finals.append((cog, spec.path))
        for cog, final in finals:
            os.replace(cog, final)

    def _cleanup(self) -> None:
        for ds in self._datasets.values():
            try:
                ds.close()
            except Exception:
                pass
        for tmp in self._temps:
            for p in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + ".ovr")):
                p.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            return
        try:
            self._commit()
        except BaseException:
            self._cleanup()
            raise
        self._cleanup()
