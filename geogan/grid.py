"""The output grid as a value (CRS + affine + shape) and ground-scale maths.

A ground sample distance (GSD) is given in *ground* metres. A CRS's projected
unit is generally not a ground metre: in EPSG:3857 at 60°N one projected
metre is half a ground metre. :func:`ground_scale` asks PROJ for the local
scale factors, and :func:`grid_from_bbox` uses them so that one output pixel
covers ``gsd_m`` ground metres at the centre of the area.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
from affine import Affine
from pyproj.exceptions import CRSError as _ProjCRSError

from .errors import GridError

LONLAT = "EPSG:4326"
MAX_GSD_M = 10_000.0
MIN_GSD_M = 0.01


@lru_cache(maxsize=64)
def parse_crs(value: object) -> pyproj.CRS:
    """A pyproj CRS from user input, or a one-line :class:`GridError`."""
    if isinstance(value, pyproj.CRS):
        return value
    try:
        return pyproj.CRS.from_user_input(value)
    except (_ProjCRSError, TypeError, ValueError):
        raise GridError(f"unknown CRS '{value}'; give one PROJ understands, e.g. EPSG:3857 or EPSG:32635") from None


@lru_cache(maxsize=64)
def _to_lonlat(crs: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs, LONLAT, always_xy=True)


@lru_cache(maxsize=64)
def _from_lonlat(crs: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(LONLAT, crs, always_xy=True)


def _unit_to_m(crs: pyproj.CRS) -> float:
    return float(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0


def ground_scale(crs: pyproj.CRS, lon: float, lat: float) -> tuple[float, float]:
    """CRS units per ground metre along x and y at (lon, lat).

    For a projected CRS this is PROJ's parallel (x) and meridional (y) scale
    factor divided by the CRS unit in metres: EPSG:3857 at 60°N gives
    (2.0, 2.0), a UTM zone about (0.9996, 0.9996). For a geographic CRS it is
    degrees per ground metre along a parallel and along a meridian.
    """
    kx, ky = ground_scales(parse_crs(crs), np.array([lon], float), np.array([lat], float))
    return float(kx[0]), float(ky[0])


@lru_cache(maxsize=16)
def _proj(crs: pyproj.CRS) -> pyproj.Proj:
    return pyproj.Proj(crs)


def ground_scales(crs: pyproj.CRS, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ground_scale` for arrays of points at once (one PROJ call)."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    if crs.is_geographic:
        geod = crs.get_geod() or pyproj.Geod(ellps="WGS84")
        d = 1e-4
        _, _, dx_m = geod.inv(lon - d / 2, lat, lon + d / 2, lat)
        _, _, dy_m = geod.inv(lon, lat - d / 2, lon, lat + d / 2)
        return d / np.asarray(dx_m), d / np.asarray(dy_m)
    factors = _proj(crs).get_factors(lon, lat)
    unit = _unit_to_m(crs)
    kx, ky = np.asarray(factors.parallel_scale, float), np.asarray(factors.meridional_scale, float)
    bad = ~(np.isfinite(kx) & np.isfinite(ky) & (kx > 0) & (ky > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise GridError(f"{crs.to_string()} has no usable scale at lon {lon[i]:.4f}, lat {lat[i]:.4f}; "
                        "choose a CRS valid for this area")
    return kx / unit, ky / unit


@dataclass(frozen=True)
class Grid:
    """A georeferenced pixel grid: CRS, affine transform and shape (rows, cols).

    A value, checked at construction: a horizontal 2-D CRS (anything :func:`parse_crs` reads; kept as a
    pyproj CRS), a north-up transform without rotation (``a > 0``, ``b = d = 0``, ``e < 0``, all finite:
    :attr:`res_xy` and :attr:`bounds` rely on it) and a shape of at least one whole pixel each way.
    Anything else is a one-line :class:`GridError`.

    ``==`` is exact for the transform and shape and compares CRSs as PROJ does (equivalent definitions,
    e.g. from EPSG and from its WKT, are equal); the hash agrees with it. :meth:`almost_equal` tolerates
    rounding in the transform.
    """

    crs: pyproj.CRS
    transform: Affine
    shape_yx: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", _horizontal_crs(self.crs))
        object.__setattr__(self, "transform", _north_up_transform(self.transform))
        object.__setattr__(self, "shape_yx", _pixel_shape(self.shape_yx))

    @property
    def height(self) -> int:
        return self.shape_yx[0]

    @property
    def width(self) -> int:
        return self.shape_yx[1]

    @property
    def res_xy(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    def xy(self, row: float, col: float) -> tuple[float, float]:
        """CRS coordinates of a (fractional) pixel position."""
        return self.transform @ (col, row)

    def lonlat(self, row: float, col: float) -> tuple[float, float]:
        x, y = self.xy(row, col)
        lon, lat = _to_lonlat(self.crs).transform(x, y)
        return float(lon), float(lat)

    def center_lonlat(self) -> tuple[float, float]:
        return self.lonlat(self.height / 2, self.width / 2)

    def window(self, row0: int, col0: int, height: int, width: int) -> "Grid":
        """The sub-grid starting at (row0, col0); it may reach past this grid."""
        return Grid(self.crs, self.transform @ Affine.translation(col0, row0), (height, width))

    def resized(self, height: int, width: int) -> "Grid":
        """The same bounds divided into ``height`` x ``width`` pixels."""
        scale = Affine.scale(self.width / width, self.height / height)
        return Grid(self.crs, self.transform @ scale, (height, width))

    def gsd_m_at(self, row: float, col: float) -> tuple[float, float]:
        """Ground metres covered by one pixel along x and y at a pixel position."""
        gx, gy = self.gsd_m_at_many(np.array([row], float), np.array([col], float))
        return float(gx[0]), float(gy[0])

    def gsd_m_at_many(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`gsd_m_at` for arrays of pixel positions at once."""
        x, y = self.transform * (np.asarray(cols, float), np.asarray(rows, float))
        lon, lat = _to_lonlat(self.crs).transform(x, y)
        kx, ky = ground_scales(self.crs, lon, lat)
        rx, ry = self.res_xy
        return rx / kx, ry / ky

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (self.shape_yx == other.shape_yx and tuple(self.transform) == tuple(other.transform)
                and _same_crs(self.crs, other.crs))

    def __hash__(self) -> int:
        # the CRS stays out: equivalent CRSs (equal under ==) may differ in WKT
        return hash((self.shape_yx, tuple(self.transform)))

    def almost_equal(self, other: "Grid", tol: float = 1e-9) -> bool:
        """Same shape and CRS, and every transform coefficient within ``tol`` CRS units of the other's."""
        return (isinstance(other, Grid) and self.shape_yx == other.shape_yx
                and all(math.isclose(p, q, rel_tol=0.0, abs_tol=tol) for p, q in zip(self.transform, other.transform))
                and _same_crs(self.crs, other.crs))


