"""Shaping generated terrain: ordered large-scale relief, flat water, smooth class edges, drainage that flows.

The terrain model (``--model terrain``) paints plausible slopes tile by tile, but each tile's heights are
relative to its own mean, mountains are barely higher than farmland and water is neither flat nor
drained. :func:`shape_terrain` keeps the model's short-wavelength detail and rebuilds the rest:

1. **base field** (:func:`base_field_m`): a linear model of elevation on the class map's shares of water,
   woodland, farmland, rock, snow and sand around each pixel at three scales (Gaussian, 240 m / 960 m /
   2.9 km), fitted by least squares on windows of the *training* DEMs (per-window means removed, so only
   relative relief is fitted; :func:`fit_relief`, run by ``benchmarks/terrain_fit.py``). It is smooth and
   continuous across tiles, so relief larger than one tile carries over and classes keep the real order
   (snow above rock above woodland above farmland above water);
2. **detail**: the model's heights minus their Gaussian low-pass (``detail_sigma_m``), times ``detail_gain``;
   the low-pass also removes the per-tile mean offsets;
3. **class edges**: next to a land class edge the detail is replaced by its blurred version (weights fade
   over a few pixels), which removes the creases the model draws along class boundaries;
4. **water**: water pixels are split into lakes/sea (bodies wider than ``river_half_width_px * 2``) and
   rivers (:func:`split_water`); each lake is set to one level, the lowest elevation of its shore, so it is
   exactly flat;
5. **drainage** (:func:`condition_drainage`): rivers are cut ``river_depth_m`` into the terrain and carved
   along the Priority-Flood tree so they descend (``river_drop_m`` per pixel) to a lake, the sea or the
   window edge; where that carves a river deeper than ``river_depth_m`` (tens to hundreds of metres where
   the base field and detail rise along its course), the land around it is lowered into a valley whose
   walls rise at ``valley_side_slope_deg`` with a rounded rim (:func:`widen_valleys`), not left as a
   one-pixel trench whose walls are the sharpest bends in the terrain; then every remaining depression on
   land is filled with a small gradient (Priority-Flood + epsilon), so D8 flow from every land pixel
   reaches a river, a lake or the edge.

All functions are pure (numpy in, numpy out). Everything is a whole-window operation: a render shapes its
whole grid at once (at the model's 30 m a 10 km x 10 km area is 0.1 Mpx).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .terrain_hydro import (cone_envelope_m, dilate, edge_mask, erode, gaussian_blur, label_components,
                            priority_flood)

#: terrain classes (order of :data:`geogan.training.terrain_chips.TERRAIN_CLASSES`)
WATER, WOODLAND, GRASS, FARMLAND, ROCK, SNOW, SAND = range(7)
#: classes whose local shares feed the base field (grass is the reference the others are measured against)
FEATURE_CLASSES = (WATER, WOODLAND, FARMLAND, ROCK, SNOW, SAND)
ROCKY = (ROCK, SNOW)
#: Gaussian scales (ground metres) of the class shares
FEATURE_SCALES_M = (240.0, 960.0, 2880.0)

#: distance channels: log(1 + distance / DISTANCE_UNIT_M) to water and to rock/snow, capped at DISTANCE_CAP_M
DISTANCE_UNIT_M = 150.0
DISTANCE_CAP_M = 6000.0
N_FEATURES = len(FEATURE_CLASSES) * len(FEATURE_SCALES_M) + 2

#: base-field coefficients (metres per unit feature, :func:`relief_features` order), fitted by
#: benchmarks/terrain_fit.py on the training DEMs (see docs/terrain.md)
#: relief scale of the base field: exp(c0 + c1 * share of steep classes (woodland, rock, snow) in a Gaussian
#: of STEEP_SCALE_M), fitted after the coefficients (:func:`fit_relief_scale`): low country gets less relief
STEEP_CLASSES = (WOODLAND, ROCK, SNOW)
STEEP_SCALE_M = 6000.0
RELIEF_SCALE = (-1.288, 2.731)

BASE_COEF_M = np.array([
    236.3, -223.6, -514.2,     # water share at 240 m / 960 m / 2.9 km
    -1.9, -45.2, -784.0,       # woodland
    -19.8, -141.0, -852.6,     # farmland
    210.0, 415.9, 271.8,       # rock
    386.9, 666.8, 616.4,       # snow
    215.0, -3.4, -95.4,        # sand
    155.1,                     # log(1 + distance to water / 150 m)
    -30.9])                    # log(1 + distance to rock or snow / 150 m)


@dataclass(frozen=True)
class ReliefParams:
    """Settings of :func:`shape_terrain` (ground metres unless stated)."""

    detail_sigma_m: float = 480.0
    detail_fine_px: float = 0.707
    detail_gain: float = 1.0
    fill_base: bool = True
    edge_blur_px: float = 2.0
    edge_band_px: int = 2
    river_half_width_px: int = 3
    river_depth_m: float = 2.0
    river_drop_m: float = 0.02
    valley_side_slope_deg: float = 15.0
    valley_rim_m: float = 20.0
    fill_epsilon_m: float = 0.005


# ---------------------------------------------------------------- base field
def distance_m(mask: np.ndarray, gsd_m: float, cap_m: float = DISTANCE_CAP_M) -> np.ndarray:
    """Approximate distance (m) to the nearest ``mask`` pixel (octagonal metric: square and cross
    dilations in turn), ``cap_m`` beyond ``cap_m`` or when the mask is empty."""
    steps = int(np.ceil(cap_m / gsd_m))
    out = np.full(mask.shape, float(cap_m))
    reached = np.asarray(mask, bool).copy()
    if not reached.any():
        return out
    out[reached] = 0.0
    for k in range(1, steps + 1):
        if k % 2:
            grown = dilate(reached, 1)
        else:
            grown = reached.copy()
            grown[1:] |= reached[:-1]
            grown[:-1] |= reached[1:]
            grown[:, 1:] |= reached[:, :-1]
            grown[:, :-1] |= reached[:, 1:]
        new = grown & ~reached
        if not new.any():
            break
        out[new] = min(k * gsd_m, cap_m)
        reached = grown
    return out


def relief_features(classes: np.ndarray, gsd_m: float) -> np.ndarray:
    """(N_FEATURES, H, W): the local shares of each of :data:`FEATURE_CLASSES` at each of
    :data:`FEATURE_SCALES_M` (Gaussian), then log distance to water and to rock/snow (lightly blurred)."""
    out = np.empty((N_FEATURES,) + classes.shape)
    k = 0
    for c in FEATURE_CLASSES:
        m = (classes == c).astype(np.float64)
        for s in FEATURE_SCALES_M:
            out[k] = gaussian_blur(m, s / gsd_m) if m.any() else 0.0
            k += 1
    for group in ((WATER,), ROCKY):
        d = distance_m(np.isin(classes, group), gsd_m)
        out[k] = gaussian_blur(np.log1p(d / DISTANCE_UNIT_M), 60.0 / gsd_m)
        k += 1
    return out


def steep_share(classes: np.ndarray, gsd_m: float) -> np.ndarray:
    """Share of :data:`STEEP_CLASSES` in a Gaussian of :data:`STEEP_SCALE_M` around each pixel."""
    return gaussian_blur(np.isin(classes, STEEP_CLASSES).astype(np.float64), STEEP_SCALE_M / gsd_m)


def base_field_m(classes: np.ndarray, gsd_m: float, coef_m: np.ndarray | None = None,
                 scale: tuple[float, float] | None = None) -> np.ndarray:
    """Large-scale relief (m, mean 0 over the window) from the class map: ``coef . features`` (mean-free),
    times ``exp(c0 + c1 * steep share)`` (``scale`` = (c0, c1), default :data:`RELIEF_SCALE`)."""
    coef = BASE_COEF_M if coef_m is None else np.asarray(coef_m, float)
    c0, c1 = RELIEF_SCALE if scale is None else scale
    z = np.tensordot(coef, relief_features(classes, gsd_m), axes=1)
    z = (z - z.mean()) * np.exp(c0 + c1 * steep_share(classes, gsd_m))
    return z - z.mean()


def fit_relief_scale(windows: list[tuple[np.ndarray, np.ndarray]], gsd_m: float, coef_m: np.ndarray,
                     min_corr: float = 0.3) -> tuple[float, float]:
    """``(c0, c1)``: log(std of real / std of the unscaled base field) regressed on the window's mean steep
    share, over the windows where the unscaled field correlates with the real elevation by ``min_corr``."""
    logs, shares = [], []
    for classes, z in windows:
        b = base_field_m(classes, gsd_m, coef_m, (0.0, 0.0))
        if b.std() > 0 and np.corrcoef(b.ravel(), np.ravel(z))[0, 1] >= min_corr:
            logs.append(np.log(np.std(z) / b.std()))
            shares.append(steep_share(classes, gsd_m).mean())
    c1, c0 = np.polyfit(shares, logs, 1)
    return float(c0), float(c1)


def fit_relief(windows: list[tuple[np.ndarray, np.ndarray]], gsd_m: float, ridge: float = 1e-3,
               step_px: int = 4) -> np.ndarray:
    """Least-squares base-field coefficients from ``(classes, real elevation m)`` windows.

    Features and elevations are made mean-free per window (the absolute level is not fitted); every
    ``step_px``-th pixel each way is used. ``ridge`` is relative to the mean feature variance.
    """
    xs, ys = [], []
    for classes, z in windows:
        f = relief_features(classes, gsd_m)[:, ::step_px, ::step_px].reshape(N_FEATURES, -1)
        y = np.asarray(z, float)[::step_px, ::step_px].ravel()
        xs.append(f - f.mean(1, keepdims=True))
        ys.append(y - y.mean())
    x, y = np.concatenate(xs, 1), np.concatenate(ys)
    a = x @ x.T
    a += np.eye(len(a)) * ridge * np.trace(a) / len(a)
    return np.linalg.solve(a, x @ y)


# ---------------------------------------------------------------- detail and edges
def highpass_m(z_m: np.ndarray, sigma_px: float) -> np.ndarray:
    """``z`` minus its Gaussian low-pass: the short-wavelength detail (per-tile offsets removed)."""
    z = np.asarray(z_m, float)
    return z - gaussian_blur(z, sigma_px)


def smooth_class_edges(detail_m: np.ndarray, classes: np.ndarray, blur_px: float, band_px: int) -> np.ndarray:
    """Detail blended towards its blurred version near class edges (weight 1 on the edge, fading out)."""
    edges = np.zeros(classes.shape, bool)
    edges[1:] |= classes[1:] != classes[:-1]
    edges[:-1] |= classes[1:] != classes[:-1]
    edges[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    edges[:, :-1] |= classes[:, 1:] != classes[:, :-1]
    w = np.clip(gaussian_blur(dilate(edges, band_px).astype(float), max(band_px, 1)) * 1.5, 0.0, 1.0)
    return detail_m + w * (gaussian_blur(detail_m, blur_px) - detail_m)


# ---------------------------------------------------------------- water and drainage
def split_water(classes: np.ndarray, half_width_px: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(lakes, rivers)``: water wider than ``2 * half_width_px`` pixels (lakes, the sea) and the rest."""
    water = np.asarray(classes) == WATER
    core = erode(water, half_width_px) & water
    lakes = dilate(core, half_width_px + 1) & water
    return lakes, water & ~lakes


