"""Process-wide settings held for the length of a render.

Python's cyclic garbage collector now and then walks every tracked object of the process (a "generation 2"
collection): with torch, rasterio and geopandas imported that is about 200,000 objects and 0.11-0.13 s on
this project's CPU, holding the GIL, so the generator threads stall with it. A render allocates enough
small objects (feature tags, polygon coordinates) to set one off about every second render of 1 km².
:func:`frozen_gc` moves the objects that exist when a render starts into the collector's permanent
generation (:func:`gc.freeze`), so collections during the render only walk what the render itself
made, and gives them back to the collector (:func:`gc.unfreeze`) when the last render of the process ends:
nothing is kept from collection for longer than the render.
"""

from __future__ import annotations

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
