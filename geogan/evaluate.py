"""`geogan evaluate`: how good is a generator on held-out real aerial/label pairs?

Metrics (see ``metrics.py``):
- FCN-score (pix2pix / SPADE protocol): a segmenter trained on *real* aerial images of the
  training split segments the generated images; mIoU against the input labels
  (``fcn_miou_generated``), the same segmenter's mIoU on the real images (``fcn_miou_real``),
  and their ratio (``fcn_ratio``).
- L1, PSNR, SSIM against the real image.
- KID and FID between generated and real images on the segmenter's pooled features. These are
  NOT comparable with published FID/KID numbers, which use Inception-v3 features.
- Realism (``--realism``, see ``realism.py`` and docs/realism.md): the two-sample classifier test
  (``c2st_accuracy``, and after a 4x blur) and the tile-locked periodic amplitudes, generated vs real.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from .errors import InputError
from .metrics import confusion, fid, kid, l1, miou, psnr, ssim
from .options import with_options
from .models.segmenter import default_segmenter_path, load_segmenter, predict_classes  # noqa: F401 (also re-exported)
from .realism import C2stSettings, realism_metrics, torch_threads
from .training.pairs import PairSet, list_pairs, load_label_map

log = logging.getLogger("geogan")

def to_tensor_image(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def one_hot(labels: np.ndarray, n: int) -> torch.Tensor:
    return F.one_hot(torch.from_numpy(labels.astype(np.int64)), n).permute(0, 3, 1, 2).float()


def train_segmenter(pairs_dir: Path, out: Path, *, label_map: str = "landcoverai", val_fraction: float = 0.125,
                    init: Path | None = None, select_pairs: int | None = None, **fit) -> Path:
    """Train the FCN-score segmenter on the *real* images of the training split; returns the stem written.

    The recipe (class-balanced crops and loss, augmentation, selection on the last ``select_pairs`` training
    pairs) is :mod:`geogan.training.segmenter_fit`'s; this runs it in a temporary run folder (no resume;
    ``geogan train-segmenter --run-dir`` keeps one). ``init``: a segmenter to continue from (its width and
    depth; its card's steps and seconds are carried into the new card). ``fit``: fields of
    :class:`~geogan.training.segmenter_fit.FitConfig` (``steps=4000, batch=8, width=16, depth=4, crop_px=128,
    lr=1e-3, seed=0, log_every=100`` ...; an unknown name is an
    :class:`~geogan.options.UnknownOptionError`); validation runs once, at the end.
    """
    import tempfile

    from .training.segmenter_fit import FitConfig, fit_segmenter

    cfg = with_options(FitConfig(log_every=100), fit, "train_segmenter")
    cfg = dataclasses.replace(cfg, val_every=max(cfg.steps, 1))
    with tempfile.TemporaryDirectory() as tmp:
        return fit_segmenter(pairs_dir, out, Path(tmp) / "run", cfg, init=init, label_map=label_map,
                             val_fraction=val_fraction, select_pairs=select_pairs)


def _segment(net, images: torch.Tensor, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    preds, feats = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            logits, f = net(images[i:i + batch], return_features=True)
            preds.append(predict_classes(net, images[i:i + batch], logits).numpy())
            feats.append(f.numpy())
    return np.concatenate(preds), np.concatenate(feats)


class ModelGenerator:
    """A trained conditional generator from the zoo or a path."""

    def __init__(self, model_ref: str) -> None:
        from .classes import load_schema
        from .infer import load_model
        from .models.checkpoint import load_generator
        from .zoo import resolve_model

        card_path = resolve_model(model_ref)
        # pix2pix (Isola et al.) is run as the paper does at test time: batch norm with the statistics of the
        # test batch (batch size 1) and dropout kept as its noise; its running averages from batch-1 training
        # are poor. Other models run as render runs them (eval mode, batch norm folded).
        self.paper_test_mode = json.loads(card_path.read_text()).get("arch") == "pix2pix"
        # the look render uses: a style-encoder model's card ``default_style`` (None: no style code)
        self.style: torch.Tensor | None = None
        if self.paper_test_mode:
            self.module, card = load_generator(card_path, device="cpu", schema_classes=load_schema().names)
            self.module.train()
            for m in self.module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0  # use batch statistics without changing the stored ones
        else:
            loaded = load_model(str(card_path), load_schema(), "cpu")
            self.module, card, self.style = loaded.module, loaded.card, loaded.style
        self.name = str(card.get("name", card_path.stem))
        self.classes = list(card["classes"])
        self.size_mb = card_path.with_suffix(".safetensors").stat().st_size / 1e6

    def generate(self, labels: np.ndarray, seed: int = 0, batch: int = 8) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) for label maps given as *model* class indices."""
        torch.manual_seed(seed)
        out = []
        if self.paper_test_mode:
            batch = 1
        with torch.no_grad():
            for i in range(0, len(labels), batch):
                x = one_hot(labels[i:i + batch], len(self.classes))
                z = torch.randn(x.shape[0], 1, *x.shape[2:])
                style = {} if self.style is None else {"style": self.style}
                out.append(self.module(x, noise=z, **style)[:, :3].clamp(-1, 1))
        return torch.cat(out)


class BankGenerator:
    """A texture-bank model (:mod:`geogan.quilt`): each tile is drawn as its own render with seed ``seed + i``
    (so the tiles take the bank's looks as renders of different places with different seeds do)."""

    def __init__(self, card_path: Path) -> None:
        from .classes import load_schema
        from .quilt_model import load_quilt_model

        self.model = load_quilt_model(card_path, load_schema())
        self.name = self.model.name
        self.classes = list(self.model.card["classes"])
        self.size_mb = (card_path.parent / str(self.model.card["bank"])).stat().st_size / 1e6

    def generate(self, labels: np.ndarray, seed: int = 0, batch: int = 8) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) for label maps given as *model* class indices."""
        from .quilt import synthesize_tile
        from .quilt_model import look_of

        out = [synthesize_tile(self.model.bank, lab.astype(np.uint8), seed=seed + i, look=look_of(self.model, seed + i))
               for i, lab in enumerate(labels)]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


class MeanColourBaseline:
    """The trivial baseline: every pixel painted with its class's mean colour in the training split."""

    name = "baseline-mean-colour"
    size_mb = 0.0

    def __init__(self, train: PairSet) -> None:
        self.classes = list(train.label_map.classes)
        flat_labels = train.labels.reshape(-1)
        flat_px = train.images.reshape(-1, 3).astype(np.float64)
        counts = np.bincount(flat_labels, minlength=len(self.classes))
        sums = np.stack([np.bincount(flat_labels, weights=flat_px[:, ch], minlength=len(self.classes))
                         for ch in range(3)], 1)
        overall = flat_px.mean(0)
        self.colours_u8 = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall)

    def generate(self, labels: np.ndarray, seed: int = 0, batch: int = 8) -> torch.Tensor:
        rgb = self.colours_u8[labels]  # (N, H, W, 3)
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1


