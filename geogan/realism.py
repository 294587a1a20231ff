"""Realism metrics: can a small classifier, or a grid-locked average, tell generated images from real ones?

Pure functions: uint8 image arrays in, numbers out; no file I/O. ``geogan evaluate --realism`` and
``benchmarks/realism.py`` feed them held-out real photos and the generator's images for the *same* label maps.

Two-sample classifier test (C2ST, Lopez-Paz & Oquab 2017), :func:`c2st`
    1. Every source image (real and generated alike) is cut into the same non-overlapping grid of
       ``crop_px`` crops, starting at the image corner (256 px images: 16 crops of 64 px each).
    2. The source images are split into two halves at random (seeded), *by image, never by crop*: all crops
       of image i, real and generated, fall in the same half, so the test tiles show label maps the
       classifier never saw.
    3. A tiny CNN (:class:`TinyCritic`: four 3x3 stride-2 convolutions, global mean, one linear output) is
       trained with Adam (learning rate decayed to 0 on a cosine) for ``steps`` steps of ``batch`` crops
       (half real, half generated) on one half, and its accuracy (threshold 0.5, real and generated crops
       counted equally) is measured on the other half; then the halves swap roles. This runs for each seed
       in ``seeds``, so every image is tested once per seed; ``c2st_accuracy`` is the mean over seeds and
       images of each image's test accuracy (= the mean of the runs for even N). 0.5 = indistinguishable,
       1.0 = always told apart. ``c2st_accuracy_stderr``: the standard deviation of the per-image accuracies
       (averaged over seeds) / sqrt(N) -- crops of one image are not independent, images are.
    4. ``c2st_accuracy_blur4``: the same protocol after a ``blur`` x ``blur`` average pool of every crop (real
       and generated; 64 px crops become 16 px), so fine texture (checkerboards, noise) no longer counts
       and only colour, tone and coarse structure remain.
    Deterministic for fixed inputs and seeds on the CPU (same thread count).

Tile-locked periodic amplitude, :func:`periodic_amplitude`
    For a period p (4, 8, 16, 32 px) each image is cut to a multiple of p from its top-left corner (the tile
    corner) and every pixel is assigned to its cell position (y mod p, x mod p). The image's *mean cell*
    M[y, x, c] is the average of its pixel values at that cell position, per channel c, in grey levels
    (0-255). A pattern locked to the tile grid (checkerboards of transposed convolutions, dot lattices,
    features pinned by zero padding) survives that average; content at random phases averages out. Its
    amplitude is the RMS over the p*p positions and 3 channels of M minus its per-channel mean:
        a(image, p) = sqrt(mean_{y,x,c} (M[y,x,c] - mean_{y,x} M[y,x,c])^2)
    ``rms`` is a(image, p) averaged over the images; ``ptp`` the mean over images of the largest per-channel
    peak-to-peak of M - mean. A pattern of period q shows at every multiple of q (a 4 px checkerboard also at
    8, 16 and 32 px). Real photos have a floor (content does not average out completely over the
    (256 / p)^2 cells of one 256 px tile: about 0.2 / 0.5 / 1.0 / 2.4 grey levels at 4 / 8 / 16 / 32 px on
    LandCover.ai), so generated images are compared with the real photos of the same label maps:
    ``periodic_ratio`` = generated rms / real rms per period, target <= 1.5.
    ``pooled_rms``: the RMS of the mean cell of *all* images together (the pattern shared by every tile);
    its floor falls with the number of images, so compare it only between sets of one size.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InputError

PERIODS_PX = (4, 8, 16, 32)


@dataclass(frozen=True)
class C2stSettings:
    """The classifier test's protocol (the defaults are the project's reported metric)."""

    crop_px: int = 64
    steps: int = 800
    batch: int = 32  # half real, half generated
    lr: float = 2e-3  # peak; cosine decay to 0 over the steps, so the critic ends converged
    width: int = 16  # channels of the first convolution (then 2x, 4x, 4x)
    seeds: tuple[int, ...] = (0, 1)
    blur: int = 4  # average-pool factor of the blurred variant

    def __post_init__(self) -> None:
        if self.blur < 1 or self.crop_px < self.blur or self.crop_px % self.blur:
            raise InputError(f"crop size {self.crop_px} px must be a positive multiple of the blur factor "
                             f"{self.blur}; use e.g. 64")
        if self.steps < 1 or self.batch < 2 or self.batch % 2 or not self.seeds:
            raise InputError(f"classifier test needs steps >= 1, an even batch >= 2 and a seed (got steps "
                             f"{self.steps}, batch {self.batch}, seeds {self.seeds})")


class TinyCritic(nn.Module):
    """Four 3x3 stride-2 convolutions with leaky ReLU, a global mean and one linear logit (real > 0)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))[:, 0]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch CPU threads (None: leave as is); restores the count after."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1 (got {threads}); leave the option out for torch's default")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_image_sets(real: np.ndarray, fake: np.ndarray, crop_px: int) -> None:
    """Both sets uint8 (N, H, W, 3), of one shape, at least 2 images of at least ``crop_px`` px."""
    for name, arr in (("real", real), ("generated", fake)):
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"{name} images must be uint8 (N, H, W, 3), got {arr.dtype} {arr.shape}")
    if real.shape != fake.shape:
        raise InputError(f"real images {real.shape} and generated images {fake.shape} differ in shape; "
                         "generate one image per real image, for its label map")
    if len(real) < 2:
        raise InputError(f"the classifier test needs at least 2 image pairs (got {len(real)}); give more pairs")
    if min(real.shape[1:3]) < crop_px:
        raise InputError(f"images of {real.shape[1]}x{real.shape[2]} px are smaller than the {crop_px} px crops; "
                         "give larger images or a smaller crop")


