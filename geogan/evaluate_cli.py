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


def format_realism(res: dict) -> str:
    """The realism metrics as text: C2ST accuracies, then the tile-locked amplitudes by period."""
    blur_keys = [k for k in res if k.startswith("c2st_accuracy_blur") and not k.endswith("_stderr")]
    lines = ["realism (C2ST accuracy ± standard error: 0.5 = indistinguishable, 1.0 = always told apart)",
             f"{'c2st_accuracy':>20}: {res['c2st_accuracy']:.4f} ± {res['c2st_accuracy_stderr']:.4f}"]
    lines += [f"{k:>20}: {res[k]:.4f} ± {res[k + '_stderr']:.4f}" for k in blur_keys]
    lines.append(f"{'period px':>10} {'real rms':>9} {'gen rms':>9} {'ratio':>7}   (tile-locked amplitude, grey "
                 "levels; target ratio <= 1.5)")
    real, gen = res["periodic_amplitude_real"], res["periodic_amplitude_generated"]
    for p, ratio in res["periodic_ratio"].items():
        ratio_text = "-" if ratio is None else f"{ratio:.2f}"
        lines.append(f"{p:>10} {real[p]['rms']:>9.3f} {gen[p]['rms']:>9.3f} {ratio_text:>7}")
    return "\n".join(lines)


