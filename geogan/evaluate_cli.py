"""CLI commands for evaluation: `geogan evaluate` and `geogan train-segmenter`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


SUMMARY_KEYS = ("fcn_miou_generated", "fcn_miou_real", "fcn_ratio", "l1", "psnr", "ssim", "kid", "fid",
                "fid_inception", "kid_inception", "generator_mp_s", "model_size_mb")


def _rgb(stats: dict | None) -> str:
    return "-" if stats is None else " ".join(f"{v:5.1f}" for v in stats["mean_rgb"])


def _texture(stats: dict | None) -> str:
    return "-" if stats is None or stats["texture"] is None else f"{stats['texture']:.1f}"


def format_report(res: dict) -> str:
    """The metrics as aligned text: the summary, then per-class colour and texture, generated vs real."""
    lines = [f"{res['model']} on {res['pairs']} held-out pairs ({res['split']})"]
    for key in SUMMARY_KEYS:
        if key in res:
            value = res[key]
            lines.append(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    lines.append(f"{'class':>12} {'pixels':>10} {'mean RGB generated':>20} {'mean RGB real':>18} "
                 f"{'texture gen/real':>17}")
    for cls, st in res["per_class"].items():
        gen, real = st["generated"], st["real"]
        if real is None:
            continue
        lines.append(f"{cls:>12} {real['pixels']:>10} {_rgb(gen):>20} {_rgb(real):>18} "
                     f"{_texture(gen):>8}/{_texture(real):<8}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        pairs: Path = typer.Option(..., help="Folder of side-by-side pairs (left aerial, right label map)."),
        model: str = typer.Option("default", help="Model name or path, or 'baseline:mean-colour' (each class "
                                  "painted with its mean training colour)."),
        label_map: str = typer.Option("landcoverai", help="Label map of the pairs: landcoverai, recife or a TOML."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics to this JSON file."),
        segmenter: Optional[Path] = typer.Option(None, help="FCN-score segmenter (default: the shipped one)."),
        max_pairs: Optional[int] = typer.Option(None, help="Evaluate only the first N validation pairs."),
        seed: int = typer.Option(0, help="Noise seed."),
        inception: Optional[Path] = typer.Option(None, help="Local TorchScript Inception file (e.g. "
                                                 "inception-2015-12-05.pt) for standard FID/KID too."),
        val_fraction: float = typer.Option(0.125, help="Share of the pairs (highest numbers) held out, as in "
                                           "training."),
    ) -> None:
        """Evaluate a model on held-out pairs: FCN-score, L1, PSNR, SSIM, KID/FID (segmenter features)."""
        from .cli import run_guarded
        from .evaluate import evaluate_model

        res = run_guarded(lambda: evaluate_model(pairs, model, segmenter=segmenter, max_pairs=max_pairs, seed=seed,
                                                      label_map=label_map, inception=inception,
                                                      val_fraction=val_fraction))
        text = json.dumps(res, indent=2)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = json_out.with_name(f".{json_out.name}.partial")
            tmp.write_text(text)
            tmp.replace(json_out)
        typer.echo(format_report(res))

    @app.command("train-segmenter")
    def train_segmenter_cmd(
        pairs: Path = typer.Option(..., help="Folder of side-by-side pairs; trains on the training split only."),
        out: Path = typer.Option(..., help="Output stem (writes STEM.safetensors + STEM.json)."),
        steps: int = typer.Option(2000, help="Optimiser steps."),
        batch: int = typer.Option(8, help="Batch size."),
        label_map: str = typer.Option("landcoverai", help="Label map of the pairs: landcoverai, recife or a TOML."),
        init: Optional[Path] = typer.Option(None, help="Continue from this segmenter (stem of .json + .safetensors)."),
        lr: float = typer.Option(2e-3, help="Peak learning rate of the one-cycle schedule."),
    ) -> None:
        """Train the FCN-score segmenter on the real aerial images of the training split."""
        from .cli import run_guarded
        from .evaluate import train_segmenter

        path = run_guarded(lambda: train_segmenter(pairs, out, steps=steps, batch=batch, label_map=label_map,
                                                 init=init, lr=lr))
        typer.echo(f"wrote {Path(path).with_suffix('.safetensors')}")
