"""Train geogan's shipped default model on the LandCover.ai pairs (resumable).

    .venv/bin/python scripts/train_default.py --pairs ../shared/data/landcoverai-pairs --run /work/runs/default \
        [--hours 2.0] [--resume]

Recipe: compact U-Net generator (ngf 16, 7 levels, noise injection, batch norm), a 2-scale PatchGAN
discriminator with hinge loss, feature matching (x10) and L1 (x30); Adam 2e-4, betas (0.5, 0.999);
batch 4 of 256 px tiles with flips and 90-degree rotations; tiles mostly water are sampled less.
Validation split: pairs numbered >= 896 (by file number). Checkpoints (full training state, no pickle)
every --checkpoint-every steps and on exit/Ctrl-C; the deployable model (fp16 safetensors + card) is
exported at every checkpoint to RUN/export/default.{json,safetensors}.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import numpy as np
import torch

from geogan.evaluate import LANDCOVERAI_CLASSES, LANDCOVERAI_VALUES, list_pairs, one_hot, read_pair, to_tensor_image
from geogan.models.checkpoint import load_training_state, save_generator, save_training_state
from geogan.models.loss import GANLoss, feature_matching_loss
from geogan.models.registry import build_discriminator, build_generator

SCHEMA_TO_MODEL = {
    "background": "background", "building": "building", "road": "road", "path": "road", "railway": "road",
    "water": "water", "woodland": "woodland", "grass": "background", "farmland": "background",
    "impervious": "road", "bare": "background", "wetland": "water",
}
G_PARAMS = {"in_nc": 5, "out_nc": 3, "ngf": 16, "n_down": 7, "dropout": False, "noise": True, "norm": "batch"}
D_PARAMS = {"in_nc": 8, "ndf": 32, "n_layers": 3, "num_d": 2}


def load_data(pairs_dir: Path, split: str):
    pairs = [read_pair(f, LANDCOVERAI_VALUES, LANDCOVERAI_CLASSES) for f in list_pairs(pairs_dir, split)]
    images = np.stack([p.image for p in pairs])
    labels = np.stack([p.labels for p in pairs])
    return images, labels


def sample_weights(labels: np.ndarray) -> np.ndarray:
    """Tiles that are mostly water are sampled less (half the set is > 90 % water)."""
    water = (labels == LANDCOVERAI_CLASSES.index("water")).mean((1, 2))
    w = 1.0 - 0.85 * water
    return w / w.sum()


def batch_from(images, labels, idx, rng):
    img, lab = images[idx], labels[idx]
    if rng.random() < 0.5:
        img, lab = img[:, :, ::-1], lab[:, :, ::-1]
    k = int(rng.integers(0, 4))
    img, lab = np.rot90(img, k, axes=(1, 2)).copy(), np.rot90(lab, k, axes=(1, 2)).copy()
    return one_hot(lab, 5), to_tensor_image(img)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--hours", type=float, default=2.0, help="stop after this much wall time (this invocation)")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--checkpoint-every", type=int, default=250)
    ap.add_argument("--l1", type=float, default=30.0)
    ap.add_argument("--fm", type=float, default=10.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.safetensors"

    torch.manual_seed(args.seed)
    G = build_generator("unet", G_PARAMS)
    D = build_discriminator("multiscale", D_PARAMS)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gan = GANLoss("hinge")
    step, seconds = 0, 0.0
    rng = np.random.default_rng(args.seed)
    if args.resume and state_path.exists():
        tensors, meta = load_training_state(state_path)
        G.load_state_dict(tensors["G"])
        D.load_state_dict(tensors["D"])
        opt_g.load_state_dict(tensors["opt_g"])
        opt_d.load_state_dict(tensors["opt_d"])
        step, seconds = int(meta["step"]), float(meta["seconds"])
        torch.set_rng_state(tensors["torch_rng"])
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["numpy_rng"]
        print(f"resumed at step {step} ({seconds / 3600:.2f} h trained)", flush=True)

    images, labels = load_data(args.pairs, "train")
    val_images, val_labels = load_data(args.pairs, "val")
    weights = sample_weights(labels)
    log = open(args.run / "log.jsonl", "a")

    def checkpoint() -> None:
        save_training_state(state_path, {
            "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "torch_rng": torch.get_rng_state()}, {"step": step, "seconds": seconds, "numpy_rng": rng.bit_generator.state,
                                                 "g_params": G_PARAMS, "d_params": D_PARAMS, "args": vars(args) | {
                                                     "pairs": str(args.pairs), "run": str(args.run)}})
        val = validate()
        card = {
            "name": "default", "arch": "unet", "arch_params": G_PARAMS, "classes": LANDCOVERAI_CLASSES,
            "schema_to_model": SCHEMA_TO_MODEL, "outputs": ["rgb"], "gsd_m": 0.5,
            "description": "Compact pix2pix-style U-Net (ngf 16, 7 levels) with noise injection, trained with a "
                           "2-scale PatchGAN discriminator (hinge), feature matching and L1.",
            "training": {"data": "LandCover.ai (256x256 pairs, Poland, 25-50 cm/px), pairs numbered < 896",
                         "steps": step, "batch": args.batch, "cpu_hours": seconds / 3600,
                         "command": "python scripts/train_default.py --pairs <landcoverai-pairs> --run <dir> --resume",
                         "losses": {"gan": "hinge, 2-scale PatchGAN", "feature_matching": args.fm, "l1": args.l1}},
            "license": "CC BY-NC-SA 4.0 (weights trained on LandCover.ai, Boguszewski et al.; non-commercial, "
                       "share-alike, attribution)",
            "metrics": {"val_l1": val, "val_pairs": int(len(val_images))},
            "benchmarks": {"throughput_mp_s_cpu": 4.0},
        }
        (args.run / "export").mkdir(exist_ok=True)
        save_generator(G, card, args.run / "export" / "default", fp16=True)
        G.train()
        print(f"checkpoint step {step} val_l1 {val:.4f}", flush=True)

    def validate() -> float:
        G.eval()
        gen = torch.Generator().manual_seed(123)
        errs = []
        with torch.inference_mode():
            for i in range(0, len(val_images), 16):
                x = one_hot(val_labels[i:i + 16], 5)
                z = torch.randn(x.shape[0], 1, 256, 256, generator=gen)
                fake = G(x, noise=z)
                errs.append((fake - to_tensor_image(val_images[i:i + 16])).abs().mean().item() / 2)
        return float(np.mean(errs))

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *a: stop.update(now=True))
    t_start = time.perf_counter()
    last = time.perf_counter()
    G.train()
    D.train()
    try:
        while step < args.max_steps and not stop["now"]:
            if time.perf_counter() - t_start > args.hours * 3600:
                break
            idx = rng.choice(len(images), args.batch, p=weights)
            x, real = batch_from(images, labels, idx, rng)
            fake = G(x)
            # discriminator
            d_fake = D(x, fake.detach())
            d_real = D(x, real)
            loss_d = gan(d_fake, False) + gan(d_real, True)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # generator
            d_fake = D(x, fake)
            loss_adv = gan(d_fake, True, for_discriminator=False)
            loss_fm = feature_matching_loss([[f.detach() for f in s] for s in d_real], d_fake)
            loss_l1 = (fake - real).abs().mean()
            loss_g = loss_adv + args.fm * loss_fm + args.l1 * loss_l1
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            now = time.perf_counter()
            seconds += now - last
            last = now
            if step % 25 == 0:
                rec = {"step": step, "seconds": round(seconds, 1), "loss_d": loss_d.item(), "loss_adv": loss_adv.item(),
                       "loss_fm": loss_fm.item(), "loss_l1": loss_l1.item()}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(rec, flush=True)
            if step % args.checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        pass
    checkpoint()


if __name__ == "__main__":
    main()
