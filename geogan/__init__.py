"""geogan: synthetic georeferenced aerial imagery and heights from OpenStreetMap."""

__version__ = "0.1.0"
