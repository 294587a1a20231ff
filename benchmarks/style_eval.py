"""How much a style-reference model's look follows its reference photo, on held-out pairs of two data sets.

For every validation pair of each set (LandCover.ai and Recife by default) the model renders the pair's
label map three ways: with the style code of the pair's own photo, with the mean code of the OTHER set's
validation photos, and with the card's ``default_style`` (or the zero code). It prints, per set and way:
L1 to the photo ([-1, 1] units), the error of the mean colour in grey levels, and the texture ratio (mean
absolute Laplacian of the render over the photo's; 1 = as much fine detail as the photo, near 0 = flat).

    .venv/bin/python benchmarks/style_eval.py MODEL.json [--per-set 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SETS = (("landcoverai", ROOT.parent / "shared/data/landcoverai-pairs", "landcoverai"),
        ("recife", ROOT.parent / "shared/data/recife-pairs", "recife_landcoverai"))


def laplacian_energy(img: torch.Tensor) -> float:
    """Mean absolute 4-neighbour Laplacian of a (B, 3, H, W) image in [-1, 1]."""
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=img.dtype).expand(3, 1, 3, 3)
    return torch.nn.functional.conv2d(img, k, groups=3).abs().mean().item()


def load_set(folder: Path, label_map: str, n: int, classes: list[str]):
    from geogan.training.datasets import list_pair_files, split_by_number
    from geogan.training.pairs import load_label_map, read_pair
    lm = load_label_map(label_map)
    _, val = split_by_number(list_pair_files(folder))
    picks = [val[i] for i in np.linspace(0, len(val) - 1, min(n, len(val))).round().astype(int)]
    from geogan.evaluate import one_hot, to_tensor_image
    to_model = np.array([classes.index(name) for name in lm.classes], np.int64)
    images, labels = zip(*(read_pair(path, lm) for path in picks))
    return to_tensor_image(np.stack(images)), one_hot(to_model[np.stack(labels)], len(classes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--per-set", type=int, default=16)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from geogan.models.checkpoint import load_generator
    torch.manual_seed(0)
    module, card = load_generator(args.model)
    module.eval()
    data = {name: load_set(folder, lm, args.per_set, card["classes"]) for name, folder, lm in SETS}
    with torch.no_grad():
        codes = {name: module.encode_style(photos)[1] for name, (photos, _) in data.items()}
        default = torch.tensor([card["default_style"]]) if card.get("default_style") is not None \
            else torch.zeros(1, codes["landcoverai"].shape[1])
        result = {"model": str(args.model), "per_set": args.per_set}
        for name, (photos, onehots) in data.items():
            other = next(k for k in codes if k != name)
            noise = torch.randn(len(photos), 1, *photos.shape[2:], generator=torch.Generator().manual_seed(1))
            ways = {"own": codes[name], "other_set_mean": codes[other].mean(0, keepdim=True),
                    "default": default}
            real_lap = laplacian_energy(photos)
            for way, code in ways.items():
                fake = module(onehots, noise, style=code)
                l1 = (fake - photos).abs().mean().item()
                colour = ((fake.mean((2, 3)) - photos.mean((2, 3))).abs().mean() * 127.5).item()
                texture = laplacian_energy(fake) / real_lap
                result[f"{name}_{way}"] = {"l1": round(l1, 4), "mean_colour_err_grey": round(colour, 1),
                                           "texture_ratio": round(texture, 3)}
                print(f"{name:12s} {way:15s} L1 {l1:.3f}  mean colour error {colour:5.1f} grey  "
                      f"texture ratio {texture:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