def flatten_lakes(z_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray) -> np.ndarray:
    """Each lake (8-connected body) at one level: the lowest land elevation on its shore."""
    z = np.asarray(z_m, float).copy()
    lab, n = label_components(lakes)
    if n == 0:
        return z
    grown = lab.copy()
    for _ in range(1):  # the ring of land pixels 8-adjacent to each lake takes the lake's label
        p = np.pad(grown, 1)
        h, w = grown.shape
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                nb = p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
                grown = np.where((grown == 0) & (nb > 0), nb, grown)
    shore = (grown > 0) & ~lakes & ~rivers
    level = np.full(n + 1, np.inf)
    np.minimum.at(level, grown[shore], z[shore])
    inner = np.full(n + 1, np.inf)
    np.minimum.at(inner, lab[lakes], z[lakes])
    level = np.where(np.isfinite(level), level, inner)
    z[lakes] = level[lab[lakes]]
    return z


def carve_rivers(z_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray, depth_m: float, drop_m: float) -> np.ndarray:
    """Rivers lowered by ``depth_m`` and carved so each pixel is ``drop_m`` above its downstream neighbour
    on the Priority-Flood tree from the river's outlets (lakes, the window edge, else its lowest pixel)."""
    z = np.asarray(z_m, float).copy()
    if not rivers.any():
        return z
    z[rivers] -= depth_m
    outlets = lakes | (rivers & edge_mask(z.shape))
    lab, n = label_components(rivers)
    touching = np.unique(lab[dilate(outlets, 1) & rivers])
    for k in range(1, n + 1):  # a river that reaches no outlet ends at its lowest pixel
        if k not in touching:
            idx = np.flatnonzero(lab.ravel() == k)
            outlets.ravel()[idx[np.argmin(z.ravel()[idx])]] = True
    _, order, parent = priority_flood(z, outlets, domain=lakes | rivers)
    flat, riv = z.ravel(), rivers.ravel()
    for i in order[::-1].tolist():
        p = parent[i]
        if p >= 0 and riv[p] and flat[p] > flat[i] - drop_m:
            flat[p] = flat[i] - drop_m
    return flat.reshape(z.shape)


