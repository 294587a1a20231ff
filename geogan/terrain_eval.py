"""`geogan terrain-eval --dem-dir`: the structure of generated terrain, measured on held-out real DEMs.

Each held-out DEM (whole files, never used for fitting: :data:`geogan.training.terrain_chips.DEFAULT_VAL_DEMS`)
is reprojected to local UTM at the model's GSD, classed by the same rules as the training chips
(:func:`~geogan.training.terrain_chips.classify_terrain`) and given rivers (1 px water lines where the real
DEM's D8 contributing area exceeds ``river_min_km2``, as an OSM river would be drawn). Up to
``windows_per_dem`` windows of ``window_px`` pixels (at most 1 % voids, filled) are cut from it. On each window the terrain
model runs exactly as ``geogan render`` runs it (256 px tiles, 64 px overlap, blended; each tile's heights
relative to its own mean): method ``raw``. Method ``shaped`` is the same output passed through
:func:`geogan.terrain_relief.shape_terrain`. Both, and the real DEM, are measured with :func:`window_metrics`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import InputError
from .terrain_hydro import (depression_depth_m, dilate, drains_to, edge_mask, flow_accumulation, label_components,
                            priority_flood)
from .terrain_relief import shape_terrain, split_water

TERRAIN_TO_SCHEMA = {"water": "water", "woodland": "woodland", "grass": "grass", "farmland": "farmland",
                     "rock": "bare", "snow": "snow", "sand": "sand"}
LAKE_MIN_PX = 10          # water bodies smaller than this are not scored for flatness
CLASS_MIN_SHARE = 0.002   # classes covering less of a window are left out of its rank comparison


@dataclass(frozen=True)
class EvalSettings:
    """Windows cut from each held-out DEM and the scales of the measures."""

    gsd_m: float = 30.0
    window_px: int = 768
    windows_per_dem: int = 2
    river_min_km2: float = 10.0
    coarse_px: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.gsd_m > 0 and self.window_px >= 32 and self.windows_per_dem >= 1 and self.coarse_px >= 2):
            raise InputError("terrain-eval needs gsd_m > 0, window_px >= 32, windows_per_dem >= 1, coarse_px >= 2")


@dataclass
class EvalWindow:
    dem: str
    z_m: np.ndarray        # real elevations, float64, no NaN
    classes: np.ndarray    # terrain class ids (TERRAIN_CLASSES order), rivers drawn as water
    transform: object
    crs: object


# ---------------------------------------------------------------- data
def river_mask(z_m: np.ndarray, gsd_m: float, min_km2: float) -> np.ndarray:
    """Pixels whose D8 contributing area on the depression-filled DEM is at least ``min_km2``."""
    filled, _, _ = priority_flood(z_m, edge_mask(z_m.shape), epsilon_m=1e-4)
    return flow_accumulation(filled) * (gsd_m * gsd_m) / 1e6 >= min_km2


MAX_VOID_SHARE = 0.01     # windows may hold this share of DEM voids (filled by interpolation)


def _window_origins(valid: np.ndarray, size: int, most: int) -> list[tuple[int, int]]:
    """Up to ``most`` non-overlapping windows (top-left corners, evenly spread) with few voids."""
    h, w = valid.shape
    stride = max(size // 4, 1)
    found = [(r, c) for r in range(0, h - size + 1, stride) for c in range(0, w - size + 1, stride)
             if valid[r:r + size, c:c + size].mean() >= 1 - MAX_VOID_SHARE]
    keep: list[tuple[int, int]] = []
    for i in np.unique(np.linspace(0, len(found) - 1, min(len(found), 8 * most)).round().astype(int)) if found else []:
        r, c = found[i]
        if all(abs(r - a) >= size or abs(c - b) >= size for a, b in keep):
            keep.append((r, c))
    return keep[:most]


def _fill_voids(z: np.ndarray) -> np.ndarray:
    """NaN pixels filled by inverse-distance interpolation from their edges (GDAL FillNodata)."""
    from rasterio.fill import fillnodata

    valid = np.isfinite(z)
    if valid.all():
        return z
    out = fillnodata(np.where(valid, z, 0).astype(np.float32), mask=valid.astype(np.uint8), max_search_distance=1e4,
                     smoothing_iterations=0).astype(np.float64)
    return out


def dem_windows(path: str | Path, settings: EvalSettings) -> list[EvalWindow]:
    """Windows (at most 1 % voids, filled) of one DEM on its local UTM grid, with classes and rivers; a DEM
    too small for ``window_px`` gives the largest square that fits (in steps of 10 %)."""
    from affine import Affine

    from .training.terrain_chips import WATER, classify_terrain, reproject_dem

    dem = reproject_dem(path, settings.gsd_m)
    valid = np.isfinite(dem.z)
    size = min(settings.window_px, *dem.z.shape)
    origins = _window_origins(valid, size, settings.windows_per_dem)
    while not origins and size > 32:
        size = int(size * 0.9)
        origins = _window_origins(valid, size, settings.windows_per_dem)
    out = []
    for r, c in origins:
        z = _fill_voids(dem.z[r:r + size, c:c + size].astype(np.float64))
        cls = classify_terrain(z, settings.gsd_m, dem.lat)
        cls[river_mask(z, settings.gsd_m, settings.river_min_km2)] = WATER
        out.append(EvalWindow(Path(path).name, z, cls, dem.transform * Affine.translation(c, r), dem.crs))
    return out


def held_out_paths(dem_dir: str | Path, names: Iterable[str]) -> list[Path]:
    """The DEM files in ``dem_dir`` whose names start with one of ``names`` (sorted)."""
    names = tuple(names)
    files = sorted(p for p in Path(dem_dir).glob("*.tif") if any(p.name.startswith(n) for n in names))
    if not files:
        raise InputError(f"no held-out DEM ({', '.join(names)}) found in '{dem_dir}'; give the DEM folder")
    return files


# ---------------------------------------------------------------- generation
def load_terrain_model(model_ref: str):
    """The terrain model as ``geogan render`` loads it (CPU), with the terrain rules schema."""
    from .classes import load_schema
    from .infer import load_model

    schema = load_schema(Path(__file__).parent / "data" / "terrain_rules.toml")
    model = load_model(model_ref, schema, device="cpu")
    if "height" not in model.card.get("outputs", ()):
        raise InputError(f"model '{model_ref}' has no height output; give a terrain model (e.g. terrain)")
    return model, schema


def generate_raw_m(model, schema, window: EvalWindow, seed: int = 0) -> np.ndarray:
    """The model's terrain (metres) on a window, tiled and blended exactly as ``geogan render`` does."""
    from .grid import Grid
    from .pipeline import auto_tile_spec, blend_tile_rows, plan_tiles
    from .sketch import RasterClassSource
    from .tiles import tile_rows
    from .training.terrain_chips import TERRAIN_CLASSES

    lut = np.array([schema.by_name(TERRAIN_TO_SCHEMA[n]).id for n in TERRAIN_CLASSES], dtype=np.uint8)
    grid = Grid(window.crs.to_wkt(), window.transform, window.classes.shape)
    source = RasterClassSource(lut[window.classes], grid)
    spec = auto_tile_spec(model, float(model.card.get("gsd_m", 30.0)))
    plan = plan_tiles(grid, spec, model)
    out = np.zeros(window.classes.shape, dtype=np.float64)
    for row0, strip in blend_tile_rows(source, grid, model, spec, plan, first_row=0,
                                       stop_row=len(tile_rows(grid.shape_yx, spec)), seed=seed):
        out[row0:row0 + strip.shape[1]] = strip[3] * float(model.card["height_scale_m"])
    return out


