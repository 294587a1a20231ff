"""How much memory a render needs, estimated from its sizes before anything large is allocated.

A render never holds the whole area: it works on one strip of tile rows across the full width
(blending sums, finished strips, class-map and height rows, output block rows and overviews) and a
few batches of tiles at the model's input size. Both can still be huge. A very fine ``--gsd`` makes
automatic tiles of many thousand output pixels (each tile's output upscaled to that size, strips as
tall), a very coarse one feeds each tile to the model at the model's native GSD, so a 32 px tile
of 300 m pixels becomes a 19,584 px square model input. :func:`estimate` adds up these buffers from
the sizes alone; :func:`memory_problem` words the refusal of a render whose estimate exceeds what this
machine can give (:func:`memory_budget_bytes`): the estimate, its largest part and a fix.
(:func:`geogan.pipeline.check_size` raises it.)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .infer import model_input_px

#: Share of the machine's memory (or its cgroup limit) a render may plan to use.
MEMORY_FRACTION = 0.8
#: Assumed machine memory where it cannot be read.
FALLBACK_MEMORY_BYTES = 8 * 2**30
#: Rows of a block of the output GeoTIFFs (``geogan.write.OutputSet``'s ``block_px``).
OUTPUT_BLOCK_PX = 512
#: Columns of a piece of a class-map/height strip and the rasterizer's temporaries per pixel of it.
SURFACE_CHUNK_PX = 2048
RASTERIZE_TEMP_BYTES_PER_PX = 32
#: Float32 strips alive at once after blending: queued, being written, being produced.
STRIPS_ALIVE = 3


@dataclass(frozen=True)
class RenderSize:
    """What a render's memory depends on; pixel counts of the output grid and of the model input."""

    width_px: int
    height_px: int
    tile_px: int
    overlap_px: int
    model_px: int  # the largest per-tile model input side
    model_bytes_per_px: int  # generator working memory per model input pixel (:func:`generator_bytes_per_px`)
    out_bands: int = 3  # bands the generator makes and the blender sums (4 with a height output)
    batch_tiles: int = 4  # tiles per generator call
    batches_in_flight: int = 3  # generator calls running at once, plus the one prepared ahead
    hillshade: bool = False
    in_memory: bool = False  # the outputs are loaded into memory afterwards (``render(out_dir=None)``)


def generator_bytes_per_px(card: dict) -> int:
    """Working memory of one generator call per model input pixel, from the model card.

    One-hot input, noise, output and about three full-resolution feature maps of ``ngf`` channels
    (plus SPADE's two hidden maps) in float32, and the uint8 class map and noise made for it. For the
    default U-Net (ngf 16) this gives 238 bytes; measured peak on CPU (ru_maxrss, one 2048 px tile):
    149 bytes, 162 at 1024 px.
    """
    params = card.get("arch_params") or {}
    in_nc = int(params.get("in_nc") or params.get("label_nc") or len(card.get("classes", ())) or 8)
    out_nc = int(params.get("out_nc", 3))
    ngf = int(params.get("ngf", 64))
    hidden = int(params.get("hidden_nc", 128)) if card.get("arch") == "spade" else 0
    return 4 * (in_nc + 1 + out_nc + 3 * ngf + 2 * hidden) + 10