def _same_crs(a: pyproj.CRS, b: pyproj.CRS) -> bool:
    return a is b or a == b


def _horizontal_crs(value: object) -> pyproj.CRS:
    """The grid's CRS as a pyproj CRS: geographic or projected (a compound one by its horizontal part)."""
    try:
        crs = parse_crs(value)
    except TypeError:  # an unhashable value never reaches PROJ
        raise GridError(f"unknown CRS {value!r}; give one PROJ understands, e.g. EPSG:3857 or EPSG:32635") from None
    if not (crs.is_geographic or crs.is_projected):
        raise GridError(f"{crs.to_string()} is a {crs.type_name}, not a horizontal 2-D CRS; give a projected or "
                        "geographic one, e.g. EPSG:3857 or EPSG:32635")
    return crs


def _north_up_transform(transform: object) -> Affine:
    if not isinstance(transform, Affine):
        raise GridError(f"grid transform {transform!r} is not an affine.Affine; build one, e.g. "
                        "Affine(gsd, 0, left, 0, -gsd, top)")
    a, b, _, d, e, _ = transform[:6]
    if not all(math.isfinite(v) for v in transform[:6]):
        raise GridError(f"grid transform {tuple(transform[:6])} holds a non-finite number; give finite coefficients")
    if not (a > 0 and e < 0 and b == 0 and d == 0):
        raise GridError(f"grid transform {tuple(transform[:6])} is not north-up without rotation "
                        "(needs a > 0, b = d = 0, e < 0); warp the raster north-up first (gdalwarp)")
    return transform


