"""A training run's settings as values: small frozen dataclasses, each checked at construction.

:class:`TrainConfig` is one run of ``geogan train`` (or :func:`geogan.training.trainer.train_with`):

* :class:`DataConfig`: the pairs or chips, their label maps and validation split, class balancing, jitter;
* :class:`ArchConfig`: the generator and discriminator (``--arch``, widths, position cue, style encoder,
  shadow);
* :class:`LossConfig`: the GAN loss and the regularisers' weights (L1, feature matching, VGG, KL, lattice,
  shift equivariance, diversity, fixed pattern);
* :class:`TerrainLossConfig`: the terrain losses (texture + height on terrain chips);
* :class:`OptimConfig`: Adam's rate and beta1, the batch size, the D:G ratio;
* :class:`ScheduleConfig`: how long (steps, epochs, wall time) and how often to checkpoint, sample and log;
* :class:`RuntimeConfig`: device, threads, torch.compile, AMP, channels-last, seed, TensorBoard.

``None`` in a field means "the recipe's value" (:func:`recipe_for`). A bad field is a one-line
:class:`~geogan.errors.InputError` naming the field, its option and the value that was given.

:class:`Recipe` is what a run trains (architecture, losses, optimiser), exactly as it is saved in the
run's ``state.json`` and in the exported model card (``training.recipe``): :meth:`TrainConfig.recipe`
makes it, :meth:`TrainConfig.with_recipe` goes back (a card's recipe as a config that trains it again).
The dream model's settings (:class:`geogan.dream.DreamTrainSettings`) use the checks of this module.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from ..errors import InputError
from .ratio import DynamicRatio, FixedRatio, parse_ratio

ARCHS = ("pix2pix", "unet", "spade")
GAN_MODES = ("hinge", "vanilla", "lsgan")


# ---------------------------------------------------------------- checks (one line each)
def check_whole(value, label: str, minimum: int, *, optional: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (or None when ``optional``); ``label`` names it in the message."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{label} must be a whole number {minimum} or more (got {value!r})")


def check_number(value, label: str, low: float = 0.0, high: float | None = None, *, low_open: bool = False,
                 optional: bool = False) -> None:
    """``value`` is a finite real number in [low, high) (``(low, ...)`` with ``low_open``; no upper bound
    without ``high``), or None when ``optional``."""
    if value is None and optional:
        return
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and (value > low if low_open else value >= low) and (high is None or value < high))
    if not ok:
        bound = f"above {low:g}" if low_open else f"{low:g} or more"
        if high is not None:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g})"
        raise InputError(f"{label} must be a number {bound} (got {value!r})")


def check_gan_mode(gan_mode: str | None, *, optional: bool = False) -> None:
    if gan_mode is None and optional:
        return
    if gan_mode not in GAN_MODES:
        raise InputError(f"unknown GAN loss '{gan_mode}'; use hinge, vanilla or lsgan")


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


# ---------------------------------------------------------------- the recipe (saved in state.json and cards)
@dataclass(frozen=True)
class Recipe:
    """Architecture, losses and optimiser of one training run."""

    arch: str
    g_params: dict
    d_arch: str
    d_params: dict
    gan_mode: str = "hinge"
    l1_weight: float = 30.0
    fm_weight: float = 10.0
    vgg_weight: float = 10.0
    kld_weight: float = 0.05  # SPADE with a style encoder: KL of the encoded style from N(0, 1) (GauGAN's 0.05)
    lattice_weight: float = 0.0  # excess spectral power on the 32/64/128 px lattices (models.loss.lattice_loss)
    equivariance_weight: float = 0.0  # G(roll(x)) vs roll(G(x)) (models.loss.shift_equivariance_loss)
    diversity_weight: float = 0.0  # two noise maps, two different pictures at 8 px cells (models.loss.diversity_loss)
    fixed_pattern_weight: float = 0.0  # uniform input: no picture shared by all noise maps (models.loss.fixed_pattern_loss)
    vgg_weights: str | None = None
    lr: float = 2e-4
    beta1: float = 0.5
    batch: int = 4
    jitter: bool = False
    flip: bool = True
    balance: bool = True
    shadow: bool = False
    # terrain (texture + height) losses, see :data:`TERRAIN_LOSSES` and ``Trainer.step``
    height_slope_weight: float = 0.0    # L1 of slope angles (radians) generated vs real
    height_lowres_weight: float = 0.0   # L1 of heights average-pooled by 4 and 16 px (large-scale relief)
    height_curv_weight: float = 0.0     # L1 of the 5-point Laplacians (pixel-scale ripple / checkerboard)
    height_to_d: bool = False           # the discriminator also sees the height channel
    texture_l1_weight: float = 0.0      # L1 of the unshaded texture vs image / prior shading of the real height

    @classmethod
    def from_dict(cls, saved: Mapping) -> Recipe:
        """A recipe as saved (``state.json``'s ``recipe``, a card's ``training.recipe``); fields a run from an
        older version did not save take their defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise InputError(f"the saved recipe has fields this version does not know ({', '.join(unknown)}); "
                             "use the geogan version that trained it")
        return cls(**{k: (dict(v) if k in ("g_params", "d_params") else v) for k, v in saved.items()})


