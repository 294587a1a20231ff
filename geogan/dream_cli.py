"""``geogan dream`` (dream a fake town on a real grid and render it) and ``geogan dream-train`` (builds a
:class:`~geogan.dream.DreamTrainSettings` from its options and runs :func:`~geogan.dream.train_dream_with`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``dream`` and ``dream-train`` commands to ``app``."""
    app.command("dream")(dream)
    app.command("dream-train")(dream_train)


def dream(
    bbox: str = typer.Option(..., help="Area as xmin,ymin,xmax,ymax in --bbox-crs (only its grid is used)."),
    bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
    crs: str = typer.Option("EPSG:3857", help="Output CRS."),
    gsd: Optional[float] = typer.Option(None, help="Output pixel size in ground metres "
                                                    "(default: the render model's)."),
    out: Path = typer.Option(Path("out"), help="Output directory (dream_classes.tif, dream_town.gpkg, aerial.tif, "
                                               "height.tif, classes.tif)."),
    model: str = typer.Option("streets", help="'streets': a procedural town (a street network, then separate "
                                              "buildings per block), also written as dream_town.gpkg; or a DCGAN "
                                              "dream model: 'dream' (shipped), a .json path from 'geogan "
                                              "dream-train' or a name in the model directories."),
    style: str = typer.Option("town", help="Look of a procedural town (--model streets): town (a small town of houses) or city (perimeter blocks)."),
    seed: int = typer.Option(0, help="Random seed; the same seed dreams the same town."),
    render_model: str = typer.Option("default", help="Conditional model that renders the dream "
                                                     "('none': write the class map only)."),
    min_speck: int = typer.Option(4, help="DCGAN only: merge patches smaller than this many dream pixels into a "
                                          "neighbour."),
    join_gap: int = typer.Option(8, help="DCGAN only: join road and path pieces along their direction across gaps "
                                         "up to this many dream pixels (0: leave them as dreamed)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    tile_size: Optional[int] = typer.Option(None, help="Render tile size in output pixels (default: 256 model "
                                                       "pixels at the output GSD)."),
    overlap: Optional[int] = typer.Option(None, help="Render tile overlap in output pixels (default: a quarter "
                                                     "of the tile)."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
    force: bool = typer.Option(False, help="Render even if the estimate is over a day."),
) -> None:
    """Dream a fake town (streets, blocks, separate buildings) and render it to aerial imagery and heights."""
    from .cli import needs_torch, parse_bbox, run_guarded

    needs_torch("dream")
    from .dream import dream as run_dream

    rm = None if render_model.lower() == "none" else render_model
    res = run_guarded(lambda: run_dream(parse_bbox(bbox), bbox_crs, crs, gsd, out, model, seed, rm,
                                        overwrite=overwrite, device=device, min_speck_px=min_speck, join_gap_px=join_gap,
                                        tile_px=tile_size, overlap_px=overlap, force=force, style=style))
    g = res.grid
    rendered = f", {res.town}" if res.town is not None else ""
    if res.render is not None:
        rendered += f", {res.render.aerial}, {res.render.height}, {res.render.classes}"
    typer.echo(f"wrote {res.classes}{rendered} ({g.width}x{g.height} px, {g.crs.to_string()}, "
               f"{res.seconds:.1f} s)")


def dream_train(
    osm: list[Path] = typer.Option(..., "--osm", help="OSM file(s) (.osm/.osm.pbf) to learn town layouts from; "
                                                      "repeat for several."),
    out: Path = typer.Option(..., help="Run directory (checkpoint, log, samples, exported NAME.json)."),
    bbox: Optional[str] = typer.Option(None, help="Rasterize only this lon/lat box (default: each file's "
                                                  "extent)."),
    crs: str = typer.Option("EPSG:3857", help="CRS the data is rasterized in."),
    gsd: float = typer.Option(4.0, help="Ground metres per pixel of the dream model (4-8 m)."),
    tile: int = typer.Option(64, help="Tile size in px (a power of two)."),
    stride: Optional[int] = typer.Option(None, help="Step between training tiles (default tile/8: many "
                                                    "offsets of every place)."),
    extra_gsd: Optional[list[float]] = typer.Option(None, "--extra-gsd", help="Also rasterize at this GSD "
                                                    "(scale augmentation; repeat, e.g. --extra-gsd 3.2 "
                                                    "--extra-gsd 5)."),
    min_mapped: float = typer.Option(0.2, help="Skip tiles with less than this fraction mapped (suburbs are "
                                               "mostly unmapped background between houses and roads)."),
    steps: int = typer.Option(5000, help="Train until this many steps in total."),
    batch: int = typer.Option(32, help="Batch size."),
    z_dim: int = typer.Option(64, help="Latent size."),
    ngf: int = typer.Option(32, help="Generator width."),
    ndf: int = typer.Option(32, help="Discriminator width."),
    lr: float = typer.Option(2e-4, help="Generator Adam learning rate."),
    lr_d: float = typer.Option(4e-4, help="Discriminator Adam learning rate (TTUR)."),
    gan_mode: str = typer.Option("hinge", help="GAN loss: hinge, vanilla or lsgan."),
    spectral: bool = typer.Option(True, help="Spectral normalisation in the discriminator (no batch norm)."),
    mbstd: int = typer.Option(4, help="Minibatch-stddev group size in the discriminator (0: off)."),
    r1: float = typer.Option(0.0, help="R1 gradient penalty weight on real tiles (0: off)."),
    fakes: str = typer.Option("gumbel", help="What the discriminator sees of a dreamed tile: gumbel (a one-hot "
                                             "sample of its class distribution), hard (argmax) or soft."),
    blur: bool = typer.Option(True, help="Fixed low-pass on the generator's logits (no checkerboard speckle)."),
    mode_seeking: float = typer.Option(1.0, help="Weight of the mode-seeking (latent diversity) generator loss "
                                                 "(0: off)."),
    marginal: float = typer.Option(0.0, help="Weight of the class-marginal generator loss: the dreamed "
                                             "tiles' class fractions against the real ones (0: off)."),
    calibrate: bool = typer.Option(True, help="At the end, calibrate the stitching's street gain (card "
                                              "class_gains) so stitched towns keep the tiles' streets."),
    stats_samples: int = typer.Option(256, help="Dreamed and real tiles compared at every checkpoint "
                                                "(class fractions, diversity; 0: skip)."),
    ema: float = typer.Option(0.999, help="EMA decay of the exported generator weights (0: off)."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop (checkpoint and export) after this many "
                                                           "minutes; --resume continues."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's)."),
    checkpoint_every: int = typer.Option(500, help="Checkpoint, export and measure every N steps."),
    name: str = typer.Option("dream", help="Name of the exported model (OUT/NAME.json)."),
    data_note: Optional[str] = typer.Option(None, help="Training data description for the card "
                                                       "(default: the file names)."),
    license: str = typer.Option("ODbL-1.0", help="Licence of the model (OSM-derived: ODbL-1.0)."),
    resume: bool = typer.Option(False, help="Continue the run in --out where it stopped."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train a dream model (DCGAN on class tiles rasterized from real OSM data); resumable."""
    from .cli import needs_torch, parse_bbox, run_guarded

    needs_torch("dream-train")
    from .dream import OSM_ATTRIBUTION, DreamTrainSettings, class_tiles_from_osm, train_dream_with
    from .infer import resolve_device

    def go():
        settings = DreamTrainSettings(
            gsd_m=gsd, steps=steps, batch=batch, seed=seed, license=license, name=name, z_dim=z_dim, ngf=ngf,
            ndf=ndf, lr=lr, lr_d=lr_d, gan_mode=gan_mode, spectral=spectral, mbstd=mbstd, r1_gamma=r1, ema=ema,
            fakes=fakes, mode_seeking=mode_seeking, blur=blur, marginal=marginal, calibrate=calibrate,
            stats_samples=stats_samples, checkpoint_every=checkpoint_every, device=str(resolve_device(device)),
            max_seconds=None if max_minutes is None else 60.0 * max_minutes)
        if threads:
            import torch

            torch.set_num_threads(threads)
        extra = [g for g in (extra_gsd or []) if g != gsd]
        tiles = class_tiles_from_osm(osm, parse_bbox(bbox), crs, gsd, tile, stride_px=stride or max(1, tile // 8),
                                     min_mapped=min_mapped, extra_gsd_m=extra)
        gsds = ", ".join(f"{g:g}" for g in [gsd, *extra])
        data = data_note or (", ".join(p.name for p in osm) + f" rasterized at {gsds} m; {OSM_ATTRIBUTION}")
        return tiles, train_dream_with(tiles, out, replace(settings, data=data), resume=resume)

    tiles, card = run_guarded(go)
    typer.echo(f"trained on {len(tiles)} tiles; wrote {card}")
