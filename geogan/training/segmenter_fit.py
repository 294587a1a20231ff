"""Training of the FCN-score segmenter (``geogan train-segmenter``): class-balanced, resumable.

The segmenter judges generated images, so it must find every class on *real* photos, buildings included
(1.4 % of the LandCover.ai pixels, in 138 of the 896 training tiles). What makes it do so:

- class-balanced crops: each crop is centred on a pixel of a class drawn from ``class_probs`` (buildings
  most often), in a tile that holds that class;
- a class-balanced loss: cross-entropy weighted by the square root of the median-frequency weights of the
  crops actually sampled, plus a soft Dice term (which does not let a rare class vanish) and a Lovasz-softmax
  term (a convex surrogate of each class's IoU, the quantity the FCN-score reports);
- augmentation: flips and 90-degree rotations, scale jitter (multi-scale: the pairs mix 25 and 50 cm/px),
  colour jitter (brightness, contrast, saturation, channel shifts) and, with ``strong_aug``, per-channel gain,
  gamma, blur and sensor noise (held-out photos differ in exposure and haze: shallow beige water, pale roads),
  and with ``cast_std`` a per-crop colour cast along the chroma axes, luma kept (``chroma_cast``), with
  ``class_cast_std`` one more per class, on that class's pixels only (``class_cast``: water comes clear, turbid,
  green with algae or sandy where shallow, whatever the fields around it look like);
- model selection: the mIoU on a slice of the training range held out of training (``select``), never on
  the evaluation split;
- calibration (``calibrate``): per-class offsets added to the selected model's logits, chosen to maximise the
  mIoU on that same selection slice (class-balanced training over-predicts the rare classes; the offsets
  undo the prior shift it causes), folded into the head's bias.

A run folder holds ``state.pt`` (weights, optimiser, RNG, step; written every ``checkpoint_s`` and at each
validation), ``best.*`` (the selected segmenter) and ``log.jsonl``; ``resume=True`` continues exactly there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, OutputError
from ..metrics import confusion, miou
from ..models.segmenter import predict_classes

log = logging.getLogger("geogan")

#: The card's ``kind``; :func:`geogan.evaluate.load_segmenter` reads width/depth/classes from it.
ARCH = "segmenter (FCN-score evaluation, not a generator)"


@dataclass(frozen=True)
class FitConfig:
    """Settings of one segmenter run (stored in the run's state and card)."""

    steps: int = 4000
    batch: int = 8
    crop_px: int = 128
    lr: float = 1e-3
    width: int = 16
    depth: int = 4
    seed: int = 0
    class_probs: tuple[float, ...] | None = None  # per class; None: uniform over the classes
    scale_range: tuple[float, float] = (0.6, 1.7)  # crop window / crop_px, log-uniform (multi-scale)
    dice_weight: float = 1.0
    lovasz_weight: float = 0.5  # Lovasz-softmax (IoU surrogate) term; 0 turns it off
    strong_aug: bool = True  # per-channel gain, gamma, blur and noise on top of colour_jitter
    cast_std: float = 0.0  # per-image colour cast along the two chroma axes ([-1, 1] units; chroma_cast); 0: off
    class_cast_std: tuple[float, ...] | None = None  # per class: a further cast on that class's pixels only
    # (class_cast); None: off
    max_seconds: float | None = None  # the LR anneals by whichever of steps / seconds ends first
    val_every: int = 250
    checkpoint_s: float = 180.0
    log_every: int = 50
    calibrate: bool = True  # per-class logit offsets tuned on the selection slice (calibrate_bias)
    select_blocks: int = 1  # the selection slice as this many blocks spread over each set's training range
    # (select_slices); 1: its last pairs. Sets numbered by scene (Recife: its last training pairs are open sea)
    # need several to show every class.


# ---------------------------------------------------------------- sampling and augmentation
def tiles_with_class(labels: np.ndarray, n_classes: int, min_px: int = 16) -> list[np.ndarray]:
    """For each class, the indices of the tiles holding at least ``min_px`` of its pixels."""
    counts = np.stack([(labels == c).sum((1, 2)) for c in range(n_classes)], 1)
    return [np.flatnonzero(counts[:, c] >= min_px) for c in range(n_classes)]


def _probs(cfg: FitConfig, n_classes: int) -> np.ndarray:
    if cfg.class_probs is None:
        return np.full(n_classes, 1 / n_classes)
    if len(cfg.class_probs) != n_classes or min(cfg.class_probs) < 0 or sum(cfg.class_probs) <= 0:
        raise InputError(f"class_probs {list(cfg.class_probs)} must give {n_classes} non-negative numbers, "
                         "one per class, not all zero")
    p = np.asarray(cfg.class_probs, dtype=np.float64)
    return p / p.sum()


def _check_class_casts(cfg: FitConfig, n_classes: int) -> None:
    stds = cfg.class_cast_std
    if stds is not None and (len(stds) != n_classes or min(stds) < 0):
        raise InputError(f"class_cast_std {list(stds)} must give {n_classes} non-negative numbers, one per class "
                         "(0: no cast on that class)")


def _window(labels: np.ndarray, cls: int, tiles: np.ndarray, win: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(tile, y, x) of a ``win`` px window centred near a random pixel of class ``cls``."""
    size = labels.shape[1]
    if len(tiles) == 0:
        t = int(rng.integers(0, len(labels)))
        y, x = rng.integers(0, size - win + 1, 2)
        return t, int(y), int(x)
    t = int(tiles[rng.integers(0, len(tiles))])
    flat = np.flatnonzero(labels[t] == cls)
    cy, cx = divmod(int(flat[rng.integers(0, len(flat))]), size)
    jitter = rng.integers(-win // 4, win // 4 + 1, 2)
    y = int(np.clip(cy - win // 2 + jitter[0], 0, size - win))
    x = int(np.clip(cx - win // 2 + jitter[1], 0, size - win))
    return t, y, x


def sample_crops(images: np.ndarray, labels: np.ndarray, index: list[np.ndarray], cfg: FitConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced, scale-jittered, flipped/rotated batch: (images (B,3,S,S) in [-1,1], labels (B,S,S))."""
    n_classes, size, crop = len(index), labels.shape[1], min(cfg.crop_px, labels.shape[1])
    probs = _probs(cfg, n_classes)
    lo, hi = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
    xs, ys = [], []
    for _ in range(cfg.batch):
        cls = int(rng.choice(n_classes, p=probs))
        win = int(np.clip(round(crop * math.exp(rng.uniform(lo, hi))), 8, size))
        t, y, x = _window(labels, cls, index[cls], win, rng)
        img = torch.from_numpy(images[t, y:y + win, x:x + win]).permute(2, 0, 1).float()[None] / 127.5 - 1
        lab = torch.from_numpy(labels[t, y:y + win, x:x + win].astype(np.int64))[None, None].float()
        if win != crop:
            img = F.interpolate(img, size=(crop, crop), mode="bilinear", align_corners=False, antialias=win > crop)
            lab = F.interpolate(lab, size=(crop, crop), mode="nearest")
        k, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
        img, lab = torch.rot90(img, k, (-2, -1)), torch.rot90(lab, k, (-2, -1))
        if flip:
            img, lab = img.flip(-1), lab.flip(-1)
        xs.append(img)
        ys.append(lab)
    return torch.cat(xs), torch.cat(ys)[:, 0].long()


def colour_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast, saturation and channel shifts of images in [-1, 1]."""
    b = x.shape[0]
    grey = x.mean(1, keepdim=True)
    sat = 1 + 0.3 * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    x = grey + sat * (x - grey)
    mean = x.mean((1, 2, 3), keepdim=True)
    contrast = 1 + 0.15 * torch.randn(b, 1, 1, 1, generator=gen)
    x = mean + contrast * (x - mean)
    x = x + 0.1 * torch.randn(b, 1, 1, 1, generator=gen) + 0.04 * torch.randn(b, 3, 1, 1, generator=gen)
    return x.clamp(-1, 1)


def photometric_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image channel gains (colour casts), gamma, a blur on a third of the images and sensor noise, in [-1, 1]."""
    b = x.shape[0]
    u = (x + 1) / 2
    gain = 1 + 0.08 * torch.randn(b, 3, 1, 1, generator=gen)
    gamma = torch.exp(0.2 * torch.randn(b, 1, 1, 1, generator=gen))
    u = (u * gain).clamp(1e-4, 1) ** gamma
    blur = torch.rand(b, generator=gen) < 1 / 3
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
        k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        u[blur] = F.conv2d(F.pad(u[blur], (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    u = u + 0.02 * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(u.shape, generator=gen)
    return (2 * u - 1).clamp(-1, 1)


#: Orthonormal chroma axes of RGB, yellow-blue and red-green: both orthogonal to grey (1, 1, 1), so an offset
#: along them keeps the mean of R, G and B.
CHROMA_AXES = torch.tensor([[1.0 / 6 ** 0.5, 1.0 / 6 ** 0.5, -2.0 / 6 ** 0.5], [1.0 / 2 ** 0.5, -1.0 / 2 ** 0.5, 0.0]])


def chroma_cast(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] with a per-image colour cast: the same random offset (normal, ``std``) added along the
    two chroma axes (yellow-blue, red-green) of every pixel, the luma unchanged. Water, fields and roofs come
    in more tints than a few source photos show (turbid shallow water reads yellow-green, a clear lake blue-grey);
    the cast makes a segmenter tell them by texture and context, not by their tint alone."""
    if std <= 0:
        return x
    b = x.shape[0]
    offset = (std * torch.randn(b, 2, generator=gen)) @ CHROMA_AXES  # (B, 3)
    return (x + offset[:, :, None, None]).clamp(-1, 1)


def class_cast(x: torch.Tensor, labels: torch.Tensor, stds: tuple[float, ...] | None,
               gen: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] with, for each class ``c`` of ``stds`` above 0, a random chroma offset (normal, ``stds[c]``,
    one per image and class, luma kept as in :func:`chroma_cast`) added to that class's pixels (``labels`` (B, H, W)).
    The class mask is softened over about 3 px, so a cast's edge is no sharper than a real colour edge and the
    segmenter cannot find a boundary by its tint step alone."""
    if not stds or max(stds) <= 0:
        return x
    b = x.shape[0]
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    k2 = (kernel[:, None] * kernel[None, :])[None, None]
    for c, std in enumerate(stds):
        hit = labels == c
        if std <= 0 or not bool(hit.any()):
            continue
        mask = F.conv2d(F.pad(hit.float()[:, None], (2, 2, 2, 2), mode="replicate"), k2)
        offset = (std * torch.randn(b, 2, generator=gen)) @ CHROMA_AXES
        x = x + mask * offset[:, :, None, None]
    return x.clamp(-1, 1)


# ---------------------------------------------------------------- loss and measurement
def balanced_weights(freq: np.ndarray) -> torch.Tensor:
    """Square root of the median-frequency class weights (classes never seen get the largest weight)."""
    freq = np.asarray(freq, dtype=np.float64)
    seen = freq[freq > 0]
    med = float(np.median(seen)) if len(seen) else 1.0
    w = np.sqrt(med / np.maximum(freq, seen.min() if len(seen) else 1.0))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def lovasz_softmax(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al. 2018): the mean over the classes present in ``target`` of the Lovasz
    extension of 1 - IoU, for probabilities (B, C, H, W) and class ids (B, H, W)."""
    p = prob.permute(0, 2, 3, 1).reshape(-1, prob.shape[1])
    t = target.reshape(-1)
    losses = []
    for c in range(p.shape[1]):
        fg = (t == c).float()
        if fg.sum() == 0:
            continue
        errors, order = (fg - p[:, c]).abs().sort(descending=True)
        fg_sorted = fg[order]
        inter = fg_sorted.sum() - fg_sorted.cumsum(0)
        union = fg_sorted.sum() + (1 - fg_sorted).cumsum(0)
        jaccard = 1 - inter / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, grad))
    return torch.stack(losses).mean() if losses else prob.sum() * 0


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                      dice_weight: float, lovasz_weight: float = 0.0) -> torch.Tensor:
    """Weighted cross-entropy + ``dice_weight`` * (1 - soft Dice averaged over the classes) + ``lovasz_weight`` *
    Lovasz-softmax."""
    loss = F.cross_entropy(logits, target, weight=weight)
    if dice_weight <= 0 and lovasz_weight <= 0:
        return loss
    prob = logits.softmax(1)
    if dice_weight > 0:
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        inter = (prob * onehot).sum((0, 2, 3))
        dice = (2 * inter + 1) / (prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
        loss = loss + dice_weight * (1 - dice.mean())
    if lovasz_weight > 0:
        loss = loss + lovasz_weight * lovasz_softmax(prob, target)
    return loss


def segmenter_iou(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, n_classes: int,
                  batch: int = 16) -> tuple[float, list[float]]:
    """(mIoU, per-class IoU) of the segmenter's predictions (``predict_classes``: with test-time flips) on
    whole uint8 tiles (N, H, W, 3) against class ids (N, H, W)."""
    conf = np.zeros((n_classes, n_classes), dtype=np.int64)
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
            conf += confusion(predict_classes(net, x).numpy(), labels[i:i + batch], n_classes)
    net.train(was_training)
    return miou(conf)


def _logits(net: torch.nn.Module, images: np.ndarray, stride: int, batch: int = 16) -> np.ndarray:
    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(net(x)[:, :, ::stride, ::stride].half().numpy())
    return np.concatenate(out).astype(np.float32)


def calibrate_bias(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, n_classes: int, *,
                   deltas: tuple[float, ...] = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0), rounds: int = 3,
                   stride: int = 2) -> np.ndarray:
    """Per-class logit offsets (n_classes,) maximising the mIoU on ``images`` / ``labels`` (every ``stride``-th
    pixel): coordinate ascent from zero, each class tried with each of ``deltas`` in turn, ``rounds`` times."""
    logits = _logits(net, images, stride)
    target = labels[:, ::stride, ::stride]
    score = lambda b: miou(confusion((logits + b[None, :, None, None]).argmax(1), target, n_classes))[0]  # noqa: E731
    bias = np.zeros(n_classes, np.float32)
    best = score(bias)
    for _ in range(rounds):
        improved = False
        for c in range(n_classes):
            for delta in deltas:
                trial = bias.copy()
                trial[c] += delta
                m = score(trial)
                if m > best + 1e-4:
                    best, bias, improved = m, trial, True
        if not improved:
            break
    return bias


def calibrated(net: torch.nn.Module, card: dict, data: "FitData") -> tuple[torch.nn.Module, dict]:
    """``net`` with :func:`calibrate_bias`'s offsets (tuned on ``data``'s selection slice) folded into its head's
    bias, and its card with the offsets and the selection mIoU before and after."""
    n = len(data.classes)
    before = card["selection"]
    bias = calibrate_bias(net, data.select_images, data.select_labels, n)
    with torch.no_grad():
        net.head.bias += torch.from_numpy(bias)
    m, iou = segmenter_iou(net, data.select_images, data.select_labels, n)
    selection = {**before, "miou": round(m, 4), "iou_per_class": {c: round(float(v), 4) for c, v in
                                                                  zip(data.classes, iou)},
                 "before_calibration": {"miou": before["miou"], "iou_per_class": before["iou_per_class"]}}
    calibration = {"class_bias": {c: round(float(b), 3) for c, b in zip(data.classes, bias)},
                   "how": "per-class logit offsets maximising the selection slice's mIoU (coordinate ascent), "
                          "folded into the head's bias"}
    return net, {**card, "selection": selection, "calibration": calibration}


# ---------------------------------------------------------------- the run
def export_segmenter(net: torch.nn.Module, stem: Path, card: dict) -> Path:
    """Write ``stem.safetensors`` (float16 weights) and ``stem.json`` (the card); returns ``stem``."""
    from safetensors.torch import save_file

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in net.state_dict().items()}
    save_file(weights, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return stem


def lr_factor(step: int, seconds: float, cfg: FitConfig) -> float:
    """Linear warm-up (a tenth of the steps, at most 100), then cosine decay to 2 % over whichever of ``steps`` /
    ``max_seconds`` ends first."""
    warmup = max(1, min(100, cfg.steps // 10))
    progress = step / cfg.steps
    if cfg.max_seconds:
        progress = max(progress, seconds / cfg.max_seconds)
    warm = min(1.0, (step + 1) / warmup)
    return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def sampled_frequency(labels: np.ndarray, index: list[np.ndarray], cfg: FitConfig, seed: int,
                      batches: int = 32) -> np.ndarray:
    """Class frequency of the pixels the balanced sampler draws (for the loss weights)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(index))
    for _ in range(batches):
        for _ in range(cfg.batch):
            cls = int(rng.choice(len(index), p=_probs(cfg, len(index))))
            t, y, x = _window(labels, cls, index[cls], cfg.crop_px, rng)
            counts += np.bincount(labels[t, y:y + cfg.crop_px, x:x + cfg.crop_px].ravel(), minlength=len(index))
    return counts / counts.sum()


@dataclass(frozen=True)
class FitData:
    """Training tiles and the selection slice (uint8 images (N, H, W, 3), class ids (N, H, W))."""

    images: np.ndarray
    labels: np.ndarray
    select_images: np.ndarray
    select_labels: np.ndarray
    classes: tuple[str, ...]
    card: dict  # data, split, licence ... copied into the exported cards


class SegmenterRun:
    """One resumable run in ``run_dir``: see the module docstring."""

    def __init__(self, data: FitData, run_dir: Path, cfg: FitConfig, init: Path | None = None) -> None:
        from ..models.segmenter import Segmenter

        self.data, self.run_dir, self.cfg = data, Path(run_dir), cfg
        self.index = tiles_with_class(data.labels, len(data.classes))
        _check_class_casts(cfg, len(data.classes))
        self.prior = {"steps": 0, "seconds": 0.0, "from": None}
        if init is not None:
            self.net = self._load_init(init)
        else:
            torch.manual_seed(cfg.seed)
            self.net = Segmenter(len(data.classes), cfg.width, cfg.depth)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        freq = sampled_frequency(data.labels, self.index, cfg, cfg.seed + 1)
        self.weight = balanced_weights(freq)
        self.step, self.seconds, self.best, self.best_step = 0, 0.0, -1.0, 0
        self.validated_step = -1

    def _load_init(self, init: Path) -> torch.nn.Module:
        from ..models.segmenter import load_segmenter

        net, card = load_segmenter(init)
        if list(card["classes"]) != list(self.data.classes):
            raise InputError(f"segmenter '{init}' has classes {card['classes']}, the pairs {list(self.data.classes)};"
                             " train a new one without --init")
        if (card["width"], card["depth"]) != (self.cfg.width, self.cfg.depth):
            raise InputError(f"segmenter '{init}' is width {card['width']} depth {card['depth']}, the run asks for "
                             f"{self.cfg.width}/{self.cfg.depth}; pass the same width and depth")
        t = card.get("training", {})
        self.prior = {"steps": int(t.get("steps", 0)), "seconds": float(t.get("seconds", 0.0)), "from": str(init)}
        return net.train()

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.pt"

    def save_state(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {"model": self.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "seconds": self.seconds, "best": self.best, "best_step": self.best_step,
                 "rng": json.dumps(self.rng.bit_generator.state), "gen": self.gen.get_state(),
                 "weight": self.weight, "prior": json.dumps(self.prior), "config": json.dumps(asdict(self.cfg))}
        tmp = self.state_path.with_name(".state.pt.partial")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def load_state(self) -> None:
        state = torch.load(self.state_path, weights_only=True)
        saved = json.loads(state["config"])
        if (saved["width"], saved["depth"]) != (self.cfg.width, self.cfg.depth):
            raise InputError(f"run '{self.run_dir}' trains width {saved['width']} depth {saved['depth']}; resume it "
                             "with the same width and depth")
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.best, self.best_step = float(state["best"]), int(state["best_step"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.gen.set_state(state["gen"])
        self.weight, self.prior = state["weight"], json.loads(state["prior"])
        log.info("resumed %s at step %d (%.0f s trained, best selection mIoU %.4f at step %d)",
                 self.run_dir, self.step, self.seconds, self.best, self.best_step)

    def train_step(self) -> float:
        x, y = sample_crops(self.data.images, self.data.labels, self.index, self.cfg, self.rng)
        x = colour_jitter(x, self.gen)
        if self.cfg.strong_aug:
            x = photometric_jitter(x, self.gen)
        x = chroma_cast(x, self.cfg.cast_std, self.gen)
        x = class_cast(x, y, self.cfg.class_cast_std, self.gen)
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * lr_factor(self.step, self.seconds, self.cfg)
        loss = segmentation_loss(self.net(x), y, self.weight, self.cfg.dice_weight, self.cfg.lovasz_weight)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.step += 1
        return float(loss.item())

    def card(self, selection: dict) -> dict:
        cfg = self.cfg
        training = {**self.data.card, "steps": self.prior["steps"] + self.step, "batch": cfg.batch,
                    "crop_px": cfg.crop_px, "seconds": round(self.prior["seconds"] + self.seconds, 1),
                    "run_steps": self.step, "run_seconds": round(self.seconds, 1), "lr": cfg.lr,
                    "continued_from": self.prior["from"], "continued_from_steps": self.prior["steps"],
                    "loss": f"cross-entropy (sqrt median-frequency weights {[round(float(w), 3) for w in self.weight]})"
                            f" + {cfg.dice_weight} x soft Dice + {cfg.lovasz_weight} x Lovasz-softmax",
                    "sampling": "crops centred on a class drawn with probabilities "
                                f"{[round(float(p), 3) for p in _probs(cfg, len(self.index))]}",
                    "augmentation": f"flips, 90-degree rotations, scale x{cfg.scale_range[0]}-{cfg.scale_range[1]}, "
                                    "brightness/contrast/saturation/channel jitter"
                                    + (", channel gain, gamma, blur, noise" if cfg.strong_aug else "")
                                    + (f", colour casts (chroma std {cfg.cast_std})" if cfg.cast_std > 0 else "")
                                    + (f", per-class colour casts (chroma std {list(cfg.class_cast_std)})"
                                       if cfg.class_cast_std and max(cfg.class_cast_std) > 0 else "")}
        return {"kind": "segmenter", "arch": ARCH, "classes": list(self.data.classes), "width": cfg.width,
                "depth": cfg.depth, "training": training, "license": self.data.card.get("license", ""),
                "selection": selection}

    def validate(self) -> dict:
        m, iou = segmenter_iou(self.net, self.data.select_images, self.data.select_labels, len(self.data.classes))
        self.validated_step = self.step
        sel = {"pairs": self.data.card.get("select", ""), "miou": round(m, 4), "step": self.step,
               "iou_per_class": {c: round(float(v), 4) for c, v in zip(self.data.classes, iou)}}
        if m > self.best:
            self.best, self.best_step = m, self.step
            export_segmenter(self.net, self.run_dir / "best", self.card(sel))
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({**sel, "seconds": round(self.seconds, 1), "best": self.best_step == self.step}) + "\n")
        log.info("segmenter step %d: selection mIoU %.4f %s (best %.4f at step %d)", self.step, m,
                 sel["iou_per_class"], self.best, self.best_step)
        return sel

    def train(self) -> Path:
        """Train to the end of the schedule; returns the stem of the selected segmenter (``run_dir/best``)."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        last_ckpt, losses = time.perf_counter(), []
        while self.step < cfg.steps and not (cfg.max_seconds and self.seconds >= cfg.max_seconds):
            t0 = time.perf_counter()
            losses.append(self.train_step())
            if self.step % cfg.log_every == 0:
                log.info("segmenter step %d/%d loss %.4f lr %.2e (%.0f s)", self.step, cfg.steps, np.mean(losses),
                         self.opt.param_groups[0]["lr"], self.seconds)
                losses = []
            self.seconds += time.perf_counter() - t0
            done = self.step >= cfg.steps or bool(cfg.max_seconds and self.seconds >= cfg.max_seconds)
            if self.step % cfg.val_every == 0 or done:
                t0 = time.perf_counter()
                self.validate()
                self.seconds += time.perf_counter() - t0
            if self.step % cfg.val_every == 0 or done or time.perf_counter() - last_ckpt > cfg.checkpoint_s:
                self.save_state()
                last_ckpt = time.perf_counter()
        if self.validated_step != self.step or not (self.run_dir / "best.json").is_file():
            self.validate()  # e.g. a run stopped between validations, resumed at its end
        return self.run_dir / "best"


SELECT_GUARD_PAIRS = 4  # pairs left out of training on each side of an inner selection block (its neighbours)


def select_slices(n_pairs: int, select_pairs: int, blocks: int = 1,
                  guard: int = SELECT_GUARD_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, selection indices) of ``n_pairs`` training pairs in number order: ``select_pairs`` pairs
    in ``blocks`` contiguous blocks, each centred in one of ``blocks`` equal parts of the range (1: the last
    pairs), with ``guard`` pairs on each side of a block in neither (neighbouring tiles of one scene)."""
    size = select_pairs // blocks
    if blocks < 1 or size < 1 or select_pairs + 2 * guard * (blocks > 1) * blocks >= n_pairs:
        raise InputError(f"cannot hold out {select_pairs} of {n_pairs} training pairs in {blocks} selection block(s)"
                         f" with {guard} pairs beside each; give fewer --select-pairs or --select-blocks")
    if blocks == 1:
        return np.arange(n_pairs - select_pairs), np.arange(n_pairs - select_pairs, n_pairs)
    starts = [round((j + 0.5) * n_pairs / blocks - size / 2) for j in range(blocks)]
    select = np.concatenate([np.arange(a, a + size) for a in starts])
    out = np.zeros(n_pairs, bool)
    for a in starts:
        out[max(0, a - guard):a + size + guard] = True
    return np.flatnonzero(~out), select


def _number_ranges(numbers: list[int], idx: np.ndarray) -> str:
    """'a..b, c..d' of the pair numbers at the indices ``idx`` (runs of consecutive indices)."""
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    return ", ".join(f"{numbers[r[0]]}..{numbers[r[-1]]}" for r in runs)


def load_fit_data(pairs_dir: Path, label_map: str = "landcoverai", val_fraction: float = 0.125,
                  select_pairs: int | None = 64, select_blocks: int = 1) -> FitData:
    """The training range of the pairs, less its selection slice: ``select_pairs`` pairs (None: a fourteenth
    of the training pairs, at least one -- 64 of LandCover.ai's 896) in ``select_blocks`` blocks
    (:func:`select_slices`; 1: the last pairs).

    The evaluation split (the highest ``val_fraction`` of the numbers) is neither trained nor selected on.
    """
    from importlib import resources

    from .datasets import val_from_number
    from .pairs import PairSet, list_pairs, load_label_map
    from .trainer import _attribution

    lm = load_label_map(label_map)
    val_from = val_from_number(list_pairs(pairs_dir, "all"), val_fraction)
    data = PairSet.load(pairs_dir, lm, "train", val_from)
    if select_pairs is None:
        select_pairs = max(1, round(len(data) / 14))
    if not 0 < select_pairs < len(data):
        raise InputError(f"select_pairs must be between 1 and {len(data) - 1} (the training split has {len(data)} "
                         f"pairs); got {select_pairs}")
    train, select = select_slices(len(data), select_pairs, select_blocks)
    lm_path = Path(str(label_map)) if Path(str(label_map)).suffix else \
        Path(str(resources.files("geogan").joinpath(f"data/label_maps/{label_map}.toml")))
    left_out = "" if select_blocks == 1 else f"; the {SELECT_GUARD_PAIRS} pairs on each side of a block in neither"
    card = {"data": Path(pairs_dir).name, "split": f"trained on pairs numbered {_number_ranges(data.numbers, train)}"
            if select_blocks > 1 else f"trained on pairs numbered < {data.numbers[select[0]]}",
            "select": f"pairs numbered {_number_ranges(data.numbers, select)} (held out of training, used to select "
                      f"the checkpoint{left_out})",
            "evaluation_split": f"pairs numbered >= {val_from} (never trained or selected on)",
            "license": lm.license, "attribution": _attribution(lm_path)}
    return FitData(data.images[train], data.labels[train], data.images[select], data.labels[select], lm.classes,
                   card)


def combine_fit_data(parts: list[FitData]) -> FitData:
    """Several pair sets as one: their training tiles and their selection slices side by side (each set keeps
    its own split); the cards' data, split, licence and attribution joined (a model trained on them carries
    every set's terms)."""
    if len(parts) == 1:
        return parts[0]
    if any(p.classes != parts[0].classes for p in parts) or len({p.images.shape[1:] for p in parts}) != 1:
        raise InputError("the pair sets must have the same classes (label maps onto one class list) and tile size; "
                         f"got {[list(p.classes) for p in parts]} and {[p.images.shape[1:3] for p in parts]}")
    join = lambda key, sep: sep.join(f"{p.card['data']}: {p.card[key]}" for p in parts)  # noqa: E731
    card = {"data": " + ".join(p.card["data"] for p in parts), "split": join("split", "; "),
            "select": join("select", "; "), "evaluation_split": join("evaluation_split", "; "),
            "license": join("license", " AND "), "attribution": " ".join(p.card["attribution"] for p in parts)}
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return FitData(cat("images"), cat("labels"), cat("select_images"), cat("select_labels"), parts[0].classes, card)


def fit_segmenter(pairs_dir: Path, out: Path, run_dir: Path, cfg: FitConfig, *, resume: bool = False,
                  init: Path | None = None, label_map: str = "landcoverai", val_fraction: float = 0.125,
                  select_pairs: int | None = 64, command: str = "", also: tuple[tuple[Path, str], ...] = ()) -> Path:
    """Train (or resume) a segmenter run in ``run_dir`` and write the selected one to ``out`` (.json + .safetensors).

    ``init``: a segmenter to continue from; the run takes its width and depth (not ``cfg``'s). ``also``: more
    (pairs folder, label map) sets trained on together with ``pairs_dir`` (:func:`combine_fit_data`).
    """
    run_dir = Path(run_dir)
    if (run_dir / "state.pt").is_file() and not resume:
        raise OutputError(f"'{run_dir}' already holds a segmenter run; pass --resume to continue it or choose "
                          "another --run-dir")
    if cfg.crop_px % 2 ** cfg.depth or cfg.crop_px < 2 ** cfg.depth:
        raise InputError(f"crop_px {cfg.crop_px} must be a multiple of {2 ** cfg.depth} (2**depth); e.g. 128")
    if not 0 < cfg.scale_range[0] <= cfg.scale_range[1]:
        raise InputError(f"scale_range {cfg.scale_range} must be (smallest, largest) with 0 < smallest <= largest "
                         "(--scale-range); e.g. 0.7,1.4")
    resuming = resume and (run_dir / "state.pt").is_file()
    if resuming:
        cfg = saved_config(run_dir, steps=cfg.steps, max_seconds=cfg.max_seconds)
    elif init is not None:
        cfg = replace(cfg, **_init_shape(init))
    data = combine_fit_data([load_fit_data(d, lm, val_fraction, select_pairs, cfg.select_blocks)
                             for d, lm in ((Path(pairs_dir), label_map), *also)])
    if command:
        data.card["command"] = command
    run = SegmenterRun(data, run_dir, cfg, init=None if resuming else init)
    if resuming:
        run.load_state()
    best = run.train()
    from ..models.segmenter import load_segmenter
    net, card = load_segmenter(best)
    if cfg.calibrate:
        net, card = calibrated(net, card, data)
    return export_segmenter(net, Path(out), card)


def _init_shape(init: Path) -> dict:
    card_path = Path(init).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
        return {"width": int(card["width"]), "depth": int(card["depth"])}
    except (OSError, ValueError, KeyError):
        raise InputError(f"segmenter '{init}' not found or its card '{card_path.name}' lacks width/depth; pass the "
                         "stem of a segmenter's .json + .safetensors") from None


def saved_config(run_dir: Path, **overrides) -> FitConfig:
    """The settings a run was started with (``overrides``: e.g. more ``steps`` for a resumed run)."""
    state = torch.load(Path(run_dir) / "state.pt", weights_only=True)
    saved = json.loads(state["config"])
    for key in ("class_probs", "scale_range", "class_cast_std"):
        if saved.get(key) is not None:
            saved[key] = tuple(saved[key])
    saved.setdefault("lovasz_weight", 0.0)  # runs started before these settings keep their recipe
    saved.setdefault("strong_aug", False)
    saved.setdefault("cast_std", 0.0)
    saved.setdefault("class_cast_std", None)
    return FitConfig(**{**saved, **overrides})


def parse_per_class(text: str | None, option: str = "--class-probs") -> tuple[float, ...] | None:
    """``"0.15,0.35,0.15,0.1,0.25"`` -> a tuple of floats, one per class (None stays None); ``option`` names the
    setting in the error."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} '{text}' is not a comma-separated list of numbers; give one per class, "
                         "e.g. 0.15,0.35,0.15,0.1,0.25") from None