BASELINE_NAME = "baseline:mean-colour"


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def _lattice(images: torch.Tensor) -> dict[str, float]:
    """Mean share of spectral power on the 32, 64 and 128 px lattices (periods the image size allows)."""
    from .models.loss import lattice_periods, lattice_share
    return {str(p): float(lattice_share(images, p).mean()) for p in lattice_periods(*images.shape[-2:])}


def split_number(pairs_dir: Path, val_fraction: float = 0.125, val_from: int | None = None) -> int:
    """The first validation pair number: ``val_from`` if given, else that of the highest ``val_fraction``."""
    from .training.datasets import val_from_number

    if val_from is not None:
        return val_from
    return val_from_number(list_pairs(pairs_dir, "all"), val_fraction)


def load_generator(model_ref: str, pairs_dir: Path, lm, val_from: int):
    """A ModelGenerator, or the mean-colour baseline fitted on the pairs numbered < ``val_from``; classes checked."""
    if model_ref == BASELINE_NAME:
        gen = MeanColourBaseline(PairSet.load(pairs_dir, lm, "train", val_from))
    else:
        from .infer import is_texture_bank
        from .zoo import resolve_model

        card_path = resolve_model(model_ref)
        gen = BankGenerator(card_path) if is_texture_bank(card_path) else ModelGenerator(model_ref)
    if sorted(gen.classes) != sorted(lm.classes):
        raise InputError(f"model '{gen.name}' has classes {gen.classes}; the '{lm.name}' pairs have "
                         f"{list(lm.classes)}; pass the model's --label-map")
    return gen


def generate_for(gen, data: PairSet, n: int, seed: int) -> tuple[np.ndarray, torch.Tensor, float]:
    """(model class ids of the first ``n`` pairs, generated images in [-1, 1], generator seconds)."""
    # the pairs' class order may differ from the model's
    to_model = np.array([gen.classes.index(c) for c in data.label_map.classes], dtype=np.uint8)
    labels = to_model[data.labels[:n]]
    t0 = time.perf_counter()
    fake = gen.generate(labels, seed)
    return labels, fake, time.perf_counter() - t0


def evaluate_realism(pairs_dir: Path, model_ref: str, *, label_map: str = "landcoverai", max_pairs: int | None = None,
                     seed: int = 0, val_fraction: float = 0.125, val_from: int | None = None,
                     settings: C2stSettings = C2stSettings(), threads: int | None = None) -> dict:
    """Realism metrics only (C2ST sharp and blurred, tile-locked periodic amplitudes; see ``realism.py``).

    The held-out pairs are those numbered >= ``val_from`` (default: the highest ``val_fraction``), the first
    ``max_pairs`` of them. ``threads``: torch CPU threads for generation and the classifier (restored after).
    """
    lm = load_label_map(label_map)
    val_from = split_number(pairs_dir, val_fraction, val_from)
    with torch_threads(threads):
        gen = load_generator(model_ref, pairs_dir, lm, val_from)
        data = PairSet.load(pairs_dir, lm, "val", val_from)
        n = len(data) if max_pairs is None else min(max_pairs, len(data))
        _, fake, gen_s = generate_for(gen, data, n, seed)
        res = realism_metrics(data.images[:n], to_uint8_images(fake), settings)
    return {"model": gen.name, "pairs": n, "pairs_dir": str(pairs_dir), "label_map": lm.name,
            "split": f"pairs numbered >= {val_from}", "seed": seed, **res, "generator_seconds": gen_s}