def _pixel_shape(shape_yx: object) -> tuple[int, int]:
    try:
        rows, cols = shape_yx  # type: ignore[misc]
    except (TypeError, ValueError):
        raise GridError(f"grid shape {shape_yx!r} must be two whole numbers (rows, cols)") from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (rows, cols)):
        raise GridError(f"grid shape {shape_yx!r} must be whole numbers of pixels (rows, cols), e.g. (512, 512)")
    if rows < 1 or cols < 1:
        raise GridError(f"grid shape {tuple(shape_yx)} is empty; a grid needs at least 1 row and 1 column")
    return int(rows), int(cols)


def bbox_to_crs(bbox: tuple[float, float, float, float], bbox_crs: object,
                crs: object) -> tuple[float, float, float, float]:
    """Bounds of ``bbox`` (xmin, ymin, xmax, ymax in ``bbox_crs``) in ``crs`` (both as :func:`user_crs` takes them)."""
    src, dst = user_crs(bbox_crs, "--bbox-crs"), user_crs(crs, "--crs")
    validate_bbox(bbox, src)
    check_area_of_use(bbox, src, dst)
    if src == dst:
        return tuple(float(v) for v in bbox)  # type: ignore[return-value]
    t = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    out = t.transform_bounds(*bbox, densify_pts=21)
    if not all(math.isfinite(v) for v in out):
        raise GridError(f"bbox {bbox} cannot be transformed to {dst.to_string()}; choose a CRS valid for this area")
    return tuple(float(v) for v in out)  # type: ignore[return-value]


def user_crs(value: object, option: str = "--crs") -> pyproj.CRS:
    """The horizontal 2-D CRS a user gave for ``option`` (``--crs`` or ``--bbox-crs``), or a one-line GridError.

    A geographic or projected CRS is taken as it is; a compound CRS (e.g. EPSG:7415, RD New + NAP height)
    by its horizontal part and a 3-D geographic or projected CRS (e.g. EPSG:4979) in its 2-D form, since
    rasters and bboxes only use the horizontal axes. Geocentric (EPSG:4978), vertical (EPSG:5703),
    engineering and other CRSs have no horizontal axes to place a raster on and are refused.
    """
    crs = parse_crs(value)
    if crs.is_compound:
        horizontal = [c for c in crs.sub_crs_list if c.is_geographic or c.is_projected]
        crs = horizontal[0] if horizontal else crs
    if crs.is_geocentric:
        what = "a geocentric CRS (X, Y, Z from the Earth's centre)"
    elif crs.is_vertical:
        what = "a vertical CRS (heights only)"
    elif not (crs.is_geographic or crs.is_projected):
        what = f"a {crs.type_name}"
    else:
        return crs.to_2d() if len(crs.axis_info) > 2 else crs
    example = "EPSG:4326 (lon,lat degrees)" if option == "--bbox-crs" else "EPSG:3857 or a UTM zone such as EPSG:32632"
    raise GridError(f"{option} {value if isinstance(value, str) else crs.to_string()} is {what}, not a horizontal "
                    f"2-D CRS; give a projected or geographic one, e.g. {option} {example}")


def lon_range_within(lon0: float, lon1: float, west: float, east: float) -> bool:
    """Whether longitudes ``lon0`` eastwards to ``lon1`` lie within ``west`` eastwards to ``east`` (degrees).

    Either range may cross the antimeridian (``lon0 > lon1``, ``west > east``: an area of use such as
    Alaska's 172.42..-129.99); a ``west..east`` of 360 degrees or more holds every longitude.
    """
    if east - west >= 360.0:
        return True
    span = (east - west) % 360.0
    start = (lon0 - west) % 360.0
    length = (lon1 - lon0) % 360.0
    return start + length <= span + 1e-9


