"""Picture for the README: an oblique, textured 3D view of a ``geogan mesh`` export of the sample town.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/render_mesh_view.py [--out docs/mesh_view.jpg] [--flat]

Steps: (1) write a small synthetic DEM (a smooth hill on a gentle slope) over the sample town;
(2) ``geogan.render(out_dir=tmp, seed=0, dem=...)`` renders the bundled sample town on it (``--flat``:
no DEM, buildings on flat ground); (3) cut a window out of aerial.tif + height.tif and export it with
:func:`geogan.mesh.export_mesh` to a decimated GLB (``--max-vertices``, default 20,000: ~40,000
triangles); (4) load that GLB back with trimesh and draw it offscreen with matplotlib (Agg): one polygon
per triangle, coloured by the aerial texture under it, lightly shaded by its normal, on a dark base.
Needs the dev extras (trimesh, matplotlib). 1.5 minutes on one busy CPU thread (the render is most of it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from PIL import Image  # noqa: E402
from rasterio.transform import from_bounds  # noqa: E402
from rasterio.windows import Window  # noqa: E402

import geogan  # noqa: E402
from geogan.mesh import export_mesh  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
# places in the town as fractions of its raster: x from the west edge, y from the north edge
CROP_FRACTIONS = (0.42, 0.10, 0.94, 0.56)  # (left, top, right, bottom): the centre blocks and the east wood
HILL_CENTRE_FRACTIONS = (0.62, 0.16)
HILL_SIGMA_FRACTION = 0.15
HILL_M = 40.0
LIGHT_FROM = np.array([-0.45, 0.55, 0.70])  # unit-ish vector towards the sun: north-west, 45 degrees up
BASE_DEPTH_M = 8.0  # how far the dark base reaches below the lowest ground point
BASE_RGB = (0.30, 0.26, 0.22)


# --------------------------------------------------------------------------- inputs


def town_bounds(tmp: Path) -> tuple[str, tuple[float, float, float, float]]:
    """CRS and bounds of the default sample render (a coarse rasterize: same extent, no model)."""
    path = geogan.rasterize(out=tmp / "extent.tif", gsd_m=20.0)
    with rasterio.open(path) as ds:
        return ds.crs.to_string(), tuple(ds.bounds)


def write_hill_dem(path: Path, crs: str, bounds: tuple[float, float, float, float], *, base_m: float = 40.0,
                   hill_m: float = HILL_M, slope_m: float = 15.0, size_px: int = 256) -> Path:
    """A smooth synthetic DEM GeoTIFF in ``crs`` over ``bounds`` (+10 % margin), heights in metres: a round
    hill at ``HILL_CENTRE_FRACTIONS`` on ground that rises ``slope_m`` from the town's south to its north edge."""
    left, bottom, right, top = bounds
    margin_x, margin_y = 0.1 * (right - left), 0.1 * (top - bottom)
    # pixel centres as fractions of the town's width (from the west) and height (from the north)
    fx = (np.arange(size_px) + 0.5) / size_px * 1.2 - 0.1
    fy = (np.arange(size_px) + 0.5) / size_px * 1.2 - 0.1
    fx, fy = np.meshgrid(fx, fy)
    cx, cy = HILL_CENTRE_FRACTIONS
    hill = np.exp(-0.5 * (((fx - cx) / HILL_SIGMA_FRACTION) ** 2 + ((fy - cy) / HILL_SIGMA_FRACTION) ** 2))
    height_m = (base_m + hill_m * hill + slope_m * (1.0 - fy)).astype(np.float32)
    transform = from_bounds(left - margin_x, bottom - margin_y, right + margin_x, top + margin_y,
                                               size_px, size_px)
    with rasterio.open(path, "w", driver="GTiff", width=size_px, height=size_px, count=1, dtype="float32",
                       crs=crs, transform=transform) as ds:
        ds.write(height_m, 1)
    return path


def crop_raster(src_path: Path, dst_path: Path, fractions: tuple[float, float, float, float]) -> Path:
    """Copy a window of ``src_path`` (``fractions`` of its width/height) to a GeoTIFF with the same CRS."""
    with rasterio.open(src_path) as src:
        c0, r0 = int(fractions[0] * src.width), int(fractions[1] * src.height)
        c1, r1 = int(fractions[2] * src.width), int(fractions[3] * src.height)
        window = Window(c0, r0, c1 - c0, r1 - r0)
        profile = src.profile | {"driver": "GTiff", "width": c1 - c0, "height": r1 - r0,
                                 "transform": src.window_transform(window)}
        for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave"):
            profile.pop(key, None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


# --------------------------------------------------------------------------- mesh -> polygons


def load_mesh_z_up(glb_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, Image.Image]:
    """Vertices (x east, y north, z up, metres), faces, UVs (bottom-left origin) and the texture of a GLB."""
    mesh = trimesh.load(glb_path, force="mesh")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    vertices_m = np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])  # glTF y-up (east, up, -north) -> z-up
    return vertices_m, np.asarray(mesh.faces), np.asarray(mesh.visual.uv), mesh.visual.material.baseColorTexture


def face_colours(faces: np.ndarray, uvs: np.ndarray, texture: Image.Image, cells_wh: tuple[int, int]) -> np.ndarray:
    """RGB (0-1) of each face: the texture, box-filtered to about one pixel per grid cell, at the face centre."""
    small = np.asarray(texture.convert("RGB").resize(cells_wh, Image.BOX), dtype=np.float64) / 255.0
    centre_uv = uvs[faces].mean(axis=1)
    col = np.clip((centre_uv[:, 0] * cells_wh[0]).astype(int), 0, cells_wh[0] - 1)
    row = np.clip(((1.0 - centre_uv[:, 1]) * cells_wh[1]).astype(int), 0, cells_wh[1] - 1)
    return small[row, col]


