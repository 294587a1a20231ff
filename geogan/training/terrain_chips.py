"""`geogan terrain-chips`: training chips for the learned terrain model, from real DEMs alone.

Every DEM is reprojected (bilinear, nodata-aware) onto a north-up grid in its local UTM zone at one
common ground spacing (``gsd_m``, default 30 m), a terrain class map is derived from the elevations
themselves (rules below), a texture target is synthesised from per-class albedo colours with
multi-scale noise and shaded by the DEM's hillshade, and the result is cut into square chips in the
layout :func:`geogan.training.chips.make_chips` writes (``chip_NNNNN.png`` = image | class grey values,
``heights/chip_NNNNN.npy`` = metres, ``label_map.toml``, ``index.json``), so ``geogan train --chips DIR
--shadow`` reads them unchanged.

Class rules (:func:`classify_terrain`, in this order; slope from the reprojected grid, degrees)
    1. water: connected areas of at least ``lake_min_km2`` at or below ``sea_level_m`` (0 m: SRTM/ASTER
       sea is a 0 m plateau; smaller pockets are not sea), or a flat connected
       area (3x3 elevation range <= ``flat_range_m``) of at least ``lake_min_km2`` (SRTM flattens lakes
       to one elevation);
    2. snow: elevation >= the snow line and slope < ``snow_max_slope_deg``; the snow line falls with
       latitude: ``snowline_top_m`` up to ``|lat|`` = ``snowline_flat_lat``, then ``snowline_lapse_m_per_deg``
       lower per degree (5500 m in the subtropics, about 3000 m at 46 deg (Alps), 2200 m at 53 deg);
    3. rock (bare): slope >= ``rock_slope_deg``; or in the nival belt (within ``nival_below_snow_m`` below
       the snow line); or above the tree line (``treeline_below_snow_m`` below the snow line) on slopes
       >= ``alpine_rock_slope_deg``;
    4. sand: land within ``sand_max_dist_m`` of sea water, at most ``sand_max_elev_m`` above it and
       flatter than ``sand_max_slope_deg`` (beaches, coastal flats);
    5. grass: above the tree line (alpine meadows);
    6. below the tree line by slope: woodland >= ``forest_slope_deg``, farmland < ``farmland_slope_deg``,
       grass in between.
    Where a land-cover raster is paired with a DEM (NLCD ``landcover_<dem prefix>_nlcd*.tif``, only Zion),
    its classes replace rules 3-6 (NLCD codes mapped by :data:`NLCD_TO_TERRAIN`); water and snow still
    follow the rules.

Height normalisation (documented, invertible)
    ``h_norm = clip((h - mean(h_chip)) / height_scale_m, -1, 1)`` and back ``h = h_norm * height_scale_m``
    (+ the chip's mean, which the model does not know: rendered terrain is relative to the local mean).
    ``height_scale_m`` is written to ``index.json`` and to the model card; by default it is the 99.9th
    percentile of ``|h - chip mean|`` over the training chips, rounded up to 100 m.

Texture target (honest: no real imagery exists for these DEMs)
    ``aerial = albedo(class) * (1 + multi-scale noise) * shade``, ``shade = 0.3 + 0.7 * hillshade / hillshade(flat)``
    (light from the north-west at 45 deg), so flat ground keeps its albedo and the shadow generator has
    real relief shading to learn. Albedo colours: water, woodland and farmland are the mean colours of the
    LandCover.ai water, woodland and background pixels of 50 training pairs (0, 4, ..., 196); grass is the
    mean of background and woodland; rock, snow and sand are chosen by hand (see :data:`ALBEDO`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
from PIL import Image
from rasterio.crs import CRS as RioCRS

from ..errors import InputError, OutputError

TERRAIN_CLASSES = ("water", "woodland", "grass", "farmland", "rock", "snow", "sand")
WATER, WOODLAND, GRASS, FARMLAND, ROCK, SNOW, SAND = range(7)
#: grey value of each class in the chips' label half (spaced so the PNGs can be looked at)
GREY = (0, 40, 80, 120, 160, 200, 240)

#: per-class albedo (sRGB 0..255). water/woodland/farmland: LandCover.ai means (pairs 0,4,..,196:
#: water 107,111,103; woodland 99,110,83; background 137,136,112); grass = mean(background, woodland);
#: rock = neutral grey-brown scree, snow = slightly blue white, sand = light beige (hand-picked).
ALBEDO = {
    "water": (107, 111, 103), "woodland": (99, 110, 83), "grass": (118, 123, 98), "farmland": (137, 136, 112),
    "rock": (128, 124, 117), "snow": (238, 240, 245), "sand": (214, 199, 160),
}

#: NLCD 2011 codes -> terrain classes (developed -> grass, shrub/scrub -> grass, wetlands -> grass)
NLCD_TO_TERRAIN = {11: WATER, 12: SNOW, 21: GRASS, 22: GRASS, 23: GRASS, 24: GRASS, 31: ROCK, 41: WOODLAND,
                   42: WOODLAND, 43: WOODLAND, 52: GRASS, 71: GRASS, 81: FARMLAND, 82: FARMLAND, 90: GRASS,
                   95: GRASS}

#: DEMs held out for validation by default (whole files; matched by name prefix)
DEFAULT_VAL_DEMS = ("pyrenees-andorra", "scotland-borders-coast", "washington-cascades-skykomish",
                    "turkey-ararat-volcano")

# schema class -> terrain model class (render input); 'snow'/'sand' for rules files that add them
SCHEMA_TO_TERRAIN = {
    "background": "grass", "building": "farmland", "road": "farmland", "path": "grass", "railway": "farmland",
    "water": "water", "woodland": "woodland", "grass": "grass", "farmland": "farmland", "impervious": "rock",
    "bare": "rock", "wetland": "grass", "snow": "snow", "sand": "sand", "rock": "rock",
}


@dataclass(frozen=True)
class TerrainRules:
    """Thresholds of :func:`classify_terrain` (see the module docstring)."""

    sea_level_m: float = 0.0
    flat_range_m: float = 0.0
    lake_min_km2: float = 1.0
    snowline_top_m: float = 5500.0
    snowline_flat_lat: float = 25.0
    snowline_lapse_m_per_deg: float = 120.0
    snow_max_slope_deg: float = 40.0
    rock_slope_deg: float = 35.0
    nival_below_snow_m: float = 300.0
    treeline_below_snow_m: float = 1000.0
    alpine_rock_slope_deg: float = 25.0
    sand_max_dist_m: float = 150.0
    sand_max_elev_m: float = 10.0
    sand_max_slope_deg: float = 5.0
    forest_slope_deg: float = 12.0
    farmland_slope_deg: float = 4.0

    def snowline_m(self, lat_deg: float) -> float:
        """Climatic snow line (m) at a latitude: flat in the (sub)tropics, falling poleward, never below 0."""
        excess = max(abs(float(lat_deg)) - self.snowline_flat_lat, 0.0)
        return max(self.snowline_top_m - self.snowline_lapse_m_per_deg * excess, 0.0)


# ---------------------------------------------------------------- terrain maths
def slope_deg(z: np.ndarray, gsd_m: float) -> np.ndarray:
    """Slope in degrees (central differences; NaN where z is NaN)."""
    gy, gx = np.gradient(np.asarray(z, dtype=np.float64), float(gsd_m))
    return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by ``steps`` pixels (3x3 cross per step, edges not wrapped)."""
    m = mask.copy()
    for _ in range(max(int(steps), 0)):
        n = m.copy()
        n[1:] |= m[:-1]
        n[:-1] |= m[1:]
        n[:, 1:] |= m[:, :-1]
        n[:, :-1] |= m[:, 1:]
        m = n
    return m


