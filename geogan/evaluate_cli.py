"""CLI commands for evaluation: `geogan evaluate` and `geogan train-segmenter`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        pairs: Path = typer.Option(..., help="Folder of side-by-side pairs (left aerial, right label map)."),
        model: str = typer.Option("default", help="Model name or path."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics to this JSON file."),
        segmenter: Optional[Path] = typer.Option(None, help="FCN-score segmenter (default: the shipped one)."),
        max_pairs: Optional[int] = typer.Option(None, help="Evaluate only the first N validation pairs."),
        seed: int = typer.Option(0, help="Noise seed."),
    ) -> None:
        """Evaluate a model on held-out pairs: FCN-score, L1, PSNR, SSIM, KID/FID (segmenter features)."""
        from .cli import run_guarded
        from .evaluate import evaluate_model

        res = run_guarded(lambda: evaluate_model(pairs, model, segmenter=segmenter, max_pairs=max_pairs, seed=seed))
        text = json.dumps(res, indent=2)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = json_out.with_name(f".{json_out.name}.partial")
            tmp.write_text(text)
            tmp.replace(json_out)
        for key in ("fcn_miou_generated", "fcn_miou_real", "fcn_ratio", "l1", "psnr", "ssim", "kid", "fid"):
            value = res.get(key)
            typer.echo(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")

    @app.command("train-segmenter")
    def train_segmenter_cmd(
        pairs: Path = typer.Option(..., help="Folder of side-by-side pairs; trains on the training split only."),
        out: Path = typer.Option(..., help="Output stem (writes STEM.safetensors + STEM.json)."),
        steps: int = typer.Option(2000, help="Optimiser steps."),
        batch: int = typer.Option(8, help="Batch size."),
    ) -> None:
        """Train the FCN-score segmenter on the real aerial images of the training split."""
        from .cli import run_guarded
        from .evaluate import train_segmenter

        path = run_guarded(lambda: train_segmenter(pairs, out, steps=steps, batch=batch))
        typer.echo(f"wrote {Path(path).with_suffix('.safetensors')}")
