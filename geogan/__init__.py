"""geogan: synthetic georeferenced aerial imagery and heights from OpenStreetMap.

The public API (``render``, ``rasterize``, ...) is imported on first use (PEP 562), so ``import geogan``
and the command line's ``--version``, ``--help``, ``classes`` and ``models`` do not load torch, GDAL and
geopandas (4.7 s of imports on the 2-core VM, against 0.2 s for the command line without them).
"""

__version__ = "0.1.0"

from .errors import GeoganError  # noqa: E402  (light: no third-party imports)

#: public name -> the module of the package that defines it
_LAZY = {"render": "api", "rasterize": "api", "rasterize_array": "api", "OsmFetch": "api", "Renderer": "api"}

__all__ = ["render", "rasterize", "rasterize_array", "OsmFetch", "Renderer", "GeoganError", "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geogan' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
