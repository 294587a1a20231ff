"""`geogan train` (and `geogan chips`): thin CLI over the trainer; `train` builds a
:class:`~geogan.training.config.TrainConfig` from its options and runs it (:func:`~geogan.training.trainer.train_with`)."""

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
        pairs: Optional[list[Path]] = typer.Option(None, help="Folder of side-by-side pairs (left aerial, right "
                                                           "labels); repeat to train on several sets together."),
        chips: Optional[Path] = typer.Option(None, help="Folder written by 'geogan chips' (instead of --pairs)."),
        label_map: list[str] = typer.Option(["landcoverai"], help="Label map for --pairs: landcoverai, recife, "
                                            "recife_landcoverai or a TOML path; one per --pairs, in order, or one "
                                            "for all."),
        out: Path = typer.Option(..., help="Run directory (checkpoints, samples, log, export/NAME model)."),
        name: str = typer.Option("model", help="Name of the exported model."),
        steps: Optional[int] = typer.Option(None, help="Train until this many steps in total (default 1000)."),
        epochs: Optional[float] = typer.Option(None, help="Train this many epochs instead of --steps."),
        batch: Optional[int] = typer.Option(None, "--batch-size", "--batch", help="Batch size (default: the recipe's)."),
        ngf: Optional[int] = typer.Option(None, help="Generator width (default: the recipe's)."),
        ndf: Optional[int] = typer.Option(None, help="Discriminator width (default: the recipe's)."),
        lr: float = typer.Option(2e-4, help="Adam learning rate (both networks)."),
        beta1: float = typer.Option(0.5, help="Adam beta1."),
        l1_weight: Optional[float] = typer.Option(None, help="L1 weight (default: the recipe's; pix2pix 100)."),
        fm_weight: Optional[float] = typer.Option(None, help="Feature-matching weight (default: the recipe's)."),
        lattice_weight: Optional[float] = typer.Option(None, help="Weight of the lattice-spectrum loss against the "
                                                                "transposed convolutions' periodic dot pattern "
                                                                "(default 0: off; can be added when resuming)."),
        equivariance_weight: Optional[float] = typer.Option(None, help="Weight of the shift-equivariance loss "
                                                                     "(G of a rolled input vs the rolled output): "
                                                                     "against pictures tied to the tile position "
                                                                     "(default 0: off; can be added when resuming)."),
        diversity_weight: Optional[float] = typer.Option(None, help="Weight of the diversity-sensitive loss (two "
                                                                  "noise maps should give two pictures, up to a "
                                                                  "mean L1 of 0.05 over 8 px cells): against "
                                                                  "features the "
                                                                  "generator puts at the same place in every tile "
                                                                  "(default 0: off; can be added when resuming)."),
        fixed_pattern_weight: Optional[float] = typer.Option(None, help="Weight of the fixed-pattern loss: for one "
                                                                      "class everywhere, the outputs under several "
                                                                      "noise maps should share no picture tied to "
                                                                      "the tile position (default 0: off; can be "
                                                                      "added when resuming)."),
        ratio: str = typer.Option("dynamic", help="D:G ratio: 'dynamic', 'dynamic:LOW:HIGH' or fixed 'D:G'."),
        gan_mode: Optional[str] = typer.Option(None, help="hinge, vanilla or lsgan (default: the recipe's)."),
        vgg_weights: Optional[Path] = typer.Option(None, help="Local VGG19 weights for a perceptual loss."),
        balance: Optional[bool] = typer.Option(None, "--balance/--no-balance",
                                               help="Class-balanced tile sampling (default: the recipe's)."),
        val_fraction: Optional[float] = typer.Option(None, help="Share of the pairs (highest numbers) held out "
                                                             "for validation (default 0.125)."),
        shadow: bool = typer.Option(False, help="Texture+height generator with a shadow generator (needs heights)."),
        style_encoder: bool = typer.Option(False, help="SPADE or U-Net: also train a style encoder (VAE, GauGAN) "
                                                       "so 'render --style-ref photo.tif' can set the look (the U-Net "
                                                       "takes the style through FiLM on its decoder)."),
        z_dim: int = typer.Option(64, help="Style latent size with --style-encoder."),
        kld_weight: Optional[float] = typer.Option(None, help="KL weight of the style encoder (default GauGAN's "
                                                             "0.05; lower it when the encoder collapses onto the "
                                                             "prior and the style stops mattering; 0: no KL and "
                                                             "no sampling, a deterministic style code)."),
        hidden_nc: Optional[int] = typer.Option(None, help="SPADE only: width of the SPADE modulation convolutions "
                                                           "(default 128; 32 trains about 3x faster)."),
        resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
        init_from: Optional[Path] = typer.Option(None, help="Start a new run from another run's networks (its "
                                                            "folder) or an exported model (.json); layers it "
                                                            "lacks keep their initialisation."),
        style_film: bool = typer.Option(False, help="SPADE with --style-encoder: also feed the style latent to "
                                                    "every SPADE layer (FiLM), so the look cannot be ignored."),
        checkpoint_every: int = typer.Option(500, help="Checkpoint (and export) every N steps."),
        sample_every: int = typer.Option(500, help="Save a sample grid every N steps."),
        hours: Optional[float] = typer.Option(None, help="Stop after this much wall time (checkpoint + export)."),
        seed: int = typer.Option(0, help="Random seed."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        threads: Optional[int] = typer.Option(None, help="CPU threads for torch (1 is fastest on a busy machine)."),
        compile: bool = typer.Option(False, help="torch.compile the generator."),
        tensorboard: bool = typer.Option(False, help="Also write TensorBoard logs to OUT/tb."),
        no_position_cue: bool = typer.Option(False, "--no-position-cue",
                                             help="U-Net only: reflect padding and resize-convolutions in the 4 "
                                                  "innermost decoder steps (the default model's architecture "
                                                  "since session 7): a uniform input gives a uniform output, so "
                                                  "nothing is painted at the same spot of every tile."),
    ) -> None:
        """Train a generator (pix2pix / compact U-Net / SPADE) on paired data; resumable, Ctrl-C safe."""
        from ..cli import needs_torch, run_guarded

        needs_torch("train")
        from .config import ArchConfig, LossConfig, OptimConfig, RuntimeConfig, ScheduleConfig, TrainConfig
        from .trainer import train_with

        def go():
            data = _data_config(pairs, chips, label_map, val_fraction, balance)
            config = TrainConfig(
                data=data, name=name,
                schedule=ScheduleConfig(steps=steps if steps is not None or epochs is not None else 1000,
                                        epochs=epochs, max_seconds=hours * 3600 if hours else None,
                                        checkpoint_every=checkpoint_every, sample_every=sample_every),
                arch=ArchConfig(arch, ngf=ngf, ndf=ndf, shadow=shadow, no_position_cue=no_position_cue,
                                style_encoder=style_encoder, z_dim=z_dim, style_film=style_film, hidden_nc=hidden_nc),
                loss=LossConfig(gan_mode=gan_mode, l1_weight=l1_weight, fm_weight=fm_weight, kld_weight=kld_weight,
                                lattice_weight=lattice_weight, equivariance_weight=equivariance_weight,
                                diversity_weight=diversity_weight, fixed_pattern_weight=fixed_pattern_weight,
                                vgg_weights=vgg_weights),
                optim=OptimConfig(lr=lr, beta1=beta1, batch=batch, ratio=ratio),
                runtime=RuntimeConfig(device=device, threads=threads, compile=compile, seed=seed,
                                      tensorboard=tensorboard))
            return train_with(config, out, resume=resume, init_from=init_from, progress=True)

        log, card_path = run_guarded(go)
        rate = log.step / log.seconds if log.seconds else 0.0
        typer.echo(f"trained to step {log.step} ({log.seconds / 3600:.2f} h, {rate:.2f} steps/s); "
                   f"model: {card_path}")


