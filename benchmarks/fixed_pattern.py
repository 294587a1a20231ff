"""How much of a generator's picture is fixed to the tile position rather than drawn by its noise.

On a uniform input (one class everywhere) a generator that uses its noise draws different ground for
different noise maps, so the average over many noise maps is flat. One that ignores it draws the same
picture every time; features it likes (the default U-Net's dark tree about 90 px from the tile corner)
then repeat at the tile stride over whole fields. For each class printed:

- ``fixed_share``: spatial variance of the noise-averaged tile / mean spatial variance of single tiles
  (0 = the noise decides everything, 1 = every noise map gives the same picture);
- ``diversity``: mean L1 between two samples ([-1, 1] units);
- ``darkest_spot``: how far (grey levels) the darkest 9x9 px spot of the noise-averaged tile lies below
  its median (a fixed tree).

    .venv/bin/python benchmarks/fixed_pattern.py MODEL [MODEL ...] [--samples 16] [--tile 256]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F


def fixed_pattern(model_name: str, class_name: str, samples: int, tile_px: int) -> dict:
    from geogan.classes import load_schema
    from geogan.infer import load_model, run_batch

    schema = load_schema()
    model = load_model(model_name, schema, "cpu")
    class_id = schema.names.index(class_name)
    maps = np.full((samples, tile_px, tile_px), class_id, np.uint8)
    noise = np.random.default_rng(0).standard_normal((samples, 1, tile_px, tile_px)).astype(np.float32)
    out = np.concatenate([run_batch(model, maps[i:i + 4], noise[i:i + 4], tile_px) for i in range(0, samples, 4)])
    grey = out[:, :3].mean(1)  # (samples, H, W) in [-1, 1]
    mean = grey.mean(0)
    fixed_share = float(mean.var() / grey.var(axis=(1, 2)).mean())
    diversity = float(np.abs(out[0::2] - out[1::2]).mean())
    local = F.avg_pool2d(torch.from_numpy(mean)[None, None], 9, stride=1).numpy()[0, 0]
    darkest = float((np.median(mean) - local.min()) * 127.5)
    return {"fixed_share": round(fixed_share, 3), "diversity": round(diversity, 4),
            "darkest_spot_grey": round(darkest, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--classes", nargs="+", default=["background", "grass", "farmland", "woodland"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        for cls in args.classes:
            print(f"{name:40s} {cls:12s} {fixed_pattern(name, cls, args.samples, args.tile)}")


if __name__ == "__main__":
    main()