#: Recipe overrides :func:`train` applies to terrain chips (``geogan terrain-chips``: heights relative to the
#: chip mean) with ``shadow``: the discriminator judges the height field itself (not only its shading), slope
#: angles are matched per pixel (class maps fix slope bands; this removes the high-frequency ripple that
#: shading alone rewards) and large-scale relief gets an extra L1; the unshaded texture is matched to the
#: image divided by the prior shading of the real height (the chips' synthetic texture is exactly albedo x
#: that shading), so class colour cannot hide in height ripple decoded by the shadow generator; no
#: flips/rotations (the chips are lit from the north-west, a flipped chip is lit from elsewhere); the
#: curvature term (added at step 3462 of the shipped run) damps the transposed-convolution checkerboard
#: that hillshading makes visible.
#: Measured on held-out DEMs; see the terrain model card.
TERRAIN_LOSSES = {"height_slope_weight": 10.0, "height_lowres_weight": 30.0, "height_to_d": True,
                  "texture_l1_weight": 30.0, "flip": False, "height_curv_weight": 10.0}


def recipe_for(arch: str, n_classes: int, **overrides) -> Recipe:
    """The project's recipe for ``arch`` ('pix2pix', 'unet' or 'spade'), with overrides."""
    out_nc = 4 if overrides.get("shadow") else 3
    if arch == "pix2pix":
        r = Recipe("pix2pix", {"in_nc": n_classes, "out_nc": out_nc, "ngf": 64, "n_down": 8},
                   "patchgan", {"in_nc": n_classes + 3, "ndf": 64, "n_layers": 3}, gan_mode="vanilla",
                   l1_weight=100.0, fm_weight=0.0, batch=1, jitter=True, balance=False)
    elif arch == "unet":
        r = Recipe("unet", {"in_nc": n_classes, "out_nc": out_nc, "ngf": 16, "n_down": 7, "dropout": False,
                            "noise": True, "norm": "batch"},
                   "multiscale", {"in_nc": n_classes + 3, "ndf": 32, "n_layers": 3, "num_d": 2})
    elif arch == "spade":
        r = Recipe("spade", {"label_nc": n_classes, "out_nc": out_nc, "ngf": 32, "n_up": 5, "noise": True},
                   "multiscale", {"in_nc": n_classes + 3, "ndf": 32, "n_layers": 3, "num_d": 2},
                   l1_weight=10.0, batch=2)
    else:
        raise InputError(f"unknown --arch '{arch}'; use pix2pix, unet or spade")
    g_params = {**r.g_params, **overrides.pop("g_params", {})}
    d_params = {**r.d_params, **overrides.pop("d_params", {})}
    if overrides.get("height_to_d") and "in_nc" in d_params:
        d_params["in_nc"] = n_classes + 4  # labels + RGB + height
    return replace(r, g_params=g_params, d_params=d_params, **overrides)


def _given(part, names: tuple[str, ...]) -> dict:
    """The fields of ``part`` among ``names`` that are set (not None)."""
    return {n: getattr(part, n) for n in names if getattr(part, n) is not None}