def _fcn_scores(net, seg_classes: list[str], classes: list[str], labels: np.ndarray, fake: torch.Tensor,
                real: torch.Tensor) -> tuple[dict, dict]:
    """The FCN-score (mIoU of the segmenter on generated and real images) and KID and FID on its features."""
    seg_idx = np.array([seg_classes.index(c) for c in classes])  # the segmenter's class order may differ
    target = seg_idx[labels]
    pred_fake, f_fake = _segment(net, fake)
    pred_real, f_real = _segment(net, real)
    m_fake, iou_fake = miou(confusion(pred_fake, target, len(seg_classes)))
    m_real, iou_real = miou(confusion(pred_real, target, len(seg_classes)))
    k_mean, k_std = kid(f_fake, f_real)
    scores = {"fcn_miou_generated": m_fake, "fcn_miou_real": m_real, "fcn_ratio": m_fake / m_real if m_real else None,
              "fcn_iou_generated_per_class": dict(zip(seg_classes, iou_fake)),
              "fcn_iou_real_per_class": dict(zip(seg_classes, iou_real))}
    return scores, {"kid": k_mean, "kid_std": k_std, "fid": fid(f_fake, f_real)}


def _inception_metrics(inception: Path, fake: torch.Tensor, real: torch.Tensor) -> dict:
    """Standard FID/KID on the features of a local TorchScript Inception network."""
    from .metrics import extract_features, load_feature_extractor

    feat_net = load_feature_extractor(inception)
    i_fake, i_real = extract_features(feat_net, fake), extract_features(feat_net, real)
    kid_mean, kid_std = kid(i_fake, i_real)
    return {"fid_inception": fid(i_fake, i_real), "kid_inception": kid_mean, "kid_inception_std": kid_std,
            "inception_weights": str(inception)}


def evaluate_model(pairs_dir: Path, model_ref: str, *, segmenter: Path | None = None, max_pairs: int | None = None,
                   seed: int = 0, label_map: str = "landcoverai", inception: Path | None = None,
                   val_fraction: float = 0.125, realism: C2stSettings | None = None) -> dict:
    """All metrics of one model on the validation pairs; returns a JSON-ready dict.

    ``model_ref`` is a zoo name, a model path, or ``baseline:mean-colour`` (each class painted with its mean
    training colour). ``inception``: a local TorchScript feature network for standard FID/KID.
    ``realism``: also the realism metrics (C2ST, periodic amplitudes) with this protocol.
    The validation split is the highest-numbered ``val_fraction`` of the pairs, as in training.
    """
    from .metrics import class_colour_texture

    lm = load_label_map(label_map)
    val_from = split_number(pairs_dir, val_fraction)
    gen = load_generator(model_ref, pairs_dir, lm, val_from)
    classes = gen.classes
    net, seg_card = load_segmenter(segmenter or default_segmenter_path())
    if sorted(seg_card["classes"]) != sorted(classes):
        raise InputError(f"segmenter classes {seg_card['classes']} differ from the model's {classes}; "
                         "train a segmenter on these pairs with 'geogan train-segmenter'")
    data = PairSet.load(pairs_dir, lm, "val", val_from)
    n = len(data) if max_pairs is None else min(max_pairs, len(data))
    real = to_tensor_image(data.images[:n])
    labels, fake, gen_s = generate_for(gen, data, n, seed)
    scores, distances = _fcn_scores(net, seg_card["classes"], classes, labels, fake, real)
    fake_u8 = to_uint8_images(fake)
    stats_fake = class_colour_texture(fake_u8, labels, len(classes))
    stats_real = class_colour_texture(data.images[:n], labels, len(classes))
    res = {
        "model": gen.name, "pairs": n, "pairs_dir": str(pairs_dir), "label_map": lm.name,
        "split": f"pairs numbered >= {val_from}",
        **scores, "l1": l1(fake, real), "psnr": psnr(fake, real), "ssim": ssim(fake, real), **distances,
        # periodic up-convolution artefact: share of spectral power on the 32/64/128 px lattices, by period
        "lattice_share_generated": _lattice(fake), "lattice_share_real": _lattice(real),
        "feature_note": "kid/fid use the project's segmenter features, not Inception-v3: not comparable "
                        "with published numbers",
        "per_class": {c: {"generated": a, "real": b} for c, a, b in zip(classes, stats_fake, stats_real)},
        "generator_seconds": gen_s, "generator_mp_s": fake.shape[0] * fake.shape[2] * fake.shape[3] / 1e6 / gen_s,
        "model_size_mb": gen.size_mb,
    }
    if realism is not None:
        res.update(realism_metrics(data.images[:n], fake_u8, realism))
    if inception is not None:
        res.update(_inception_metrics(inception, fake, real))
    return res
