"""The ``geogan mesh`` command: a textured 3D terrain mesh (OBJ or GLB) from a render's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .mesh import DEFAULT_MAX_TEXTURE, DEFAULT_MAX_VERTICES


def register(app: typer.Typer) -> None:
    """Add the ``mesh`` command to ``app``."""

    @app.command("mesh")
    def mesh(
        aerial: Path = typer.Option(..., "--aerial", help="RGB aerial GeoTIFF (the texture), e.g. out/aerial.tif."),
        height: Path = typer.Option(..., "--height", help="Height GeoTIFF in metres, e.g. out/height.tif."),
        out: Path = typer.Option(..., "--out", help="model.obj (+ .mtl, .png, .prj) or model.glb (+ .prj)."),
        exaggeration: float = typer.Option(1.0, "--exaggeration", help="Multiply heights by this."),
        max_vertices: Optional[int] = typer.Option(
            None, "--max-vertices", help=f"Pick the grid step so the mesh has at most this many vertices "
                                         f"(default {DEFAULT_MAX_VERTICES:_} when --step is not given)."),
        step: Optional[int] = typer.Option(None, "--step", help="Use every K-th pixel (instead of --max-vertices)."),
        max_texture: int = typer.Option(DEFAULT_MAX_TEXTURE, "--max-texture",
                                        help="Downsample the texture to at most this many pixels per side."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        """Export a textured terrain mesh (x/y ground metres from the raster's lower-left corner, z up)."""
        from .cli import run_guarded
        from .errors import InputError
        from .mesh import export_mesh

        def go() -> Path:
            if step is not None and max_vertices is not None:
                raise InputError("--step and --max-vertices are exclusive; give one of them")
            return export_mesh(aerial, height, out, exaggeration=exaggeration,
                               max_vertices=DEFAULT_MAX_VERTICES if max_vertices is None else max_vertices,
                               step=step, max_texture=max_texture, overwrite=overwrite)

        path = run_guarded(go)
        typer.echo(f"wrote {path}")
