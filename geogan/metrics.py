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
