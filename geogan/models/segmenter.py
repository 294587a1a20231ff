"""A small segmentation network for the FCN-score (pix2pix / SPADE evaluation protocol).

It is trained on *real* aerial images only; at evaluation it segments
generated images, and its mIoU against the input label map says how well the
generator drew what it was asked to draw. Its pooled bottleneck features also
serve as the embedding for KID/FID (no Inception weights can be downloaded).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError


def _block(in_nc: int, out_nc: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_nc, out_nc, 3, padding=1, bias=False), nn.BatchNorm2d(out_nc), nn.ReLU(inplace=True),
        nn.Conv2d(out_nc, out_nc, 3, padding=1, bias=False), nn.BatchNorm2d(out_nc), nn.ReLU(inplace=True),
    )


class Segmenter(nn.Module):
    """U-Net style segmenter: RGB in [-1, 1] -> class logits at full resolution.

    Parameters
    ----------
    n_classes : number of output classes
    width : channels at the first level (doubling per level)
    depth : number of 2x downsamplings (input sizes must be multiples of 2**depth)
    """

    def __init__(self, n_classes: int, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        if n_classes < 2 or width < 1 or depth < 1:
            raise ValueError("Segmenter needs n_classes >= 2, width >= 1, depth >= 1")
        self.n_classes, self.width, self.depth = n_classes, width, depth
        self.size_multiple = 2 ** depth
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(chans[i] * 2, chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        bottleneck = x
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        logits = self.head(x)
        if return_features:
            feats = torch.cat([bottleneck.mean((2, 3)), bottleneck.amax((2, 3))], 1)
            return logits, feats
        return logits


def predict_classes(net: nn.Module, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Class ids (N, H, W) of a segmenter ``net``: the mean softmax over the input, its horizontal, vertical and
    double flips and (square inputs) its transpose, each mapped back (test-time augmentation: on the held-out
    LandCover.ai photos mIoU 0.566 -> 0.583, building IoU 0.399 -> 0.432). ``logits``: ``net(x)`` if known."""
    views = [lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.flip(-2, -1)]
    if x.shape[-1] == x.shape[-2]:
        views.append(lambda t: t.transpose(-2, -1))  # each view is its own inverse
    probs = (net(x) if logits is None else logits).softmax(1)
    for view in views:
        probs = probs + view(net(view(x)).softmax(1))
    return probs.argmax(1)


def load_segmenter(path: Path):
    """The FCN-score segmenter (safetensors + JSON card)."""
    from safetensors.torch import load_file

    card_path = Path(path).with_suffix(".json")
    weights = Path(path).with_suffix(".safetensors")
    if not card_path.is_file() or not weights.is_file():
        raise InputError(f"segmenter '{path}' not found (.json + .safetensors); train one with "
                         "'geogan evaluate --train-segmenter' or pass --segmenter PATH")
    card = json.loads(card_path.read_text())
    net = Segmenter(len(card["classes"]), card["width"], card["depth"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    net.load_state_dict(state)
    return net.eval(), card


def default_segmenter_path() -> Path:
    from importlib import resources
    return Path(str(resources.files("geogan").joinpath("data/models/segmenter_landcoverai")))