def _local_range(z: np.ndarray) -> np.ndarray:
    """max - min of each pixel's 3x3 neighbourhood (edge-padded; NaN propagates)."""
    p = np.pad(z, 1, mode="edge")
    h, w = z.shape
    hi, lo = z.copy(), z.copy()
    for i in range(3):
        for j in range(3):
            np.maximum(hi, p[i:i + h, j:j + w], out=hi)
            np.minimum(lo, p[i:i + h, j:j + w], out=lo)
    return hi - lo


def _large_components(mask: np.ndarray, min_px: int) -> np.ndarray:
    """The pixels of ``mask`` in 4-connected components of at least ``min_px`` pixels."""
    if not mask.any():
        return mask
    m = mask.astype(np.uint8)
    # sieve replaces components smaller than min_px with their neighbours' value
    kept = rasterio.features.sieve(m, size=int(min_px), connectivity=4)
    return (kept == 1) & mask


def classify_terrain(z: np.ndarray, gsd_m: float, lat_deg: float, rules: TerrainRules | None = None,
                     landcover: np.ndarray | None = None) -> np.ndarray:
    """Terrain class ids (uint8, :data:`TERRAIN_CLASSES` order) from elevations ``z`` (m, NaN = none).

    ``landcover``: optional terrain class ids from a land-cover raster on the same grid (255 = unknown);
    where known it replaces the slope/elevation rules for rock, sand, grass, woodland and farmland.
    """
    rules = rules or TerrainRules()
    z = np.asarray(z, dtype=np.float32)
    valid = np.isfinite(z)
    zf = np.where(valid, z, np.nanmin(z) if valid.any() else 0.0)
    slope = slope_deg(zf, gsd_m)
    out = np.full(z.shape, GRASS, dtype=np.uint8)
    snowline = rules.snowline_m(lat_deg)
    treeline = snowline - rules.treeline_below_snow_m
    below_tree = zf < treeline
    # 6. below the tree line by slope; 5. grass above it
    out[below_tree & (slope >= rules.forest_slope_deg)] = WOODLAND
    out[below_tree & (slope < rules.farmland_slope_deg)] = FARMLAND
    # 3. rock
    rock = (slope >= rules.rock_slope_deg) | (zf >= snowline - rules.nival_below_snow_m) | \
        (~below_tree & (slope >= rules.alpine_rock_slope_deg))
    out[rock] = ROCK
    # 1. water (needed for sand)
    lake_px = int(math.ceil(rules.lake_min_km2 * 1e6 / (gsd_m * gsd_m)))
    sea = _large_components(valid & (zf <= rules.sea_level_m), lake_px)  # small pockets <= 0 m are not sea
    flat = valid & (_local_range(zf) <= rules.flat_range_m)
    water = sea | _large_components(flat & ~sea, lake_px)
    # 4. sand: a coastal strip next to the sea
    near_sea = _dilate(sea, int(round(rules.sand_max_dist_m / gsd_m)))
    sand = near_sea & ~water & (zf <= rules.sea_level_m + rules.sand_max_elev_m) & \
        (slope < rules.sand_max_slope_deg)
    out[sand] = SAND
    if landcover is not None:
        known = landcover != 255
        out[known] = landcover[known]
    # 2. snow, then water on top of everything
    out[(zf >= snowline) & (slope < rules.snow_max_slope_deg)] = SNOW
    out[water] = WATER
    return out


