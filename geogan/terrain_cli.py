"""`geogan terrain-chips`: training chips for the learned terrain model from real DEMs (see
:mod:`geogan.training.terrain_chips` for the class rules, the height normalisation and the texture target)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("terrain-chips")(terrain_chips)
    app.command("terrain-eval")(terrain_eval)


def terrain_chips(
    dem_dir: Optional[Path] = typer.Option(None, help="Folder of DEM GeoTIFFs "
                                                      "(landcover_*.tif = paired land cover)."),
    dem: Optional[list[Path]] = typer.Option(None, help="A DEM GeoTIFF (repeatable; with or instead of "
                                                   "--dem-dir)."),
    out: Path = typer.Option(..., help="Output folder for the chips."),
    gsd_m: float = typer.Option(30.0, help="Common ground spacing in metres (local UTM grid)."),
    chip_px: int = typer.Option(128, help="Chip size in pixels."),
    max_chips_per_dem: int = typer.Option(64, help="At most this many chips per DEM (evenly spread)."),
    val_dem: Optional[list[str]] = typer.Option(None, help="Name prefix of a DEM held out for validation "
                                                     "(repeatable; default: four built-in ones)."),
    height_scale_m: Optional[float] = typer.Option(None, help="Metres per unit of normalised height "
                                                        "(default: 99.9th percentile of |h - chip mean|)."),
    seed: int = typer.Option(0, help="Seed of the texture noise."),
) -> None:
    """Cut terrain chips (synthetic albedo x hillshade | derived classes | heights) from real DEMs."""
    from .cli import run_guarded
    from .errors import InputError
    from .training.terrain_chips import DEFAULT_VAL_DEMS, make_terrain_chips

    def go():
        if dem_dir is None and not dem:
            raise InputError("give --dem-dir DIR or --dem FILE")
        return make_terrain_chips(dem_dir, out, dems=dem or (), gsd_m=gsd_m, chip_px=chip_px,
                                  max_chips_per_dem=max_chips_per_dem,
                                  val_dems=val_dem if val_dem else DEFAULT_VAL_DEMS,
                                  height_scale_m=height_scale_m, seed=seed, log=typer.echo)

    index = run_guarded(go)
    n = len(index["chips"])
    typer.echo(f"wrote {n} chips to {out}: {index['val_from']} train, {n - index['val_from']} val "
               f"(held-out DEMs: {', '.join(index['val_dems']) or 'none'}); height_scale_m "
               f"{index['height_scale_m']:g}; skipped: {', '.join(s['dem'] for s in index['skipped']) or 'none'}")


def terrain_eval(
    model: str = typer.Option("terrain", help="Terrain model: a name from 'geogan models' or a card (.json)."),
    dem_dir: Optional[Path] = typer.Option(None, help="DEM folder: measure the terrain's structure on its "
                                                      "held-out DEMs (class order, flat water, creases, "
                                                      "drainage, large-scale relief, slopes)."),
    held_out: Optional[list[str]] = typer.Option(None, help="Name prefix of a held-out DEM (repeatable; "
                                                          "default: the four the model was not trained on)."),
    out: Optional[Path] = typer.Option(None, help="With --dem-dir: write the full results as JSON here."),
    window_px: int = typer.Option(768, help="With --dem-dir: window size in pixels at the model's GSD."),
    windows_per_dem: int = typer.Option(2, help="With --dem-dir: at most this many windows per DEM."),
    chips: Optional[Path] = typer.Option(None, help="Chips folder written by 'geogan terrain-chips' "
                                                    "(per-chip plausibility instead of --dem-dir)."),
    split: str = typer.Option("val", help="With --chips: val (held-out DEMs), train or all."),
    write_card: bool = typer.Option(False, help="With --chips: also write the metrics, provenance and "
                                                "licences into the card."),
    command: str = typer.Option("", help="Training command to record in the card (with --write-card)."),
) -> None:
    """Measure a terrain model on held-out real DEMs. With --dem-dir: per-class elevation order (Spearman
    rho, inversions), water flatness, creases at class edges, drainage (D8, Priority-Flood), large-scale
    relief and slopes, for the model as rendered (raw), shaped (geogan.terrain_relief) and the real DEM;
    prints a table (JSON with --out). With --chips: per-chip height, slope, relief, spectrum and texture
    statistics, generated vs real."""
    import json

    from .cli import run_guarded
    from .errors import InputError

    if dem_dir is not None:
        from .terrain_eval import EvalSettings, evaluate_terrain, format_table, write_result

        def go_dems():
            if chips is not None:
                raise InputError("give --dem-dir or --chips, not both")
            result = evaluate_terrain(model, dem_dir, held_out, EvalSettings(window_px=window_px,
                                      windows_per_dem=windows_per_dem), log=typer.echo)
            if out is not None:
                write_result(result, out)
            return result

        result = run_guarded(go_dems)
        typer.echo(f"held-out DEMs: {', '.join(result['held_out_dems'])} ({len(result['windows'])} windows)")
        typer.echo(format_table(result))
        return

    from .training.terrain_chips import evaluate_terrain_model, finalize_terrain_card
    from .zoo import resolve_model

    def go():
        if chips is None:
            raise InputError("give --dem-dir DEMS (structure on held-out DEMs) or --chips CHIPS")
        card = resolve_model(model)
        m = evaluate_terrain_model(card, chips, split)
        if write_card:
            finalize_terrain_card(card, chips, {"val": m} if split == "val" else {split: m}, command=command)
        return m

    typer.echo(json.dumps(run_guarded(go), indent=1))
