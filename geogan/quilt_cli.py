"""The ``geogan build-bank`` command: a texture-bank model (real photo patches, quilted) from aerial/label pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def build_bank(pairs: Path, out: Path, *, label_map: str = "landcoverai", val_from: int | None = None,
               looks: int = 8, max_water_photos: int = 80, quality: int = 92) -> dict:
    """Write ``out`` (a card, .json) and its bank (.npz beside it) from the training pairs (numbered below the
    validation split); returns the card."""
    from .errors import InputError
    from .evaluate import split_number
    from .quilt import QuiltSettings, TextureBank, save_bank, select_photos
    from .quilt_looks import look_clusters
    from .training.pairs import PairSet, load_label_map

    if out.suffix != ".json":
        raise InputError(f"--out {out}: give the model card's path, ending in .json (the bank is written beside it)")
    lm = load_label_map(label_map)
    val_from = split_number(pairs, val_from=val_from)
    data = PairSet.load(pairs, lm, "train", val_from)
    water = lm.classes.index("water") if "water" in lm.classes else None
    keep = select_photos(data.labels, water, max_water_photos)
    images, labels = data.images[keep], data.labels[keep]
    settings = QuiltSettings()
    shared = [lm.classes.index(c) for c in settings.uniform_classes if c in lm.classes]
    bank = TextureBank(images, labels, look_clusters(images, labels, looks, shared=shared), tuple(lm.classes), settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bank(out.with_suffix(".npz"), bank, quality)
    card = {"name": out.stem, "arch": "quilt", "bank": out.with_suffix(".npz").name, "classes": list(lm.classes),
            "schema_to_model": dict(lm.schema_to_model), "gsd_m": lm.gsd_m, "outputs": ["rgb"], "train_tile_px": 512,
            "rotate_tiles": False,
            "training": {"data": lm.data or str(pairs), "pairs_dir": str(pairs), "label_map": lm.name, "photos": int(len(keep)),
                         "pairs_below": val_from, "data_description": lm.data, "data_license": lm.license, "looks": looks, "looks_made": bank.n_looks,
                         "shared_photos": int((bank.looks < 0).sum()), "max_water_photos": max_water_photos,
                         "jpeg_quality": quality,
                         "command": f"geogan build-bank --pairs {pairs} --label-map {lm.name} --out {out} "
                                    f"--looks {looks} --max-water-photos {max_water_photos}"}}
    out.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def register(app: typer.Typer) -> None:
    """Add the ``build-bank`` command to ``app``."""
    app.command("build-bank")(build_bank_command)


def build_bank_command(
    pairs: Path = typer.Option(..., "--pairs", help="Folder of aerial/label pair PNGs (aerial left, labels right)."),
    out: Path = typer.Option(..., "--out", help="Model card to write (.json); the bank (.npz) is written beside it."),
    label_map: str = typer.Option("landcoverai", "--label-map", help="Label map of the pairs (name or TOML)."),
    val_from: int = typer.Option(None, "--val-from", help="First held-out pair number (default: the top 12.5 %)."),
    looks: int = typer.Option(8, "--looks", help="Colour clusters of the photos; a render uses one (by --seed)."),
    max_water_photos: int = typer.Option(80, "--max-water-photos", help="Keep at most this many >90 % water photos."),
) -> None:
    """Build a texture-bank model: renders quilt real photo patches whose classes match the class map."""
    from .cli import run_guarded

    card = run_guarded(lambda: build_bank(pairs, out, label_map=label_map, val_from=val_from, looks=looks,
                                          max_water_photos=max_water_photos))
    typer.echo(f"wrote {out} and {out.with_suffix('.npz')} ({card['training']['photos']} photos, "
                f"{card['training']['looks_made']} looks)")