def valley_lowering_m(excess_m: np.ndarray, side_slope_deg: float, rim_m: float, gsd_m: float) -> np.ndarray:
    """How far to lower the ground around carved rivers: on each river pixel (finite ``excess_m``: how much
    deeper than the nominal cut it was carved) a cone ``excess + rim_m`` high with walls at ``side_slope_deg``;
    the upper envelope of the cones, rounded over the last ``2 * rim_m`` of height so the valley meets the
    ground without a kink (``u^2 / 4 rim`` below ``2 rim``, ``u - rim`` above: exactly ``excess`` at the
    river where it exceeds ``rim_m``). 0 where no cone reaches."""
    cone = cone_envelope_m(np.asarray(excess_m, float) + rim_m, np.tan(np.radians(side_slope_deg)), gsd_m)
    u = np.maximum(cone, 0.0)
    if rim_m <= 0:
        return u
    return np.where(u < 2 * rim_m, u * u / (4 * rim_m), u - rim_m)


def widen_valleys(z_m: np.ndarray, carved_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray,
                  params: ReliefParams, gsd_m: float) -> np.ndarray:
    """``carved_m`` with the land lowered into valleys around the rivers that :func:`carve_rivers` cut deeper
    than ``river_depth_m`` into ``z_m`` (:func:`valley_lowering_m`); water pixels as carved."""
    carved = np.asarray(carved_m, float)
    if not rivers.any():
        return carved.copy()
    excess = np.where(rivers, np.asarray(z_m, float) - carved - params.river_depth_m, np.nan)
    low = valley_lowering_m(excess, params.valley_side_slope_deg, params.valley_rim_m, gsd_m)
    return np.where(lakes | rivers, carved, carved - low)


