"""A QGIS style file (.qml) for a class map: one palette entry per schema class.

Written beside ``classes.tif`` as ``classes.qml``; QGIS loads a ``.qml`` with the
raster's base name as the layer's default style, so the class names and colours
come back wherever the raster is opened (drag and drop, another project, a model).
Stdlib only: no QGIS needed to write it.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr


def _hex(color) -> str:
    r, g, b = (int(v) for v in list(color)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def paletted_qml(schema: list[dict]) -> str:
    """QML text of a paletted renderer on band 1: ``value = id``, label ``"id name"``, the class colour."""
    entries = "\n".join(_entry(c) for c in schema)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.22.0" styleCategories="Symbology">\n'
            "  <pipe>\n"
            '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
            "      <colorPalette>\n"
            f"{entries}\n"
            "      </colorPalette>\n"
            "    </rasterrenderer>\n"
            "  </pipe>\n"
            "  <blendMode>0</blendMode>\n"
            "</qgis>\n")


def _entry(c: dict) -> str:
    label = quoteattr(f"{int(c['id'])} {c['name']}")
    return (f'        <paletteEntry value="{int(c["id"])}" color="{_hex(c["color"])}" alpha="255" '
            f"label={label}/>")


def qml_path(raster: str | Path) -> Path:
    """The style file QGIS picks up for ``raster``: same folder and base name, ``.qml``."""
    return Path(raster).with_suffix(".qml")


def write_class_style(raster: str | Path, schema: list[dict]) -> Path:
    """Write ``paletted_qml(schema)`` beside ``raster``; returns the .qml path."""
    path = qml_path(raster)
    path.write_text(paletted_qml(schema), encoding="utf-8")
    return path


def write_class_style_if_missing(raster: str | Path, schema: list[dict]) -> Path:
    """The style beside ``raster``: geogan writes it itself (with the class names in ``.aux.xml``); an older
    geogan does not, and then it is written here. An existing file is never replaced."""
    path = qml_path(raster)
    return path if path.is_file() else write_class_style(raster, schema)
