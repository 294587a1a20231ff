"""Draw a quick oblique view of a geogan ``scene.glb`` (no GPU, no OpenGL): painter's algorithm with PIL.

    .venv/bin/python benchmarks/scene_preview.py out/scene.glb docs/scene_view.jpg [--azimuth 210] [--elevation 35]

Roof and terrain faces take the colour of the aerial texture (the terrain is subdivided so the photo shows),
walls their material colour; every face is shaded by its angle to a light from the south-west.
"""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
from PIL import Image, ImageDraw


def _accessor(gltf, blob: bytes, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width) if width > 1 else \
        np.frombuffer(blob, dtype, acc.count, start)


def load_faces(path: str, terrain_cells: int = 160):
    """Triangles (T, 3, 3) in glTF coordinates and their base colours (T, 3) in 0..1."""
    import pygltflib

    gltf = pygltflib.GLTF2().load(path)
    blob = gltf.binary_blob()
    image = gltf.images[0]
    view = gltf.bufferViews[image.bufferView]
    tex = np.asarray(Image.open(io.BytesIO(blob[view.byteOffset:view.byteOffset + view.byteLength])).convert("RGB"))
    tris, colours = [], []
    for mesh in gltf.meshes:
        for prim in mesh.primitives:
            pos = _accessor(gltf, blob, prim.attributes.POSITION).astype(np.float64)
            idx = _accessor(gltf, blob, prim.indices).reshape(-1, 3)
            mat = gltf.materials[prim.material]
            if prim.attributes.TEXCOORD_0 is None:
                tris.append(pos[idx])
                colours.append(np.tile(mat.pbrMetallicRoughness.baseColorFactor[:3], (len(idx), 1)))
                continue
            uv = _accessor(gltf, blob, prim.attributes.TEXCOORD_0).astype(np.float64)
            t, u = pos[idx], uv[idx]
            if mesh.name == "terrain":
                t, u = _subdivide(t, u, terrain_cells)
            c = u.mean(axis=1)
            px = np.clip((c[:, 0] * tex.shape[1]).astype(int), 0, tex.shape[1] - 1)
            py = np.clip((c[:, 1] * tex.shape[0]).astype(int), 0, tex.shape[0] - 1)
            tris.append(t)
            colours.append(tex[py, px] / 255.0)
    return np.concatenate(tris), np.concatenate(colours)


def _subdivide(t: np.ndarray, u: np.ndarray, cells: int):
    """Split large triangles into about ``cells``**2 pieces in all, so a texture shows on them."""
    out_t, out_u = [], []
    total = float(np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())
    for tri, uvs in zip(t, u):
        share = np.linalg.norm(np.cross(tri[1] - tri[0], tri[2] - tri[0])) / max(total, 1e-9)
        n = max(1, int(round(cells * math.sqrt(share))))
        for i in range(n):
            for j in range(n - i):
                for a, b, c in (((i, j), (i + 1, j), (i, j + 1)), ((i + 1, j), (i + 1, j + 1), (i, j + 1))):
                    if b[0] + b[1] > n or c[0] + c[1] > n or a[0] + a[1] > n:
                        continue
                    w = np.array([[1 - (p[0] + p[1]) / n, p[0] / n, p[1] / n] for p in (a, b, c)])
                    out_t.append(w @ tri)
                    out_u.append(w @ uvs)
    return np.asarray(out_t), np.asarray(out_u)


def draw(tris: np.ndarray, colours: np.ndarray, size=(1600, 1000), azimuth_deg=210.0, elevation_deg=35.0,
         distance=1.1):
    centre = tris.reshape(-1, 3).mean(axis=0)
    span = float(np.ptp(tris.reshape(-1, 3)[:, [0, 2]], axis=0).max())
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    # camera looks from direction (az clockwise from north), glTF: x east, y up, -z north
    d = np.array([math.sin(az) * math.cos(el), math.sin(el), -math.cos(az) * math.cos(el)])
    eye = centre + d * span * distance
    fwd = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    rel = tris - eye
    z = rel @ fwd
    x, y = rel @ right / z, rel @ up / z
    scale = size[0] / (2 * max(np.abs(x).max(), 1e-9) * 1.02)
    px = np.stack([size[0] / 2 + x * scale, size[1] / 2 - y * scale], axis=-1)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.array([-0.5, 0.75, 0.45])
    light /= np.linalg.norm(light)
    shade = 0.55 + 0.45 * np.clip(normals @ light, 0, 1)
    img = Image.new("RGB", size, (235, 238, 242))
    pen = ImageDraw.Draw(img)
    for k in np.argsort(-z.mean(axis=1)):
        rgb = tuple(int(v) for v in np.clip(colours[k] * shade[k] * 255, 0, 255))
        pen.polygon([tuple(p) for p in px[k]], fill=rgb, outline=rgb)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene")
    ap.add_argument("out")
    ap.add_argument("--azimuth", type=float, default=210.0, help="view from this compass direction (degrees)")
    ap.add_argument("--elevation", type=float, default=35.0, help="view elevation (degrees)")
    ap.add_argument("--distance", type=float, default=1.1, help="camera distance in scene widths")
    args = ap.parse_args()
    tris, colours = load_faces(args.scene)
    draw(tris, colours, azimuth_deg=args.azimuth, elevation_deg=args.elevation, distance=args.distance).save(args.out, quality=88)
    print(f"wrote {args.out} ({len(tris)} faces)")


if __name__ == "__main__":
    main()
