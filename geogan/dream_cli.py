"""``geogan dream`` (dream a fake town on a real grid and render it) and ``geogan dream-train``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``dream`` and ``dream-train`` commands to ``app``."""

    @app.command("dream")
    def dream(
        bbox: str = typer.Option(..., help="Area as xmin,ymin,xmax,ymax in --bbox-crs (only its grid is used)."),
        bbox_crs: str = typer.Option("EPSG:4326", help="CRS of --bbox."),
        crs: str = typer.Option("EPSG:3857", help="Output CRS."),
        gsd: Optional[float] = typer.Option(None, help="Output pixel size in ground metres "
                                                        "(default: the render model's)."),
        out: Path = typer.Option(Path("out"), help="Output directory (dream_classes.tif, aerial.tif, height.tif, "
                                                   "classes.tif)."),
        model: str = typer.Option("dream", help="Dream model: a .json path from 'geogan dream-train' or a name in "
                                                "the model directories."),
        seed: int = typer.Option(0, help="Random seed; the same seed dreams the same town."),
        render_model: str = typer.Option("default", help="Conditional model that renders the dream "
                                                         "('none': write the class map only)."),
        min_speck: int = typer.Option(4, help="Merge patches smaller than this many dream pixels into a neighbour."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        tile_size: int = typer.Option(256, help="Render tile size in output pixels."),
        overlap: int = typer.Option(64, help="Render tile overlap in output pixels."),
        overwrite: bool = typer.Option(False, help="Replace existing outputs."),
        force: bool = typer.Option(False, help="Render even if the estimate is over a day."),
    ) -> None:
        """Dream a fake town's class map with a DCGAN and render it to aerial imagery and heights."""
        from .cli import parse_bbox, run_guarded
        from .dream import dream as run_dream

        rm = None if render_model.lower() == "none" else render_model
        res = run_guarded(lambda: run_dream(parse_bbox(bbox), bbox_crs, crs, gsd, out, model, seed, rm,
                                            overwrite=overwrite, device=device, min_speck_px=min_speck,
                                            tile_px=tile_size, overlap_px=overlap, force=force))
        g = res.grid
        rendered = ""
        if res.render is not None:
            rendered = f", {res.render.aerial}, {res.render.height}, {res.render.classes}"
        typer.echo(f"wrote {res.classes}{rendered} ({g.width}x{g.height} px, {g.crs.to_string()}, "
                   f"{res.seconds:.1f} s)")

    @app.command("dream-train")
    def dream_train(
        osm: list[Path] = typer.Option(..., "--osm", help="OSM file(s) (.osm/.osm.pbf) to learn town layouts from; "
                                                          "repeat for several."),
        out: Path = typer.Option(..., help="Run directory (checkpoint, log, samples, exported NAME.json)."),
        bbox: Optional[str] = typer.Option(None, help="Rasterize only this lon/lat box (default: each file's "
                                                      "extent)."),
        crs: str = typer.Option("EPSG:3857", help="CRS the data is rasterized in."),
        gsd: float = typer.Option(4.0, help="Ground metres per pixel of the dream model (4-8 m)."),
        tile: int = typer.Option(64, help="Tile size in px (a power of two)."),
        stride: Optional[int] = typer.Option(None, help="Step between training tiles (default tile/4)."),
        min_mapped: float = typer.Option(0.5, help="Skip tiles with less than this fraction mapped."),
        steps: int = typer.Option(5000, help="Train until this many steps in total."),
        batch: int = typer.Option(32, help="Batch size."),
        z_dim: int = typer.Option(64, help="Latent size."),
        ngf: int = typer.Option(32, help="Generator width."),
        ndf: int = typer.Option(32, help="Discriminator width."),
        lr: float = typer.Option(2e-4, help="Adam learning rate."),
        checkpoint_every: int = typer.Option(500, help="Checkpoint and export every N steps."),
        name: str = typer.Option("dream", help="Name of the exported model (OUT/NAME.json)."),
        data_note: Optional[str] = typer.Option(None, help="Training data description for the card "
                                                           "(default: the file names)."),
        license: str = typer.Option("ODbL-1.0", help="Licence of the model (OSM-derived: ODbL-1.0)."),
        resume: bool = typer.Option(False, help="Continue the run in --out where it stopped."),
        seed: int = typer.Option(0, help="Random seed."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
    ) -> None:
        """Train a dream model (DCGAN on class tiles rasterized from real OSM data); resumable."""
        from .cli import parse_bbox, run_guarded
        from .dream import OSM_ATTRIBUTION, class_tiles_from_osm, train_dream
        from .infer import resolve_device

        def go():
            tiles = class_tiles_from_osm(osm, parse_bbox(bbox), crs, gsd, tile, stride_px=stride or max(1, tile // 4),
                                         min_mapped=min_mapped)
            data = data_note or (", ".join(p.name for p in osm) + f" rasterized at {gsd:g} m; {OSM_ATTRIBUTION}")
            return tiles, train_dream(tiles, out, steps, batch, seed, resume, gsd_m=gsd, data=data, license=license,
                                      name=name, z_dim=z_dim, ngf=ngf, ndf=ndf, lr=lr,
                                      checkpoint_every=checkpoint_every, device=str(resolve_device(device)))

        tiles, card = run_guarded(go)
        typer.echo(f"trained on {len(tiles)} tiles; wrote {card}")