def crop_grid(images: np.ndarray, crop_px: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, K, 3, crop, crop): the non-overlapping crops from the top-left corner."""
    n, h, w, _ = images.shape
    gy, gx = h // crop_px, w // crop_px
    x = torch.from_numpy(np.ascontiguousarray(images[:, :gy * crop_px, :gx * crop_px]))
    x = x.reshape(n, gy, crop_px, gx, crop_px, 3).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, gy * gx, 3, crop_px, crop_px).contiguous()


def prepare_crops(tiles_u8: torch.Tensor, blur: int = 1) -> torch.Tensor:
    """uint8 crops (..., 3, S, S) -> float (M, 3, S/blur, S/blur) in [-1, 1], average-pooled by ``blur``."""
    x = tiles_u8.reshape(-1, *tiles_u8.shape[-3:]).float() / 127.5 - 1
    return F.avg_pool2d(x, blur) if blur > 1 else x


def train_critic(real: torch.Tensor, fake: torch.Tensor, settings: C2stSettings, seed: int) -> TinyCritic:
    """A :class:`TinyCritic` trained to output > 0 on ``real`` crops and < 0 on ``fake`` crops."""
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyCritic(settings.width)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    half = settings.batch // 2
    target = torch.cat([torch.ones(half), torch.zeros(half)])
    for _ in range(settings.steps):
        x = torch.cat([real[rng.integers(0, len(real), half)], fake[rng.integers(0, len(fake), half)]])
        loss = F.binary_cross_entropy_with_logits(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def image_accuracies(net: TinyCritic, real: torch.Tensor, fake: torch.Tensor, crops_per_image: int,
                     chunk: int = 512) -> np.ndarray:
    """Per test image: the share of its crops told right, real and generated counted equally.

    ``real``, ``fake``: float crops (M * crops_per_image, 3, S, S), the crops of one image consecutive.
    """
    with torch.inference_mode():
        hit_real = torch.cat([net(real[i:i + chunk]) > 0 for i in range(0, len(real), chunk)]).float()
        hit_fake = torch.cat([net(fake[i:i + chunk]) <= 0 for i in range(0, len(fake), chunk)]).float()
    return ((hit_real + hit_fake) / 2).reshape(-1, crops_per_image).mean(1).numpy().astype(np.float64)


def image_halves(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the image indices, drawn at random with ``seed``."""
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[: n_images // 2]), np.sort(order[n_images // 2:])


def c2st_image_accuracies(real_tiles: torch.Tensor, fake_tiles: torch.Tensor, settings: C2stSettings,
                          blur: int = 1) -> tuple[np.ndarray, list[float]]:
    """(per-seed, per-image test accuracies (S, N); the accuracy of each run) of the C2ST runs.

    For each seed: train on half A and test on half B, then train on B and test on A, so every image is a
    test image once per seed. ``real_tiles`` / ``fake_tiles``: uint8 (N, K, 3, S, S) from :func:`crop_grid`,
    crop k of image i at the same place in both.
    """
    n, k = real_tiles.shape[:2]
    per_image = np.zeros((len(settings.seeds), n))
    runs = []
    for row, seed in enumerate(settings.seeds):
        halves = image_halves(n, seed)
        for a, b in (halves, halves[::-1]):
            net = train_critic(prepare_crops(real_tiles[a], blur), prepare_crops(fake_tiles[a], blur),
                               settings, seed)
            per_image[row, b] = image_accuracies(net, prepare_crops(real_tiles[b], blur),
                                                 prepare_crops(fake_tiles[b], blur), k)
            runs.append(float(per_image[row, b].mean()))
    return per_image, runs


def summarise(per_image: np.ndarray) -> tuple[float, float]:
    """(accuracy: mean over seeds and images; its standard error, with images as the independent unit)."""
    by_image = per_image.mean(0)
    stderr = by_image.std(ddof=1) / np.sqrt(len(by_image)) if len(by_image) > 1 else float("nan")
    return float(by_image.mean()), float(stderr)


def c2st(real: np.ndarray, fake: np.ndarray, settings: C2stSettings = C2stSettings(),
         threads: int | None = None) -> dict:
    """The classifier test of generated vs real images of the same label maps (see the module docstring).

    ``real``, ``fake``: uint8 (N, H, W, 3), ``fake[i]`` generated for the label map of ``real[i]``.
    Returns ``c2st_accuracy``, ``c2st_accuracy_blur4`` (key named for ``settings.blur``), their standard
    errors (``*_stderr``: the spread of the per-image accuracies / sqrt(N); crops of one image are not
    independent), the single runs' accuracies and the protocol.
    """
    check_image_sets(real, fake, settings.crop_px)
    real_tiles, fake_tiles = crop_grid(real, settings.crop_px), crop_grid(fake, settings.crop_px)
    key_blur = f"c2st_accuracy_blur{settings.blur}"
    res: dict = {"c2st_runs": {}}
    with torch_threads(threads):
        for key, run_name, blur in (("c2st_accuracy", "sharp", 1), (key_blur, f"blur{settings.blur}", settings.blur)):
            per_image, runs = c2st_image_accuracies(real_tiles, fake_tiles, settings, blur)
            res[key], res[f"{key}_stderr"] = summarise(per_image)
            res["c2st_runs"][run_name] = runs
    res["c2st_protocol"] = {"images": len(real), "crops_per_image": int(real_tiles.shape[1]),
                            "crop_px": settings.crop_px, "steps": settings.steps, "batch": settings.batch,
                            "lr": settings.lr, "width": settings.width, "seeds": list(settings.seeds),
                            "blur": settings.blur, "split": "by source image, both directions per seed"}
    return res


def mean_cells(images: np.ndarray, period_px: int) -> np.ndarray:
    """Each image's tile-locked mean cell, float64 (N, period, period, 3) in grey levels (see module doc)."""
    n, h, w, c = images.shape
    gy, gx = h // period_px, w // period_px
    if gy == 0 or gx == 0:
        raise InputError(f"images of {h}x{w} px are smaller than the period {period_px} px")
    x = images[:, :gy * period_px, :gx * period_px].reshape(n, gy, period_px, gx, period_px, c)
    return x.sum(axis=(1, 3), dtype=np.float64) / (gy * gx)


def cell_rms(cells: np.ndarray) -> np.ndarray:
    """RMS of (..., p, p, 3) mean cells about their per-channel means, over positions and channels."""
    dev = cells - cells.mean((-3, -2), keepdims=True)
    return np.sqrt((dev ** 2).mean((-3, -2, -1)))


def periodic_amplitude(images: np.ndarray, periods_px: Sequence[int] = PERIODS_PX) -> dict[str, dict[str, float]]:
    """Per period: ``rms``, ``ptp`` (means over images) and ``pooled_rms`` of the tile-locked mean cell."""
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise InputError(f"images must be (N, H, W, 3) with N >= 1, got {images.shape}")
    out = {}
    for p in periods_px:
        cells = mean_cells(images, p)
        dev = cells - cells.mean((1, 2), keepdims=True)
        out[str(p)] = {"rms": float(cell_rms(cells).mean()), "ptp": float(np.ptp(dev, axis=(1, 2)).max(-1).mean()),
                       "pooled_rms": float(cell_rms(cells.mean(0)))}
    return out


def periodic_report(real: np.ndarray, fake: np.ndarray, periods_px: Sequence[int] = PERIODS_PX) -> dict:
    """Tile-locked amplitudes of real and generated images and their ratios (generated / real) per period."""
    amp_real, amp_fake = periodic_amplitude(real, periods_px), periodic_amplitude(fake, periods_px)

    def ratio(key: str) -> dict[str, float | None]:
        return {p: amp_fake[p][key] / amp_real[p][key] if amp_real[p][key] > 0 else None for p in amp_real}

    return {"periodic_amplitude_real": amp_real, "periodic_amplitude_generated": amp_fake,
            "periodic_ratio": ratio("rms"), "periodic_ratio_pooled": ratio("pooled_rms")}


def realism_metrics(real: np.ndarray, fake: np.ndarray, settings: C2stSettings = C2stSettings(),
                    threads: int | None = None, periods_px: Sequence[int] = PERIODS_PX) -> dict:
    """C2ST (sharp and blurred) and tile-locked periodic amplitudes of ``fake`` against ``real``."""
    return {**c2st(real, fake, settings, threads), **periodic_report(real, fake, periods_px)}


def real_vs_real(real: np.ndarray, settings: C2stSettings = C2stSettings(), threads: int | None = None,
                 periods_px: Sequence[int] = PERIODS_PX, seed: int = 0) -> dict:
    """The reference row: real photos against other real photos, under the same protocol (C2ST ~0.5).

    Images 2j and 2j+1 form pair j; a seeded coin per pair decides which of the two is "real" and which
    "generated". Neighbouring numbers are often neighbouring places: with a fixed even/odd assignment every
    image's neighbour would carry the other label, and a classifier that recognises places from its training
    half would score *below* chance (0.44 on the Recife pairs); the coin makes that effect average out.
    """
    m = len(real) // 2
    swap = np.random.default_rng(seed).random(m) < 0.5
    first, second = real[0:2 * m:2], real[1:2 * m:2]
    a = np.where(swap[:, None, None, None], second, first)
    b = np.where(swap[:, None, None, None], first, second)
    return realism_metrics(a, b, settings, threads, periods_px)