# ---------------------------------------------------------------- the parts
@dataclass(frozen=True)
class ArchConfig:
    """The networks. ``arch``: pix2pix, unet or spade; ``ngf``/``ndf``: generator/discriminator widths (None:
    the recipe's); ``g_params``/``d_params``: further constructor arguments of the generator and the
    discriminator (applied last); ``shadow``: RGB + height with a shadow generator; ``no_position_cue``
    (U-Net): reflect padding and resize-convolutions (:data:`geogan.models.unet.NO_POSITION_CUE`);
    ``style_encoder`` with latent ``z_dim`` (SPADE or U-Net), ``style_film`` (SPADE with a style encoder);
    ``hidden_nc`` (SPADE): width of the modulation convolutions."""

    arch: str = "unet"
    ngf: int | None = None
    ndf: int | None = None
    g_params: Mapping = field(default_factory=dict)
    d_params: Mapping = field(default_factory=dict)
    shadow: bool = False
    no_position_cue: bool = False
    style_encoder: bool = False
    z_dim: int = 64
    style_film: bool = False
    hidden_nc: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"unknown --arch '{self.arch}'; use pix2pix, unet or spade")
        for name in ("ngf", "ndf", "hidden_nc"):
            check_whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1, optional=True)
        check_whole(self.z_dim, "z_dim (--z-dim)", 1)
        _set(self, "g_params", dict(self.g_params or {}))
        _set(self, "d_params", dict(self.d_params or {}))
        if self.style_encoder and self.arch not in ("spade", "unet"):
            raise InputError("--style-encoder needs --arch spade or --arch unet")
        if self.hidden_nc is not None and self.arch != "spade":
            raise InputError("--hidden-nc needs --arch spade")
        if self.no_position_cue and self.arch != "unet":
            raise InputError("--no-position-cue needs --arch unet")
        if self.style_film and not (self.style_encoder and self.arch == "spade"):
            raise InputError("--style-film needs --arch spade and --style-encoder (the U-Net always "
                             "feeds its style through FiLM)")

    def generator_params(self) -> dict:
        """The generator's arguments on top of the recipe's (empty: the recipe's own)."""
        from ..models.unet import NO_POSITION_CUE
        return {**({"ngf": self.ngf} if self.ngf else {}), **({"hidden_nc": self.hidden_nc} if self.hidden_nc else {}),
                **(NO_POSITION_CUE if self.no_position_cue else {}),
                **({"z_dim": self.z_dim, "use_style_encoder": True} if self.style_encoder else {}),
                **({"style_film": True} if self.style_film else {}), **self.g_params}

    def discriminator_params(self) -> dict:
        return {**({"ndf": self.ndf} if self.ndf else {}), **self.d_params}


#: LossConfig's weight fields (Recipe fields of the same names)
LOSS_WEIGHTS = ("l1_weight", "fm_weight", "vgg_weight", "kld_weight", "lattice_weight", "equivariance_weight",
                "diversity_weight", "fixed_pattern_weight")


@dataclass(frozen=True)
class LossConfig:
    """The GAN loss (``gan_mode``: hinge, vanilla or lsgan) and the generator's loss weights, each 0 or more
    (0: off; None: the recipe's): L1, feature matching, VGG perceptual (with local ``vgg_weights``), the
    style encoder's KL, and the regularisers (lattice spectrum, shift equivariance, diversity, fixed
    pattern; see docs/training.md)."""

    gan_mode: str | None = None
    l1_weight: float | None = None
    fm_weight: float | None = None
    vgg_weight: float | None = None
    kld_weight: float | None = None
    lattice_weight: float | None = None
    equivariance_weight: float | None = None
    diversity_weight: float | None = None
    fixed_pattern_weight: float | None = None
    vgg_weights: str | Path | None = None

    def __post_init__(self) -> None:
        check_gan_mode(self.gan_mode, optional=True)
        for name in LOSS_WEIGHTS:
            check_number(getattr(self, name), f"{name} (--{name.replace('_', '-')})", optional=True)

    def overrides(self) -> dict:
        """The recipe fields this part sets."""
        out = _given(self, ("gan_mode",) + LOSS_WEIGHTS)
        if self.vgg_weights is not None:
            out["vgg_weights"] = str(self.vgg_weights)
        return out