def condition_drainage(z_m: np.ndarray, lakes: np.ndarray, rivers: np.ndarray, params: ReliefParams,
                       gsd_m: float) -> np.ndarray:
    """Carve rivers, lower the land around them into valleys, then fill land depressions with a small
    gradient towards lakes, rivers and the edge."""
    z = carve_rivers(z_m, lakes, rivers, params.river_depth_m, params.river_drop_m)
    z = widen_valleys(z_m, z, lakes, rivers, params, gsd_m)
    filled, _, _ = priority_flood(z, lakes | edge_mask(z.shape), epsilon_m=params.fill_epsilon_m)
    filled[lakes] = z[lakes]
    return filled


def shape_terrain(classes: np.ndarray, model_m: np.ndarray, gsd_m: float, params: ReliefParams = ReliefParams(),
                  coef_m: np.ndarray | None = None) -> np.ndarray:
    """Generated terrain (m, float64) from terrain class ids and the model's heights (see the module doc)."""
    classes = np.asarray(classes)
    lakes, rivers = split_water(classes, params.river_half_width_px)
    base = base_field_m(classes, gsd_m, coef_m)
    if params.fill_base:  # the base field's basins become plains that the detail then roughens
        base = priority_flood(base, lakes | edge_mask(base.shape), epsilon_m=params.fill_epsilon_m)[0]
    detail = highpass_m(gaussian_blur(model_m, params.detail_fine_px), params.detail_sigma_m / gsd_m)
    detail = smooth_class_edges(detail, classes, params.edge_blur_px, params.edge_band_px)
    z = base + params.detail_gain * detail
    z = flatten_lakes(z, lakes, rivers)
    return condition_drainage(z, lakes, rivers, params, gsd_m)


def settle_shores(z_m: np.ndarray, lakes: np.ndarray, rise_m: float = 0.001) -> np.ndarray:
    """Land pixels touching a lake lowered to ``rise_m`` above it (never raised), so a DEM resampled
    bilinearly between the lake and its shore stays flat on the water (used for renders)."""
    z = np.asarray(z_m, float).copy()
    h, w = z.shape
    p = np.pad(np.where(lakes, z, np.inf), 1, constant_values=np.inf)
    near = np.full(z.shape, np.inf)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            np.minimum(near, p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w], out=near)
    shore = np.isfinite(near) & ~lakes
    z[shore] = np.minimum(z[shore], near[shore] + rise_m)
    return z
