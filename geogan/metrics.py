"""Image-quality metrics on tensors: L1, PSNR, SSIM, mIoU, KID and FID.

Pure functions over torch tensors / numpy arrays. Images are float in
[-1, 1] with shape (B, 3, H, W) unless said otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def l1(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean absolute error in [0, 1] image units (images given in [-1, 1])."""
    return float((fake - real).abs().mean() / 2)


def psnr(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for [0, 1] images (given in [-1, 1]), averaged per image."""
    mse = (((fake - real) / 2) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004; 11x11 Gaussian, sigma 1.5) on [0, 1] images, per channel."""
    a, b = (fake + 1) / 2, (real + 1) / 2
    c = a.shape[1]
    w = _gaussian_window().to(a)[None, None].repeat(c, 1, 1, 1)
    mu_a, mu_b = F.conv2d(a, w, groups=c), F.conv2d(b, w, groups=c)
    saa = F.conv2d(a * a, w, groups=c) - mu_a ** 2
    sbb = F.conv2d(b * b, w, groups=c) - mu_b ** 2
    sab = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def confusion(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (target rows, predicted columns) of integer label maps."""
    idx = target.astype(np.int64).ravel() * n_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def miou(conf: np.ndarray) -> tuple[float, list[float]]:
    """Mean IoU over classes present in the target or the prediction, and per-class IoU (NaN if absent)."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return float(np.nanmean(iou)), iou.tolist()


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 20, subset_size: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel) on given features: (mean, std)."""
    rng = np.random.default_rng(seed)
    d = feats_a.shape[1]
    n = min(subset_size, len(feats_a), len(feats_b))
    vals = []
    for _ in range(subsets):
        x = feats_a[rng.choice(len(feats_a), n, replace=False)].astype(np.float64)
        y = feats_b[rng.choice(len(feats_b), n, replace=False)].astype(np.float64)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        m = n
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    ca = np.cov(feats_a, rowvar=False)
    cb = np.cov(feats_b, rowvar=False)
    # trace of sqrt(ca @ cb) from the eigenvalues of sqrt(ca) cb sqrt(ca) (symmetric, PSD)
    wa, va = np.linalg.eigh(ca)
    sqrt_ca = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    m = sqrt_ca @ cb @ sqrt_ca
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)


def class_colour_texture(images_u8: np.ndarray, labels: np.ndarray, n_classes: int) -> list[dict | None]:
    """Per-class colour and texture statistics of uint8 images (N, H, W, 3) under class maps (N, H, W).

    For each class: ``pixels``; ``mean_rgb`` and ``std_rgb`` (0-255) over its pixels; ``texture``: the mean
    absolute 4-neighbour Laplacian of the grey image (0-255 units) over *interior* pixels (whose 4 neighbours
    share the class), so class borders do not count as texture. ``None`` for classes with no pixels.
    """
    img = images_u8.astype(np.float32)
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = np.abs(4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                 - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    core = labels[:, 1:-1, 1:-1]
    interior = ((core == labels[:, :-2, 1:-1]) & (core == labels[:, 2:, 1:-1])
                & (core == labels[:, 1:-1, :-2]) & (core == labels[:, 1:-1, 2:]))
    stats: list[dict | None] = []
    for c in range(n_classes):
        mask = labels == c
        n = int(mask.sum())
        if n == 0:
            stats.append(None)
            continue
        px = img[mask]
        inner = interior & (core == c)
        stats.append({"pixels": n, "mean_rgb": px.mean(0).round(2).tolist(), "std_rgb": px.std(0).round(2).tolist(),
                      "texture": round(float(lap[inner].mean()), 3) if inner.any() else None})
    return stats


def load_feature_extractor(path) -> torch.nn.Module:
    """A local TorchScript image-feature network for standard FID/KID (e.g. the widely used
    ``inception-2015-12-05.pt``): called as ``net(images, return_features=True)`` on float images in
    [0, 255], shape (B, 3, H, W), it returns (B, D) features. Nothing is downloaded."""
    from pathlib import Path

    from .errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"feature network '{p}' does not exist; give a local TorchScript file "
                         "(e.g. inception-2015-12-05.pt)")
    import warnings

    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format these weights ship in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(p), map_location="cpu").eval()
    except Exception as exc:  # torch raises RuntimeError/ValueError variants for non-TorchScript files
        raise InputError(f"'{p}' is not a TorchScript feature network ({type(exc).__name__}); give a "
                         "TorchScript file such as inception-2015-12-05.pt") from None


def extract_features(net: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Features of images in [-1, 1] (B, 3, H, W) from a network loaded by :func:`load_feature_extractor`."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = (images[i:i + batch].float() + 1) * 127.5
            out.append(net(x, return_features=True).float().reshape(len(x), -1).numpy())
    return np.concatenate(out)