def _command_line(ctx: typer.Context) -> str:
    """The running command with the options given on its command line (for a model card)."""
    parts = [ctx.command_path]
    for name, value in ctx.params.items():
        # by name: typer vendors its own click, whose ParameterSource is not click.core's
        if getattr(ctx.get_parameter_source(name), "name", None) != "COMMANDLINE":
            continue
        flag = "--" + name.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]  # a repeated option: each occurrence
        parts.extend(flag if v is True else f"--no-{flag[2:]}" if v is False else f"{flag} {v}" for v in values)
    return " ".join(parts)


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command("train-segmenter")(train_segmenter_cmd)


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
    realism: bool = typer.Option(False, "--realism", help="Also the realism metrics: the two-sample classifier "
                                 "test (c2st_accuracy, sharp and after a 4x blur) and the tile-locked periodic "
                                 "amplitudes (docs/realism.md)."),
    c2st_steps: int = typer.Option(800, help="--realism: training steps of each classifier run."),
    c2st_crop: int = typer.Option(64, help="--realism: crop size in px (a multiple of 4, at most the tile)."),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads (default: torch's)."),
) -> None:
    """Evaluate a model on held-out pairs: FCN-score, L1, PSNR, SSIM, KID/FID (segmenter features), and with
    --realism the classifier test and periodic amplitudes."""
    from .cli import needs_torch, run_guarded

    needs_torch("evaluate")
    from .evaluate import evaluate_model
    from .realism import C2stSettings, torch_threads

    def run() -> dict:
        settings = C2stSettings(crop_px=c2st_crop, steps=c2st_steps) if realism else None
        with torch_threads(threads):
            return evaluate_model(pairs, model, segmenter=segmenter, max_pairs=max_pairs, seed=seed,
                                  label_map=label_map, inception=inception, val_fraction=val_fraction,
                                  realism=settings)

    res = run_guarded(run)
    text = json.dumps(res, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_name(f".{json_out.name}.partial")
        tmp.write_text(text)
        tmp.replace(json_out)
    typer.echo(format_report(res))
    if realism:
        typer.echo(format_realism(res))


def pair_sets(pairs: list[Path], label_maps: list[str]) -> list[tuple[Path, str]]:
    """(pairs folder, label map) of each ``--pairs``: one ``--label-map`` for all, or one per ``--pairs``."""
    if len(label_maps) == 1:
        return [(p, label_maps[0]) for p in pairs]
    if len(label_maps) != len(pairs):
        from .errors import InputError

        raise InputError(f"{len(pairs)} --pairs but {len(label_maps)} --label-map; give one --label-map for all the "
                         "pairs or one per --pairs, in the same order")
    return list(zip(pairs, label_maps))


def train_segmenter_cmd(
    ctx: typer.Context,
    pairs: list[Path] = typer.Option(..., help="Folder of side-by-side pairs; trains on the training split only. "
                                     "Repeat to train on several sets together (each keeps its own split)."),
    out: Path = typer.Option(..., help="Output stem (writes STEM.safetensors + STEM.json)."),
    steps: int = typer.Option(4000, help="Optimiser steps (of this run, after --init)."),
    batch: int = typer.Option(8, help="Batch size."),
    label_map: list[str] = typer.Option(["landcoverai"], help="Label map of the pairs: landcoverai, recife or a "
                                        "TOML; one for all --pairs, or one per --pairs in the same order."),
    init: Optional[Path] = typer.Option(None, help="Continue from this segmenter (stem of .json + .safetensors)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (warm-up, then cosine decay)."),
    run_dir: Optional[Path] = typer.Option(None, help="Run folder: checkpoints, log, best.* (default: STEM_run)."),
    resume: bool = typer.Option(False, help="Continue the run in --run-dir where it stopped."),
    minutes: Optional[float] = typer.Option(None, help="Anneal and stop after this much training time."),
    crop_px: int = typer.Option(128, help="Training crop size (a multiple of 2**depth)."),
    width: int = typer.Option(16, help="Channels at the first level (new segmenters)."),
    depth: int = typer.Option(4, help="Downsamplings (new segmenters)."),
    class_probs: Optional[str] = typer.Option(None, help="Comma-separated share of crops centred on each "
                                              "class (default: equal)."),
    select_pairs: int = typer.Option(64, help="Last pairs of the training split held out to select the model."),
    select_blocks: int = typer.Option(1, help="Hold the --select-pairs out as this many blocks spread over each "
                                      "set's training range (1: its last pairs)."),
    cast_std: float = typer.Option(0.0, min=0.0, help="Colour casts: std of a per-crop offset along the two chroma axes "
                                   "(in [-1, 1] units; 0.1 is about 13 grey levels), so water and fields are told "
                                   "by texture as well as tint."),
    class_cast_std: Optional[str] = typer.Option(None, help="Comma-separated std of a further colour cast on each "
                                                 "class's pixels only (e.g. 0,0,0,0.2,0: water in every tint)."),
    scale_range: str = typer.Option("0.6,1.7", help="Scale jitter: smallest,largest crop window over --crop-px."),
    dice_weight: float = typer.Option(1.0, min=0.0, help="Weight of the soft Dice term."),
    lovasz_weight: float = typer.Option(0.5, min=0.0, help="Weight of the Lovasz-softmax (IoU surrogate) term."),
    strong_aug: bool = typer.Option(True, help="Channel gain, gamma, blur and noise on top of the colour jitter."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (1 is fastest on a busy machine)."),
) -> None:
    """Train the FCN-score segmenter on the real aerial images of the training split (resumable)."""
    from .cli import needs_torch, run_guarded

    needs_torch("train-segmenter")
    from .training.segmenter_fit import FitConfig, fit_segmenter, parse_per_class

    if threads:
        import torch
        torch.set_num_threads(threads)
    cfg = FitConfig(steps=steps, batch=batch, crop_px=crop_px, lr=lr, width=width, depth=depth,
                    class_probs=run_guarded(lambda: parse_per_class(class_probs)),
                    max_seconds=minutes * 60 if minutes else None, select_blocks=select_blocks, cast_std=cast_std,
                    class_cast_std=run_guarded(lambda: parse_per_class(class_cast_std, "--class-cast-std")),
                    scale_range=run_guarded(lambda: _scale_range(scale_range)), dice_weight=dice_weight,
                    lovasz_weight=lovasz_weight, strong_aug=strong_aug)
    command = _command_line(ctx)
    sets = run_guarded(lambda: pair_sets(pairs, label_map))
    path = run_guarded(lambda: fit_segmenter(sets[0][0], out, run_dir or Path(f"{out}_run"), cfg, resume=resume,
                                             init=init, label_map=sets[0][1], select_pairs=select_pairs,
                                             command=command, also=tuple(sets[1:])))
    typer.echo(f"wrote {Path(path).with_suffix('.safetensors')}")


def _scale_range(text: str) -> tuple[float, float]:
    from .errors import InputError

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--scale-range '{text}' is not two comma-separated numbers; e.g. 0.7,1.4") from None
    return lo, hi  # their order is checked by fit_segmenter
