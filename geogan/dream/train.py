"""Training a dream model: a DCGAN on one-hot class tiles, resumable, exported with its card
(:func:`train_dream`)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..classes import Schema, load_schema
from ..errors import InputError, ModelError
from ..models.checkpoint import load_training_state, model_paths, save_training_state
from ..models.dcgan import DCGANDiscriminator, DCGANGenerator
from ..models.loss import GANLoss
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
