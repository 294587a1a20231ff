"""geogan QGIS plugin: synthetic aerial imagery, heights and class maps from vector data.

The package imports nothing heavy at import time, so ``python -m
geogan_qgis.installer`` works without QGIS.
"""


def classFactory(iface):  # noqa: N802 - QGIS's name
    from .plugin import GeoganPlugin

    return GeoganPlugin(iface)
