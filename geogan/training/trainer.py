"""The GAN training loop: pix2pix, compact U-Net or SPADE generators against patch discriminators.

- pix2pix recipe (Isola et al.): U-Net ngf 64, 70x70 PatchGAN on (labels, image), vanilla GAN loss,
  L1 x 100, Adam 2e-4 / beta1 0.5, random jitter (286 -> 256 crop) and mirroring, batch 1.
- unet recipe (the default model): compact U-Net with noise injection, 2-scale PatchGAN, hinge loss,
  feature matching x 10, L1 x 30, flips and 90-degree rotations, batch 4.
- spade recipe (GauGAN): SPADE generator with noise injection, 2-scale PatchGAN, hinge, feature
  matching x 10, L1 x 10 (x VGG 10 when local VGG weights are given).
- Texture + height: with ``shadow=True`` the generator outputs RGB + height, a ShadowGenerator shades
  them, and the discriminator sees the shaded image -- once as generated and once after the same
  random flip/rotation of texture and height, so shadows baked into the texture are punished.

Training state (both networks, both optimisers, RNG states, step, ratio controller) is saved to
``RUN/state.safetensors`` (+ JSON) every ``checkpoint_every`` steps and on exit or Ctrl-C; ``resume``
continues exactly. The deployable generator (+ model card) goes to ``RUN/export/NAME``.

A run's settings are one :class:`~geogan.training.config.TrainConfig` (:func:`train_with`); :func:`train` takes
them as keyword arguments. The recipe (:class:`Recipe`, :func:`recipe_for`) lives in
:mod:`geogan.training.config` and is importable from here too.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError, OutputError
from ..models.checkpoint import load_training_state, save_generator, save_training_state
from ..models.loss import GANLoss, diversity_loss, feature_matching_loss, fixed_pattern_loss, kld_loss, \
    lattice_loss, maybe_vgg_loss, shift_equivariance_loss
from ..models.registry import build_discriminator, build_generator
from ..models.shadow import ShadowGenerator, random_flip_rotate
from .chips import HEIGHT_RANGE_M
from .config import TERRAIN_LOSSES, Recipe, TrainConfig, recipe_for
from .pairs import PairSet
from .ratio import DynamicRatio, FixedRatio

log = logging.getLogger("geogan")

__all__ = ["TERRAIN_LOSSES", "Recipe", "TrainConfig", "TrainLog", "Trainer", "TrainerOptions", "height_losses",
           "laplacian", "recipe_for", "slope_angle", "train", "train_with"]

FIXED_PATTERN_SAMPLES = 4  # noise maps per step for the fixed-pattern loss (all for one uniform input)


def slope_angle(height: torch.Tensor, gain: float) -> torch.Tensor:
    """Slope angle (radians) of ``height`` ``[B, 1, H, W]`` in units where 1 = ``gain`` pixels of rise
    (``height_scale_m / gsd_m``), by central differences; ``[B, 1, H - 2, W - 2]`` (interior only)."""
    dx = (height[..., 1:-1, 2:] - height[..., 1:-1, :-2]) * (gain / 2)
    dy = (height[..., 2:, 1:-1] - height[..., :-2, 1:-1]) * (gain / 2)
    return torch.atan(torch.sqrt(dx * dx + dy * dy + 1e-12))


def height_losses(fake_h: torch.Tensor, real_h: torch.Tensor, gain: float) -> dict[str, torch.Tensor]:
    """Terrain height losses: ``slope`` (mean |slope angle difference|, radians), ``lowres`` (mean L1 of
    heights average-pooled by 4 and by 16 px) and ``curv`` (mean |Laplacian difference|, heights in pixel
    units, i.e. times ``gain``)."""
    import torch.nn.functional as F
    slope = (slope_angle(fake_h, gain) - slope_angle(real_h, gain)).abs().mean()
    curv = (laplacian(fake_h) - laplacian(real_h)).abs().mean() * gain
    lowres = sum((F.avg_pool2d(fake_h, k) - F.avg_pool2d(real_h, k)).abs().mean()
                 for k in (4, 16) if min(fake_h.shape[-2:]) >= k) / 2
    return {"slope": slope, "lowres": lowres, "curv": curv}


def laplacian(height: torch.Tensor) -> torch.Tensor:
    """5-point Laplacian of ``[B, 1, H, W]`` (interior only, ``[B, 1, H - 2, W - 2]``)."""
    return (height[..., 1:-1, 2:] + height[..., 1:-1, :-2] + height[..., 2:, 1:-1] + height[..., :-2, 1:-1]
            - 4 * height[..., 1:-1, 1:-1])


def _tensorboard_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard needs the tensorboard package; pip install tensorboard") from None
    return SummaryWriter(str(path))


@dataclass
class TrainLog:
    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TrainerOptions:
    """What a :class:`Trainer` needs besides its recipe, data and runtime: the exported model's ``name``, its
    ``gsd_m`` and further ``card_extra`` card fields (``training``), ``compile`` the generator with
    torch.compile, ``tensorboard`` logs in RUN/tb."""

    name: str = "model"
    gsd_m: float = 0.5
    card_extra: dict = field(default_factory=dict)
    compile: bool = False
    tensorboard: bool = False


def _check_terrain_recipe(recipe: Recipe, train_set) -> None:
    """The terrain losses need the shadow generator and chips with heights."""
    if (recipe.height_to_d or recipe.height_slope_weight or recipe.height_lowres_weight or
            recipe.height_curv_weight or recipe.texture_l1_weight) and \
            (not recipe.shadow or getattr(train_set, "heights", None) is None):
        raise InputError("the terrain losses (height_to_d, height_slope_weight, height_lowres_weight, "
                         "texture_l1_weight) need --shadow and chips with heights")


class Trainer:
    """One training run in ``run_dir`` on a :class:`PairSet` (or any set with the same ``batch``)."""

    def __init__(self, recipe: Recipe, train_set: PairSet, run_dir: Path, *, val_set: PairSet | None = None,
                 ratio: DynamicRatio | FixedRatio | None = None, seed: int = 0, device: str = "cpu",
                 amp: bool = False, channels_last: bool = False, options: TrainerOptions | None = None) -> None:
        options = options or TrainerOptions()
        # datasets.PairsDataset / ChipsDataset wrap a PairSet: train on the wrapped tiles
        train_set = getattr(train_set, "tiles", train_set)
        val_set = getattr(val_set, "tiles", val_set)
        self.recipe, self.train_set, self.val_set = recipe, train_set, val_set
        self.card_extra = dict(options.card_extra)
        self.run_dir = Path(run_dir)
        self.ratio = ratio or DynamicRatio()
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        self.name, self.gsd_m, self.seed = options.name, options.gsd_m, seed
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.G = build_generator(recipe.arch, recipe.g_params).to(self.device)
        self.D = build_discriminator(recipe.d_arch, recipe.d_params).to(self.device)
        tile_px = int(train_set.images.shape[1])
        multiple = int(getattr(self.G, "size_multiple", 1))
        if tile_px % multiple:
            raise InputError(f"the training tiles are {tile_px} px but {recipe.arch} {recipe.g_params} needs "
                             f"multiples of {multiple} px; use fewer levels (n_down) or larger tiles")
        self._init_shadow(recipe, train_set)
        if channels_last:
            self.G, self.D = self.G.to(memory_format=torch.channels_last), self.D.to(memory_format=torch.channels_last)
        g_params = list(self.G.parameters()) + (list(self.shadow.parameters()) if self.shadow else [])
        self.opt_g = torch.optim.Adam(g_params, lr=recipe.lr, betas=(recipe.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=recipe.lr, betas=(recipe.beta1, 0.999))
        self.gan = GANLoss(recipe.gan_mode)
        self.vgg = maybe_vgg_loss(recipe.vgg_weights) if recipe.vgg_weights is not None else None
        self.g_fwd = torch.compile(self.G) if options.compile else self.G
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.weights = train_set.class_balanced_weights(0.5) if recipe.balance else None
        self.log = TrainLog()
        self._stop = False
        self.tb = _tensorboard_writer(self.run_dir / "tb") if options.tensorboard else None

    def _init_shadow(self, recipe: Recipe, train_set) -> None:
        """The shadow generator (texture + height recipes) and the height scale of the chips."""
        self.height_ref = getattr(train_set, "height_ref", "min")
        self.height_scale_m = float(getattr(train_set, "height_scale_m", HEIGHT_RANGE_M / 2))
        # terrain chips (heights relative to the chip mean): physically initialised shading, see ShadowGenerator
        shadow_params = {"relief_gain": self.height_scale_m / self.gsd_m} if self.height_ref == "mean" else {}
        self.shadow = ShadowGenerator(**shadow_params).to(self.device) if recipe.shadow else None
        self.relief_gain = self.height_scale_m / self.gsd_m
        _check_terrain_recipe(recipe, train_set)
        if recipe.texture_l1_weight and self.shadow.relief_gain is None:
            raise InputError("texture_l1_weight needs terrain chips (heights relative to the chip mean)")

    # ------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.safetensors"

    def save_state(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tensors = {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                   "opt_d": self.opt_d.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.shadow is not None:
            tensors["shadow"] = self.shadow.state_dict()
        if self.device.type == "cuda":
            tensors["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        meta = {"step": self.log.step, "seconds": self.log.seconds, "numpy_rng": self.rng.bit_generator.state,
                "ratio": self.ratio.state(), "recipe": asdict(self.recipe)}
        if self.scaler is not None:
            meta["grad_scaler"] = self.scaler.state_dict()
        save_training_state(self.state_path, tensors, meta)

    def resume(self) -> bool:
        """Load the run's state if there is one; True when resumed."""
        if not self.state_path.exists():
            return False
        tensors, meta = load_training_state(self.state_path)
        saved = meta.get("recipe")
        if saved is not None and (saved["arch"] != self.recipe.arch or saved["g_params"] != self.recipe.g_params):
            raise InputError(f"run '{self.run_dir}' was trained as {saved['arch']} {saved['g_params']}; resume it "
                             "with the same --arch and parameters, or choose another --out")
        self.G.load_state_dict(tensors["G"])
        self.D.load_state_dict(tensors["D"])
        self.opt_g.load_state_dict(tensors["opt_g"])
        self.opt_d.load_state_dict(tensors["opt_d"])
        if self.shadow is not None and "shadow" in tensors:
            self.shadow.load_state_dict(tensors["shadow"])
        torch.set_rng_state(tensors["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in tensors:
            torch.cuda.set_rng_state(tensors["cuda_rng"], self.device)
        self.rng.bit_generator.state = meta["numpy_rng"]
        if "ratio" in meta:
            self.ratio.load_state(meta["ratio"])
        if self.scaler is not None and meta.get("grad_scaler"):
            self.scaler.load_state_dict(meta["grad_scaler"])
        self.log.step, self.log.seconds = int(meta["step"]), float(meta["seconds"])
        log.info("resumed %s at step %d (%.2f h trained)", self.run_dir, self.log.step, self.log.seconds / 3600)
        return True

    def init_from(self, source: str | Path) -> list[str]:
        """Start from another run's networks: ``source`` is a run directory (its ``state.safetensors``: G and
        D) or an exported model (``.json``/``.safetensors``: G only). Layers this recipe has and the source
        lacks keep their initialisation (e.g. zero-initialised style FiLM layers); every other tensor must
        match. Optimisers, step and RNGs start fresh. Returns the parameter names left as initialised."""
        from ..models.checkpoint import load_generator
        src = Path(source)
        if src.is_dir():
            src = src / "state.safetensors"
        if src.name.endswith("state.safetensors") or src.name.endswith("state.json"):
            tensors, _ = load_training_state(src.with_name("state.safetensors"))
            pairs = [("G", self.G, tensors["G"]), ("D", self.D, tensors["D"])]
        else:
            module, _ = load_generator(src)
            pairs = [("G", self.G, module.state_dict())]
        missing_all = []
        for name, net, state in pairs:
            own = net.state_dict()
            bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
            if bad:
                raise InputError(f"--init-from '{source}': its {name} does not fit this recipe ({len(bad)} tensors "
                                 f"differ, e.g. {bad[0]}); start from a run of the same architecture")
            missing = net.load_state_dict(state, strict=False).missing_keys
            missing_all += [f"{name}.{k}" for k in missing]
        log.info("initialised from %s (%d new tensors left as initialised)", source, len(missing_all))
        return missing_all

    # ------------------------------------------------------------ one step
    def _batch(self):
        ts = self.train_set
        idx = self.rng.choice(len(ts), self.recipe.batch, p=self.weights)
        out = ts.batch(idx, self.rng, flip=self.recipe.flip, jitter=self.recipe.jitter)
        return tuple(t.to(self.device) for t in out)

    def _shade(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texture, height = out[:, :3], out[:, 3:4]
        return self.shadow(texture, height), texture, height

    def _fixed_pattern(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`fixed_pattern_loss` of ``FIXED_PATTERN_SAMPLES`` outputs for one input class everywhere (drawn
        at random among the input's channels), each under its own noise. The generator runs in eval mode here
        (batch norm on its running statistics, no dropout): the mode it renders in, and a batch of identical
        inputs would give degenerate batch statistics.

        Tried and dropped: the discriminator judging these samples too (as fakes against their uniform label
        map, to keep them textured). Without teaching it they are fake, the generator won that term against a
        discriminator that had never seen such inputs within 100 steps; teaching it destabilised the whole
        game (after 260 steps woodland became a checkerboard, segmenter-feature FID 19.5 -> 301)."""
        k = FIXED_PATTERN_SAMPLES
        uniform = torch.zeros(k, *x.shape[1:], device=x.device, dtype=x.dtype)
        uniform[:, int(self.rng.integers(x.shape[1]))] = 1
        noise = torch.randn(k, 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        was_training = self.G.training
        self.G.eval()
        try:
            out = self.g_fwd(uniform, noise=noise)
        finally:
            self.G.train(was_training)
        return fixed_pattern_loss(out[:, :3])

    def step(self) -> dict:
        x, real, *extra = self._batch()
        with torch.autocast(self.device.type, enabled=self.amp):
            style = None
            if getattr(self.G, "style_encoder", None) is not None:
                # GauGAN's VAE route: the real photo's encoded style (reparameterised) drives the generator,
                # so at render time a reference photo's style sets the look (--style-ref)
                style, mu, logvar = self.G.encode_style(real[:, :3])
                if not self.recipe.kld_weight:  # KL off: a plain (deterministic) style code, no sampling
                    style = mu
            noise = None
            if (self.recipe.equivariance_weight and style is None) or self.recipe.diversity_weight:
                # an explicit noise map: rolled with the input for the shifted copy (same noise per place),
                # or set against a second one for the diversity loss
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            style_kw = {} if style is None else {"style": style}  # models without a style take no style argument
            out = self.g_fwd(x, noise=noise, **style_kw)
            if self.shadow is not None:
                fake, texture, height = self._shade(out)
            else:
                fake = out
            if self.recipe.height_to_d:  # D judges (shaded RGB, height) against (photo, real height)
                fake = torch.cat([fake, height], 1)
                real = torch.cat([real, extra[0]], 1)
            d_fake = self.D(x, fake.detach())
            d_real = self.D(x, real)
            loss_d = self.gan(d_fake, False) + self.gan(d_real, True)
        step_d = self.ratio.should_step_d()
        if step_d:
            self._backward(loss_d, self.opt_d)
        step_g = self.ratio.should_step_g(loss_d.item())
        rec = {"loss_d": loss_d.item()}
        if step_g:
            with torch.autocast(self.device.type, enabled=self.amp):
                d_fake = self.D(x, fake)
                loss_adv = self.gan(d_fake, True, for_discriminator=False)
                loss = loss_adv
                if self.recipe.fm_weight and isinstance(d_fake[0], (list, tuple)):
                    loss_fm = feature_matching_loss([[f.detach() for f in s] for s in d_real], d_fake)
                    loss = loss + self.recipe.fm_weight * loss_fm
                    rec["loss_fm"] = loss_fm.item()
                loss_l1 = (fake[:, :3] - real[:, :3]).abs().mean()
                loss = loss + self.recipe.l1_weight * loss_l1
                if self.recipe.diversity_weight:
                    other = torch.randn_like(noise)
                    out_b = self.g_fwd(x, noise=other, **style_kw)
                    loss_div = diversity_loss(out[:, :3], out_b[:, :3])
                    loss = loss + self.recipe.diversity_weight * loss_div
                    rec["diversity"] = -loss_div.item()
                if noise is not None and self.recipe.equivariance_weight and style is None:
                    shift = tuple(int(v) for v in self.rng.integers(16, x.shape[-1] - 16, 2))
                    out_shifted = self.g_fwd(torch.roll(x, shift, dims=(-2, -1)),
                                             noise=torch.roll(noise, shift, dims=(-2, -1)))
                    loss_eq = shift_equivariance_loss(out[:, :3], out_shifted[:, :3], shift)
                    loss = loss + self.recipe.equivariance_weight * loss_eq
                    rec["loss_equivariance"] = loss_eq.item()
                if self.recipe.fixed_pattern_weight and style is None:
                    loss_fixed = self._fixed_pattern(x)
                    loss = loss + self.recipe.fixed_pattern_weight * loss_fixed
                    rec["fixed_pattern_std"] = math.copysign(abs(loss_fixed.item()) ** 0.5, loss_fixed.item())
                if self.recipe.lattice_weight:
                    loss_lattice = lattice_loss(fake[:, :3], real[:, :3])
                    loss = loss + self.recipe.lattice_weight * loss_lattice
                    rec["loss_lattice"] = loss_lattice.item()
                if self.vgg is not None:
                    loss = loss + self.recipe.vgg_weight * self.vgg(fake[:, :3], real[:, :3])
                if self.shadow is not None:
                    # second route: flip/rotate texture and height together before shading
                    t2, h2, x2 = random_flip_rotate(texture, height, x)
                    shaded2 = self.shadow(t2, h2)
                    if self.recipe.height_to_d:
                        shaded2 = torch.cat([shaded2, h2], 1)
                    loss = loss + self.gan(self.D(x2, shaded2), True, for_discriminator=False)
                    if extra:  # real heights available
                        loss_h = (height - extra[0]).abs().mean()
                        loss = loss + self.recipe.l1_weight * loss_h
                        rec["loss_height"] = loss_h.item()
                        r = self.recipe
                        if r.height_slope_weight or r.height_lowres_weight or r.height_curv_weight:
                            hl = height_losses(height, extra[0], self.relief_gain)
                            loss = loss + r.height_slope_weight * hl["slope"] + \
                                r.height_lowres_weight * hl["lowres"] + r.height_curv_weight * hl["curv"]
                            rec.update(loss_slope=hl["slope"].item(), loss_lowres=hl["lowres"].item(),
                                       loss_curv=hl["curv"].item())
                        if self.recipe.texture_l1_weight:
                            with torch.no_grad():
                                shade = self.shadow.prior_shading(extra[0])
                                target = ((real[:, :3] + 1) / 2 / shade).clamp(0, 1) * 2 - 1
                            loss_tex = (texture - target).abs().mean()
                            loss = loss + self.recipe.texture_l1_weight * loss_tex
                            rec["loss_texture"] = loss_tex.item()
                if style is not None:
                    loss_kld = kld_loss(mu, logvar)
                    loss = loss + self.recipe.kld_weight * loss_kld
                    rec["loss_kld"] = loss_kld.item()
            self._backward(loss, self.opt_g)
            rec.update(loss_adv=loss_adv.item(), loss_l1=loss_l1.item())
        if self.scaler is not None and (step_d or step_g):
            self.scaler.update()  # once per iteration, after both optimisers stepped
        self.ratio.record(step_d, step_g)
        rec["g_step"] = step_g
        return rec

    def _backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
        else:
            loss.backward()
            opt.step()

    # ------------------------------------------------------------ validation, samples, export
    def validate(self, max_pairs: int = 64) -> float | None:
        if self.val_set is None:
            return None
        self.G.eval()
        gen = torch.Generator().manual_seed(123)
        errs = []
        with torch.inference_mode():
            n = min(len(self.val_set), max_pairs)
            for i in range(0, n, 8):
                x, real = self.val_set.batch(range(i, min(n, i + 8)), np.random.default_rng(0), flip=False)[:2]
                z = torch.randn(x.shape[0], 1, *x.shape[2:], generator=gen)
                fake = self.G(x.to(self.device), noise=z.to(self.device))[:, :3].float().cpu()
                errs.append(float((fake - real).abs().mean() / 2))
        self.G.train()
        return float(np.mean(errs))

    def save_samples(self, path: Path, n: int = 4) -> Path:
        """A PNG grid: rows of (labels colourised | output | target)."""
        from PIL import Image
        source = self.val_set or self.train_set
        x, real = source.batch(range(min(n, len(source))), np.random.default_rng(0), flip=False)[:2]
        z = torch.randn(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(321))
        self.G.eval()
        with torch.inference_mode():  # fixed noise: samples comparable over steps, training RNG untouched
            fake = self.G(x.to(self.device), noise=z.to(self.device))[:, :3].float().cpu()
        self.G.train()
        colours = np.array([(255, 255, 255), (214, 39, 40), (20, 110, 40), (31, 119, 220), (0, 0, 0),
                            (230, 210, 120), (110, 110, 110), (170, 170, 170)] * 4, dtype=np.uint8)
        rows = []
        for i in range(x.shape[0]):
            lab = colours[x[i].argmax(0).numpy()]
            to_u8 = lambda t: ((t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
            rows.append(np.concatenate([lab, to_u8(fake[i]), to_u8(real[i])], 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(path)
        return path

    def card(self, val_l1: float | None) -> dict:
        lm = self.train_set.label_map
        heights = {"height_scale_m": self.height_scale_m,
                   "height_reference": ("chip mean" if self.height_ref == "mean"
                                        else f"{HEIGHT_RANGE_M / 2:g} m above the chip minimum")}
        return {
            "name": self.name, "arch": self.recipe.arch, "arch_params": self.recipe.g_params,
            "classes": list(lm.classes), "schema_to_model": lm.schema_to_model,
            "outputs": ["rgb", "height"] if self.recipe.shadow else ["rgb"],
            **(heights if self.recipe.shadow else {}),
            "gsd_m": self.gsd_m,
            "training": {"data": lm.data or lm.name, "label_map": lm.name, "steps": self.log.step,
                         "wall_hours": round(self.log.seconds / 3600, 4), "wall_seconds": round(self.log.seconds, 1),
                         "device": self.device.type, "seed": self.seed, "train_pairs": len(self.train_set),
                         "val_pairs": len(self.val_set) if self.val_set is not None else 0,
                         "recipe": asdict(self.recipe), **self.card_extra},
            "license": lm.license or "see the training data's licence",
            "metrics": {"val_l1": val_l1},
        }

    def export(self) -> Path:
        val = self.validate()
        (self.run_dir / "export").mkdir(parents=True, exist_ok=True)
        _, card_path = save_generator(self.G, self.card(val), self.run_dir / "export" / self.name, fp16=True)
        self.G.train()
        return card_path

    # ------------------------------------------------------------ loop
    def train(self, steps: int, *, checkpoint_every: int = 500, sample_every: int = 500,
              log_every: int = 25, max_seconds: float | None = None, progress: bool = False) -> TrainLog:
        """Train until ``steps`` total steps (counting resumed ones); checkpoint on exit and Ctrl-C."""
        self.G.train()
        self.D.train()
        old = None  # SIGTERM stops the loop cleanly (checkpoint + export); only the main thread may set handlers
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            old = signal.signal(signal.SIGTERM, lambda *a: setattr(self, "_stop", True))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.run_dir / "log.jsonl", "a")
        t_start = last = time.perf_counter()
        epoch_len = max(1, len(self.train_set) // self.recipe.batch)
        try:
            for _ in self._steps(steps, progress):
                if self._stop or (max_seconds is not None and time.perf_counter() - t_start > max_seconds):
                    break
                rec = self.step()
                self._last_rec = rec
                self.log.step += 1
                now = time.perf_counter()
                self.log.seconds += now - last
                last = now
                if self.log.step % log_every == 0:
                    rec.update(step=self.log.step, seconds=round(self.log.seconds, 1))
                    self.log.history.append(rec)
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                    if self.tb is not None:
                        for k, v in rec.items():
                            if k.startswith("loss"):
                                self.tb.add_scalar(k, v, self.log.step)
                if self.log.step % epoch_len == 0:
                    c = self.ratio.take_counts()
                    line = {"epoch": self.log.step // epoch_len, "epoch_end_step": self.log.step,
                            "seconds": round(self.log.seconds, 1), "d_steps": c.d_steps, "g_steps": c.g_steps,
                            "d_to_g": round(c.ratio, 3)}
                    logf.write(json.dumps(line) + "\n")
                    log.info("epoch done at step %d: realised D:G ratio %.2f", self.log.step, c.ratio)
                    if self.tb is not None:
                        self.tb.add_scalar("d_to_g_ratio", c.ratio, self.log.step)
                if self.log.step % sample_every == 0:
                    self.save_samples(self.run_dir / "samples" / f"step_{self.log.step:07d}.png")
                if self.log.step % checkpoint_every == 0:
                    self.save_state()
                    self.export()
        except KeyboardInterrupt:
            log.info("interrupted: saving a checkpoint at step %d", self.log.step)
        finally:
            self.save_state()
            self.export()
            logf.close()
            if self.tb is not None:
                self.tb.flush()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        return self.log

    def _steps(self, steps: int, progress: bool) -> Iterator[int]:
        todo = range(self.log.step, steps)
        if not progress:
            yield from todo
            return
        from rich.progress import Progress
        with Progress() as bar:
            task = bar.add_task("training", total=len(todo))
            for i in todo:
                yield i
                h = getattr(self, "_last_rec", {})
                desc = f"step {self.log.step} D {h.get('loss_d', 0):.3f}"
                if "loss_l1" in h:
                    desc += f" G {h['loss_adv']:.3f} L1 {h['loss_l1']:.3f}"
                bar.update(task, advance=1, description=desc)


# ---------------------------------------------------------------- one call: data in, model out
def _load_data(data, label_map, val_data, val_fraction: float | None, check_labels: bool):
    """(train PairSet, val PairSet | None, attribution text) from a folder, several folders or dataset objects.

    Several pair folders (a list) are read each with its own label map (``label_map`` a list of the same
    length, or one for all), split each by number, and merged (:func:`merge_pairsets`).
    """
    if isinstance(data, (list, tuple)) and all(isinstance(d, (str, Path)) for d in data):
        from .config import label_maps_for
        maps = label_maps_for(data, label_map)
        if val_data is not None and len(data) > 1:
            raise InputError("a separate validation folder works with one training folder only")
        parts = [_load_data(d, m, val_data, val_fraction, check_labels) for d, m in zip(data, maps)]
        from .pairs import merge_pairsets
        vals = [v for _, v, _ in parts if v is not None]
        attribution = "\n\n".join(dict.fromkeys(a for _, _, a in parts if a))
        return merge_pairsets([t for t, _, _ in parts]), (merge_pairsets(vals) if vals else None), attribution
    from .datasets import _resolve_label_map, list_pair_files, load_pairset, split_by_number
    if isinstance(label_map, (list, tuple)):
        if len(label_map) != 1:
            raise InputError(f"one pair folder but {len(label_map)} label maps; give one label map per folder")
        label_map = label_map[0]
    if not isinstance(data, (str, Path)):  # a PairsDataset / ChipsDataset / PairSet
        return getattr(data, "tiles", data), (getattr(val_data, "tiles", val_data) if val_data is not None
                                              else None), ""
    data = Path(data)
    if (data / "index.json").is_file():  # chips written by `geogan chips`
        from .chips import ChipSet
        val = ChipSet.load(data, "val")
        return ChipSet.load(data, "train"), (val if len(val) else None), _attribution(data / "label_map.toml")
    lm, lm_path = _resolve_label_map(label_map)
    files = list_pair_files(data)
    if val_data is not None:
        return load_pairset(files, lm, check=check_labels), \
            load_pairset(list_pair_files(val_data), lm, check=check_labels), _attribution(lm_path)
    train_files, val_files = split_by_number(files, val_fraction=val_fraction)
    if not train_files:
        raise InputError(f"'{data}' has too few pairs to split off validation; lower --val-fraction")
    val = load_pairset(val_files, lm, check=check_labels) if val_files else None
    return load_pairset(train_files, lm, check=check_labels), val, _attribution(lm_path)


def _attribution(lm_path: Path | None) -> str:
    if lm_path is None or not Path(lm_path).is_file():
        return ""
    import tomllib
    try:
        return str(tomllib.loads(Path(lm_path).read_text(encoding="utf-8")).get("attribution", ""))
    except (tomllib.TOMLDecodeError, OSError):
        return ""


def _terrain_loss_overrides(terrain_losses: dict | None, train_set, shadow: bool, state: Path | None) -> dict:
    """The terrain-loss recipe fields for a run (see :class:`~geogan.training.config.TerrainLossConfig`)."""
    keys = tuple(TERRAIN_LOSSES)
    if terrain_losses is not None:
        unknown = set(terrain_losses) - set(keys)
        if unknown:
            raise InputError(f"unknown terrain loss setting(s) {sorted(unknown)}; use {', '.join(keys)}")
        return dict(terrain_losses)
    if state is not None and state.exists():  # resuming: keep what the run was started with ...
        saved = load_training_state(state)[1].get("recipe") or {}
        if not any(saved.get(k) for k in keys if k != "flip"):  # started without them (or before they existed)
            return {k: saved.get(k, Recipe.__dataclass_fields__[k].default) for k in keys}
        # ... but a run with terrain losses picks up terrain losses added since (missing keys)
        return {k: saved.get(k, TERRAIN_LOSSES[k]) for k in keys}
    if shadow and getattr(train_set, "height_ref", "min") == "mean" and getattr(train_set, "heights", None) is not None:
        return dict(TERRAIN_LOSSES)
    return {}


def _make_trainer(config: TrainConfig, recipe: Recipe, data: tuple, out_dir: Path) -> Trainer:
    """The :class:`Trainer` of ``config`` for ``data`` = (train set, val set, attribution text)."""
    from ..infer import resolve_device
    train_set, val_set, attribution = data
    rt = config.runtime
    dev = resolve_device(rt.device)
    cuda = dev.type == "cuda"
    options = TrainerOptions(name=config.name, gsd_m=train_set.label_map.gsd_m, compile=rt.compile,
                             tensorboard=rt.tensorboard, card_extra={"attribution": attribution} if attribution else {})
    return Trainer(recipe, train_set, out_dir, val_set=val_set, ratio=config.optim.controller(), seed=rt.seed,
                   device=str(dev), amp=rt.amp and cuda,
                   channels_last=cuda if rt.channels_last is None else (rt.channels_last and cuda), options=options)


def train_with(config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
               init_from: str | Path | None = None, progress: bool = False) -> tuple[TrainLog, Path]:
    """Train the generator of ``config`` (:class:`~geogan.training.config.TrainConfig`) and export it into
    ``out_dir``; returns (log, model card path).

    Writes into ``out_dir``: ``state.safetensors/.json`` (exact resume: both nets, both optimisers, RNG
    states, step, ratio controller), ``log.jsonl`` (losses every ``log_every`` steps, one line per epoch
    with the realised D:G ratio), ``samples/step_N.png`` (labels | output | target), ``export/NAME``
    (deployable model + card, refreshed at every checkpoint and at exit, Ctrl-C and SIGTERM included).
    Deterministic for a given seed on CPU.

    ``resume``: continue the run in ``out_dir`` (without it an existing run is refused); its terrain losses
    stay what the run was started with unless ``config.terrain`` sets them. ``init_from``: start a new run
    from another run's networks or an exported model (:meth:`Trainer.init_from`). ``progress``: a progress bar.
    """
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    out_dir = Path(out_dir)
    state = out_dir / "state.safetensors"
    if state.exists() and not resume:
        raise OutputError(f"'{out_dir}' already holds a training run; pass --resume to continue it or choose "
                          "another --out")
    d = config.data
    data = _load_data(d.data, d.label_map, d.val_data, d.val_fraction, d.check_labels)
    train_set = data[0]
    terrain = _terrain_loss_overrides(None if config.terrain is None else config.terrain.overrides(), train_set,
                                      config.arch.shadow, state if resume else None)
    recipe = config.recipe(len(train_set.label_map.classes), terrain)
    trainer = _make_trainer(config, recipe, data, out_dir)
    resumed = resume and trainer.resume()
    if resume and not resumed:
        log.info("nothing to resume in %s: starting a new run", out_dir)
    if init_from is not None and not resumed:
        trainer.init_from(init_from)
    s = config.schedule
    run_log = trainer.train(s.total_steps(len(train_set), recipe.batch), checkpoint_every=s.checkpoint_every,
                            sample_every=s.sample_every, log_every=s.log_every, max_seconds=s.max_seconds,
                            progress=progress)
    return run_log, out_dir / "export" / f"{config.name}.json"


def train(arch: str, data, out_dir: str | Path, *, resume: bool = False, init_from: str | Path | None = None,
          progress: bool = False, **options) -> tuple[TrainLog, Path]:
    """Train a generator on paired data and export it; returns (log, model card path).

    The keyword form of :func:`train_with`: ``options`` are the keywords of
    :data:`~geogan.training.config.TRAIN_OPTIONS`, each a field of the
    :class:`~geogan.training.config.TrainConfig` it builds (``None`` options take the recipe's value):
    ``steps``/``epochs``/``max_seconds``/``checkpoint_every``/``sample_every``/``log_every`` (schedule),
    ``batch_size``/``lr``/``beta1``/``ratio`` (optimiser), ``gan_mode``/``l1_weight``/``feature_matching``/
    ``lattice_weight``/``equivariance_weight``/``kld_weight``/``diversity_weight``/``fixed_pattern_weight``/
    ``vgg_weights`` (losses), ``arch_params``/``disc_params``/``shadow`` (networks), ``device``/``threads``/
    ``compile``/``amp``/``channels_last``/``seed``/``log_tensorboard`` (runtime), ``label_map``/``val_data``/
    ``val_fraction``/``balance``/``jitter``/``check_labels`` (data), ``name`` and ``terrain_losses`` (a dict of
    :data:`TERRAIN_LOSSES` fields; None: automatic).

    ``arch``: ``pix2pix`` (U-Net ngf 64 + 70x70 PatchGAN, vanilla GAN + L1 x 100, jitter + mirroring,
    batch 1), ``unet`` (compact U-Net with noise, 2-scale D, hinge + feature matching + L1) or ``spade``
    (SPADE + 2-scale D, hinge + feature matching (+ VGG with ``vgg_weights``) + L1). ``data``: see
    :class:`~geogan.training.config.DataConfig`.
    """
    config = TrainConfig.from_options(arch, data, **options)
    return train_with(config, out_dir, resume=resume, init_from=init_from, progress=progress)