def estimate(size: RenderSize) -> dict[str, int]:
    """Bytes of each large buffer of a render of ``size`` (nothing is allocated)."""
    w, tile, stride = size.width_px, size.tile_px, max(1, size.tile_px - size.overlap_px)
    out_px_bytes = 3 + 4 + 1 + (1 if size.hillshade else 0)  # aerial, height, classes (, hillshade) per pixel
    per_tile = size.model_px ** 2 * size.model_bytes_per_px + tile ** 2 * size.out_bands * 4 * 2
    surface = stride * w * (1 + 4) * 2 + stride * min(w, SURFACE_CHUNK_PX) * RASTERIZE_TEMP_BYTES_PER_PX
    if size.hillshade:
        surface += stride * w * (4 + 4 + 1)
    parts = {
        "model inputs and outputs": size.batches_in_flight * size.batch_tiles * per_tile,
        "blending strips": (size.out_bands + 1) * 4 * tile * w + tile * tile * 4,
        "finished strips": stride * w * (STRIPS_ALIVE * size.out_bands * 4 + 3 * 4 + 3),
        "class-map and height rows": surface,
        "output block rows and overviews": OUTPUT_BLOCK_PX * w * out_px_bytes * 4,
    }
    if size.in_memory:
        parts["the in-memory result"] = size.width_px * size.height_px * out_px_bytes
    return parts


def memory_budget_bytes() -> int:
    """:data:`MEMORY_FRACTION` of this machine's memory, or of its cgroup (container) limit if lower."""
    total = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX (Windows)
        try:
            import psutil
            total = int(psutil.virtual_memory().total)
        except Exception:  # psutil missing or failing: assume a modest machine
            total = 0
    total = total if total > 0 else FALLBACK_MEMORY_BYTES
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = min(total, int(text))
    return int(total * MEMORY_FRACTION)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _fits(size: RenderSize, budget_bytes: int) -> bool:
    return sum(estimate(size).values()) <= budget_bytes


def suggest_fix(size: RenderSize, budget_bytes: int, tile_gsd_m: float, native_gsd_m: float,
                multiple_px: int) -> str:
    """What to change so a render of ``size`` fits ``budget_bytes``: a finer --gsd when each tile's model input
    is the problem (a GSD much coarser than the model's), else the largest --tile-size that fits, else less area.

    ``tile_gsd_m``: ground metres per output pixel; ``native_gsd_m``, ``multiple_px``: the model's.
    """
    if size.model_px > 2 * size.tile_px:
        for m in range(size.model_px - multiple_px, multiple_px - 1, -multiple_px):
            if _fits(dataclasses.replace(size, model_px=m), budget_bytes):
                gsd = native_gsd_m * m / size.tile_px
                km = size.tile_px * tile_gsd_m / 1000
                return (f"use --gsd {gsd:.3g} or finer (at this GSD each {size.tile_px} px tile covers {km:,.1f} km, "
                        f"which the model sees at its native {native_gsd_m:g} m: a {size.model_px:,} px square input)")
    step = max(multiple_px, 16)
    tile = (size.tile_px // 2) // step * step
    while tile >= max(step, 64):
        m = model_input_px(tile, tile_gsd_m, native_gsd_m, multiple_px)
        if _fits(dataclasses.replace(size, tile_px=tile, overlap_px=tile // 4, model_px=m), budget_bytes):
            return f"pass --tile-size {tile} (now {size.tile_px} px tiles)"
        tile = (tile // 2) // step * step
    return "shrink the bbox or raise --gsd"


def memory_problem(size: RenderSize, budget_bytes: int | None, *, tile_gsd_m: float, native_gsd_m: float,
                   multiple_px: int) -> str | None:
    """None when :func:`estimate` fits ``budget_bytes`` (default :func:`memory_budget_bytes`), else the one-line
    refusal: the estimate, its largest part and a fix (:func:`suggest_fix`)."""
    parts = estimate(size)
    total = sum(parts.values())
    budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
    if total <= budget:
        return None
    name, largest = max(parts.items(), key=lambda kv: kv[1])
    fix = suggest_fix(size, budget, tile_gsd_m, native_gsd_m, multiple_px)
    return (f"this render needs about {_gb(total)} of memory ({name} {_gb(largest)}; grid {size.width_px:,} x "
            f"{size.height_px:,} px, {size.tile_px} px tiles, {size.model_px:,} px model input per tile), more than "
            f"the {_gb(budget)} this machine can give; {fix}, or pass --force to try anyway")

