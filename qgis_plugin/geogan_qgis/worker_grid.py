"""Square pixels for the plugin's renders (run by ``worker.py`` in geogan's Python, never by QGIS).

geogan's grid covers the requested box exactly, so its pixels are a little off
square (0.49987 x 0.50004 m). GIS rasters have square pixels: here the box is
grown around its centre to whole pixels of one size in CRS units, the ground
pixel size at the centre rounded to 4 significant digits (0.5 m in UTM 32N:
0.4998 m), and geogan is given the ground GSD that makes exactly that size.

Square in CRS units is only possible where the CRS scales x and y alike
(conformal: Web Mercator, UTM and other transverse Mercator or Lambert
conformal grids). Elsewhere (lon/lat degrees, equal-area projections) geogan's
pixels stay square on the ground, and the plugin says so.
"""

from __future__ import annotations

import math
from pathlib import Path

SIGNIFICANT_DIGITS = 4
CONFORMAL_TOLERANCE = 1e-6  # |kx / ky - 1| below this: x and y scale alike


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.49982 -> 0.4998, 1.00004 -> 1.0)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def data_bbox_lonlat(paths: list[str], class_field: str | None) -> tuple[float, float, float, float]:
    """The extent geogan itself would use for ``paths``: an OSM file's <bounds>, else the data's."""
    from geogan.sources import data_bounds_lonlat, osm_file_bounds, read_sources

    if len(paths) == 1:
        bounds = osm_file_bounds(Path(paths[0])) if Path(paths[0]).is_file() else None
        if bounds is not None:
            return tuple(bounds)
    return tuple(data_bounds_lonlat(read_sources([Path(p) for p in paths], None, class_field)))


def square_grid(bbox, bbox_crs: str, crs: str, gsd_m: float) -> dict:
    """The box (in ``crs``) and ground GSD that make square pixels, or why there are none.

    Returns ``{"bbox": [...], "bbox_crs": crs, "gsd_m": g, "pixel": size}`` for a conformal CRS,
    else ``{"not_square": "one line"}``.
    """
    import pyproj
    from geogan.grid import bbox_to_crs, ground_scale, user_crs

    dst = user_crs(crs, "--crs")
    xmin, ymin, xmax, ymax = bbox_to_crs(tuple(float(v) for v in bbox), bbox_crs, dst)
    cx, cy = (xmin + xmax) / 2.0, (ymin + ymax) / 2.0
    lon, lat = pyproj.Transformer.from_crs(dst, "EPSG:4326", always_xy=True).transform(cx, cy)
    kx, ky = ground_scale(dst, lon, lat)
    if abs(kx / ky - 1.0) > CONFORMAL_TOLERANCE:
        return {"not_square": f"{crs} scales x and y differently here, so pixels are square on the ground "
                              f"({gsd_m:g} m) but not in its units; choose a conformal projected CRS (e.g. the "
                              "UTM zone) for square pixels"}
    pixel = round_significant(float(gsd_m) * kx)
    width = max(1, round((xmax - xmin) / pixel))
    height = max(1, round((ymax - ymin) / pixel))
    box = [cx - width * pixel / 2.0, cy - height * pixel / 2.0, cx + width * pixel / 2.0, cy + height * pixel / 2.0]
    return {"bbox": box, "bbox_crs": crs, "gsd_m": pixel / kx, "pixel": pixel}


def squared(kwargs: dict, gsd_m: float, log) -> dict:
    """``kwargs`` for geogan.render/rasterize with a box and GSD giving square pixels (see the module doc).

    ``kwargs`` has ``crs`` and ``osm``; ``bbox``/``bbox_crs`` when the user gave an extent. With ``tap``
    true the rounded size goes to geogan as ``res`` (square, snapped to its multiples) instead.
    """
    kwargs = dict(kwargs)
    if kwargs.get("bbox") is None:
        kwargs["bbox"] = list(data_bbox_lonlat(list(kwargs["osm"]), kwargs.get("class_field")))
        kwargs["bbox_crs"] = "EPSG:4326"
    grid = square_grid(kwargs["bbox"], kwargs.get("bbox_crs", "EPSG:4326"), kwargs["crs"], gsd_m)
    if "not_square" in grid:
        log(grid["not_square"])
        kwargs["gsd_m"] = gsd_m
        return kwargs
    log(f"pixels {grid['pixel']:g} x {grid['pixel']:g} {kwargs['crs']} units (ground pixel size "
        f"{gsd_m:g} m at the centre, rounded to {SIGNIFICANT_DIGITS} digits)")
    if kwargs.get("tap"):  # snapped to multiples of that size: geogan grows the box itself
        kwargs.pop("gsd_m", None)
        kwargs["res"] = grid["pixel"]
        return kwargs
    kwargs.update(bbox=grid["bbox"], bbox_crs=grid["bbox_crs"], gsd_m=grid["gsd_m"])
    return kwargs