def validate_bbox(bbox: tuple[float, float, float, float], crs: pyproj.CRS) -> None:
    if len(bbox) != 4:
        raise GridError(f"bbox needs 4 numbers xmin,ymin,xmax,ymax; got {len(bbox)}")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise GridError(f"bbox {bbox} holds a non-finite number; give four finite numbers")
    if crs.is_geographic and xmin > 0 > xmax and xmin - xmax > 180 and xmin <= 180 and xmax >= -180:
        raise GridError(f"bbox {bbox} crosses the antimeridian (xmin > xmax); split it into two renders "
                        "or use a projected CRS bbox")
    if xmin >= xmax or ymin >= ymax:
        what = "zero-area" if (xmin == xmax or ymin == ymax) else "inverted"
        raise GridError(f"bbox {bbox} is {what}; give xmin,ymin,xmax,ymax with xmin < xmax and ymin < ymax")
    if crs.is_geographic and (ymin < -90 or ymax > 90 or xmin < -180 or xmax > 180):
        raise GridError(f"bbox {bbox} is outside -180..180 / -90..90 degrees; check the order lon,lat and --bbox-crs")


def check_area_of_use(bbox: tuple[float, float, float, float], bbox_crs: pyproj.CRS, crs: pyproj.CRS,
                      lon_margin_deg: float = 3.0) -> None:
    """Refuse a bbox that lies outside where ``crs`` is defined (e.g. |lat| > 85° in EPSG:3857)."""
    aou = crs.area_of_use
    if aou is None:
        return
    if bbox_crs.is_geographic:
        lon0, lat0, lon1, lat1 = bbox
    else:
        lon0, lat0, lon1, lat1 = _to_lonlat(bbox_crs).transform_bounds(*bbox, densify_pts=21)
    lat_tol = 0.01
    if lat0 < aou.south - lat_tol or lat1 > aou.north + lat_tol:
        raise GridError(f"bbox latitudes {lat0:.3f}..{lat1:.3f} are outside where {crs.to_string()} is defined "
                        f"({aou.south:.2f}..{aou.north:.2f}); choose another --crs (e.g. a polar stereographic one)")
    if aou.west > -180 or aou.east < 180:
        # an area of use across 180° has west > east (EPSG:3338 Alaska: 172.42..-129.99); so may the bbox
        # (a projected bbox across 180°, from transform_bounds)
        west = aou.west - lon_margin_deg
        east = west + (aou.east - aou.west) % 360.0 + 2 * lon_margin_deg
        if not lon_range_within(lon0, lon1, west, east):
            raise GridError(f"bbox longitudes {lon0:.3f}..{lon1:.3f} are far outside {crs.to_string()}'s area "
                            f"({aou.west:.2f}..{aou.east:.2f}); choose a CRS for this area (e.g. its UTM zone)")


def grid_from_bbox(bbox: tuple[float, float, float, float], bbox_crs: object, crs: object,
                   gsd_m: float | None = None, *, res: float | None = None, tap: bool = False) -> Grid:
    """The grid of ``bbox`` in ``crs``, with pixels of ``gsd_m`` ground metres or ``res`` CRS units.

    ``gsd_m`` alone (the default behaviour): the pixel count is the bbox extent divided by the projected
    pixel size at the bbox centre (GSD times the local scale factor), rounded to whole pixels; the pixel
    size is then adjusted (by less than half a pixel over the extent) so the grid's bounds equal the bbox
    exactly (pixels are then a little off square in CRS units, e.g. 0.5 x 0.499833 in EPSG:3067).

    ``res`` (exclusive with ``gsd_m``): square pixels of exactly ``res`` CRS units, from the bbox's top-left
    corner, the extent rounded to whole pixels (``gdalwarp -tr``). ``tap``: the bounds are grown outwards to
    multiples of the pixel size (``gdalwarp -tap``), so grids of one pixel size line up pixel for pixel;
    with ``gsd_m`` the pixel size is the one ``gsd_m`` gives in CRS units at the centre, exactly.
    """
    if res is not None and gsd_m is not None:
        raise GridError(RES_AND_GSD)
    dst = user_crs(crs, "--crs")
    bounds = bbox_to_crs(bbox, bbox_crs, dst)
    xmin, ymin, xmax, ymax = bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    lon, lat = _to_lonlat(dst).transform(cx, cy)
    if res is not None:
        rx = ry = validate_res(res, dst, lon, lat)
    else:
        kx, ky = ground_scale(dst, lon, lat)
        gsd_m = validate_gsd(gsd_m)
        if not tap:
            width = max(1, int(round((xmax - xmin) / (gsd_m * kx))))
            height = max(1, int(round((ymax - ymin) / (gsd_m * ky))))
            transform = Affine((xmax - xmin) / width, 0.0, xmin, 0.0, -(ymax - ymin) / height, ymax)
            return Grid(dst, transform, (height, width))
        rx, ry = gsd_m * kx, gsd_m * ky
    return pixel_grid(dst, bounds, rx, ry, tap)


