"""Cutting a grid into overlapping tiles: pure integer maths, no CRS needed.

Every tile has the same size ``tile_px`` (tiles at the right and bottom edge
reach past the grid and see real map context there); consecutive tiles start
``stride_px = tile_px - overlap_px`` apart. The part of a tile inside the grid
is its *paste* window; blending weights (``blend.py``) make the overlapping
parts add up to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from .errors import InputError


@dataclass(frozen=True)
class TileSpec:
    tile_px: int
    overlap_px: int

    def __post_init__(self) -> None:
        if int(self.tile_px) != self.tile_px or self.tile_px < 16:
            raise InputError(f"tile size {self.tile_px} px is too small; use --tile-size 64 or more")
        if self.overlap_px < 0 or self.overlap_px * 2 > self.tile_px:
            raise InputError(f"overlap {self.overlap_px} px must be between 0 and half the tile size "
                             f"({self.tile_px // 2}); change --overlap")

    @property
    def stride_px(self) -> int:
        return self.tile_px - self.overlap_px

    def count(self, length_px: int) -> int:
        """Tiles needed along one axis of ``length_px`` pixels."""
        if length_px <= self.tile_px:
            return 1
        return 1 + math.ceil((length_px - self.tile_px) / self.stride_px)

    def starts(self, length_px: int) -> list[int]:
        return [i * self.stride_px for i in range(self.count(length_px))]


@dataclass(frozen=True)
class Tile:
    """One tile: its index and its top-left pixel in the grid."""

    index_rc: tuple[int, int]
    row0: int
    col0: int
    size_px: int

    def paste_shape(self, shape_yx: tuple[int, int]) -> tuple[int, int]:
        """Rows and columns of this tile that fall inside a grid of ``shape_yx``."""
        return (min(self.size_px, shape_yx[0] - self.row0), min(self.size_px, shape_yx[1] - self.col0))


def tile_rows(shape_yx: tuple[int, int], spec: TileSpec) -> list[list[Tile]]:
    """The tiles covering a grid, grouped by tile row, top to bottom."""
    rows = []
    for r, row0 in enumerate(spec.starts(shape_yx[0])):
        rows.append([Tile((r, c), row0, col0, spec.tile_px) for c, col0 in enumerate(spec.starts(shape_yx[1]))])
    return rows


def iter_tiles(shape_yx: tuple[int, int], spec: TileSpec) -> Iterator[Tile]:
    for row in tile_rows(shape_yx, spec):
        yield from row
