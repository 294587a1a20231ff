"""Cutting a grid into overlapping tiles: pure integer maths, no CRS needed.

Every tile has the same size ``tile_px`` (tiles at the right and bottom edge
reach past the grid and see real map context there); consecutive tiles start
``stride_px = tile_px - overlap_px`` apart. The part of a tile inside the grid
is its *paste* window; blending weights (``blend.py``) make the overlapping
parts add up to one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterator

from .errors import InputError


MIN_TILE_PX = 16  # the smallest tile TileSpec takes (automatic tiles are 32 px or more)


@dataclass(frozen=True)
class TileSpec:
    """Square tiles of ``tile_px`` pixels, overlapping by ``overlap_px``: whole numbers, checked at
    construction (``tile_px >= MIN_TILE_PX``, ``0 <= overlap_px <= tile_px / 2``; else a one-line
    :class:`InputError`). A model may further need a multiple of its size: :meth:`check_model`."""

    tile_px: int
    overlap_px: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile_px", _whole_px("tile size", self.tile_px, "--tile-size 256"))
        object.__setattr__(self, "overlap_px", _whole_px("overlap", self.overlap_px, "--overlap 32"))
        if self.tile_px < MIN_TILE_PX:
            raise InputError(f"tile size {self.tile_px} px is too small: tiles need {MIN_TILE_PX} px or more (and "
                             "a multiple of the model's size multiple); change --tile-size")
        if self.overlap_px < 0 or self.overlap_px * 2 > self.tile_px:
            raise InputError(f"overlap {self.overlap_px} px must be between 0 and half the tile size "
                             f"({self.tile_px // 2}); change --overlap")

    def check_model(self, multiple_px: int, model_name: str) -> None:
        """Refuse a tile size that is not a multiple of the model's size multiple, naming sizes that fit."""
        if self.tile_px % multiple_px:
            fits = " or ".join(str(px) for px in fitting_tile_px(self.tile_px, multiple_px))
            raise InputError(f"tile size {self.tile_px} px must be a multiple of {multiple_px} px for model "
                             f"'{model_name}'; use --tile-size {fits}")

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


def fitting_tile_px(tile_px: int, multiple_px: int) -> list[int]:
    """The tile sizes nearest ``tile_px`` (one below, one above) that are multiples of ``multiple_px`` and at
    least :data:`MIN_TILE_PX`."""
    smallest = multiple_px * math.ceil(MIN_TILE_PX / multiple_px)
    below = tile_px // multiple_px * multiple_px
    return sorted({max(smallest, below), max(smallest, below + multiple_px)})


def _whole_px(what: str, value: object, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what} {value!r} must be a whole number of pixels, e.g. {example}")
    return int(value)


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