RES_AND_GSD = ("--res and --gsd both set the pixel size (--res in output-CRS units, --gsd in ground metres); "
               "give one of them")
_SNAP_EPS = 1e-9  # bounds within this many pixels of a multiple of the pixel size count as on it


def pixel_grid(crs: pyproj.CRS, bounds: tuple[float, float, float, float], rx: float, ry: float,
               tap: bool = False) -> Grid:
    """The grid of pixels ``rx`` x ``ry`` (CRS units) over ``bounds``: from its top-left corner, the extent
    rounded to whole pixels; with ``tap`` the bounds grown outwards to multiples of the pixel size."""
    xmin, ymin, xmax, ymax = bounds
    if tap:
        xmin, xmax = math.floor(xmin / rx + _SNAP_EPS) * rx, math.ceil(xmax / rx - _SNAP_EPS) * rx
        ymin, ymax = math.floor(ymin / ry + _SNAP_EPS) * ry, math.ceil(ymax / ry - _SNAP_EPS) * ry
    width = max(1, int(round((xmax - xmin) / rx)))
    height = max(1, int(round((ymax - ymin) / ry)))
    return Grid(crs, Affine(rx, 0.0, xmin, 0.0, -ry, ymax), (height, width))


def validate_res(res: object, crs: pyproj.CRS, lon: float, lat: float) -> float:
    """``res`` (CRS units per pixel) as a float, or a one-line GridError; its ground size must be sane."""
    if isinstance(res, bool):
        res = None
    try:
        value = float(res)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GridError(f"--res '{res}' is not a number; give the pixel size in output-CRS units, e.g. --res 0.5"
                        ) from None
    if not math.isfinite(value) or value <= 0:
        raise GridError(f"--res {res} must be a positive pixel size in output-CRS units, e.g. --res 0.5")
    kx, ky = ground_scale(crs, lon, lat)
    ground_m = value / max(kx, ky), value / min(kx, ky)
    if ground_m[0] < MIN_GSD_M or ground_m[1] > MAX_GSD_M:
        unit = crs.axis_info[0].unit_name if crs.axis_info else "units"
        raise GridError(f"--res {value:g} {unit} in {crs.to_string()} is {ground_m[0]:.3g} ground m per pixel here, "
                        f"absurd for aerial imagery; give a pixel size of {MIN_GSD_M}..{MAX_GSD_M:.0f} ground m in "
                        f"{unit} (e.g. --res {0.5 * kx:.3g}) or use --gsd in metres")
    return value


def validate_gsd(gsd_m: object) -> float:
    try:
        value = float(gsd_m)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GridError(f"GSD '{gsd_m}' is not a number; give ground metres per pixel, e.g. --gsd 0.5") from None
    if not math.isfinite(value) or value <= 0:
        raise GridError(f"GSD {gsd_m} must be a positive number of ground metres per pixel, e.g. --gsd 0.5")
    if value < MIN_GSD_M or value > MAX_GSD_M:
        raise GridError(f"GSD {value} m is absurd for aerial imagery; use {MIN_GSD_M}..{MAX_GSD_M:.0f} m per pixel")
    return value