# ---------------------------------------------------------------- height normalisation
def normalize_height(h_m: np.ndarray, height_scale_m: float) -> np.ndarray:
    """Chip heights (m) -> [-1, 1]: relative to the chip mean, divided by ``height_scale_m``, clipped."""
    h = np.asarray(h_m, dtype=np.float64)
    return np.clip((h - h.mean()) / float(height_scale_m), -1.0, 1.0).astype(np.float32)


def denormalize_height(h_norm: np.ndarray, height_scale_m: float, reference_m: float = 0.0) -> np.ndarray:
    """Model heights in [-1, 1] -> metres (relative to the chip mean, plus ``reference_m``)."""
    return (np.asarray(h_norm, dtype=np.float64) * float(height_scale_m) + reference_m).astype(np.float32)


# ---------------------------------------------------------------- texture target
def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: int) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random lattice values, bilinear upsampling."""
    h, w = shape
    gh, gw = h // cell_px + 2, w // cell_px + 2
    lat = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys = (np.arange(h) + 0.5) / cell_px
    xs = (np.arange(w) + 0.5) / cell_px
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = lat[y0][:, x0] * (1 - fx) + lat[y0][:, x0 + 1] * fx
    b = lat[y0 + 1][:, x0] * (1 - fx) + lat[y0 + 1][:, x0 + 1] * fx
    return (a * (1 - fy) + b * fy).astype(np.float32)


def albedo_texture(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float (H, W, 3) texture in 0..1: class albedo x (1 + multi-scale noise); farmland gets field blocks."""
    cols = np.array([ALBEDO[c] for c in TERRAIN_CLASSES], dtype=np.float32) / 255.0
    tex = cols[classes]
    shape = classes.shape
    n = 0.10 * _value_noise(rng, shape, 32) + 0.06 * _value_noise(rng, shape, 8) + \
        0.04 * rng.uniform(-1, 1, shape).astype(np.float32)
    # fields: blocks of 6..12 px with their own brightness/tint
    cell = int(rng.integers(6, 13))
    blocks = rng.uniform(-0.12, 0.12, (shape[0] // cell + 1, shape[1] // cell + 1, 3)).astype(np.float32)
    blocks[..., 1] += rng.uniform(-0.06, 0.06, blocks.shape[:2]).astype(np.float32)
    fields = np.repeat(np.repeat(blocks, cell, 0), cell, 1)[:shape[0], :shape[1]]
    per_class = np.array([0.4, 1.0, 0.8, 0.6, 1.0, 0.3, 0.5], dtype=np.float32)[classes]  # noise strength
    tex = tex * (1 + (n * per_class)[..., None])
    tex = np.where((classes == FARMLAND)[..., None], tex * (1 + fields), tex)
    return np.clip(tex, 0, 1)


def shade_factor(z: np.ndarray, gsd_m: float) -> np.ndarray:
    """``0.3 + 0.7 * hillshade / hillshade(flat)``: 1 on flat ground, NW light at 45 deg (Horn's method)."""
    from ..terrain import hillshade
    hs = hillshade(np.asarray(z, dtype=np.float32), (gsd_m, gsd_m)).astype(np.float32)
    flat = 255.0 * math.sin(math.radians(45.0))
    return (0.3 + 0.7 * hs / flat).astype(np.float32)


# ---------------------------------------------------------------- reprojection
def utm_crs(lon: float, lat: float) -> RioCRS:
    """The WGS 84 / UTM zone CRS of a point."""
    zone = int(min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60))
    return RioCRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


@dataclass
class ReprojectedDem:
    z: np.ndarray  # float32 metres, NaN = nodata / outside
    transform: object
    crs: RioCRS
    lon: float
    lat: float


def reproject_dem(path: str | Path, gsd_m: float) -> ReprojectedDem:
    """A DEM on a north-up grid in its local UTM zone with ``gsd_m`` m pixels (bilinear, nodata-aware).

    The file's own nodata value (or NaN) marks holes; they and everything outside the source stay NaN.
    Raises InputError for a DEM without a CRS (it cannot be placed on the ground).
    """
    with rasterio.open(path) as ds:
        if ds.crs is None:
            raise InputError(f"DEM '{path}' has no CRS; assign one before making terrain chips")
        src_crs = ds.crs
        left, bottom, right, top = rasterio.warp.transform_bounds(src_crs, "EPSG:4326", *ds.bounds)
        lon, lat = (left + right) / 2, (bottom + top) / 2
        dst_crs = utm_crs(lon, lat)
        transform, width, height = rasterio.warp.calculate_default_transform(
            src_crs, dst_crs, ds.width, ds.height, *ds.bounds, resolution=gsd_m)
        z = np.full((height, width), np.nan, dtype=np.float32)
        src = ds.read(1, masked=True).astype(np.float32).filled(np.nan)
        rasterio.warp.reproject(src, z, src_transform=ds.transform, src_crs=src_crs, src_nodata=np.nan,
                                dst_transform=transform, dst_crs=dst_crs, dst_nodata=np.nan,
                                resampling=rasterio.warp.Resampling.bilinear)
    return ReprojectedDem(z, transform, dst_crs, float(lon), float(lat))


def source_spacing_m(path: str | Path) -> float:
    """The larger ground pixel spacing (m) of a raster at its centre (geographic degrees converted)."""
    with rasterio.open(path) as ds:
        rx, ry = abs(ds.transform.a), abs(ds.transform.e)
        if ds.crs is not None and ds.crs.is_geographic:
            lat = math.radians((ds.bounds.top + ds.bounds.bottom) / 2)
            return max(rx * 111_320.0 * math.cos(lat), ry * 110_574.0)
        if ds.crs is not None and ds.crs.to_epsg() == 3857:
            lon, lat = rasterio.warp.transform("EPSG:3857", "EPSG:4326", [(ds.bounds.left + ds.bounds.right) / 2],
                                               [(ds.bounds.top + ds.bounds.bottom) / 2])
            return max(rx, ry) * math.cos(math.radians(lat[0]))
        return max(rx, ry)


def _landcover_on(path: Path, dem: ReprojectedDem) -> np.ndarray:
    """NLCD codes on the DEM grid (nearest) mapped to terrain class ids, 255 where unknown."""
    codes = np.zeros(dem.z.shape, dtype=np.uint8)
    with rasterio.open(path) as ds:
        rasterio.warp.reproject(rasterio.band(ds, 1), codes, dst_transform=dem.transform, dst_crs=dem.crs,
                                dst_nodata=0, resampling=rasterio.warp.Resampling.nearest)
    lut = np.full(256, 255, dtype=np.uint8)
    for code, cls in NLCD_TO_TERRAIN.items():
        lut[code] = cls
    return lut[codes]


def _paired_landcover(dem: Path, landcovers: Sequence[Path]) -> Path | None:
    for lc in landcovers:
        prefix = lc.stem[len("landcover_"):].split("_")[0]
        if prefix and dem.name.startswith(prefix):
            return lc
    return None


# ---------------------------------------------------------------- chips
def _chip_origins(valid: np.ndarray, chip_px: int, max_chips: int, usable: np.ndarray | None = None
                  ) -> list[tuple[int, int]]:
    """Top-left corners of chips without any NaN (and touching ``usable``), evenly thinned to ``max_chips``.

    Candidates lie on a ``chip_px`` grid; when that gives fewer than ``max_chips`` they lie on a half-chip
    grid (neighbours overlap by half). :func:`make_terrain_chips` asks for all half-grid candidates and
    thins them itself after dropping mostly-water chips.
    """
    h, w = valid.shape

    def scan(stride):
        return [(r, c) for r in range(0, h - chip_px + 1, stride) for c in range(0, w - chip_px + 1, stride)
                if valid[r:r + chip_px, c:c + chip_px].all()
                and (usable is None or usable[r:r + chip_px, c:c + chip_px].mean() > 0)]
    found = scan(chip_px)
    if len(found) < max_chips:
        found = scan(max(chip_px // 2, 1))
    if len(found) > max_chips > 0:
        keep = np.unique(np.linspace(0, len(found) - 1, max_chips).round().astype(int))
        found = [found[i] for i in keep]
    return found


def _list_dems(dem_dir: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in Path(dem_dir).glob("*.tif") if p.is_file())
    land = [p for p in files if p.name.startswith("landcover_")]
    return [p for p in files if p not in land], land


@dataclass
class _DemChips:
    name: str
    split: str
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    heights: list = field(default_factory=list)
    origins: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChipFilters:
    """Which DEMs and chips :func:`make_terrain_chips` skips: DEMs coarser than ``max_source_spacing_m`` on
    the ground (upsampling them shows their pixel facets), chips with more than ``max_water_share`` water
    (open sea teaches nothing about relief)."""

    max_source_spacing_m: float = 100.0
    max_water_share: float = 0.9

    def __post_init__(self) -> None:
        if not self.max_source_spacing_m > 0:
            raise InputError(f"max_source_spacing_m must be above 0 m (got {self.max_source_spacing_m!r})")
        if not 0 <= self.max_water_share <= 1:
            raise InputError(f"max_water_share must be in [0, 1] (got {self.max_water_share!r})")


def make_terrain_chips(dem_dir: str | Path | None, out_dir: str | Path, *, dems: Sequence[str | Path] = (),
                       gsd_m: float = 30.0, chip_px: int = 128, max_chips_per_dem: int = 64,
                       val_dems: Iterable[str] = DEFAULT_VAL_DEMS, height_scale_m: float | None = None,
                       rules: TerrainRules | None = None, seed: int = 0, filters: ChipFilters = ChipFilters(),
                       log=None) -> dict:
    """Write terrain chips for ``geogan train --chips OUT --shadow``; returns the index (``index.json``).

    ``dem_dir``: folder of DEM GeoTIFFs (``landcover_*.tif`` files are land cover, paired by name prefix);
    ``dems``: explicit DEM files instead (or as well). DEMs whose names start with one of ``val_dems``
    form the validation split (whole files, never random chips). ``filters``: the DEMs (too coarse) and
    chips (mostly water) skipped (:class:`ChipFilters`).
    """
    rules = rules or TerrainRules()
    max_source_spacing_m, max_water_share = filters.max_source_spacing_m, filters.max_water_share
    out_dir = Path(out_dir)
    if (out_dir / "index.json").exists() or any(out_dir.glob("chip_*.png")):
        raise OutputError(f"'{out_dir}' already holds chips; choose another output folder or delete it first")
    if gsd_m <= 0 or chip_px < 16:
        raise InputError("--gsd-m must be positive and --chip-px at least 16")
    files, landcovers = _list_dems(Path(dem_dir)) if dem_dir is not None else ([], [])
    files += [Path(p) for p in dems]
    if not files:
        raise InputError(f"no DEM GeoTIFFs (*.tif) found in '{dem_dir}'; give a folder of DEMs")
    val_dems = tuple(val_dems)
    per_dem: list[_DemChips] = []
    skipped = []
    for path in files:
        split = "val" if any(path.name.startswith(v) for v in val_dems) else "train"
        try:
            spacing = source_spacing_m(path)
            if spacing > max_source_spacing_m:
                raise InputError(f"source spacing {spacing:.0f} m is coarser than {max_source_spacing_m:g} m")
            dem = reproject_dem(path, gsd_m)
        except InputError as exc:
            skipped.append({"dem": path.name, "reason": str(exc)})
            continue
        lc_path = _paired_landcover(path, landcovers)
        landcover = _landcover_on(lc_path, dem) if lc_path is not None else None
        classes = classify_terrain(dem.z, gsd_m, dem.lat, rules, landcover)
        valid = np.isfinite(dem.z)
        # a chip must hold some land: in a window of max_water_share water, "usable" is the land share test
        land = (classes != WATER).astype(np.float32)
        origins = [o for o in _chip_origins(valid, chip_px, 10 ** 9)
                   if land[o[0]:o[0] + chip_px, o[1]:o[1] + chip_px].mean() >= 1 - max_water_share]
        if len(origins) > max_chips_per_dem:
            keep = np.unique(np.linspace(0, len(origins) - 1, max_chips_per_dem).round().astype(int))
            origins = [origins[i] for i in keep]
        if not origins:
            skipped.append({"dem": path.name, "reason": f"no void-free {chip_px} px chip with land"})
            continue
        rng = np.random.default_rng([seed, len(per_dem)])
        zf = np.where(valid, dem.z, 0.0)
        tex = albedo_texture(classes, rng)
        aerial = np.clip(tex * shade_factor(zf, gsd_m)[..., None] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        d = _DemChips(path.name, split)
        for r, c in origins:
            sl = (slice(r, r + chip_px), slice(c, c + chip_px))
            d.images.append(aerial[sl])
            d.labels.append(classes[sl])
            d.heights.append(dem.z[sl].astype(np.float32))
            d.origins.append((r, c))
        hist = np.bincount(np.stack(d.labels).ravel(), minlength=len(TERRAIN_CLASSES)) / (len(d.labels) * chip_px ** 2)
        d.info = {"dem": path.name, "split": split, "utm": dem.crs.to_string(), "lat": round(dem.lat, 3),
                  "lon": round(dem.lon, 3), "snowline_m": rules.snowline_m(dem.lat),
                  "grid_px": list(dem.z.shape), "valid_fraction": round(float(valid.mean()), 4),
                  "chips": len(origins), "landcover": lc_path.name if lc_path is not None else None,
                  "class_shares": {n: round(float(v), 4) for n, v in zip(TERRAIN_CLASSES, hist)}}
        per_dem.append(d)
        if log is not None:
            log(f"{path.name}: {len(origins)} chips ({split})")
    train = [d for d in per_dem if d.split == "train"]
    val = [d for d in per_dem if d.split == "val"]
    if not train:
        raise InputError("no training chips: every DEM was held out for validation or skipped")
    if height_scale_m is None:
        dev = np.concatenate([np.abs(h - h.mean()).ravel() for d in train for h in d.heights])
        height_scale_m = float(math.ceil(np.percentile(dev, 99.9) / 100.0) * 100.0)
    (out_dir / "heights").mkdir(parents=True, exist_ok=True)
    chips, n = [], 0
    for d in train + val:
        for img, lab, h, (r, c) in zip(d.images, d.labels, d.heights, d.origins):
            name = f"chip_{n:05d}"
            grey = np.asarray(GREY, dtype=np.uint8)[lab]
            pair = np.concatenate([img, np.repeat(grey[..., None], 3, -1)], 1)
            Image.fromarray(pair).save(out_dir / f"{name}.png")
            np.save(out_dir / "heights" / f"{name}.npy", h)
            chips.append({"name": name, "dem": d.name, "row": r, "col": c})
            n += 1
    n_train = sum(len(d.images) for d in train)
    lines = ['name = "terrain"', f"classes = {json.dumps(list(TERRAIN_CLASSES))}", f"gsd_m = {gsd_m}",
             f'data = "terrain chips ({chip_px} px at {gsd_m} m) from {len(per_dem)} real DEMs"',
             'license = "see the DEM README: SRTM/USGS public domain, ASTER GDEM and swisstopo with attribution, '
             'CGIAR-CSI SRTM v4.1 non-commercial; some sources not stated"',
             "tolerance = 12", "", "[values]"]
    lines += [f'{g} = "{name}"' for g, name in zip(GREY, TERRAIN_CLASSES)]
    lines += ["", "[schema_to_model]"] + [f'{k} = "{v}"' for k, v in SCHEMA_TO_TERRAIN.items()]
    (out_dir / "label_map.toml").write_text("\n".join(lines) + "\n")
    index = {"kind": "terrain", "gsd_m": gsd_m, "chip_px": chip_px, "chips": chips, "val_from": n_train,
             "heights": True, "height_ref": "mean", "height_scale_m": height_scale_m,
             "val_dems": [d.name for d in val], "train_dems": [d.name for d in train], "skipped": skipped,
             "dems": [d.info for d in per_dem], "rules": asdict(rules), "classes": list(TERRAIN_CLASSES),
             "albedo": ALBEDO, "seed": seed}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


__all__ = ["TERRAIN_CLASSES", "ALBEDO", "TerrainRules", "classify_terrain", "slope_deg", "normalize_height",
           "denormalize_height", "albedo_texture", "shade_factor", "utm_crs", "reproject_dem",
           "make_terrain_chips", "ChipFilters", "DEFAULT_VAL_DEMS", "SCHEMA_TO_TERRAIN", "radial_power_spectrum",
           "spectral_slope", "slope_w1_deg", "relief_p95_p5", "rank_agreement", "class_colour_separation",
           "evaluate_terrain_model", "finalize_terrain_card"]


# ---------------------------------------------------------------- plausibility metrics (pure numpy)
def radial_power_spectrum(chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of square height chips ``(N, S, S)`` (each made mean-free and
    Hann-windowed against edge leakage), averaged over the chips: ``(k, power)`` for integer radii
    ``k = 1 .. S // 2`` (cycles per chip)."""
    chips = np.asarray(chips, dtype=np.float64)
    if chips.ndim == 2:
        chips = chips[None]
    s = chips.shape[-1]
    win = np.outer(np.hanning(s), np.hanning(s))
    x = (chips - chips.mean(axis=(1, 2), keepdims=True)) * win
    p = (np.abs(np.fft.fft2(x)) ** 2).mean(0)
    f = np.fft.fftfreq(s) * s
    r = np.rint(np.hypot(f[:, None], f[None, :])).astype(int)
    k = np.arange(1, s // 2 + 1)
    power = np.bincount(r.ravel(), p.ravel(), minlength=s)[k] / np.maximum(np.bincount(r.ravel(), minlength=s)[k], 1)
    return k, power


def spectral_slope(chips: np.ndarray, k_min: int = 2, k_max_frac: float = 0.5) -> float:
    """Log-log slope of :func:`radial_power_spectrum` over ``k_min .. k_max_frac * S/2`` cycles per chip.

    Real terrain is roughly fractal: power falls as about ``k**-3`` to ``k**-4`` up to the DEM's own
    smoothing; high-frequency ripple flattens the slope (towards 0 = white noise), over-smooth output
    steepens it. NaN when there is no power."""
    k, p = radial_power_spectrum(chips)
    sel = (k >= k_min) & (k <= max(k_min + 2, int(k_max_frac * k[-1])))
    if not np.all(p[sel] > 0):
        return float("nan")
    return float(np.polyfit(np.log(k[sel]), np.log(p[sel]), 1)[0])


def slope_w1_deg(real: np.ndarray, generated: np.ndarray, n_q: int = 101) -> float:
    """1-D Wasserstein distance (degrees) between two slope distributions (mean |quantile difference|)."""
    q = np.linspace(0, 100, n_q)
    return float(np.abs(np.percentile(real, q) - np.percentile(generated, q)).mean())


def relief_p95_p5(chips: np.ndarray) -> np.ndarray:
    """Per chip ``p95 - p5`` of its heights (m): a robust relief that ignores single spikes."""
    chips = np.asarray(chips, dtype=np.float64).reshape(len(chips), -1)
    return np.percentile(chips, 95, axis=1) - np.percentile(chips, 5, axis=1)


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (ties by order); NaN for fewer than 3."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def class_colour_separation(rgb: np.ndarray, labels: np.ndarray, n_classes: int, min_px: int = 100) -> dict:
    """Per-class mean colours of ``rgb`` (N, H, W, 3 in 0..255) and their mean pairwise distance (0..255
    units): near 0 when the texture no longer depends on the class (a 'grey' model)."""
    means = {}
    flat_rgb, flat_lab = rgb.reshape(-1, 3).astype(np.float64), labels.ravel()
    for c in range(n_classes):
        m = flat_lab == c
        if m.sum() >= min_px:
            means[c] = flat_rgb[m].mean(0)
    cs = sorted(means)
    d = [float(np.linalg.norm(means[i] - means[j])) for ii, i in enumerate(cs) for j in cs[ii + 1:]]
    return {"means": means, "mean_pairwise_distance": float(np.mean(d)) if d else float("nan")}


# ---------------------------------------------------------------- evaluation
def evaluate_terrain_model(card_path: str | Path, chips_dir: str | Path, split: str = "val", seed: int = 0,
                           batch: int = 8) -> dict:
    """Height, slope, relief, spectrum and texture statistics of a terrain model on chips (default: the
    held-out DEMs' chips), generated vs real.

    Heights are compared relative to each chip's mean (the model's reference). ``height_rmse_m`` (generated
    vs real, both mean-free) and ``flat_prediction_rmse_m`` (the same for flat ground = the real relief's
    std) are reported, but a class map does not determine heights, so flat ground is the MSE-optimal answer
    and RMSE is a poor measure of plausibility. The plausibility metrics compare *distributions*:

    - slope (degrees at the chips' GSD): mean / p50 / p90 and the Wasserstein distance ``slope_w1_deg``;
    - per class: mean slope and mean height relative to the chip mean (water should lie lowest, rock/snow
      highest), and the Spearman rank agreement of those per-class values with the real ones;
    - relief: per-chip ``p95 - p5`` height range (median over chips) and its ratio generated / real;
    - spectrum: log-log slope of the radially averaged height power spectrum (real terrain is roughly
      fractal; ripple flattens it) and the share of power at wavelengths below 4 px;
    - water flatness: mean slope on water (real: about 0);
    - texture: L1 to the shaded target, and the mean pairwise distance of per-class mean colours
      (generated vs target; near 0 means the texture ignores the classes).
    """
    import torch
    import torch.nn.functional as F

    from ..models.checkpoint import load_generator
    from .chips import ChipSet

    module, card = load_generator(card_path, device="cpu")
    module.eval()
    chips = ChipSet.load(Path(chips_dir), split)
    if chips.heights is None:
        raise InputError(f"'{chips_dir}' has no heights")
    scale, gsd = float(card["height_scale_m"]), float(json.loads((Path(chips_dir) / "index.json").read_text())["gsd_m"])
    order = [list(card["classes"]).index(c) for c in chips.label_map.classes]
    n_cls = len(chips.label_map.classes)
    gen = torch.Generator().manual_seed(seed)
    rmse, flat, std_r, std_g, l1 = [], [], [], [], []
    hr_all, hg_all, tex_all = [], [], []
    with torch.inference_mode():
        for i in range(0, len(chips), batch):
            idx = list(range(i, min(len(chips), i + batch)))
            lab = torch.from_numpy(np.asarray(order, dtype=np.int64)[chips.labels[idx]])
            x = F.one_hot(lab, len(card["classes"])).permute(0, 3, 1, 2).float()
            z = torch.randn(x.shape[0], 1, *x.shape[2:], generator=gen)
            out = module(x, noise=z)
            hg = out[:, 3].double().numpy() * scale
            img = torch.from_numpy(chips.images[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
            l1.append(float((out[:, :3] - img).abs().mean()) / 2)
            tex_all.append(((out[:, :3].permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255))
            for k, j in enumerate(idx):
                hr = chips.heights[j].astype(np.float64)
                hr = hr - hr.mean()
                g = hg[k] - hg[k].mean()
                rmse.append(math.sqrt(float(((g - hr) ** 2).mean())))
                flat.append(float(hr.std()))
                std_r.append(float(hr.std()))
                std_g.append(float(g.std()))
                hr_all.append(hr)
                hg_all.append(g)
    HR, HG = np.stack(hr_all), np.stack(hg_all)
    sr = np.stack([slope_deg(h, gsd)[2:-2, 2:-2] for h in HR])
    sg = np.stack([slope_deg(h, gsd)[2:-2, 2:-2] for h in HG])
    lb_full = chips.labels[:len(HR)]
    lb = lb_full[:, 2:-2, 2:-2]
    per_class, hcls = {}, {}
    for c, name in enumerate(chips.label_map.classes):
        m = lb == c
        if m.sum() > 100:
            mf = lb_full == c
            per_class[name] = {"real_mean_slope_deg": round(float(sr[m].mean()), 2),
                               "generated_mean_slope_deg": round(float(sg[m].mean()), 2)}
            hcls[name] = {"real_mean_rel_height_m": round(float(HR[mf].mean()), 1),
                          "generated_mean_rel_height_m": round(float(HG[mf].mean()), 1)}
    names = list(per_class)
    rel_r, rel_g = relief_p95_p5(HR), relief_p95_p5(HG)
    k, pr = radial_power_spectrum(HR)
    _, pg = radial_power_spectrum(HG)
    hf = k > k[-1] / 2  # wavelengths below 4 px
    tex_g = np.concatenate(tex_all)
    sep_g = class_colour_separation(tex_g, lb_full, n_cls)
    sep_r = class_colour_separation(chips.images.astype(np.float64), lb_full, n_cls)
    colour_err = [float(np.abs(sep_g["means"][c] - sep_r["means"][c]).mean()) for c in sep_g["means"]
                  if c in sep_r["means"]]
    water = chips.label_map.classes.index("water") if "water" in chips.label_map.classes else None
    r2 = lambda v: round(float(v), 2)
    return {"split": split, "chips": len(chips), "height_rmse_m": round(float(np.mean(rmse)), 1),
            "flat_prediction_rmse_m": round(float(np.mean(flat)), 1),
            "real_relief_std_m": round(float(np.mean(std_r)), 1),
            "generated_relief_std_m": round(float(np.mean(std_g)), 1),
            "real_slope_deg": {"mean": r2(sr.mean()), "p50": r2(np.median(sr)), "p90": r2(np.percentile(sr, 90))},
            "generated_slope_deg": {"mean": r2(sg.mean()), "p50": r2(np.median(sg)),
                                    "p90": r2(np.percentile(sg, 90))},
            "slope_w1_deg": r2(slope_w1_deg(sr.ravel()[::7], sg.ravel()[::7])),
            "slope_by_class": per_class,
            "slope_class_rank_agreement": r2(rank_agreement(
                [per_class[n]["real_mean_slope_deg"] for n in names],
                [per_class[n]["generated_mean_slope_deg"] for n in names])),
            "rel_height_by_class": hcls,
            "rel_height_class_rank_agreement": r2(rank_agreement(
                [hcls[n]["real_mean_rel_height_m"] for n in names],
                [hcls[n]["generated_mean_rel_height_m"] for n in names])),
            "water_mean_slope_deg": ({"real": per_class["water"]["real_mean_slope_deg"],
                                      "generated": per_class["water"]["generated_mean_slope_deg"]}
                                     if water is not None and "water" in per_class else None),
            "relief_p95_p5_m": {"real_median": round(float(np.median(rel_r)), 1),
                                "generated_median": round(float(np.median(rel_g)), 1),
                                "median_ratio_generated_to_real": r2(np.median(rel_g / np.maximum(rel_r, 1.0)))},
            "spectrum_slope": {"real": r2(spectral_slope(HR)), "generated": r2(spectral_slope(HG))},
            "spectrum_hf_power_share": {"real": float(f"{pr[hf].sum() / pr.sum():.3g}"),
                                        "generated": float(f"{pg[hf].sum() / max(pg.sum(), 1e-12):.3g}")},
            "texture_l1_to_shaded_target": round(float(np.mean(l1)), 4),
            "texture_class_colour_separation": {"target": round(sep_r["mean_pairwise_distance"], 1),
                                                "generated": round(sep_g["mean_pairwise_distance"], 1)},
            "texture_class_colour_error": round(float(np.mean(colour_err)), 1) if colour_err else None}


def finalize_terrain_card(card_path: str | Path, chips_dir: str | Path, metrics: dict, *,
                          command: str = "", dem_readme: str = "../shared/data/dem/README.md") -> dict:
    """Merge provenance, licences, the class mapping, the height convention and ``metrics`` into a
    terrain model card (the weights and their hash are untouched); returns the card."""
    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    index = json.loads((Path(chips_dir) / "index.json").read_text())
    tr = card.setdefault("training", {})
    n_train, n_val = index["val_from"], len(index["chips"]) - index["val_from"]
    batch = int(tr.get("recipe", {}).get("batch", 4))
    card["description"] = (
        "Learned terrain: compact U-Net (texture RGB + height) trained with geogan's shadow generator on "
        f"{n_train} {index['chip_px']} px chips at {index['gsd_m']:g} m cut from {len(index['train_dems'])} real DEMs. "
        "Input classes are derived from the DEMs themselves by fixed rules (no land-cover data except NLCD "
        "for Zion); the RGB target is SYNTHETIC (per-class albedo x multi-scale noise x hillshade), because "
        "no imagery exists for these DEMs: the texture shows class colours, not real land cover.")
    card["height_reference"] = "chip mean"
    card["height_convention"] = (
        f"height channel h in [-1, 1] -> metres = h * height_scale_m ({card['height_scale_m']:g} m), relative "
        "to the mean elevation of the tile the model saw (absolute level unknown; the render writes it "
        "around 0 m when no --dem is given, and a --dem replaces it)")
    card["license"] = (
        "Non-commercial use until the CGIAR-CSI SRTM v4.1 terms (Zion DEM) are cleared, or retrain without "
        "that DEM. Training data: SRTM, USGS DEM/NED and NLCD are public domain (acknowledge "
        "NASA/USGS); ASTER GDEM (Japan, Ararat): METI/NASA, attribution; CGIAR-CSI SRTM v4.1 (Zion): free for "
        "non-commercial use -- check before any commercial release; swisstopo DHM25/200 was not used; the Arco, "
        "Inyo, Meghalaya and Eno River rasters have unknown provenance/terms (used for training only). "
        "LandCover.ai (CC BY-NC-SA 4.0) gave only three mean colours.")
    tr.update({
        "data": f"terrain chips from real DEMs ({dem_readme}); see data_provenance",
        "data_provenance": "34 real DEMs collected from public GitHub repositories (SRTM 1\"/3\" incl. DTED, "
                           "CGIAR SRTM v4.1, ASTER GDEM v2, USGS 7.5' DEM / NED, swisstopo DHM25/200 and "
                           "unstated sources), each listed with repository@commit, path and licence in the "
                           "DEM README; NLCD 2011 land cover for Zion.",
        "train_dems": index["train_dems"], "val_dems": index["val_dems"], "skipped_dems": index["skipped"],
        "train_chips": n_train, "val_chips": n_val, "chip_px": index["chip_px"], "gsd_m": index["gsd_m"],
        "split": "by whole DEM file (held-out DEMs never seen in training)",
        "how_little_data": f"{n_train} training chips ({n_train * index['chip_px'] ** 2 / 1e6:.1f} Mpx, at most "
                           f"64 per DEM) from {len(index['train_dems'])} DEMs; "
                           f"{tr.get('steps', '?')} steps of batch {batch} (each chip seen about "
                           f"{tr.get('steps', 0) * batch / max(n_train, 1):.1f} times)",
        "class_rules": index["rules"], "albedo_rgb": index["albedo"],
        "texture_target": "aerial = albedo(class) x (1 + multi-scale noise) x (0.3 + 0.7 hillshade/hillshade(flat)); "
                          "water/woodland/farmland albedo = mean LandCover.ai colours (pairs 0,4,..,196), "
                          "grass = mean(background, woodland), rock/snow/sand hand-picked",
        "height_normalisation": f"(h - chip mean) / {index['height_scale_m']:g} m, clipped to [-1, 1] "
                                "(height_scale_m = 99.9th percentile of |h - chip mean| over training chips, "
                                "rounded up to 100 m)",
    })
    if command:
        tr["command"] = command
    card["metrics"] = {**card.get("metrics", {}), **metrics}
    card["schema_to_model_notes"] = ("schema classes the terrain model has no class for: background/path/"
                                     "wetland -> grass, building/road/railway -> farmland, impervious/bare -> "
                                     "rock; 'snow' and 'sand' exist in geogan/data/terrain_rules.toml")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card