def _data_config(pairs: list[Path] | None, chips: Path | None, label_map: list[str], val_fraction: float | None,
                 balance: bool | None):
    """The :class:`~geogan.training.config.DataConfig` of ``--pairs`` (repeatable) or ``--chips``."""
    from ..errors import InputError
    from .config import DataConfig
    if (not pairs) == (chips is None):
        raise InputError("give exactly one of --pairs DIR (repeatable) or --chips DIR")
    if chips is not None and not (chips / "index.json").is_file():
        raise InputError(f"'{chips}' holds no chips (index.json); make them with 'geogan chips'")
    for folder in pairs or ():
        if (folder / "index.json").is_file():
            raise InputError(f"'{folder}' holds chips; pass it as --chips")
    data = chips if chips is not None else (pairs[0] if len(pairs) == 1 else list(pairs))
    return DataConfig(data, label_map=label_map[0] if len(label_map) == 1 else list(label_map),
                      val_fraction=val_fraction, balance=balance)


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
        rules: Optional[Path] = typer.Option(None, help="Class rules TOML for OSM-tagged vectors (default: built-in)."),
    ) -> None:
        """Cut aligned training chips (image | classes [| heights]) from an orthophoto and a class source."""
        from ..cli import needs_torch, run_guarded

        needs_torch("chips")
        from .chips import make_chips

        index = run_guarded(lambda: make_chips(ortho, out, vectors=vector or (), class_raster=class_raster,
                                               class_field=class_field, gsd_m=gsd, chip_px=chip_size, crs=crs,
                                               dem=dem, rules=rules))
        typer.echo(f"wrote {len(index['chips'])} chips to {out} (validation from chip {index['val_from']})")