@dataclass(frozen=True)
class TerrainLossConfig:
    """The terrain losses (Recipe fields of the same names; None: not set). ``TrainConfig.terrain`` None
    means automatic: :data:`TERRAIN_LOSSES` for terrain chips with ``shadow``, what a resumed run was
    started with, off otherwise."""

    height_slope_weight: float | None = None
    height_lowres_weight: float | None = None
    height_curv_weight: float | None = None
    texture_l1_weight: float | None = None
    height_to_d: bool | None = None
    flip: bool | None = None

    def __post_init__(self) -> None:
        for name in ("height_slope_weight", "height_lowres_weight", "height_curv_weight", "texture_l1_weight"):
            check_number(getattr(self, name), name, optional=True)

    @classmethod
    def from_dict(cls, losses: Mapping) -> TerrainLossConfig:
        unknown = set(losses) - set(TERRAIN_LOSSES)
        if unknown:
            raise InputError(f"unknown terrain loss setting(s) {sorted(unknown)}; use {', '.join(TERRAIN_LOSSES)}")
        return cls(**losses)

    def overrides(self) -> dict:
        """The recipe fields this part sets (in :data:`TERRAIN_LOSSES`' order)."""
        return _given(self, tuple(TERRAIN_LOSSES))

    def any_on(self) -> bool:
        return any(v for k, v in self.overrides().items() if k != "flip")


@dataclass(frozen=True)
class OptimConfig:
    """Adam's learning rate ``lr`` (both networks) and ``beta1``; ``batch`` (None: the recipe's); ``ratio``:
    the D:G ratio, 'dynamic', 'dynamic:LOW:HIGH' or 'D:G' (or a :class:`DynamicRatio`/:class:`FixedRatio`;
    None: dynamic)."""

    lr: float = 2e-4
    beta1: float = 0.5
    batch: int | None = None
    ratio: str | DynamicRatio | FixedRatio | None = "dynamic"

    def __post_init__(self) -> None:
        check_number(self.lr, "lr (--lr)", low_open=True)
        check_number(self.beta1, "beta1 (--beta1)", 0.0, 1.0)
        check_whole(self.batch, "batch size (--batch-size)", 1, optional=True)
        if isinstance(self.ratio, str):
            parse_ratio(self.ratio)
        elif self.ratio is not None and not isinstance(self.ratio, (DynamicRatio, FixedRatio)):
            raise InputError(f"--ratio {self.ratio!r} must be 'dynamic', 'dynamic:LOW:HIGH' or 'D:G' such as '2:1'")

    def controller(self) -> DynamicRatio | FixedRatio:
        """The run's D:G ratio controller (a new one for a text ratio)."""
        if self.ratio is None:
            return DynamicRatio()
        return parse_ratio(self.ratio) if isinstance(self.ratio, str) else self.ratio


