"""Ship a trained style-reference model into the package (geogan/data/models/NAME.*).

Adds to the exported card: ``default_style`` (the mean style code of N LandCover.ai training photos, the
look without ``--style-ref``), the held-out style metrics of ``benchmarks/style_eval.py``, the
fixed-pattern figures of ``benchmarks/fixed_pattern.py`` and a description.

    .venv/bin/python scripts/ship_style.py RUN/export/style.json [--name style] [--photos 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def default_style(module, pairs: Path, n: int) -> list[float]:
    """Mean style code (encoder mean) of ``n`` evenly spread training photos of a pair folder."""
    from geogan.evaluate import to_tensor_image
    from geogan.training.datasets import list_pair_files, split_by_number
    from geogan.training.pairs import load_label_map, read_pair

    train, _ = split_by_number(list_pair_files(pairs))
    picks = [train[i] for i in np.linspace(0, len(train) - 1, n).round().astype(int)]
    lm = load_label_map("landcoverai")
    photos = to_tensor_image(np.stack([read_pair(p, lm)[0] for p in picks]))
    with torch.no_grad():
        mu = module.encode_style(photos)[1]
    return [round(float(v), 5) for v in mu.mean(0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--name", default="style")
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--pairs", type=Path, default=ROOT.parent / "shared/data/landcoverai-pairs")
    args = ap.parse_args()
    from fixed_pattern import fixed_pattern
    from geogan.models.checkpoint import load_generator, save_generator

    torch.set_num_threads(1)
    module, card = load_generator(args.export)
    module.eval()
    card = dict(card, name=args.name)
    card["default_style"] = default_style(module, args.pairs, args.photos)
    steps = card["training"]["steps"]
    card["description"] = (
        "Style-reference aerial model: the default model's compact U-Net (ngf 16, 7 levels, noise injection) "
        "with a style encoder (VAE encoder, global pooling, 64-d code) whose code scales and shifts every "
        "decoder block (FiLM). Warm-started from the default model (step 5,490) with the style layers at the "
        f"identity, then trained {steps:,} steps on LandCover.ai and Recife pairs together (Recife labels "
        "mapped to LandCover.ai's five classes), so 'render --model style --style-ref photo.tif' takes the "
        "look of a reference photo; without one it takes default_style, the mean code of "
        f"{args.photos} LandCover.ai training photos.")
    card["training"] = dict(card["training"], warm_start="default model, step 5,490 (checkpoints/default)")
    stem = ROOT / "geogan/data/models" / args.name
    tmp = Path("/tmp") / f"ship_{args.name}"
    save_generator(module, card, tmp)
    evaluation = subprocess.run([sys.executable, str(ROOT / "benchmarks/style_eval.py"), str(tmp) + ".json",
                                 "--json", str(tmp) + "_eval.json"], check=True, capture_output=True, text=True)
    print(evaluation.stdout)
    metrics = dict(card.get("metrics", {}))
    metrics["style_reference"] = dict(json.loads(Path(str(tmp) + "_eval.json").read_text()),
                                      command=f"benchmarks/style_eval.py geogan/data/models/{args.name}.json")
    metrics["fixed_pattern"] = {cls: fixed_pattern(str(tmp) + ".json", cls, 16, 256)
                                for cls in ("background", "woodland", "building")}
    metrics["fixed_pattern"]["command"] = f"benchmarks/fixed_pattern.py geogan/data/models/{args.name}.json"
    metrics["style_reference"].pop("model", None)
    card["metrics"] = metrics
    save_generator(module, card, stem, fp16=True)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