# ---------------------------------------------------------------- measures
def class_means_m(z_m: np.ndarray, classes: np.ndarray, n_classes: int) -> dict[int, float]:
    """Mean elevation of each class covering at least :data:`CLASS_MIN_SHARE` of the window."""
    out = {}
    for c in range(n_classes):
        m = classes == c
        if m.mean() >= CLASS_MIN_SHARE:
            out[c] = float(z_m[m].mean())
    return out


def rank_inversions(real: dict[int, float], generated: dict[int, float]) -> int:
    """Pairs of classes whose order by mean elevation differs between real and generated."""
    cs = sorted(set(real) & set(generated))
    return sum(1 for i, a in enumerate(cs) for b in cs[i + 1:]
               if (real[a] - real[b]) * (generated[a] - generated[b]) < 0)


def water_ranges_m(z_m: np.ndarray, lakes: np.ndarray) -> list[float]:
    """Elevation range (max - min) of each lake/sea body of at least :data:`LAKE_MIN_PX` pixels."""
    lab, n = label_components(lakes)
    if n == 0:
        return []
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    hi = np.full(n + 1, -np.inf)
    lo = np.full(n + 1, np.inf)
    np.maximum.at(hi, lab[lakes], z_m[lakes])
    np.minimum.at(lo, lab[lakes], z_m[lakes])
    return [float(hi[k] - lo[k]) for k in range(1, n + 1) if counts[k] >= LAKE_MIN_PX]