@dataclass(frozen=True)
class ScheduleConfig:
    """How long: ``steps`` in total, resumed ones included (or ``epochs``, converted to
    ``ceil(epochs * len(train) / batch)`` steps; ``steps`` wins when both are given), at most
    ``max_seconds`` of wall time in this call; checkpoint (and export) every ``checkpoint_every`` steps, a
    sample grid every ``sample_every``, a loss line every ``log_every``."""

    steps: int | None = None
    epochs: float | None = None
    max_seconds: float | None = None
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise InputError("give the length of the run: --steps N or --epochs N")
        check_whole(self.steps, "steps (--steps)", 0, optional=True)
        check_number(self.epochs, "epochs (--epochs)", low_open=True, optional=True)
        check_number(self.max_seconds, "max_seconds (--hours)", optional=True)
        for name in ("checkpoint_every", "sample_every", "log_every"):
            check_whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1)

    def total_steps(self, n_train: int, batch: int) -> int:
        """Steps of the whole run for ``n_train`` training tiles in batches of ``batch``."""
        if self.steps is not None:
            return self.steps
        return int(math.ceil(float(self.epochs) * max(1, n_train // batch)))


@dataclass(frozen=True)
class RuntimeConfig:
    """How the run executes: ``device`` auto, cpu or cuda[:N]; ``threads`` for torch on the CPU (None:
    torch's default); ``compile`` with torch.compile; ``amp`` and ``channels_last`` (None: on) apply on CUDA
    only; ``seed`` (deterministic on the CPU); ``tensorboard`` logs to RUN/tb."""

    device: str = "auto"
    threads: int | None = None
    compile: bool = False
    amp: bool = True
    channels_last: bool | None = None
    seed: int = 0
    tensorboard: bool = False

    def __post_init__(self) -> None:
        dev = self.device.lower() if isinstance(self.device, str) else self.device
        if not (dev in ("auto", "cpu", "cuda") or (isinstance(dev, str) and dev.startswith("cuda:")
                                                     and dev[5:].isdigit())):
            raise InputError(f"unknown device '{self.device}'; use auto, cpu or cuda")
        check_whole(self.threads, "threads (--threads)", 1, optional=True)
        check_whole(self.seed, "seed (--seed)", 0)


@dataclass(frozen=True)
class DataConfig:
    """The training data. ``data``: a folder of side-by-side pairs, several such folders (a list, each read
    with its own label map and split by number, then merged), a folder written by ``geogan chips`` (has
    ``index.json``), or a ``PairsDataset``/``ChipsDataset``/``PairSet`` (then ``val_data`` likewise);
    ``label_map``: a name or TOML path, one per folder or one for all; ``val_data``: a separate validation
    folder; ``val_fraction``: share of the pairs (highest numbers) held out (None: 12.5 %); ``balance``
    (class-balanced sampling) and ``jitter`` (286 -> 256 crops): None for the recipe's; ``check_labels``:
    refuse label colours the label map does not know."""

    data: object
    label_map: str | Path | tuple = "landcoverai"
    val_data: object = None
    val_fraction: float | None = None
    balance: bool | None = None
    jitter: bool | None = None
    check_labels: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, list):
            _set(self, "data", tuple(self.data))
        if isinstance(self.label_map, list):
            _set(self, "label_map", tuple(self.label_map))
        folders = self.data if isinstance(self.data, tuple) else None
        if folders is not None and all(isinstance(d, (str, Path)) for d in folders):
            label_maps_for(folders, self.label_map)
            if self.val_data is not None and len(folders) > 1:
                raise InputError("a separate validation folder works with one training folder only")
        elif isinstance(self.data, (str, Path)) and isinstance(self.label_map, tuple) and len(self.label_map) != 1:
            raise InputError(f"one pair folder but {len(self.label_map)} label maps; give one label map per folder")
        check_number(self.val_fraction, "val_fraction (--val-fraction)", 0.0, 1.0, optional=True)

    def overrides(self) -> dict:
        return _given(self, ("balance", "jitter"))


def label_maps_for(folders, label_map) -> list:
    """One label map per pair folder: ``label_map`` a list of the same length, or one for all."""
    if len(folders) == 0:
        raise InputError("no training data given")
    maps = list(label_map) if isinstance(label_map, (list, tuple)) else [label_map] * len(folders)
    if len(maps) == 1:
        maps = maps * len(folders)
    if len(maps) != len(folders):
        raise InputError(f"{len(folders)} pair folders but {len(maps)} label maps; give one label map, or one "
                         "per folder in the same order")
    return maps


# ---------------------------------------------------------------- the whole run
@dataclass(frozen=True)
class TrainConfig:
    """One training run: its data and schedule, the networks, losses, optimiser and runtime, the terrain
    losses (None: automatic, see :class:`TerrainLossConfig`) and the exported model's ``name``."""

    data: DataConfig
    schedule: ScheduleConfig
    arch: ArchConfig = field(default_factory=ArchConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    terrain: TerrainLossConfig | None = None
    name: str = "model"

    def __post_init__(self) -> None:
        for name, kind in (("data", DataConfig), ("schedule", ScheduleConfig), ("arch", ArchConfig),
                           ("loss", LossConfig), ("optim", OptimConfig), ("runtime", RuntimeConfig)):
            if not isinstance(getattr(self, name), kind):
                raise InputError(f"TrainConfig.{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        if isinstance(self.terrain, Mapping):
            _set(self, "terrain", TerrainLossConfig.from_dict(self.terrain))
        if not isinstance(self.name, str) or not self.name or Path(self.name).name != self.name:
            raise InputError(f"model name {self.name!r} must be a plain file name (no folders); e.g. --name mymodel")
        if self.terrain is not None and self.terrain.any_on() and not self.arch.shadow:
            raise InputError("the terrain losses (height_to_d, height_slope_weight, height_lowres_weight, "
                             "texture_l1_weight) need --shadow and chips with heights")

    def recipe(self, n_classes: int, terrain: Mapping | None = None) -> Recipe:
        """The run's :class:`Recipe` for ``n_classes`` input classes; ``terrain``: the terrain-loss fields
        to use (None: this config's own, see ``geogan.training.trainer._terrain_loss_overrides``)."""
        if terrain is None:
            terrain = self.terrain.overrides() if self.terrain is not None else {}
        overrides = {"shadow": self.arch.shadow, "lr": self.optim.lr, "beta1": self.optim.beta1,
                     **_given(self.optim, ("batch",)), **self.loss.overrides(), **self.data.overrides(),
                     **terrain}
        g_params, d_params = self.arch.generator_params(), self.arch.discriminator_params()
        if g_params:
            overrides["g_params"] = g_params
        if d_params:
            overrides["d_params"] = d_params
        return recipe_for(self.arch.arch, n_classes, **overrides)

    def with_recipe(self, recipe: Recipe | Mapping) -> TrainConfig:
        """This config with the networks, losses and optimiser of ``recipe`` (a :class:`Recipe` or one as
        saved in ``state.json`` or a card): ``with_recipe(r).recipe(n) == r`` for the ``n`` it was made for."""
        r = recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)
        arch = ArchConfig(r.arch, g_params=r.g_params, d_params=r.d_params, shadow=r.shadow)
        loss = LossConfig(gan_mode=r.gan_mode, vgg_weights=r.vgg_weights, **{k: getattr(r, k) for k in LOSS_WEIGHTS})
        optim = replace(self.optim, lr=r.lr, beta1=r.beta1, batch=r.batch)
        data = replace(self.data, balance=r.balance, jitter=r.jitter)
        terrain = TerrainLossConfig(**{k: getattr(r, k) for k in TERRAIN_LOSSES})
        return replace(self, arch=arch, loss=loss, optim=optim, data=data, terrain=terrain)

    @classmethod
    def from_options(cls, arch: str, data, **options) -> TrainConfig:
        """A config from :func:`geogan.training.trainer.train`'s keyword arguments (see :data:`TRAIN_OPTIONS`)."""
        parts: dict[str, dict] = {part: {} for part in ("data", "schedule", "arch", "loss", "optim", "runtime")}
        parts["data"]["data"], parts["arch"]["arch"] = data, arch
        top = {}
        for key, value in options.items():
            if key not in TRAIN_OPTIONS:
                raise TypeError(f"train() got an unexpected keyword argument '{key}'")
            part, name = TRAIN_OPTIONS[key]
            (parts[part] if part else top)[name] = value
        return cls(data=DataConfig(**parts["data"]), schedule=ScheduleConfig(**parts["schedule"]),
                   arch=ArchConfig(**parts["arch"]), loss=LossConfig(**parts["loss"]),
                   optim=OptimConfig(**parts["optim"]), runtime=RuntimeConfig(**parts["runtime"]), **top)


#: :func:`geogan.training.trainer.train`'s keyword arguments -> (part, field) of :class:`TrainConfig`
#: (part None: a field of TrainConfig itself)
TRAIN_OPTIONS = {
    "steps": ("schedule", "steps"), "epochs": ("schedule", "epochs"), "max_seconds": ("schedule", "max_seconds"),
    "checkpoint_every": ("schedule", "checkpoint_every"), "sample_every": ("schedule", "sample_every"),
    "log_every": ("schedule", "log_every"),
    "batch_size": ("optim", "batch"), "lr": ("optim", "lr"), "beta1": ("optim", "beta1"), "ratio": ("optim", "ratio"),
    "gan_mode": ("loss", "gan_mode"), "l1_weight": ("loss", "l1_weight"), "feature_matching": ("loss", "fm_weight"),
    "lattice_weight": ("loss", "lattice_weight"), "equivariance_weight": ("loss", "equivariance_weight"),
    "kld_weight": ("loss", "kld_weight"), "diversity_weight": ("loss", "diversity_weight"),
    "fixed_pattern_weight": ("loss", "fixed_pattern_weight"), "vgg_weights": ("loss", "vgg_weights"),
    "arch_params": ("arch", "g_params"), "disc_params": ("arch", "d_params"), "shadow": ("arch", "shadow"),
    "device": ("runtime", "device"), "threads": ("runtime", "threads"), "compile": ("runtime", "compile"),
    "amp": ("runtime", "amp"), "channels_last": ("runtime", "channels_last"), "seed": ("runtime", "seed"),
    "log_tensorboard": ("runtime", "tensorboard"),
    "label_map": ("data", "label_map"), "val_data": ("data", "val_data"), "val_fraction": ("data", "val_fraction"),
    "balance": ("data", "balance"), "jitter": ("data", "jitter"), "check_labels": ("data", "check_labels"),
    "name": (None, "name"), "terrain_losses": (None, "terrain"),
}
