"""Training a dream model: a DCGAN on one-hot class tiles, resumable, exported with its card
(:func:`train_dream`)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..classes import Schema, load_schema
from ..errors import InputError, ModelError
from ..models.checkpoint import load_training_state, model_paths, save_training_state
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator
from ..models.loss import GANLoss
from ..options import check_names, field_names
from ..training.config import check_gan_mode, check_number, check_whole
from .data import palette_rgb
from .losses import FAKE_MODES, _fake_maps, _mix, _real_batch, class_marginal_loss, mode_seeking_loss
from .model import (DEFAULT_MODEL_NAME, OSM_ATTRIBUTION, OSM_LICENSE, PathLike, ProgressFn, _atomic,
                    save_dream_model, sample_tiles)
from .stats import dream_tile_stats
from .stitch import calibrate_dream_model

log = logging.getLogger("geogan")

#: Stem of the trainer checkpoint inside the run directory.
STATE_STEM = "dream-train-state"


def _tiles_digest(tiles: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tiles).tobytes()).hexdigest()[:16]


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


#: DreamTrainSettings' whole-number fields and their minimum (steps and batch are checked first)
_WHOLE_FIELDS = (("seed", 0), ("z_dim", 1), ("ngf", 1), ("ndf", 1), ("mbstd", 0), ("r1_every", 0),
                 ("checkpoint_every", 0), ("log_every", 0), ("bn_samples", 1), ("stats_samples", 0))
#: ``geogan dream-train``'s option of a DreamTrainSettings field where it is not ``--field-name``; None: no option
_OPTIONS = {"gsd_m": "--gsd", "r1_gamma": "--r1", "max_seconds": "--max-minutes x 60", "smooth": None, "r1_every": None,
            "log_every": None, "bn_samples": None}


def _label(name: str) -> str:
    """A DreamTrainSettings field as messages name it: ``z_dim (--z-dim)``."""
    option = _OPTIONS.get(name, "--" + name.replace("_", "-"))
    return f"{name} ({option})" if option else name


@dataclass(frozen=True)
class DreamTrainSettings:
    """Settings of a dream training run (:func:`train_dream`'s keyword arguments), checked at construction.

    steps : train until this many steps in total (a resumed run continues up to it).
    batch, seed : batch size and seed; a run resumed from a checkpoint continues exactly like an
        uninterrupted one (all randomness comes from one checkpointed generator).
    gsd_m : ground metres per pixel of the tiles (goes into the card). data, license : card's training
        data description and licence (OSM-derived: ODbL-1.0). name : the exported ``OUT/NAME.json``.
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
    mode_seeking : weight of :func:`~geogan.dream.losses.mode_seeking_loss` in the generator loss (0: off).
        Without it, every discriminator recipe tried (batch norm or spectral norm, vanilla or hinge,
        TTUR, minibatch stddev) first taught the generator one latent-independent mean tile.
    marginal : weight of :func:`~geogan.dream.losses.class_marginal_loss` in the generator loss (0: off):
        the batch's argmax class fractions against the training tiles' (thin classes such as roads
        otherwise get lost).
    blur : generator with a fixed low-pass on its logits (``DCGANGenerator(blur=True)``; no checkerboard).
    ema : exponential moving average decay of the generator weights; the exported model is the
        average (0: the raw generator).
    checkpoint_every : checkpoint and export every N steps (and at the end). log_every : loss lines.
    bn_samples : random latents the exported generator's batch-norm statistics are recomputed from
        (:func:`recalibrate_batchnorm`; dreaming runs in eval mode).
    stats_samples : at each export, this many dreamed tiles are compared with as many real ones
        (:func:`~geogan.dream.stats.dream_tile_stats`: class fractions, pairwise diversity) and the
        numbers go to the log and the card, so a collapse shows up in numbers (0: skip).
    max_seconds : stop (checkpoint and export) once this run has trained this long; resume later.
    calibrate : at the end of the run, :func:`~geogan.dream.stitch.calibrate_dream_model` the export
        (the stitching's street gain and stitched-map statistics in the card; about half a minute on
        one CPU thread).
    """

    gsd_m: float
    steps: int = 5000
    batch: int = 32
    seed: int = 0
    data: str = ""
    license: str = OSM_LICENSE
    name: str = DEFAULT_MODEL_NAME
    z_dim: int = 64
    ngf: int = 32
    ndf: int = 32
    lr: float = 2e-4
    lr_d: float | None = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    smooth: float = 0.1
    gan_mode: str = "hinge"
    spectral: bool = True
    mbstd: int = 4
    r1_gamma: float = 0.0
    r1_every: int = 4
    ema: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 50
    bn_samples: int = 512
    stats_samples: int = 256
    device: str = "cpu"
    max_seconds: float | None = None
    fakes: str = "gumbel"
    mode_seeking: float = 1.0
    blur: bool = True
    marginal: float = 0.0
    calibrate: bool = True

    def __post_init__(self) -> None:
        check_whole(self.steps, _label("steps"), 0)
        check_whole(self.batch, _label("batch"), 1)
        if self.fakes not in FAKE_MODES:
            raise InputError(f"fakes must be one of {', '.join(FAKE_MODES)}, got {self.fakes!r}")
        if not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema < 1.0:
            raise InputError(f"ema decay {self.ema} must be in [0, 1)")
        check_number(self.gsd_m, _label("gsd_m"), low_open=True)
        for name, minimum in _WHOLE_FIELDS:
            check_whole(getattr(self, name), _label(name), minimum)
        for name in ("lr", "lr_d"):
            check_number(getattr(self, name), _label(name), low_open=True, optional=name == "lr_d")
        for name in ("r1_gamma", "mode_seeking", "marginal", "max_seconds"):
            check_number(getattr(self, name), _label(name), optional=name == "max_seconds")
        check_number(self.smooth, _label("smooth"), 0.0, 1.0)
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2):
            raise InputError(f"betas must be two numbers in [0, 1) such as (0.5, 0.999), got {self.betas!r}")
        for beta in self.betas:
            check_number(beta, "each of betas", 0.0, 1.0)
        check_gan_mode(self.gan_mode)
        if not isinstance(self.name, str) or not self.name or Path(self.name).name != self.name:
            raise InputError(f"model name {self.name!r} must be a plain file name (no folders); e.g. --name dream")

    @property
    def lr_d_used(self) -> float:
        """The discriminator's learning rate (``lr`` when ``lr_d`` is None)."""
        return self.lr if self.lr_d is None else self.lr_d


def train_dream(tiles: np.ndarray, out_dir: PathLike, steps: int = 5000, batch: int = 32, seed: int = 0,
                resume: bool = False, *, rules: PathLike | None = None, progress: ProgressFn | None = None,
                **settings) -> Path:
    """Train a DCGAN on class tiles; returns the exported model card ``OUT/NAME.json``.

    ``tiles``: uint8 (N, T, T) schema class ids (T a power of two >= 8), e.g. from
    :func:`~geogan.dream.data.class_tiles_from_osm`. ``out_dir``: run directory:
    ``dream-train-state.{json,safetensors}`` (checkpoint), ``NAME.{json,safetensors}`` (exported
    generator + card), ``dream-train-log.jsonl`` and ``dream-samples.png``. ``resume``: continue from
    the checkpoint in ``out_dir`` (starts fresh when there is none). ``rules``: the class schema.
    ``progress(fraction, message)`` is called after every step. ``steps``, ``batch``, ``seed`` and the
    keyword ``settings`` (``gsd_m`` required) are the fields of :class:`DreamTrainSettings` (documented
    there); :func:`train_dream_with` takes them as one value.
    """
    check_names(settings, field_names(DreamTrainSettings), "train_dream")
    settings = DreamTrainSettings(steps=steps, batch=batch, seed=seed, **settings)
    return train_dream_with(tiles, out_dir, settings, resume=resume, rules=rules, progress=progress)


def _checked_tiles(tiles: np.ndarray, rules: PathLike | None) -> tuple[np.ndarray, Schema]:
    """The tiles as an array and the class schema, after checking the tiles' shape and class ids."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[1] != tiles.shape[2] or tiles.shape[0] == 0 or tiles.dtype != np.uint8:
        raise InputError(f"tiles must be uint8 (N, T, T) class ids, got {tiles.dtype} {tiles.shape}")
    schema = load_schema(rules)
    n_classes = len(schema.classes)
    if int(tiles.max()) >= n_classes:
        raise InputError(f"tiles hold class id {int(tiles.max())}; the schema has ids 0..{n_classes - 1}")
    return tiles, schema


def _arch_config(s: DreamTrainSettings, tile_px: int, n_classes: int) -> dict:
    """The run's settings as stored in the checkpoint (the architecture keys must match on resume)."""
    return {"tile_px": tile_px, "z_dim": s.z_dim, "ngf": s.ngf, "ndf": s.ndf, "n_classes": n_classes,
            "blur": bool(s.blur), "spectral": bool(s.spectral), "mbstd": int(s.mbstd), "lr": s.lr,
            "lr_d": s.lr_d_used, "betas": list(s.betas), "smooth": s.smooth, "gan_mode": s.gan_mode,
            "r1_gamma": s.r1_gamma, "r1_every": s.r1_every, "ema": s.ema, "fakes": s.fakes,
            "mode_seeking": s.mode_seeking, "marginal": s.marginal, "batch": s.batch, "seed": s.seed,
            "gsd_m": float(s.gsd_m)}


_ARCH_KEYS = ("tile_px", "z_dim", "ngf", "ndf", "n_classes", "spectral", "mbstd", "blur")


def _model_card(s: DreamTrainSettings, schema: Schema, n_tiles: int, digest: str) -> dict:
    """The exported model's card, without the per-export step, time and statistics."""
    training = {"data": s.data, "tiles": n_tiles, "tiles_sha": digest, "batch": s.batch, "seed": s.seed,
                "gan_mode": s.gan_mode, "smooth": s.smooth, "lr": s.lr, "lr_d": s.lr_d_used, "betas": list(s.betas),
                "discriminator": {"ndf": s.ndf, "spectral": bool(s.spectral), "mbstd": int(s.mbstd)},
                "r1_gamma": s.r1_gamma, "ema": s.ema, "fakes": s.fakes, "mode_seeking": s.mode_seeking,
                **({"marginal": s.marginal} if s.marginal > 0 else {})}
    return {"name": s.name, "classes": [c.name for c in schema.classes], "gsd_m": float(s.gsd_m),
            "training": training, "license": s.license,
            "attribution": OSM_ATTRIBUTION if s.license == OSM_LICENSE else ""}


@dataclass
class _Run:
    """The mutable state of one training run: networks, optimisers, loss, random stream and counters."""

    G: DCGANGenerator
    D: DCGANDiscriminator
    G_ema: DCGANGenerator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    crit: GANLoss
    gen: torch.Generator
    step: int = 0
    seconds: float = 0.0

    def tensors(self) -> dict:
        return {"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": self.gen.get_state()}


def _new_run(s: DreamTrainSettings, n_classes: int, tile_px: int, dev: torch.device) -> _Run:
    torch.manual_seed(s.seed)
    G = DCGANGenerator(s.z_dim, n_classes, s.ngf, tile_px, blur=s.blur).to(dev)
    D = DCGANDiscriminator(n_classes, s.ndf, tile_px, spectral=s.spectral, mbstd=s.mbstd).to(dev)
    G_ema = copy.deepcopy(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=s.lr, betas=tuple(s.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=s.lr_d_used, betas=tuple(s.betas))
    return _Run(G, D, G_ema, opt_g, opt_d, GANLoss(s.gan_mode), torch.Generator().manual_seed(s.seed))


def _resume(run: _Run, out: Path, config: dict, digest: str) -> None:
    """Load the checkpoint in ``out`` into ``run`` (after checking it was trained with the same architecture)."""
    tensors, meta = load_training_state(out / STATE_STEM)
    old = meta.get("config", {})
    if any(old.get(k) != config[k] for k in _ARCH_KEYS):
        raise ModelError(f"checkpoint in '{out}' was trained with "
                         f"{ {k: old.get(k) for k in _ARCH_KEYS} }; resume with the same settings or a new --out")
    if meta.get("tiles_sha") != digest:
        log.warning("resuming with different training tiles than the checkpoint's (%s vs %s)",
                    digest, meta.get("tiles_sha"))
    run.G.load_state_dict(tensors["G"])
    run.G_ema.load_state_dict(tensors.get("G_ema", tensors["G"]))
    run.D.load_state_dict(tensors["D"])
    run.opt_g.load_state_dict(tensors["opt_g"])
    run.opt_d.load_state_dict(tensors["opt_d"])
    run.gen.set_state(tensors["rng"])
    run.step, run.seconds = int(meta["step"]), float(meta.get("seconds", 0.0))
    log.info("resumed %s at step %d", out, run.step)


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


@dataclass
class _Exporter:
    """Checkpoints a run and exports its generator with the card, sample sheet and statistics."""

    out: Path
    settings: DreamTrainSettings
    config: dict
    card: dict
    tiles: np.ndarray
    schema: Schema
    real_stats: dict | None = None  # of the real tiles: computed at the first export

    def save(self, run: _Run, final: bool = False) -> None:
        s = self.settings
        save_training_state(self.out / STATE_STEM, run.tensors(), {"step": run.step, "seconds": run.seconds,
                                                                   "config": self.config,
                                                                   "tiles_sha": self.card["training"]["tiles_sha"]})
        export = copy.deepcopy(run.G_ema if s.ema > 0 else run.G).cpu()
        recalibrate_batchnorm(export, seed=s.seed, samples=s.bn_samples)
        export.eval()
        training = {**self.card["training"], "steps": run.step, "seconds": round(run.seconds, 1)}
        if s.stats_samples:
            training["stats"] = self._stats(export, run.step)
        save_dream_model(export, {**self.card, "training": training}, self.out / s.name)
        _sample_sheet(export, self.out / "dream-samples.png", self.schema)
        if final and s.calibrate:
            calibrate_dream_model(model_paths(self.out / s.name)[0])

    def _stats(self, export: DCGANGenerator, step: int) -> dict:
        """Dreamed against real tile statistics (:func:`dream_tile_stats`), logged."""
        s, n_classes = self.settings, len(self.schema.classes)
        if self.real_stats is None:
            pick = np.random.default_rng(s.seed).choice(len(self.tiles), min(s.stats_samples, len(self.tiles)),
                                                        replace=False)
            self.real_stats = dream_tile_stats(self.tiles[np.sort(pick)], n_classes)
        fake = sample_tiles(export, s.stats_samples, seed=s.seed + 1)
        stats = {"real": self.real_stats, "dreamed": dream_tile_stats(fake, n_classes), "samples": int(s.stats_samples)}
        _append_log(self.out / "dream-train-log.jsonl", {"step": step, "stats": stats["dreamed"]})
        log.info("step %d: diversity %.3f (real %.3f), nearest-neighbour %.3f (real %.3f)", step,
                 stats["dreamed"]["diversity"], self.real_stats["diversity"],
                 stats["dreamed"]["nn_disagreement"], self.real_stats["nn_disagreement"])
        return stats


def _update_ema(run: _Run, ema: float) -> None:
    decay = min(ema, (1.0 + run.step) / (10.0 + run.step))  # warm-up: early averages forget the init
    with torch.no_grad():
        for pe, p in zip(run.G_ema.parameters(), run.G.parameters()):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(run.G_ema.buffers(), run.G.buffers()):
            be.copy_(b)


def _train_step(run: _Run, s: DreamTrainSettings, tiles_t: torch.Tensor, real_frac: torch.Tensor,
                dev: torch.device) -> dict:
    """One discriminator and one generator update (and the EMA); returns the step's loss record."""
    n_classes = real_frac.shape[0]
    real = _real_batch(tiles_t, s.batch, n_classes, s.smooth, run.gen).to(dev)
    z = torch.randn(s.batch, s.z_dim, generator=run.gen).to(dev)
    shown, probs = _fake_maps(run.G, z, s.fakes, run.gen)
    fake = _mix(shown, s.smooth, run.gen)
    r1 = s.r1_gamma > 0 and s.r1_every > 0 and run.step % s.r1_every == 0
    if r1:
        real.requires_grad_(True)
    d_real, d_fake = run.D(real), run.D(fake.detach())
    loss_d = run.crit(d_real, True) + run.crit(d_fake, False)
    if r1:
        grad, = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        loss_d = loss_d + 0.5 * s.r1_gamma * s.r1_every * grad.pow(2).sum((1, 2, 3)).mean()
    run.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    run.opt_d.step()
    loss_g = run.crit(run.D(fake), True, for_discriminator=False)
    if s.mode_seeking > 0:
        loss_g = loss_g + s.mode_seeking * mode_seeking_loss(probs, z)
    if s.marginal > 0:
        loss_g = loss_g + s.marginal * class_marginal_loss(probs, real_frac)
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    run.opt_g.step()
    if s.ema > 0:
        _update_ema(run, s.ema)
    return {"loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake}


def _train_loop(run: _Run, s: DreamTrainSettings, exporter: _Exporter, tiles: np.ndarray, dev: torch.device,
                progress: ProgressFn | None) -> None:
    """Train from ``run.step`` up to ``s.steps`` (or ``s.max_seconds``), checkpointing on the way."""
    n_classes = len(exporter.schema.classes)
    tiles_t = torch.from_numpy(tiles)
    real_frac = np.bincount(tiles.ravel(), minlength=n_classes)[:n_classes] / tiles.size
    real_frac = torch.from_numpy(real_frac).float().to(dev)
    log_path = exporter.out / "dream-train-log.jsonl"
    run.G.train()
    run.D.train()
    t0 = run_t0 = time.perf_counter()
    start = run.step
    while run.step < s.steps:
        out = _train_step(run, s, tiles_t, real_frac, dev)
        run.step += 1
        if s.log_every and (run.step % s.log_every == 0 or run.step == s.steps):
            rec = {"step": run.step, "loss_d": round(out["loss_d"].item(), 4),
                   "loss_g": round(out["loss_g"].item(), 4), "d_real": round(out["d_real"].mean().item(), 3),
                   "d_fake": round(out["d_fake"].mean().item(), 3)}
            _append_log(log_path, rec)
            log.info("step %d: loss_d %.3f loss_g %.3f", run.step, rec["loss_d"], rec["loss_g"])
        if progress is not None:
            progress((run.step - start) / max(1, s.steps - start), f"step {run.step}/{s.steps}")
        if s.max_seconds is not None and time.perf_counter() - run_t0 >= s.max_seconds:
            log.info("stopping at step %d after %.0f s (max_seconds); resume to continue", run.step, s.max_seconds)
            break
        if s.checkpoint_every and run.step % s.checkpoint_every == 0 and run.step < s.steps:
            run.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            exporter.save(run)
    run.seconds += time.perf_counter() - t0


def train_dream_with(tiles: np.ndarray, out_dir: PathLike, settings: DreamTrainSettings, *, resume: bool = False,
                     rules: PathLike | None = None, progress: ProgressFn | None = None) -> Path:
    """:func:`train_dream` with its settings as one value; returns the exported model card ``OUT/NAME.json``."""
    s = settings
    tiles, schema = _checked_tiles(tiles, rules)
    n_classes = len(schema.classes)
    tile_px = int(tiles.shape[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(s.device)
    config = _arch_config(s, tile_px, n_classes)
    run = _new_run(s, n_classes, tile_px, dev)
    digest = _tiles_digest(tiles)
    if resume and model_paths(out / STATE_STEM)[0].is_file():
        _resume(run, out, config, digest)
    elif resume:
        log.info("no checkpoint in %s: starting fresh", out)
    exporter = _Exporter(out, s, config, _model_card(s, schema, int(tiles.shape[0]), digest), tiles, schema)
    _train_loop(run, s, exporter, tiles, dev, progress)
    exporter.save(run, final=True)
    return model_paths(out / s.name)[0]
