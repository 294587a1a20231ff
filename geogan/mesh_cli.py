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
        osm: Optional[list[Path]] = typer.Option(None, "--osm", help="The render's OSM/vector source: write a "
                                                 "building scene (.glb: one solid per building, terrain, ENU "
                                                 "placement) instead of a height-field sheet. Repeatable."),
        dem: Optional[Path] = typer.Option(None, "--dem", help="With --osm: the ground (DEM GeoTIFF); default: "
                                           "height.tif outside buildings and trees (by classes.tif beside it)."),
        rules: Optional[Path] = typer.Option(None, "--rules", help="With --osm: the class rules used to render."),
        ecef: bool = typer.Option(False, "--ecef", help="With --osm: put the ENU-to-ECEF transform on the root "
                                                       "node, so the scene lands on the globe (CesiumJS)."),
    ) -> None:
        """Export a textured terrain mesh, or with --osm a 3D scene of building solids on a simplified terrain."""
        from .cli import run_guarded
        from .errors import InputError
        from .mesh import export_mesh

        def go() -> Path:
            if step is not None and max_vertices is not None:
                raise InputError("--step and --max-vertices are exclusive; give one of them")
            if osm:
                return _scene(osm, aerial, height, out, dem, rules, ecef, max_texture, overwrite)
            if dem is not None or rules is not None or ecef:
                raise InputError("--dem, --rules and --ecef need --osm (a building scene)")
            return export_mesh(aerial, height, out, exaggeration=exaggeration,
                               max_vertices=DEFAULT_MAX_VERTICES if max_vertices is None else max_vertices,
                               step=step, max_texture=max_texture, overwrite=overwrite)

        path = run_guarded(go)
        typer.echo(f"wrote {path}")


def _scene(osm, aerial, height, out, dem, rules, ecef, max_texture, overwrite) -> Path:
    from .scene import SceneOptions, export_scene

    report = export_scene(osm, aerial, height, out, dem_path=dem, rules=rules, overwrite=overwrite,
                          options=SceneOptions(max_texture_px=max_texture, ecef_root=ecef))
    return report.path
