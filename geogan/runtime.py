"""Process-wide settings held for the length of a render.

Python's cyclic garbage collector now and then walks every tracked object of the process (a "generation 2"
collection): with torch, rasterio and geopandas imported that is about 200,000 objects and 0.11-0.13 s on
this project's CPU, holding the GIL, so the generator threads stall with it. A render allocates enough
small objects (feature tags, polygon coordinates) to set one off about every second render of 1 km².
:func:`frozen_gc` moves the objects that exist when a render starts into the collector's permanent
generation (:func:`gc.freeze`), so collections during the render only walk what the render itself
made, and gives them back to the collector (:func:`gc.unfreeze`) when the last render of the process ends:
nothing is kept from collection for longer than the render.

:func:`return_free_heap` hands the memory the C allocator holds free back to the system (glibc's
``malloc_trim``). glibc keeps freed memory for reuse in one arena per thread, and after large arrays are freed
it serves ever larger ones from those arenas instead of fresh mappings; with the quilting, writing and warping
threads of a render, the freed but kept pages added up over the strips: a 16 km2 texture-bank render peaked at
1390 MB RSS, 1.28x a 1 km2 render's 1087 MB, while the memory in use (every array of 4 MB or more mapped and
unmapped on its own, ``MALLOC_MMAP_THRESHOLD_=4194304``) was 995 vs 877 MB. The render loop gives them back after
every strip and every warp (:func:`geogan.pipeline.render_grid`): 1151 vs 940-956 MB.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_active = 0  # renders in progress in this process (threads of a Dask worker, QGIS tasks)


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Hold the objects that exist now out of cyclic garbage collection until the block (and every other
    render running in this process) ends; nests and runs from several threads."""
    global _active
    with _lock:
        if _active == 0:
            gc.freeze()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.unfreeze()


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def return_free_heap() -> None:
    """Give the pages the C allocator holds free (in every thread's arena) back to the system; a few ms."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
