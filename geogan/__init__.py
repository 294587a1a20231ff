"""geogan: synthetic georeferenced aerial imagery and heights from OpenStreetMap."""

__version__ = "0.1.0"

from .api import OsmFetch, Renderer, rasterize, rasterize_array, render  # noqa: E402
from .errors import GeoganError  # noqa: E402

__all__ = ["render", "rasterize", "rasterize_array", "OsmFetch", "Renderer", "GeoganError", "__version__"]
