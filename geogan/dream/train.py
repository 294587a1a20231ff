"""Fake towns: an unconditional DCGAN dreams class maps, geogan renders them.

Three steps:

1. :func:`class_tiles_from_osm` rasterizes real OpenStreetMap data at a coarse
   GSD (4-8 m, so a 64 px tile holds a street pattern) and cuts it into class
   tiles, skipping tiles that are mostly unmapped background.
2. :func:`train_dream` trains a DCGAN (:mod:`geogan.models.dcgan`) on the
   tiles as one-hot maps (randomly rotated/flipped; the generator's one-hot
   argmax with straight-through softmax gradients, low-passed logits, against
   real one-hots, both with instance noise), with a minibatch-stddev channel
   in the discriminator, a slower discriminator (TTUR), a mode-seeking term
   and an EMA of the generator against mode collapse, a class-marginal term
   (:func:`class_marginal_loss`) against losing thin classes such as roads,
   measured at every checkpoint by :func:`dream_tile_stats` (class fractions,
   diversity, and :func:`line_stats` of the street network); resumable through
   :func:`~geogan.models.checkpoint.save_training_state`,
   and exports the generator as ``NAME.safetensors`` + ``NAME.json`` (a
   ``geogan-dream/1`` card: classes, GSD, tile size, z_dim, training data
   and its licence).
3. :func:`dream_map` dreams a class map larger than one tile: overlapping
   tiles whose latent vectors are a smooth function of position (a lattice of
   position-hashed Gaussian latents, interpolated bilinearly with the variance
   kept at one) so neighbouring tiles share latents; the tiles' softmax
   outputs are blended with geogan's raised-cosine window
   (:func:`geogan.blend.blend_weights`, streamed by :class:`~geogan.blend.StripBlender`)
   before the argmax, and small specks are sieved away. Same seed, same map.
   Each tile picks among position-seeded latent candidates the one agreeing
   best with its placed neighbours, rare classes weighing more; per-class
   gains from the card (:func:`calibrate_thin_gains`, written at export by
   :func:`calibrate_dream_model`) keep the roads and paths that blending would
   average away.

:func:`dream` puts a dream on the real grid of a bbox (the model's native GSD
resampled, nearest, to the output GSD), writes ``dream_classes.tif`` and
renders it to aerial + height with a conditional model through
:func:`geogan.api.render`'s sketch path (the class map is handed over as an
exactly palette-coloured PNG with the grid's own shape, so it maps 1:1).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import shapely
import shapely.geometry
import torch
import torch.nn.functional as F

from ..blend import StripBlender
from ..classes import Schema, load_schema
from ..errors import InputError, ModelError, TooLargeError
from ..grid import Grid, grid_from_bbox, parse_crs
from ..models.checkpoint import load_training_state, model_paths, save_training_state, sha256_file
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator
from ..models.loss import GANLoss
from ..noise import GOLD, M1, M2, splitmix64
from ..sketch import RasterClassSource
from ..streets import join_streets

log = logging.getLogger("geogan")

PathLike = str | os.PathLike
BBox = tuple[float, float, float, float]
ProgressFn = Callable[[float, str], None]

#: ``card["format"]`` of dream models.
DREAM_FORMAT = "geogan-dream/1"
#: Stem of the trainer checkpoint inside the run directory.
STATE_STEM = "dream-train-state"
#: Default name of the exported model inside the run directory.
DEFAULT_MODEL_NAME = "dream"
#: Licence of models trained on OpenStreetMap data (a derived database).
OSM_LICENSE = "ODbL-1.0"
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"
#: Name of the dreamed class map written by :func:`dream`.
DREAM_CLASSES = "dream_classes.tif"
MAX_DREAM_PX = 20_000 ** 2


# ----------------------------------------------------------------------------- data


def _cut_tiles(class_map: np.ndarray, tile_px: int, stride_px: int, min_mapped: float) -> list[np.ndarray]:
    h, w = class_map.shape
    out = []
    for r in range(0, h - tile_px + 1, stride_px):
        for c in range(0, w - tile_px + 1, stride_px):
            tile = class_map[r:r + tile_px, c:c + tile_px]
            if np.count_nonzero(tile) >= min_mapped * tile.size:
                out.append(tile.copy())
    return out


def class_tiles_from_osm(osm_paths: PathLike | Sequence[PathLike], bbox_lonlat: BBox | None = None,
                         crs: str = "EPSG:3857", gsd_m: float = 4.0, tile_px: int = 64, *,
                         stride_px: int | None = None, min_mapped: float = 0.5,
                         rules: PathLike | None = None, extra_gsd_m: Sequence[float] = ()) -> np.ndarray:
    """Class tiles ``uint8 (N, tile_px, tile_px)`` cut from rasterized OSM data.

    Parameters
    ----------
    osm_paths : one path or several (OSM .osm / .osm.pbf, or any vector source geogan reads).
    bbox_lonlat : (lon_min, lat_min, lon_max, lat_max) rasterized from all sources together; None
        rasterizes each source over its own data extent (sources may then lie in different towns).
    crs : the CRS rasterized in (any; the GSD is in ground metres).
    gsd_m : pixel size in ground metres; 4-8 m lets a 64 px tile hold a street pattern.
    tile_px : tile side. stride_px : step between tiles (default ``tile_px // 2``).
    min_mapped : keep a tile only when at least this fraction of it is not background (class 0).
    extra_gsd_m : further pixel sizes to rasterize at too (scale augmentation: e.g. 3.2 and 5 around a
        4 m model make towns a little denser and sparser; the model's GSD stays ``gsd_m``).

    Raises
    ------
    InputError
        When no tile passes (area too small for the tile size, or unmapped).
    """
    from ..api import rasterize_array

    paths = [osm_paths] if isinstance(osm_paths, (str, os.PathLike)) else list(osm_paths)
    if not paths:
        raise InputError("class_tiles_from_osm: give at least one OSM file")
    if not 0.0 <= min_mapped <= 1.0:
        raise InputError(f"min_mapped {min_mapped} must be between 0 and 1")
    stride_px = int(stride_px or max(1, tile_px // 2))
    groups = [paths] if bbox_lonlat is not None else [[p] for p in paths]
    tiles: list[np.ndarray] = []
    for gsd in [gsd_m, *[g for g in extra_gsd_m if g != gsd_m]]:
        if not gsd > 0:
            raise InputError(f"GSD {gsd} must be positive")
        for group in groups:
            class_map, grid = rasterize_array([Path(p) for p in group], bbox=bbox_lonlat, bbox_crs="EPSG:4326",
                                              crs=crs, gsd_m=gsd, rules=rules)
            got = _cut_tiles(class_map, tile_px, stride_px, min_mapped)
            log.info("%s: %dx%d px at %g m, %d tiles", ", ".join(Path(p).name for p in group), grid.width,
                     grid.height, gsd, len(got))
            tiles.extend(got)
    if not tiles:
        raise InputError(f"no {tile_px} px tile at {gsd_m} m is at least {min_mapped:.0%} mapped; use a larger or "
                         "better-mapped area, a coarser --gsd, a smaller tile or a lower min_mapped")
    return np.stack(tiles).astype(np.uint8)


# ----------------------------------------------------------------------------- model files


@dataclass
class DreamModel:
    """A loaded dream generator and its card."""

    generator: DCGANGenerator
    card: dict

    @property
    def tile_px(self) -> int:
        return int(self.card["tile_px"])

    @property
    def z_dim(self) -> int:
        return int(self.card["z_dim"])

    @property
    def gsd_m(self) -> float:
        return float(self.card["gsd_m"])

    @property
    def n_classes(self) -> int:
        return len(self.card["classes"])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_dream_model(generator: DCGANGenerator, card: dict, path_stem: PathLike) -> tuple[Path, Path]:
    """Write ``STEM.safetensors`` + ``STEM.json``; fills in format, arch params and the weights' SHA-256."""
    from safetensors.torch import save_file

    card_path, weights_path = model_paths(path_stem)
    out = dict(card)
    out.update(format=DREAM_FORMAT, arch="dcgan", tile_px=generator.size, z_dim=generator.z_dim,
               arch_params={"z_dim": generator.z_dim, "n_classes": generator.n_classes,
                            "ngf": _ngf(generator), "size": generator.size,
                            **({"blur": True} if getattr(generator, "blur", False) else {})})
    if len(out.get("classes", [])) != generator.n_classes:
        raise ModelError(f"dream model card lists {len(out.get('classes', []))} classes but the generator has "
                         f"{generator.n_classes}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in generator.state_dict().items()}
    _atomic(weights_path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": DREAM_FORMAT}))
    out["weights_sha256"] = sha256_file(weights_path)
    _atomic(card_path, lambda tmp: tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8"))
    return weights_path, card_path


def _ngf(generator: DCGANGenerator) -> int:
    last = [m for m in generator.net if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    return int(last.in_channels)


def resolve_dream_model(name_or_path: PathLike) -> Path:
    """Card path of a dream model: a .json/.safetensors path or a name in geogan's model directories."""
    from ..zoo import resolve_model

    try:
        return resolve_model(name_or_path)
    except ModelError:
        raise ModelError(f"dream model '{name_or_path}' not found; train one with 'geogan dream-train' and pass "
                         "--model RUN/dream.json (or copy it into the user model directory)") from None


def load_dream_model(path: PathLike, device: str | torch.device = "cpu",
                     schema: Schema | None = None) -> DreamModel:
    """Load and check a dream model written by :func:`save_dream_model` (or a zoo name)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card_path, weights_path = model_paths(resolve_dream_model(path))
    for p in (card_path, weights_path):
        if not p.is_file():
            raise ModelError(f"dream model file '{p}' does not exist; train one with 'geogan dream-train'")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"dream model card '{card_path}' is not readable JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != DREAM_FORMAT:
        raise ModelError(f"'{card_path}' is not a {DREAM_FORMAT} model card; conditional render models go to "
                         "--render-model, dream models come from 'geogan dream-train'")
    if sha256_file(weights_path) != card.get("weights_sha256"):
        raise ModelError(f"dream model weights '{weights_path}' do not match the SHA-256 in its card; the file was "
                         "changed or belongs to another card")
    schema = schema or load_schema()
    names = [c.name for c in schema.classes]
    if list(card.get("classes", [])) != names[:len(card.get("classes", []))] or not card.get("classes"):
        raise ModelError(f"dream model '{card_path}' classes {card.get('classes')} do not match the schema's "
                         f"class ids {names}; retrain with this schema")
    try:
        gen = DCGANGenerator(**card["arch_params"])
        gen.load_state_dict(load_file(str(weights_path)), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"dream model '{card_path}': weights do not fit the card ({first})") from None
    gen.eval().to(device)
    return DreamModel(gen, card)


# ----------------------------------------------------------------------------- training


def _tiles_digest(tiles: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tiles).tobytes()).hexdigest()[:16]


def _real_batch(tiles: torch.Tensor, batch: int, n_classes: int, smooth: float, gen: torch.Generator) -> torch.Tensor:
    """A batch of real tiles: random rotations/flips, one-hot, mixed with a random simplex point."""
    idx = torch.randint(0, tiles.shape[0], (batch,), generator=gen)
    rot = torch.randint(0, 4, (batch,), generator=gen)
    flip = torch.randint(0, 2, (batch,), generator=gen)
    ids = tiles[idx]
    ids = torch.stack([torch.rot90(t, int(k), (0, 1)).flip(1) if f else torch.rot90(t, int(k), (0, 1))
                       for t, k, f in zip(ids, rot, flip)])
    onehot = F.one_hot(ids.long(), n_classes).permute(0, 3, 1, 2).float()
    return _mix(onehot, smooth, gen)


def _mix(onehot: torch.Tensor, smooth: float, gen: torch.Generator) -> torch.Tensor:
    """Mix class maps with a random simplex point (instance noise), the same way for real and fake."""
    if smooth <= 0:
        return onehot
    s = smooth * torch.rand(onehot.shape[0], 1, 1, 1, generator=gen).to(onehot.device)
    u = torch.rand(onehot.shape, generator=gen).to(onehot.device) + 1e-6
    return (1 - s) * onehot + s * (u / u.sum(1, keepdim=True))


def _harden(probs: torch.Tensor) -> torch.Tensor:
    """Straight-through one-hot: hard classes forward (as the real maps are), softmax gradients backward.

    Without it the discriminator tells generated maps from real ones by their softness alone
    (its loss drops to ~0 within a few hundred steps and the generator learns nothing).
    """
    hard = F.one_hot(probs.argmax(1), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    return hard + probs - probs.detach()


#: How generated tiles are shown to the discriminator (see :func:`train_dream`).
FAKE_MODES = ("gumbel", "hard", "soft")


def _fake_maps(G: DCGANGenerator, z: torch.Tensor, mode: str,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the discriminator sees, the generator's softmax)."""
    logits = G.logits(z)
    probs = torch.softmax(logits, 1)
    if mode == "soft":
        return probs, probs
    if mode == "gumbel":
        u = torch.rand(logits.shape, generator=gen).to(logits.device).clamp_(1e-9, 1 - 1e-9)
        logits = logits - torch.log(-torch.log(u))
    return _harden(torch.softmax(logits, 1)), probs


def mode_seeking_loss(probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019): ``1 / (|G(z1) - G(z2)| / |z1 - z2| + eps)`` over
    the two halves of a batch, so a generator that ignores its latent is punished directly."""
    h = probs.shape[0] // 2
    if h == 0:
        return probs.new_zeros(())
    d_out = (probs[:h] - probs[h:2 * h]).abs().mean((1, 2, 3))
    d_z = (z[:h] - z[h:2 * h]).abs().mean(1)
    return 1.0 / ((d_out / d_z).mean() + 1e-5)


def class_marginal_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``KL(target || fake)`` between the real tiles' class fractions ``target`` ``[K]`` and the batch's
    argmax class fractions (straight-through: the value counts the one-hot argmax, the gradient flows
    through the softmax ``probs`` ``[B, K, H, W]``).

    The divergence weighs every class by its real share and grows without bound as a class present in
    the real tiles disappears, so a generator that drops thin, rare-looking classes (roads, paths: a
    few pixels wide, easy to lose in the argmax) is pushed back towards the real proportions.
    """
    fake = _harden(probs).mean((0, 2, 3)) + eps
    target = target.to(fake.dtype) + eps
    return (target * (target.log() - fake.log())).sum() - (target.sum() - fake.sum())


@torch.no_grad()
def recalibrate_batchnorm(generator: DCGANGenerator, seed: int = 0, samples: int = 512, batch: int = 64) -> None:
    """Set batch-norm running statistics to the exact average over random latents (in place).

    Generation runs in eval mode (tiles independent of their batch, deterministic); this makes the
    eval-mode statistics those of freshly sampled latents rather than an exponential average that
    lags the last training steps.
    """
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = generator.training
    generator.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    for i in range(0, samples, batch):
        generator.logits(torch.randn(min(batch, samples - i), generator.z_dim, generator=gen).to(device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    generator.train(was_training)


@torch.no_grad()
def sample_tiles(generator: DCGANGenerator, n: int, seed: int = 0, batch: int = 64) -> np.ndarray:
    """``uint8 (n, T, T)`` class maps (argmax) of ``n`` independent latents, in eval mode."""
    was_training = generator.training
    generator.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    out = []
    for i in range(0, n, batch):
        z = torch.randn(min(batch, n - i), generator.z_dim, generator=gen).to(device)
        out.append(generator.logits(z).argmax(1).to(torch.uint8).cpu().numpy())
    generator.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, generator.size, generator.size), np.uint8)


def line_stats(class_map: np.ndarray, classes: Sequence[int], long_px: int) -> dict:
    """How much of a class map's ``classes`` (e.g. road and path) is a network of long lines.

    ``fraction``: share of pixels in those classes; ``long_share``: share of those pixels that lie in
    8-connected components at least ``long_px`` long (the larger side of their bounding box), i.e.
    streets rather than specks or stubs; ``components``: number of components per 1,000 px.
    Components are GDAL's polygons of the mask (``rasterio.features.shapes``, 8-connected): in pixel
    units a polygon's area is its pixel count and its bounds are the component's bounding box.
    """
    from rasterio import features as rio_features

    m = np.isin(np.asarray(class_map), list(classes))
    n = int(m.sum())
    if n == 0:
        return {"fraction": 0.0, "long_share": 0.0, "components": 0.0}
    polys = np.array([shapely.geometry.shape(g) for g, _ in
                      rio_features.shapes(m.astype(np.uint8), mask=m, connectivity=8)], dtype=object)
    bounds = shapely.bounds(polys)
    extent_px = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    long_n = shapely.area(polys)[extent_px >= long_px].sum()
    return {"fraction": round(n / m.size, 4), "long_share": round(float(long_n / n), 4),
            "components": round(1000.0 * len(polys) / m.size, 3)}


#: Class ids of the street network (road, path) in geogan's schema, for :func:`line_stats`.
STREET_CLASSES = (2, 3)
#: Street joining in :func:`dream_map` (dream pixels; 4 m with the shipped model). Measured on four 200 px
#: dreams (seeds 0-3): roads in pieces at least 16 px long 40 % -> 85 % (real OSM tiles 91 %), road pieces
#: per 1,000 px 2.3 -> 0.7; a 20 degree cone and 10 px gaps drew a web of diagonal cracks instead.
STREET_JOIN_GAP_PX = 8
STREET_JOIN_CONE_DEG = 10.0
STREET_MIN_LENGTH_PX = 12


def dream_tile_stats(tiles: np.ndarray, n_classes: int) -> dict:
    """Statistics of a set of class tiles ``(N, T, T)`` that make mode collapse visible.

    ``mean`` / ``std``: per class, the mean and the spread (standard deviation across tiles) of the
    fraction of a tile's pixels in that class. ``diversity``: mean pairwise pixel disagreement (the
    fraction of pixels whose classes differ) over all pairs of distinct tiles. ``nn_disagreement``:
    mean over tiles of the disagreement with the most similar other tile (near 0 when tiles repeat).
    ``composition_diversity``: mean pairwise total-variation distance between the tiles' class-fraction
    vectors (insensitive to pixel noise, which inflates ``diversity``). ``edge_rate``: fraction of
    4-neighbour pixel pairs whose classes differ (fragmentation; noisy tiles score high).
    A collapsed generator has a far lower diversity, spread and nearest-neighbour disagreement than
    the real tiles. ``streets`` / ``roads``: :func:`line_stats` of road + path / road alone within the
    tiles (``long_share``: share of those pixels in components at least half a tile long), so
    specks and stubs instead of streets show up in numbers.
    """
    tiles = np.asarray(tiles)
    n = len(tiles)
    flat = tiles.reshape(n, -1)
    frac = np.stack([(flat == k).mean(1) for k in range(n_classes)], 1) if n else np.zeros((0, n_classes))
    dis = np.zeros((n, n))
    for i in range(n):
        dis[i] = (flat != flat[i]).mean(1)
    off = ~np.eye(n, dtype=bool)
    nn = np.where(off, dis, np.inf).min(1) if n > 1 else np.zeros(n)
    tv = np.zeros((n, n))
    for i in range(n):
        tv[i] = 0.5 * np.abs(frac - frac[i]).sum(1)
    edges = 0.0
    if n and tiles.shape[1] > 1:
        edges = 0.5 * float((tiles[:, 1:] != tiles[:, :-1]).mean() + (tiles[:, :, 1:] != tiles[:, :, :-1]).mean())
    lines = {}
    if n and tiles.ndim == 3:
        t = tiles.shape[1]
        cols = int(math.ceil(math.sqrt(n)))
        sheet = np.full((cols * (t + 1), cols * (t + 1)), 255, dtype=np.uint8)  # tiles apart by a 1 px gap
        for i, tile in enumerate(tiles):
            r, c = divmod(i, cols)
            sheet[r * (t + 1):r * (t + 1) + t, c * (t + 1):c * (t + 1) + tile.shape[1]] = tile
        for key, classes in (("streets", STREET_CLASSES), ("roads", STREET_CLASSES[:1])):
            st = line_stats(sheet, classes, max(2, t // 2))
            st["fraction"] = round(float(np.isin(tiles, classes).mean()), 4)
            st["components"] = round(st["components"] * sheet.size / tiles.size, 3)
            lines[key] = st
    return {"n": n, "mean": [round(float(v), 4) for v in frac.mean(0)],
            "std": [round(float(v), 4) for v in frac.std(0)],
            "diversity": round(float(dis[off].mean()), 4) if n > 1 else 0.0,
            "nn_disagreement": round(float(nn.mean()), 4),
            "composition_diversity": round(float(tv[off].mean()), 4) if n > 1 else 0.0,
            "edge_rate": round(edges, 4), **lines}


def _sample_sheet(generator: DCGANGenerator, path: Path, schema: Schema, n: int = 6, seed: int = 0) -> None:
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    with torch.no_grad():
        ids = generator.logits(torch.randn(n * n, generator.z_dim, generator=gen).to(device)).argmax(1).cpu().numpy()
    t = generator.size
    sheet = np.zeros((n * (t + 2), n * (t + 2)), dtype=np.uint8)
    for i, tile in enumerate(ids):
        r, c = divmod(i, n)
        sheet[r * (t + 2):r * (t + 2) + t, c * (t + 2):c * (t + 2) + t] = tile
    _atomic(path, lambda tmp: Image.fromarray(palette_rgb(sheet, schema)).save(tmp, format="PNG"))


def train_dream(tiles: np.ndarray, out_dir: PathLike, steps: int = 5000, batch: int = 32, seed: int = 0,
                resume: bool = False, *, gsd_m: float, data: str = "", license: str = OSM_LICENSE,
                name: str = DEFAULT_MODEL_NAME, z_dim: int = 64, ngf: int = 32, ndf: int = 32, lr: float = 2e-4,
                lr_d: float | None = 4e-4, betas: tuple[float, float] = (0.5, 0.999), smooth: float = 0.1,
                gan_mode: str = "hinge", spectral: bool = True, mbstd: int = 4, r1_gamma: float = 0.0,
                r1_every: int = 4, ema: float = 0.999, checkpoint_every: int = 500, log_every: int = 50,
                bn_samples: int = 512, stats_samples: int = 256, device: str = "cpu",
                rules: PathLike | None = None, progress: ProgressFn | None = None,
                max_seconds: float | None = None, fakes: str = "gumbel", mode_seeking: float = 1.0,
                blur: bool = True, marginal: float = 0.0, calibrate: bool = True) -> Path:
    """Train a DCGAN on class tiles; returns the exported model card ``OUT/NAME.json``.

    Parameters
    ----------
    tiles : uint8 (N, T, T) schema class ids (T a power of two >= 8), e.g. from :func:`class_tiles_from_osm`.
    out_dir : run directory: ``dream-train-state.{json,safetensors}`` (checkpoint), ``NAME.{json,safetensors}``
        (exported generator + card), ``dream-train-log.jsonl`` and ``dream-samples.png``.
    steps : train until this many steps in total (a resumed run continues up to it).
    batch, seed : batch size and seed; a run resumed from a checkpoint continues exactly like an
        uninterrupted one (all randomness comes from one checkpointed generator).
    resume : continue from the checkpoint in ``out_dir`` (starts fresh when there is none).
    gsd_m : ground metres per pixel of the tiles (goes into the card). data, license : card's training
        data description and licence (OSM-derived: ODbL-1.0).
    z_dim, ngf, ndf : latent size and widths.
    lr, lr_d, betas : Adam rates of the generator and the discriminator (``lr_d`` None: ``lr``) and
        Adam's betas. The default follows the two time-scale rule (TTUR, Heusel et al. 2017): a
        discriminator learning twice as fast, kept smooth by spectral normalisation.
    smooth : maximum weight of random simplex noise mixed into real and fake one-hots (instance noise).
    fakes : what the discriminator sees of a generated tile: ``"gumbel"`` (default) a one-hot sample of
        the generator's per-pixel class distribution (Gumbel-max, straight-through softmax gradients),
        so an unsure generator draws speckle the discriminator rejects and has to become confident;
        ``"hard"`` the one-hot argmax (straight-through); ``"soft"`` the softmax itself. With
        ``"hard"`` the generator's logits stayed near-uniform and the argmax of their tiny differences
        was the same pixel noise for every latent.
    gan_mode : the :class:`~geogan.models.loss.GANLoss` mode (default hinge).
    spectral, mbstd : discriminator with spectral normalisation instead of batch norm, and a
        minibatch-stddev channel over groups of ``mbstd`` samples (0: none); see
        :class:`~geogan.models.dcgan.DCGANDiscriminator`. With the old batch-norm discriminator,
        vanilla loss and equal rates of 2e-4 the discriminator won outright (loss ~0.005) and the
        generator collapsed into a few repeating tiles.
    r1_gamma, r1_every : R1 gradient penalty ``gamma / 2 * |grad D(real)|^2`` on real tiles, applied
        lazily every ``r1_every`` steps (scaled up accordingly); 0 turns it off.
    mode_seeking : weight of :func:`mode_seeking_loss` in the generator loss (0: off). Without it,
        every discriminator recipe tried (batch norm or spectral norm, vanilla or hinge, TTUR,
        minibatch stddev) first taught the generator one latent-independent mean tile.
    marginal : weight of :func:`class_marginal_loss` in the generator loss (0: off): the batch's argmax
        class fractions against the training tiles' (thin classes such as roads otherwise get lost).
    blur : generator with a fixed low-pass on its logits (``DCGANGenerator(blur=True)``; no checkerboard).
    ema : exponential moving average decay of the generator weights; the exported model is the
        average (0: the raw generator).
    checkpoint_every : checkpoint and export every N steps (and at the end).
    bn_samples : random latents the exported generator's batch-norm statistics are recomputed from
        (:func:`recalibrate_batchnorm`; dreaming runs in eval mode).
    stats_samples : at each export, this many dreamed tiles are compared with as many real ones
        (:func:`dream_tile_stats`: class fractions, pairwise diversity) and the numbers go to the
        log and the card, so a collapse shows up in numbers (0: skip).
    max_seconds : stop (checkpoint and export) once this run has trained this long; resume later.
    calibrate : at the end of the run, :func:`calibrate_dream_model` the export (the stitching's street
        gain and stitched-map statistics in the card; about half a minute on one CPU thread).
    """
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[1] != tiles.shape[2] or tiles.shape[0] == 0 or tiles.dtype != np.uint8:
        raise InputError(f"tiles must be uint8 (N, T, T) class ids, got {tiles.dtype} {tiles.shape}")
    schema = load_schema(rules)
    n_classes = len(schema.classes)
    if int(tiles.max()) >= n_classes:
        raise InputError(f"tiles hold class id {int(tiles.max())}; the schema has ids 0..{n_classes - 1}")
    if steps < 0 or batch < 1:
        raise InputError(f"steps ({steps}) must be >= 0 and batch ({batch}) >= 1")
    tile_px = int(tiles.shape[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    if fakes not in FAKE_MODES:
        raise InputError(f"fakes must be one of {', '.join(FAKE_MODES)}, got {fakes!r}")
    if not 0.0 <= ema < 1.0:
        raise InputError(f"ema decay {ema} must be in [0, 1)")
    lr_d = lr if lr_d is None else lr_d
    config = {"tile_px": tile_px, "z_dim": z_dim, "ngf": ngf, "ndf": ndf, "n_classes": n_classes, "blur": bool(blur),
              "spectral": bool(spectral), "mbstd": int(mbstd), "lr": lr, "lr_d": lr_d, "betas": list(betas),
              "smooth": smooth, "gan_mode": gan_mode, "r1_gamma": r1_gamma, "r1_every": r1_every, "ema": ema,
              "fakes": fakes, "mode_seeking": mode_seeking, "marginal": marginal, "batch": batch, "seed": seed,
              "gsd_m": float(gsd_m)}

    torch.manual_seed(seed)
    G = DCGANGenerator(z_dim, n_classes, ngf, tile_px, blur=blur).to(dev)
    D = DCGANDiscriminator(n_classes, ndf, tile_px, spectral=spectral, mbstd=mbstd).to(dev)
    G_ema = copy.deepcopy(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=tuple(betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=tuple(betas))
    crit = GANLoss(gan_mode)
    gen = torch.Generator().manual_seed(seed)
    step, seconds = 0, 0.0
    state_path = out / STATE_STEM
    digest = _tiles_digest(tiles)
    if resume and model_paths(state_path)[0].is_file():
        tensors, meta = load_training_state(state_path)
        old = meta.get("config", {})
        arch_keys = ("tile_px", "z_dim", "ngf", "ndf", "n_classes", "spectral", "mbstd", "blur")
        if any(old.get(k) != config[k] for k in arch_keys):
            raise ModelError(f"checkpoint in '{out}' was trained with "
                             f"{ {k: old.get(k) for k in arch_keys} }; resume with the same settings or a new --out")
        if meta.get("tiles_sha") != digest:
            log.warning("resuming with different training tiles than the checkpoint's (%s vs %s)",
                        digest, meta.get("tiles_sha"))
        G.load_state_dict(tensors["G"])
        G_ema.load_state_dict(tensors.get("G_ema", tensors["G"]))
        D.load_state_dict(tensors["D"])
        opt_g.load_state_dict(tensors["opt_g"])
        opt_d.load_state_dict(tensors["opt_d"])
        gen.set_state(tensors["rng"])
        step, seconds = int(meta["step"]), float(meta.get("seconds", 0.0))
        log.info("resumed %s at step %d", out, step)
    elif resume:
        log.info("no checkpoint in %s: starting fresh", out)

    tiles_t = torch.from_numpy(tiles)
    real_frac = np.bincount(tiles.ravel(), minlength=n_classes)[:n_classes] / tiles.size
    real_frac = torch.from_numpy(real_frac).float().to(dev)
    card = {"name": name, "classes": [c.name for c in schema.classes], "gsd_m": float(gsd_m),
            "training": {"data": data, "tiles": int(tiles.shape[0]), "tiles_sha": digest, "batch": batch,
                         "seed": seed, "gan_mode": gan_mode, "smooth": smooth, "lr": lr, "lr_d": lr_d,
                         "betas": list(betas), "discriminator": {"ndf": ndf, "spectral": bool(spectral),
                                                                 "mbstd": int(mbstd)},
                         "r1_gamma": r1_gamma, "ema": ema, "fakes": fakes, "mode_seeking": mode_seeking,
                         **({"marginal": marginal} if marginal > 0 else {})},
            "license": license, "attribution": OSM_ATTRIBUTION if license == OSM_LICENSE else ""}

    log_path = out / "dream-train-log.jsonl"
    real_stats = None

    def save(final: bool = False) -> None:
        nonlocal real_stats
        save_training_state(state_path, {"G": G.state_dict(), "G_ema": G_ema.state_dict(), "D": D.state_dict(),
                                         "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                                         "rng": gen.get_state()},
                            {"step": step, "seconds": seconds, "config": config, "tiles_sha": digest})
        export = copy.deepcopy(G_ema if ema > 0 else G).cpu()
        recalibrate_batchnorm(export, seed=seed, samples=bn_samples)
        export.eval()
        training = {**card["training"], "steps": step, "seconds": round(seconds, 1)}
        if stats_samples:
            if real_stats is None:
                pick = np.random.default_rng(seed).choice(len(tiles), min(stats_samples, len(tiles)), replace=False)
                real_stats = dream_tile_stats(tiles[np.sort(pick)], n_classes)
            fake = sample_tiles(export, stats_samples, seed=seed + 1)
            training["stats"] = {"real": real_stats, "dreamed": dream_tile_stats(fake, n_classes),
                                 "samples": int(stats_samples)}
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, "stats": training["stats"]["dreamed"]}) + "\n")
            log.info("step %d: diversity %.3f (real %.3f), nearest-neighbour %.3f (real %.3f)", step,
                     training["stats"]["dreamed"]["diversity"], real_stats["diversity"],
                     training["stats"]["dreamed"]["nn_disagreement"], real_stats["nn_disagreement"])
        save_dream_model(export, {**card, "training": training}, out / name)
        _sample_sheet(export, out / "dream-samples.png", schema)
        if final and calibrate:
            calibrate_dream_model(model_paths(out / name)[0])

    G.train()
    D.train()
    t0 = run_t0 = time.perf_counter()
    start = step
    while step < steps:
        real = _real_batch(tiles_t, batch, n_classes, smooth, gen).to(dev)
        z = torch.randn(batch, z_dim, generator=gen).to(dev)
        shown, probs = _fake_maps(G, z, fakes, gen)
        fake = _mix(shown, smooth, gen)
        r1 = r1_gamma > 0 and r1_every > 0 and step % r1_every == 0
        if r1:
            real.requires_grad_(True)
        d_real, d_fake = D(real), D(fake.detach())
        loss_d = crit(d_real, True) + crit(d_fake, False)
        if r1:
            grad, = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_d = loss_d + 0.5 * r1_gamma * r1_every * grad.pow(2).sum((1, 2, 3)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = crit(D(fake), True, for_discriminator=False)
        if mode_seeking > 0:
            loss_g = loss_g + mode_seeking * mode_seeking_loss(probs, z)
        if marginal > 0:
            loss_g = loss_g + marginal * class_marginal_loss(probs, real_frac)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema > 0:
            decay = min(ema, (1.0 + step) / (10.0 + step))  # warm-up: early averages forget the init
            with torch.no_grad():
                for pe, p in zip(G_ema.parameters(), G.parameters()):
                    pe.lerp_(p, 1.0 - decay)
                for be, b in zip(G_ema.buffers(), G.buffers()):
                    be.copy_(b)
        step += 1
        if log_every and (step % log_every == 0 or step == steps):
            rec = {"step": step, "loss_d": round(loss_d.item(), 4), "loss_g": round(loss_g.item(), 4),
                   "d_real": round(d_real.mean().item(), 3), "d_fake": round(d_fake.mean().item(), 3)}
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            log.info("step %d: loss_d %.3f loss_g %.3f", step, rec["loss_d"], rec["loss_g"])
        if progress is not None:
            progress((step - start) / max(1, steps - start), f"step {step}/{steps}")
        if max_seconds is not None and time.perf_counter() - run_t0 >= max_seconds:
            log.info("stopping at step %d after %.0f s (max_seconds); resume to continue", step, max_seconds)
            break
        if checkpoint_every and step % checkpoint_every == 0 and step < steps:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save()
    seconds += time.perf_counter() - t0
    save(final=True)
    return model_paths(out / name)[0]


# ----------------------------------------------------------------------------- dreaming


def _hashed_normals(seed: int, iy: np.ndarray, ix: np.ndarray, dim: int) -> np.ndarray:
    """Standard normals ``(len, dim)`` that depend only on (seed, lattice row, lattice column, channel)."""
    with np.errstate(over="ignore"):
        ch = np.arange(dim, dtype=np.uint64)
        key = np.uint64(seed & 0xFFFFFFFF) * GOLD + np.uint64(0x5DEECE66D)
        iy = iy.astype(np.int64).astype(np.uint64)[:, None]
        ix = ix.astype(np.int64).astype(np.uint64)[:, None]
        z = splitmix64(key + iy * M2 + splitmix64(ix * GOLD + M1) + ch[None, :] * M1)
    u1 = ((z >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)
    u2 = ((z & np.uint64(0xFFFFFF)).astype(np.float64) + 0.5) / float(1 << 24)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)


def tile_latents(seed: int, centers_yx: np.ndarray, spacing_px: float, z_dim: int) -> np.ndarray:
    """Latents ``float32 (N, z_dim)`` for tiles centred at ``centers_yx`` (N, 2) pixel positions.

    A lattice of i.i.d. standard-normal latents every ``spacing_px`` pixels (keyed by seed and lattice
    index, so the field does not depend on the map's size) is interpolated bilinearly and divided by
    the root of the summed squared weights, so each tile's latent is still N(0, I) while nearby tiles
    share most of it.
    """
    c = np.asarray(centers_yx, dtype=np.float64) / float(spacing_px)
    i0 = np.floor(c).astype(np.int64)
    f = c - i0
    z = np.zeros((len(c), z_dim))
    wsq = np.zeros(len(c))
    for dy in (0, 1):
        for dx in (0, 1):
            w = (f[:, 0] if dy else 1 - f[:, 0]) * (f[:, 1] if dx else 1 - f[:, 1])
            z += w[:, None] * _hashed_normals(seed, i0[:, 0] + dy, i0[:, 1] + dx, z_dim)
            wsq += w * w
    return (z / np.sqrt(wsq)[:, None]).astype(np.float32)


def remove_specks(class_map: np.ndarray, min_px: int) -> np.ndarray:
    """Merge 8-connected patches smaller than ``min_px`` pixels into their largest neighbour (GDAL sieve)."""
    if min_px <= 1:
        return class_map
    import rasterio.features

    return rasterio.features.sieve(class_map.astype(np.uint8), int(min_px), connectivity=8).astype(np.uint8)


def _candidate_latents(seed: int, z_smooth: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int,
                       spread: float) -> np.ndarray:
    """``(N, k, z_dim)``: candidate 0 is the smooth latent, the others it plus position-hashed noise."""
    n, dim = z_smooth.shape
    out = np.repeat(z_smooth[:, None, :], k, axis=1)
    for j in range(1, k):
        key = (seed * 0x9E3779B1 + j * 0x85EBCA77 + 0x2545F491) & 0xFFFFFFFF
        noise = _hashed_normals(key, rows, cols, dim)
        out[:, j] = (z_smooth + spread * noise) / math.sqrt(1.0 + spread * spread)
    return out.astype(np.float32)


def _laid_down(neighbours: list[tuple[int, int, np.ndarray]], window: np.ndarray, n_classes: int) -> np.ndarray:
    """Weighted class probabilities that placed neighbour tiles put on a tile's footprint ``(K, T, T)``.

    ``neighbours``: (dy, dx, probs) with the neighbour's top-left relative to the tile's.
    """
    t = window.shape[0]
    acc = np.zeros((n_classes, t, t), dtype=np.float32)
    for dy, dx, probs in neighbours:
        if abs(dy) >= t or abs(dx) >= t:
            continue
        ys, yn = slice(max(0, dy), t + min(0, dy)), slice(max(0, -dy), t - max(0, dy))
        xs, xn = slice(max(0, dx), t + min(0, dx)), slice(max(0, -dx), t - max(0, dx))
        acc[:, ys, xs] += probs[:, yn, xn] * window[yn, xn]
    return acc


def _class_prior(model: DreamModel, n: int = 64) -> np.ndarray:
    """Mean softmax class probabilities ``(K,)`` of ``n`` fixed latents (the model's class fractions)."""
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(12345))
    with torch.inference_mode():
        probs = torch.softmax(model.generator.logits(z.to(model.device)), 1)
    return probs.mean((0, 2, 3)).cpu().numpy().astype(np.float32)


def dream_map(model: DreamModel, shape_yx: tuple[int, int], seed: int = 0, *, overlap_px: int | None = None,
              latent_spacing_tiles: float = 2.0, candidates: int = 8, spread: float = 1.0,
              min_speck_px: int = 4, join_gap_px: int = STREET_JOIN_GAP_PX, batch_tiles: int = 16,
              balance: float = 1.0, sharpen: float = 1.0,
              class_gains: Sequence[float] | None = None, progress: ProgressFn | None = None) -> np.ndarray:
    """Dream a class map ``uint8 shape_yx`` (schema ids) of any size, at the model's native GSD.

    Overlapping tiles (``overlap_px``, default half a tile) start ``tile - overlap`` apart, in raster
    order. Each tile's latent starts from :func:`tile_latents` (a smooth function of position, lattice
    spacing ``latent_spacing_tiles`` tile strides, so neighbours share latents); with ``candidates`` > 1
    it also tries ``candidates - 1`` position-hashed variations (noise of relative size ``spread``) and
    keeps the one whose tile agrees best with what its already placed neighbours (left, upper-left,
    upper, upper-right) laid down on the overlaps, so that unrelated tile contents do not meet at the
    blend's crossover line. The chosen tiles' softmax maps are blended with
    :func:`geogan.blend.blend_weights` windows before the argmax; then patches under
    ``min_speck_px`` pixels are sieved away, and road and path pieces are joined along their own
    direction across gaps up to ``join_gap_px`` (:func:`geogan.streets.join_streets`; 0: not joined).
    Deterministic: the same seed gives the same map.

    ``balance``: the candidates' agreement with their neighbours counts each class with weight
    ``(model's mean class probability + 0.01) ** -balance``, so that continuing a road counts more
    than agreeing on open ground (at 0, candidates full of background win and stitched maps lose
    their streets). ``sharpen``: blend window raised to this power (> 1: narrower crossovers).
    ``class_gains``: per-class factors on the blended probabilities before the argmax (None: the
    card's ``class_gains`` from :func:`calibrate_class_gains`, if any; ``[]``: none). Blending
    averages thin, uncertain classes (roads, paths, houses) away against confident open ground; the
    gains undo that.
    Compute: ``candidates`` generator runs per tile. Memory: a strip of ``n_classes x tile x width``
    floats, the previous tile row's chosen tiles, plus the uint8 map.
    """
    h, w = (int(v) for v in shape_yx)
    if h < 1 or w < 1:
        raise InputError(f"dream_map: shape {shape_yx} must be positive")
    if h * w > MAX_DREAM_PX:
        raise TooLargeError(f"a {w}x{h} px dream does not fit in memory; raise the GSD or shrink the bbox")
    if candidates < 1:
        raise InputError(f"dream_map: candidates must be >= 1, got {candidates}")
    t = model.tile_px
    overlap = t // 2 if overlap_px is None else int(overlap_px)
    if not 0 <= overlap <= t // 2:
        raise InputError(f"dream_map: overlap {overlap} px must be in 0..{t // 2} (half the {t} px tile)")
    stride = t - overlap
    n_rows = 1 if h <= t else 1 + math.ceil((h - t) / stride)
    n_cols = 1 if w <= t else 1 + math.ceil((w - t) / stride)
    cols0 = np.arange(n_cols) * stride
    blender = StripBlender((h, w), model.n_classes, t, overlap)
    if sharpen != 1.0:
        blender.weights = blender.weights ** float(sharpen)
    window = blender.weights
    class_w = np.ones(model.n_classes, dtype=np.float32)
    if balance > 0 and candidates > 1:
        class_w = (_class_prior(model) + 0.01) ** -float(balance)
    if class_gains is None:
        class_gains = model.card.get("class_gains")
    gain = None
    if class_gains is not None and len(class_gains):
        if len(class_gains) != model.n_classes or not all(float(g) > 0 for g in class_gains):
            raise InputError(f"dream_map: class_gains must be {model.n_classes} positive numbers, got {class_gains}")
        gain = np.asarray(class_gains, dtype=np.float32)[:, None, None]
    out = np.zeros((h, w), dtype=np.uint8)
    gen = model.generator
    gen.eval()
    device = model.device
    prev_row: list[np.ndarray] = []
    for r in range(n_rows):
        row0 = r * stride
        centers = np.stack([np.full(n_cols, row0 + t / 2.0), cols0 + t / 2.0], axis=1)
        z = _candidate_latents(seed, tile_latents(seed, centers, latent_spacing_tiles * stride, model.z_dim),
                               np.full(n_cols, r), np.arange(n_cols), candidates, spread)
        row: list[np.ndarray] = []
        for c0 in range(0, n_cols, batch_tiles):
            chunk = z[c0:c0 + batch_tiles]
            with torch.inference_mode():
                logits = gen.logits(torch.from_numpy(chunk.reshape(-1, model.z_dim)).to(device))
                probs = torch.softmax(logits, 1).cpu().numpy().reshape(len(chunk), candidates, -1, t, t)
            for i in range(len(chunk)):
                c = c0 + i
                pick = 0
                if candidates > 1:
                    neighbours = []
                    if c > 0:
                        neighbours.append((0, -stride, row[c - 1]))
                    for dc in (-1, 0, 1):
                        if prev_row and 0 <= c + dc < n_cols:
                            neighbours.append((-stride, dc * stride, prev_row[c + dc]))
                    if neighbours:
                        laid = _laid_down(neighbours, window, model.n_classes) * window
                        agree = (probs[i] * laid[None]).sum(axis=(2, 3)) @ class_w
                        pick = int(np.argmax(agree))
                tile = probs[i, pick]
                row.append(tile)
                blender.add(row0, int(cols0[c]), tile)
        for r0, strip in blender.finish_row(last=r == n_rows - 1):
            out[r0:r0 + strip.shape[1]] = (strip if gain is None else strip * gain).argmax(0).astype(np.uint8)
        prev_row = row
        if progress is not None:
            progress((r + 1) / n_rows, f"dream tile row {r + 1}/{n_rows}")
    out = remove_specks(out, min_speck_px)
    if join_gap_px > 0:
        for street in STREET_CLASSES:
            out = join_streets(out, street, max_gap_px=join_gap_px, cone_deg=STREET_JOIN_CONE_DEG,
                               min_length_px=STREET_MIN_LENGTH_PX)
    return out


def stitched_stats(maps: Sequence[np.ndarray], n_classes: int, long_px: int) -> dict:
    """Class fractions, :func:`line_stats` of streets (road + path) and roads (lines at least
    ``long_px`` long) and the neighbour change rate of stitched dream maps."""
    counts = np.bincount(np.concatenate([m.ravel() for m in maps]), minlength=256)[:n_classes]
    lines = {}
    for key, cl in (("streets", STREET_CLASSES), ("roads", STREET_CLASSES[:1])):
        per_map = [line_stats(m, cl, long_px) for m in maps]  # once per map, not once per statistic
        lines[key] = {k: round(float(np.mean([st[k] for st in per_map])), 4)
                      for k in ("fraction", "long_share", "components")}
    return {"fractions": [round(float(v), 4) for v in counts / sum(m.size for m in maps)], **lines,
            "change_rate": round(float(np.mean([0.5 * ((m[1:] != m[:-1]).mean() + (m[:, 1:] != m[:, :-1]).mean())
                                                for m in maps])), 4)}


#: Thin classes that blending overlapping tiles erodes, calibrated by :func:`calibrate_thin_gains`.
THIN_GROUPS = {"roads": (2,), "paths": (3,)}


def calibrate_thin_gains(model: DreamModel, targets: dict | None = None, shape_yx: tuple[int, int] = (160, 160),
                         seeds: Sequence[int] = (0, 1), steps: int = 6, rounds: int = 2, max_gain: float = 3.0,
                         **kwargs) -> tuple[list[float], dict]:
    """Class gains for :func:`dream_map` that keep the streets the stitching would blend away.

    Blending overlapping tiles' probabilities averages thin, uncertain lines (roads, paths) away
    against confident open ground: a model whose tiles are 4 % road stitches to 1 %. (Buildings
    shrink too, but a building gain eats the background, with which they are near-tied, rather than
    grass and farmland.) One gain per group of :data:`THIN_GROUPS` (the other classes keep 1) is
    found by bisection on its logarithm (``steps`` halvings of ``[1 / max_gain, max_gain]``,
    ``rounds`` passes over the groups) so that ``seeds`` stitched maps of ``shape_yx`` have the
    group's fraction in ``targets`` (default: the model's own independent tiles', so stitching is
    faithful to the model; a group missing from ``targets`` keeps gain 1).
    Returns ``(gains, stats)``: the gain vector and :func:`stitched_stats` of the maps with it, plus
    the targets. Deterministic.
    """
    groups = {name: [k for k in cl if k < model.n_classes] for name, cl in THIN_GROUPS.items()}
    if targets is None:
        tiles = sample_tiles(model.generator, 256, seed=1)
        targets = {name: float(np.isin(tiles, cl).mean()) for name, cl in groups.items()}
    gain = {name: 1.0 for name in groups}

    def vector():
        out = [1.0] * model.n_classes
        for name, cl in groups.items():
            for k in cl:
                out[k] = float(gain[name])
        return out

    def dream_now():
        return [dream_map(model, shape_yx, seed, class_gains=vector(), **kwargs) for seed in seeds]

    for _ in range(max(0, int(rounds))):
        for name, cl in groups.items():
            if name not in targets:
                continue
            lo, hi = -math.log(max_gain), math.log(max_gain)
            for _ in range(max(0, int(steps))):
                gain[name] = math.exp(0.5 * (lo + hi))
                if np.mean([np.isin(m, cl).mean() for m in dream_now()]) < targets[name]:
                    lo = math.log(gain[name])
                else:
                    hi = math.log(gain[name])
            gain[name] = round(math.exp(0.5 * (lo + hi)), 3)
    stats = stitched_stats(dream_now(), model.n_classes, model.tile_px)
    stats.update(shape=list(shape_yx), seeds=list(seeds), targets={k: round(v, 4) for k, v in targets.items()})
    return vector(), stats


def calibrate_dream_model(path: PathLike, **kwargs) -> Path:
    """Calibrate an exported dream model's stitching in place: :func:`calibrate_thin_gains` into the
    card's ``class_gains`` (used by :func:`dream_map`) and its stitched-map statistics into
    ``training.stats.stitched``. The weights are not touched. Returns the card path."""
    card_path = resolve_dream_model(path)
    model = load_dream_model(card_path)
    card = dict(model.card)
    card.pop("class_gains", None)
    model.card = card
    gains, stats = calibrate_thin_gains(model, **kwargs)
    card["class_gains"] = gains
    card.setdefault("training", {}).setdefault("stats", {})["stitched"] = stats
    _atomic(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8"))
    return card_path


# ----------------------------------------------------------------------------- on a real grid


def palette_rgb(class_map: np.ndarray, schema: Schema) -> np.ndarray:
    """(H, W, 3) uint8 image of a class map in the schema palette."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in schema.classes:
        lut[c.id] = c.color
    return lut[class_map]


def dream_on_grid(model: DreamModel, grid: Grid, seed: int = 0, **kwargs) -> tuple[np.ndarray, Grid]:
    """Dream at the model's native GSD over ``grid``'s bounds, resampled (nearest) onto ``grid``.

    Returns ``(class map on grid, the native dream grid)``; ``kwargs`` go to :func:`dream_map`.
    """
    gx, gy = grid.gsd_m_at(grid.height / 2, grid.width / 2)
    native = (max(1, round(grid.height * gy / model.gsd_m)), max(1, round(grid.width * gx / model.gsd_m)))
    dream_grid = grid.resized(*native)
    native_map = dream_map(model, native, seed, **kwargs)
    if native == grid.shape_yx:
        return native_map, dream_grid
    return RasterClassSource(native_map, dream_grid).classes(grid), dream_grid


def write_class_map(class_map: np.ndarray, grid: Grid, path: PathLike, schema: Schema,
                    strip_px: int = 512) -> Path:
    """Write a class map as a palette COG with geogan's writer (atomic: all or nothing)."""
    from ..pipeline import OutputPaths, output_specs
    from ..write import OutputSet

    path = Path(path)
    spec = {"classes": output_specs(OutputPaths(path, path, path), schema)["classes"]}
    with OutputSet(grid, spec) as outputs:
        for row0 in range(0, grid.height, strip_px):
            outputs.write("classes", row0, class_map[row0:row0 + strip_px])
    return path


@dataclass
class DreamResult:
    classes: Path  # dream_classes.tif
    grid: Grid
    render: object | None = None  # api.render's RenderResult, when rendered
    seconds: float = 0.0


def _render_gsd(render_model: str) -> float:
    from ..zoo import resolve_model

    card = json.loads(resolve_model(render_model).read_text(encoding="utf-8"))
    return float(card["gsd_m"])


def dream(bbox: BBox, bbox_crs: str = "EPSG:4326", crs: str = "EPSG:3857", gsd_m: float | None = None,
          out_dir: PathLike = "out", model: PathLike = DEFAULT_MODEL_NAME, seed: int = 0,
          render_model: str | None = "default", overwrite: bool = False, device: str = "auto",
          min_speck_px: int = 4, join_gap_px: int = STREET_JOIN_GAP_PX, tile_px: int | None = None,
          overlap_px: int | None = None, rules: PathLike | None = None,
          force: bool = False, progress: ProgressFn | None = None) -> DreamResult:
    """Dream a town on the real grid of ``bbox`` and render it.

    Writes ``OUT/dream_classes.tif`` (palette COG) and, unless ``render_model`` is None, renders it with
    that conditional model into ``OUT/aerial.tif``, ``height.tif`` and ``classes.tif`` through
    :func:`geogan.api.render` (``classes.tif`` equals ``dream_classes.tif``). ``gsd_m`` defaults to the
    render model's native GSD (the dream model's without rendering). ``tile_px``/``overlap_px`` are the
    render's tiling (default: :func:`geogan.pipeline.auto_tile_spec`); ``seed`` drives both the dream and the render.
    """
    from ..api import render as api_render
    from ..infer import resolve_device
    from ..pipeline import OutputPaths
    from ..write import check_outputs

    t0 = time.perf_counter()
    schema = load_schema(rules)
    parse_crs(crs)
    dev = resolve_device(device)
    dm = load_dream_model(model, dev, schema)
    if gsd_m is None:
        gsd_m = _render_gsd(render_model) if render_model is not None else dm.gsd_m
    out = Path(out_dir)
    classes_path = out / DREAM_CLASSES
    check_outputs([classes_path] + (OutputPaths.in_dir(out).all() if render_model is not None else []), overwrite)
    grid = grid_from_bbox(tuple(bbox), bbox_crs, crs, gsd_m)  # type: ignore[arg-type]
    if grid.width * grid.height > MAX_DREAM_PX:
        raise TooLargeError(f"the dream would be {grid.width}x{grid.height} px; raise --gsd or shrink the bbox")
    class_map, _ = dream_on_grid(dm, grid, seed, min_speck_px=min_speck_px, join_gap_px=join_gap_px,
                                 progress=(lambda f, m: progress(0.2 * f, m)) if progress else None)
    write_class_map(class_map, grid, classes_path, schema)
    log.info("dreamed %dx%d px (%s)", grid.width, grid.height, ", ".join(
        f"{schema.by_id(int(k)).name} {v / class_map.size:.0%}" for k, v in
        zip(*np.unique(class_map, return_counts=True))))
    result = DreamResult(classes_path, grid)
    if render_model is not None:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="geogan-dream-") as tmp:
            png = Path(tmp) / "dream.png"
            Image.fromarray(palette_rgb(class_map, schema)).save(png)
            result.render = api_render(sketch=png, bbox=tuple(bbox), bbox_crs=bbox_crs, crs=crs, gsd_m=gsd_m,
                                       out_dir=out, model=render_model, device=device, tile_px=tile_px,
                                       overlap_px=overlap_px, seed=seed, overwrite=overwrite, rules=rules,
                                       force=force,
                                       progress=(lambda f, m: progress(0.2 + 0.8 * (f or 0), m)) if progress else None)
    result.seconds = time.perf_counter() - t0
    return result