def abs_curvature(z_m: np.ndarray, gsd_m: float) -> np.ndarray:
    """|Laplacian| (1/m) by the 5-point stencil, edges replicated."""
    p = np.pad(np.asarray(z_m, float), 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return np.abs(lap) / (gsd_m * gsd_m)


def land_class_edges(classes: np.ndarray, water: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class, neither of them water (shores are left out)."""
    e = np.zeros(classes.shape, bool)
    for a, b in ((np.s_[1:], np.s_[:-1]), (np.s_[:-1], np.s_[1:])):
        d = (classes[a] != classes[b]) & ~water[a] & ~water[b]
        e[a] |= d
        e[b] |= d
        dc = (classes[:, a] != classes[:, b]) & ~water[:, a] & ~water[:, b]
        e[:, a] |= dc
        e[:, b] |= dc
    return e


def crease_ratio(z_m: np.ndarray, classes: np.ndarray, water: np.ndarray, gsd_m: float) -> float:
    """Mean |curvature| on land class-edge pixels over that on land pixels 3+ px from any class edge."""
    curv = abs_curvature(z_m, gsd_m)
    edges = land_class_edges(classes, water)
    interior = ~dilate(edges | dilate(water, 1), 3)
    interior[:2], interior[-2:], interior[:, :2], interior[:, -2:] = False, False, False, False
    if not edges.any() or not interior.any():
        return float("nan")
    return float(curv[edges].mean() / max(curv[interior].mean(), 1e-12))


def river_downhill_share(z_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray) -> float | None:
    """Share of river pixels with a never-ascending path along the river to a lake, the sea or the edge."""
    if not rivers.any():
        return None
    water = lakes | rivers
    outlets = lakes | (rivers & edge_mask(z_m.shape))
    if not outlets.any():
        return 0.0
    filled, _, _ = priority_flood(z_m, outlets, domain=water)
    return float(((filled - z_m) <= 0.01)[rivers].mean())


def drainage(z_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray) -> dict:
    """Where D8 flow from land ends, how much land sits in closed depressions, and whether rivers fall."""
    water = lakes | rivers
    land = ~water
    outlets = water | edge_mask(z_m.shape)
    depth = depression_depth_m(z_m, outlets)
    down = river_downhill_share(z_m, lakes, rivers)
    return {"land_reaches_outlet_share": round(float(drains_to(z_m, outlets)[land].mean()), 4),
            "land_in_closed_depression_share": round(float((depth > 0.1)[land].mean()), 4),
            "river_downhill_share": None if down is None else round(down, 4)}


def alternating_share(z_m: np.ndarray) -> float:
    """Share of pairs of neighbouring pixel steps (along rows and columns) whose slopes alternate in sign:
    2/3 for white noise, 1 for a checkerboard, low for real terrain. NaN pixels are left out."""
    z = np.asarray(z_m, float)
    dx, dy = np.diff(z, axis=1), np.diff(z, axis=0)
    prod = np.concatenate([(dx[:, 1:] * dx[:, :-1]).ravel(), (dy[1:] * dy[:-1]).ravel()])
    prod = prod[np.isfinite(prod)]
    return float((prod < 0).mean()) if prod.size else float("nan")


def coarse(z_m: np.ndarray, block_px: int) -> np.ndarray:
    """Block means over ``block_px`` squares (incomplete blocks at the right/bottom dropped)."""
    h, w = (s // block_px * block_px for s in z_m.shape)
    return z_m[:h, :w].reshape(h // block_px, block_px, w // block_px, block_px).mean(axis=(1, 3))


def slope_stats(z_m: np.ndarray, gsd_m: float) -> dict:
    from .training.terrain_chips import slope_deg

    s = slope_deg(z_m, gsd_m)[1:-1, 1:-1]
    return {"mean": round(float(s.mean()), 2), "p90": round(float(np.percentile(s, 90)), 2),
            "flat_share": round(float((s < 0.5).mean()), 4)}


def window_metrics(z_m: np.ndarray, real_m: np.ndarray, classes: np.ndarray, settings: EvalSettings) -> dict:
    """Every measure of one (generated or real) window; comparisons are against ``real_m``."""
    from .training.terrain_chips import TERRAIN_CLASSES, rank_agreement

    lakes, rivers = split_water(classes)
    n = len(TERRAIN_CLASSES)
    gen, real = class_means_m(z_m, classes, n), class_means_m(real_m, classes, n)
    cs = sorted(set(gen) & set(real))
    ranges = water_ranges_m(z_m, lakes)
    cg, cr = coarse(z_m, settings.coarse_px), coarse(real_m, settings.coarse_px)
    corr = float(np.corrcoef(cg.ravel(), cr.ravel())[0, 1]) if cg.size > 2 and cg.std() > 0 else float("nan")
    mean = float(z_m.mean())
    return {
        "class_mean_rel_m": {TERRAIN_CLASSES[c]: round(gen[c] - mean, 1) for c in cs},
        "class_rank_rho": round(rank_agreement([real[c] for c in cs], [gen[c] for c in cs]), 3),
        "class_rank_inversions": rank_inversions(real, gen),
        "class_pairs": len(cs) * (len(cs) - 1) // 2,
        "water_bodies": len(ranges),
        "water_range_max_m": round(max(ranges), 3) if ranges else None,
        "water_flat_share": round(float(np.mean(np.asarray(ranges) <= 0.5)), 3) if ranges else None,
        "crease_ratio": round(crease_ratio(z_m, classes, lakes | rivers, settings.gsd_m), 3),
        "alternating_slope_share": round(alternating_share(np.where(lakes | rivers, np.nan, z_m)), 3),
        **drainage(z_m, lakes, rivers),
        "coarse_corr_with_real": round(corr, 3),
        "coarse_std_m": round(float(cg.std()), 1),
        "coarse_std_log_ratio": round(float(abs(np.log(max(cg.std(), 1e-6) / max(cr.std(), 1e-6)))), 3),
        "relief_p95_p5_m": round(float(np.percentile(z_m, 95) - np.percentile(z_m, 5)), 1),
        "slope_deg": slope_stats(z_m, settings.gsd_m),
    }


# ---------------------------------------------------------------- the command
SUMMARY_KEYS = ("class_rank_rho", "class_rank_inversions", "water_range_max_m", "water_flat_share", "crease_ratio",
                "alternating_slope_share",
                "land_reaches_outlet_share", "land_in_closed_depression_share", "river_downhill_share",
                "coarse_corr_with_real", "coarse_std_m", "coarse_std_log_ratio", "relief_p95_p5_m")


def summarise(rows: list[dict]) -> dict:
    """Mean of each measure over windows (inversions summed, water range max'ed, slope averaged)."""
    out: dict = {}
    for k in SUMMARY_KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None and not (isinstance(r[k], float) and math.isnan(r[k]))]
        if not vals:
            out[k] = None
        elif k == "class_rank_inversions":
            out[k] = int(sum(vals))
        elif k == "water_range_max_m":
            out[k] = round(max(vals), 3)
        else:
            out[k] = round(float(np.mean(vals)), 3)
    out["slope_deg"] = {s: round(float(np.mean([r["slope_deg"][s] for r in rows])), 4 if s == "flat_share" else 2)
                        for s in ("mean", "p90", "flat_share")}
    return out


def evaluate_terrain(model_ref: str, dem_dir: str | Path, held_out: Iterable[str] | None = None,
                     settings: EvalSettings = EvalSettings(), log: Callable[[str], None] | None = None) -> dict:
    """Structure measures of the terrain model (``raw`` and ``shaped``) and of the real DEMs on held-out windows."""
    from .training.terrain_chips import DEFAULT_VAL_DEMS

    names = tuple(held_out) if held_out else DEFAULT_VAL_DEMS
    paths = held_out_paths(dem_dir, names)
    model, schema = load_terrain_model(model_ref)
    rows: dict[str, list[dict]] = {"real": [], "raw": [], "shaped": []}
    windows = []
    for path in paths:
        for i, win in enumerate(dem_windows(path, settings)):
            raw = generate_raw_m(model, schema, win, settings.seed)
            shaped = shape_terrain(win.classes, raw, settings.gsd_m)
            for method, z in (("real", win.z_m), ("raw", raw), ("shaped", shaped)):
                rows[method].append({"window": f"{win.dem}#{i}", **window_metrics(z, win.z_m, win.classes, settings)})
            windows.append({"dem": win.dem, "index": i, "shape": list(win.classes.shape)})
            if log is not None:
                log(f"{win.dem}#{i}: rho raw {rows['raw'][-1]['class_rank_rho']} shaped "
                    f"{rows['shaped'][-1]['class_rank_rho']}")
    if not windows:
        raise InputError(f"no window with at most 1 % voids in the held-out DEMs of '{dem_dir}'; give DEMs "
                         "with data")
    return {"model": str(model_ref), "held_out_dems": sorted({w["dem"] for w in windows}), "windows": windows,
            "settings": asdict(settings), "summary": {m: summarise(r) for m, r in rows.items()},
            "per_window": rows}


def format_table(result: dict) -> str:
    """A short markdown table of the summary: one row per measure, one column per method."""
    s = result["summary"]
    methods = [m for m in ("real", "raw", "shaped") if m in s]
    lines = ["| measure | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for k in SUMMARY_KEYS + ("slope_deg",):
        cells = []
        for m in methods:
            v = s[m][k]
            cells.append(f"{v['mean']} / {v['p90']} / {v.get('flat_share', '-')}" if isinstance(v, dict)
                         else ("-" if v is None else f"{v}"))
        lines.append(f"| {k}{' mean / p90 / share < 0.5' if k == 'slope_deg' else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_result(result: dict, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out


__all__ = ["EvalSettings", "EvalWindow", "evaluate_terrain", "window_metrics", "format_table", "dem_windows",
           "generate_raw_m", "river_mask", "rank_inversions", "crease_ratio", "drainage",
           "water_ranges_m"]
