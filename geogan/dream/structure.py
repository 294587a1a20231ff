"""Town structure of a class map, in numbers that tell a street network with separate houses from blobs:
building sizes, how much of the road network is one piece, block sizes and the largest building
(:func:`structure_stats`), and how far a dreamed town is from real ones (:func:`compare_structure`).

Everything is measured on rasterized class maps, so real OSM data and dreamed towns are treated alike:
a building is an 8-connected patch of the building class (houses that touch are one building, as a
slab would be), the road network is the road class's 8-connected pieces, and a block is a 4-connected
patch of everything that is not road, not touching the map's border (those are cut) and at least
:data:`MIN_BLOCK_M2` (smaller patches are the slivers inside junctions and between carriageways).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..streets import label_components

BUILDING = 1
ROAD = 2
MIN_BLOCK_M2 = 1000.0
ONE_HA_M2 = 10_000.0


def component_sizes_px(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the 8-connected components of a boolean mask."""
    labels, n = label_components(mask)
    return np.bincount(labels.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, np.int64)


def block_areas_px(not_road: np.ndarray, min_px: float) -> np.ndarray:
    """Pixel areas of the 4-connected patches of ``not_road`` that do not touch the border, >= ``min_px``."""
    import rasterio.features
    import shapely.geometry

    h, w = not_road.shape
    out = []
    m = np.ascontiguousarray(not_road, dtype=np.uint8)
    for geom, _ in rasterio.features.shapes(m, mask=not_road, connectivity=4):
        poly = shapely.geometry.shape(geom)
        x0, y0, x1, y1 = poly.bounds
        if x0 > 0 and y0 > 0 and x1 < w and y1 < h and poly.area >= min_px:
            out.append(poly.area)
    return np.asarray(out, dtype=np.float64)


def structure_stats(class_map: np.ndarray, gsd_m: float) -> dict:
    """Building areas, block areas (m², sorted), road pixels and those in the largest network, of one map."""
    px_m2 = float(gsd_m) ** 2
    buildings = np.sort(component_sizes_px(class_map == BUILDING)) * px_m2
    roads = component_sizes_px(class_map == ROAD)
    blocks = np.sort(block_areas_px(class_map != ROAD, MIN_BLOCK_M2 / px_m2)) * px_m2
    return {"building_areas_m2": buildings, "block_areas_m2": blocks, "road_px": int(roads.sum()),
            "road_largest_px": int(roads.max()) if len(roads) else 0, "area_m2": class_map.size * px_m2,
            "building_px": int((class_map == BUILDING).sum()), "pixels": int(class_map.size)}


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical CDFs (0..1)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    if not len(a) or not len(b):
        return 1.0
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b)).max())


def pooled(stats: Sequence[dict]) -> dict:
    """Several maps' :func:`structure_stats` as one sample: distributions joined, counts summed, the
    largest building per map kept."""
    return {"building_areas_m2": np.sort(np.concatenate([s["building_areas_m2"] for s in stats])),
            "block_areas_m2": np.sort(np.concatenate([s["block_areas_m2"] for s in stats])),
            "road_share_in_largest": sum(s["road_largest_px"] for s in stats) / max(1, sum(s["road_px"] for s in stats)),
            "largest_building_m2": [float(s["building_areas_m2"].max()) if len(s["building_areas_m2"]) else 0.0
                                    for s in stats],
            "building_share": sum(s["building_px"] for s in stats) / max(1, sum(s["pixels"] for s in stats)),
            "road_share": sum(s["road_px"] for s in stats) / max(1, sum(s["pixels"] for s in stats)),
            "area_ha": sum(s["area_m2"] for s in stats) / ONE_HA_M2}


def summary(p: dict) -> dict:
    """Plain numbers of a :func:`pooled` sample."""
    def q(x):
        return {k: round(float(np.percentile(x, v)), 1) for k, v in (("p10", 10), ("p25", 25), ("median", 50),
                                                                       ("p75", 75), ("p90", 90))} if len(x) else {}
    return {"buildings": len(p["building_areas_m2"]), "building_m2": q(p["building_areas_m2"]),
            "buildings_per_ha": round(len(p["building_areas_m2"]) / p["area_ha"], 2),
            "blocks": len(p["block_areas_m2"]), "blocks_per_km2": round(100.0 * len(p["block_areas_m2"]) / p["area_ha"], 2),
            "block_m2": q(p["block_areas_m2"]),
            "road_share_in_largest": round(p["road_share_in_largest"], 4),
            "largest_building_m2": round(max(p["largest_building_m2"], default=0.0), 1),
            "buildings_over_1ha": int((p["building_areas_m2"] > ONE_HA_M2).sum()),
            "building_share": round(p["building_share"], 4), "road_share": round(p["road_share"], 4),
            "area_ha": round(p["area_ha"], 1)}


def _rel(dreamed: float, real: float) -> float:
    return abs(dreamed - real) / abs(real) if real else float("inf")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else 0.0


def _check(value: float, limit: float) -> dict:
    return {"value": round(float(value), 4), "limit": round(float(limit), 4), "ok": bool(value <= limit)}


def compare_structure(real: dict, dreamed: dict, tolerance: float = 0.25) -> dict:
    """The issue's checks of a dreamed sample against a real one (both :func:`pooled`), each
    ``{"value", "limit", "ok"}``:

    - ``building_size_ks``: KS distance of the building areas (<= ``tolerance``), and
      ``building_median_rel``: the relative difference of the median building (<= ``tolerance``);
    - ``road_network_rel``: relative difference of the share of road pixels in the largest network;
    - ``block_median_rel``: relative difference of the median block, and ``block_size_ks``: KS distance of
      the block areas (<= ``tolerance``);
    - ``largest_building_rel``: relative difference of the largest building per map (the median over the
      maps), and
      ``largest_building_m2``: the largest dreamed building, at most 1 ha unless a real one is larger.
    """
    rb, db = real["building_areas_m2"], dreamed["building_areas_m2"]
    rk, dk = real["block_areas_m2"], dreamed["block_areas_m2"]
    real_max = float(np.median(real["largest_building_m2"])) if real["largest_building_m2"] else 0.0
    dream_max = float(np.median(dreamed["largest_building_m2"])) if dreamed["largest_building_m2"] else 0.0
    slab_limit = max(ONE_HA_M2, max(real["largest_building_m2"], default=0.0))
    return {
        "building_size_ks": _check(ks_distance(rb, db), tolerance),
        "building_median_rel": _check(_rel(_median(db), _median(rb)), tolerance),
        "road_network_rel": _check(_rel(dreamed["road_share_in_largest"], real["road_share_in_largest"]), tolerance),
        "block_median_rel": _check(_rel(_median(dk), _median(rk)), tolerance),
        "block_size_ks": _check(ks_distance(rk, dk), tolerance),
        "largest_building_rel": _check(_rel(dream_max, real_max), tolerance),
        "largest_building_m2": _check(max(dreamed["largest_building_m2"], default=0.0), slab_limit),
    }
