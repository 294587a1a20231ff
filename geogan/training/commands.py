"""`geogan train` (and `geogan chips`): thin CLI over the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    register_train(app)
    register_chips(app)


def register_train(app: typer.Typer) -> None:
    @app.command()
    def train(
        arch: str = typer.Option("unet", help="pix2pix (the paper's network), unet (compact) or spade."),
        pairs: Optional[Path] = typer.Option(None, help="Folder of side-by-side pairs (left aerial, right labels)."),
        chips: Optional[Path] = typer.Option(None, help="Folder written by 'geogan chips' (instead of --pairs)."),
        label_map: str = typer.Option("landcoverai", help="Label map config: a built-in name or a TOML path."),
        out: Path = typer.Option(..., help="Run directory (checkpoints, samples, log, export/NAME model)."),
        name: str = typer.Option("model", help="Name of the exported model."),
        steps: int = typer.Option(1000, help="Train until this many steps in total."),
        batch: Optional[int] = typer.Option(None, help="Batch size (default: the recipe's)."),
        ngf: Optional[int] = typer.Option(None, help="Generator width (default: the recipe's)."),
        ratio: str = typer.Option("dynamic", help="D:G ratio: 'dynamic', 'dynamic:LOW:HIGH' or fixed 'D:G'."),
        gan_mode: Optional[str] = typer.Option(None, help="hinge, vanilla or lsgan (default: the recipe's)."),
        vgg_weights: Optional[Path] = typer.Option(None, help="Local VGG19 weights for a perceptual loss."),
        shadow: bool = typer.Option(False, help="Texture+height generator with a shadow generator (needs heights)."),
        resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
        checkpoint_every: int = typer.Option(500, help="Checkpoint (and export) every N steps."),
        sample_every: int = typer.Option(500, help="Save a sample grid every N steps."),
        hours: Optional[float] = typer.Option(None, help="Stop after this much wall time."),
        seed: int = typer.Option(0, help="Random seed."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        compile: bool = typer.Option(False, help="torch.compile the generator."),
        tensorboard: bool = typer.Option(False, help="Also write TensorBoard logs to OUT/tb."),
    ) -> None:
        """Train a generator (pix2pix / compact U-Net / SPADE) on paired data; resumable."""
        from ..cli import run_guarded
        from ..errors import InputError
        from ..infer import resolve_device
        from .pairs import PairSet, load_label_map
        from .ratio import parse_ratio
        from .trainer import Trainer, recipe_for

        def go():
            if (pairs is None) == (chips is None):
                raise InputError("give exactly one of --pairs DIR or --chips DIR")
            if chips is not None:
                from .chips import ChipSet
                train_set, val_set = ChipSet.load(chips, "train"), ChipSet.load(chips, "val")
                lm = train_set.label_map
            else:
                lm = load_label_map(label_map)
                train_set, val_set = PairSet.load(pairs, lm, "train"), PairSet.load(pairs, lm, "val")
            overrides = {"shadow": shadow}
            if batch:
                overrides["batch"] = batch
            if gan_mode:
                overrides["gan_mode"] = gan_mode
            if vgg_weights:
                overrides["vgg_weights"] = str(vgg_weights)
            if ngf:
                overrides["g_params"] = {"ngf": ngf}
            recipe = recipe_for(arch, len(lm.classes), **overrides)
            dev = resolve_device(device)
            trainer = Trainer(recipe, train_set, out, val_set=val_set, ratio=parse_ratio(ratio), seed=seed,
                              device=str(dev), amp=dev.type == "cuda", channels_last=dev.type == "cuda",
                              compile=compile, name=name, gsd_m=lm.gsd_m, tensorboard=tensorboard)
            if resume:
                trainer.resume()
            elif trainer.state_path.exists():
                raise InputError(f"'{out}' already holds a run; pass --resume to continue it or choose another --out")
            log = trainer.train(steps, checkpoint_every=checkpoint_every, sample_every=sample_every,
                                max_seconds=hours * 3600 if hours else None, progress=True)
            return log, trainer

        log, trainer = run_guarded(go)
        rate = log.step / log.seconds if log.seconds else 0.0
        typer.echo(f"trained to step {log.step} ({log.seconds / 3600:.2f} h, {rate:.2f} steps/s); "
                   f"model: {out / 'export' / name}.json")


def register_chips(app: typer.Typer) -> None:
    @app.command()
    def chips(
        ortho: Path = typer.Option(..., help="Orthophoto GeoTIFF (any CRS)."),
        out: Path = typer.Option(..., help="Output folder for the chips."),
        vector: Optional[list[Path]] = typer.Option(None, help="Vector class source(s) (OSM tags or --class-field)."),
        class_raster: Optional[Path] = typer.Option(None, help="Class GeoTIFF (schema ids) instead of vectors."),
        class_field: Optional[str] = typer.Option(None, help="Attribute with a class name/id in the vectors."),
        dem: Optional[Path] = typer.Option(None, help="DEM GeoTIFF for height chips."),
        gsd: float = typer.Option(0.5, help="Chip pixel size in ground metres."),
        chip_size: int = typer.Option(256, help="Chip size in pixels."),
        crs: Optional[str] = typer.Option(None, help="Chip CRS (default: the orthophoto's)."),
    ) -> None:
        """Cut aligned training chips (image | classes [| heights]) from an orthophoto and a class source."""
        from ..cli import run_guarded
        from .chips import make_chips

        index = run_guarded(lambda: make_chips(ortho, out, vectors=vector or (), class_raster=class_raster,
                                               class_field=class_field, gsd_m=gsd, chip_px=chip_size, crs=crs,
                                               dem=dem))
        typer.echo(f"wrote {len(index['chips'])} chips to {out} (validation from chip {index['val_from']})")
