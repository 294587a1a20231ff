"""XYZ tile maths for Web Mercator (EPSG:3857), 256 px tiles: pure functions, no I/O.

The tile grid of OpenStreetMap, Google and QGIS's "XYZ Tiles": zoom ``z`` splits the square
-20037508.34..20037508.34 m (EPSG:3857) into 2**z x 2**z tiles, x from the west, y from the north.
A tile's pixel is :func:`resolution_m` EPSG:3857 metres wide, which on the ground is that times the cosine
of the latitude (:func:`ground_resolution_m`, the spherical Web Mercator scale).

:func:`parse_tile_path` turns a request path into a :class:`TileId` or a one-line :class:`TileRequestError`
(HTTP 400 for what is malformed); :func:`native_zoom_range` says at which zooms a model of a given GSD
renders tiles itself (within a factor of its GSD).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

TILE_PX = 256
ORIGIN_M = 20037508.342789244  # half the EPSG:3857 world width: pi * 6378137 m
MAX_LAT = 85.0511287798066  # the latitude where the Web Mercator square ends
MAX_ZOOM = 30  # the deepest zoom served (2**30 tiles a side; about 4 cm pixels at the equator)

LonLatBox = tuple[float, float, float, float]  # (west, south, east, north) in degrees


class TileRequestError(ValueError):
    """A tile request that names no tile (HTTP ``status``, a one-line ``message``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, order=True)
class TileId:
    """One XYZ tile: zoom ``z``, column ``x`` (from the west) and row ``y`` (from the north)."""

    z: int
    x: int
    y: int

    def __post_init__(self) -> None:
        check_tile(self.z, self.x, self.y)

    def children(self) -> tuple["TileId", "TileId", "TileId", "TileId"]:
        """The four tiles of zoom ``z + 1`` that cover this one: NW, NE, SW, SE."""
        x, y, z = 2 * self.x, 2 * self.y, self.z + 1
        return TileId(z, x, y), TileId(z, x + 1, y), TileId(z, x, y + 1), TileId(z, x + 1, y + 1)

    def __str__(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"


def check_tile(z: int, x: int, y: int) -> None:
    """Refuse a zoom outside 0..MAX_ZOOM or a column/row outside 0..2**z - 1 (TileRequestError, 400)."""
    if not 0 <= z <= MAX_ZOOM:
        raise TileRequestError(f"zoom {z} does not exist; XYZ zooms are 0..{MAX_ZOOM}")
    n = 1 << z
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < n:
            raise TileRequestError(f"tile {name} {value} does not exist at zoom {z}; it must be 0..{n - 1}")


_TILE_PATH = re.compile(r"^/(\d{1,3})/(\d{1,10})/(\d{1,10})\.png$")


def parse_tile_path(path: str) -> TileId:
    """``/z/x/y.png`` as a :class:`TileId`; anything else a TileRequestError (400) saying the form."""
    m = _TILE_PATH.match(path)
    if m is None:
        shown = path if len(path) <= 60 else path[:57] + "..."
        raise TileRequestError(f"'{shown}' is not a tile path; ask for /{{z}}/{{x}}/{{y}}.png with whole "
                               "numbers, e.g. /17/74812/37922.png")
    return TileId(*(int(g) for g in m.groups()))


def resolution_m(z: int) -> float:
    """EPSG:3857 metres per pixel of a zoom-``z`` tile (156543.03 m at zoom 0)."""
    return 2 * ORIGIN_M / TILE_PX / (1 << z)


def ground_resolution_m(z: int, lat_deg: float) -> float:
    """Ground metres per pixel of a zoom-``z`` tile at latitude ``lat_deg`` (Web Mercator's scale is
    1 / cos(latitude) on its sphere)."""
    return resolution_m(z) * math.cos(math.radians(lat_deg))


def tile_bounds_m(tile: TileId) -> tuple[float, float, float, float]:
    """The tile's (xmin, ymin, xmax, ymax) in EPSG:3857 metres."""
    size = 2 * ORIGIN_M / (1 << tile.z)
    return (-ORIGIN_M + tile.x * size, ORIGIN_M - (tile.y + 1) * size,
            -ORIGIN_M + (tile.x + 1) * size, ORIGIN_M - tile.y * size)


def _lat_of_row(z: int, row: float) -> float:
    """Latitude of the (fractional) tile row edge ``row`` at zoom ``z``."""
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / (1 << z)))))


def tile_bounds_lonlat(tile: TileId) -> LonLatBox:
    """The tile's (west, south, east, north) in degrees."""
    n = 1 << tile.z
    return (tile.x / n * 360 - 180, _lat_of_row(tile.z, tile.y + 1), (tile.x + 1) / n * 360 - 180,
            _lat_of_row(tile.z, tile.y))


def tile_centre_lat(tile: TileId) -> float:
    """Latitude of the tile's centre (in Web Mercator, the middle of its rows)."""
    return _lat_of_row(tile.z, tile.y + 0.5)


def tile_of_lonlat(lon: float, lat: float, z: int) -> TileId:
    """The zoom-``z`` tile holding (lon, lat); latitudes beyond +-85.05 deg are clamped to the edge rows."""
    n = 1 << z
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return TileId(z, min(max(x, 0), n - 1), min(max(y, 0), n - 1))


def tiles_in_box(box: LonLatBox, z: int) -> list[TileId]:
    """Every zoom-``z`` tile that meets ``box`` (west, south, east, north degrees), row by row."""
    west, south, east, north = box
    nw, se = tile_of_lonlat(west, north, z), tile_of_lonlat(east, south, z)
    return [TileId(z, x, y) for y in range(nw.y, se.y + 1) for x in range(nw.x, se.x + 1)]


def boxes_meet(a: LonLatBox, b: LonLatBox) -> bool:
    """Whether two (west, south, east, north) boxes share more than an edge."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def native_zoom_range(gsd_m: float, lat_deg: float, finest: float = 0.5, coarsest: float = 2.0) -> tuple[int, int]:
    """The zooms (lowest, highest) whose ground pixel at ``lat_deg`` is ``finest``..``coarsest`` times
    ``gsd_m``: where a model trained at ``gsd_m`` renders tiles itself.

    The window spans a factor of four, so it always holds two zooms (three where a bound falls exactly on
    a zoom): e.g. 0.5 m at 60.4 deg N gives zooms 17 (0.59 m) and 18 (0.30 m). ValueError when no zoom of
    0..MAX_ZOOM fits (a GSD far finer or coarser than any XYZ zoom).
    """
    if not (gsd_m > 0 and 0 < finest < coarsest):
        raise ValueError("the GSD must be positive and the window finest < coarsest")
    fits = [z for z in range(MAX_ZOOM + 1)
            if finest - 1e-9 <= ground_resolution_m(z, lat_deg) / gsd_m <= coarsest + 1e-9]
    if not fits:
        raise ValueError(f"no XYZ zoom has ground pixels of {finest:g}..{coarsest:g} x {gsd_m:g} m at latitude "
                         f"{lat_deg:.2f}")
    return fits[0], fits[-1]