def lambert_shade(triangles_m: np.ndarray) -> np.ndarray:
    """A brightness factor per triangle: 1.0 for flat ground, darker for faces turned away from the light."""
    normals = np.cross(triangles_m[:, 1] - triangles_m[:, 0], triangles_m[:, 2] - triangles_m[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = LIGHT_FROM / np.linalg.norm(LIGHT_FROM)
    lit = np.clip(normals @ light, 0.0, 1.0)
    return (0.45 + 0.55 * lit) / (0.45 + 0.55 * light[2])


def base_walls(vertices_m: np.ndarray, faces: np.ndarray, floor_z_m: float) -> np.ndarray:
    """Quads (K, 4, 3) hanging from every boundary edge of the mesh down to ``floor_z_m``: a solid-looking block."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    boundary = edges[trimesh.grouping.group_rows(edges, require_count=1)]
    top_a, top_b = vertices_m[boundary[:, 0]], vertices_m[boundary[:, 1]]
    low_a, low_b = top_a.copy(), top_b.copy()
    low_a[:, 2] = low_b[:, 2] = floor_z_m
    return np.stack([top_a, top_b, low_b, low_a], axis=1)


# --------------------------------------------------------------------------- drawing


def draw_view(vertices_m: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: Image.Image,
              cells_wh: tuple[int, int], *, elev_deg: float = 26.0, azim_deg: float = -60.0,
              width_px: int = 1800, height_px: int = 1200) -> np.ndarray:
    """The textured mesh seen obliquely (no axes) on a dark base, as an RGB array cropped to the drawing."""
    triangles_m = vertices_m[faces]
    rgb = np.clip(face_colours(faces, uvs, texture, cells_wh) * lambert_shade(triangles_m)[:, None], 0.0, 1.0)
    floor_z_m = vertices_m[:, 2].min() - BASE_DEPTH_M
    walls = base_walls(vertices_m, faces, floor_z_m)
    wall_rgb = np.tile(BASE_RGB, (len(walls), 1))

    dpi = 100
    fig = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    try:
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), projection="3d", facecolor="white")
        # one collection, so matplotlib depth-sorts walls and terrain together; edges painted in the face
        # colour close the hairline seams between neighbouring triangles
        polygons = list(walls) + list(triangles_m)
        colours = np.concatenate([wall_rgb, rgb])
        ax.add_collection3d(Poly3DCollection(polygons, facecolors=colours, edgecolors=colours, linewidths=0.3),
                           autolim=False)
        lo, hi = vertices_m.min(axis=0), vertices_m.max(axis=0)
        lo[2] = floor_z_m
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), zlim=(lo[2], hi[2]))
        ax.set_box_aspect(tuple(hi - lo), zoom=1.4)  # the same scale along x, y and z (z already exaggerated)
        ax.view_init(elev=elev_deg, azim=azim_deg)
        ax.set_proj_type("persp", focal_length=0.6)
        ax.set_axis_off()
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)
    return crop_to_content(image)


def crop_to_content(image: np.ndarray, margin_px: int = 12) -> np.ndarray:
    """``image`` without its white border (keeping ``margin_px`` of it)."""
    drawn = np.argwhere((image < 250).any(axis=2))
    if not len(drawn):
        return image
    (r0, c0), (r1, c1) = drawn.min(axis=0), drawn.max(axis=0)
    return image[max(0, r0 - margin_px):r1 + 1 + margin_px, max(0, c0 - margin_px):c1 + 1 + margin_px]


def save_jpeg_atomically(image: np.ndarray, out_path: Path, width_px: int = 1400, quality: int = 85) -> Path:
    """Write ``image`` resized to ``width_px`` as a JPEG: a hidden temporary file, then renamed into place."""
    picture = Image.fromarray(image)
    picture = picture.resize((width_px, round(picture.height * width_px / picture.width)), Image.LANCZOS)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    try:
        picture.save(tmp, format="JPEG", quality=quality, optimize=True)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS / "mesh_view.jpg")
    parser.add_argument("--flat", action="store_true", help="no DEM: buildings on flat ground")
    parser.add_argument("--exaggeration", type=float, default=1.5, help="vertical exaggeration of the mesh")
    parser.add_argument("--max-vertices", type=int, default=20_000, help="mesh size (about 2x as many triangles)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        dem = None
        if not args.flat:
            crs, bounds = town_bounds(tmp)
            dem = write_hill_dem(tmp / "hill_dem.tif", crs, bounds)
        res = geogan.render(out_dir=tmp / "town", seed=0, dem=dem)
        t_render = time.perf_counter()
        aerial = crop_raster(res.aerial, tmp / "aerial_crop.tif", CROP_FRACTIONS)
        height = crop_raster(res.height, tmp / "height_crop.tif", CROP_FRACTIONS)
        glb = export_mesh(aerial, height, tmp / "town.glb", exaggeration=args.exaggeration,
                          max_vertices=args.max_vertices)
        vertices_m, faces, uvs, texture = load_mesh_z_up(glb)
        cells_wh = (len(np.unique(vertices_m[:, 0])), len(np.unique(vertices_m[:, 1])))  # the grid's columns, rows
        out = save_jpeg_atomically(draw_view(vertices_m, faces, uvs, texture, cells_wh), args.out)
    t_end = time.perf_counter()
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB): {len(vertices_m)} vertices, {len(faces)} triangles; "
          f"render {t_render - t0:.0f} s, mesh + drawing {t_end - t_render:.0f} s")


if __name__ == "__main__":
    main()
