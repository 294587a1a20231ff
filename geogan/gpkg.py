"""All feature layers of a GeoPackage read through one GDAL open.

GDAL's GeoPackage driver spends time on every open that grows with the square of the file's table
count (0.006 s with 30 layers, 0.05 s with 100, 0.2-0.4 s with 300 on the project's VM), and pyogrio
opens the file again for each call: reading a 300-layer file one layer at a time (``read_info`` and
``read`` per layer) took 241 s. Here the layer list, CRSs, extents and columns come from the
GeoPackage's own tables through the standard library's sqlite3 (one connection, milliseconds), and
the features of up to ``TABLES_PER_QUERY`` layers that share a CRS come from one SQL ``UNION ALL``
through pyogrio (one GDAL open, GDAL decoding the geometries), with each layer's attributes packed
into JSON and the bbox applied through the layer's R-tree index where it has one.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLES_PER_QUERY = 200  # SQLite allows 500 terms in one compound SELECT
COLUMNS_PER_JSON = 60  # json_object takes at most 127 arguments (a key and a value per column)

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class GpkgTable:
    """One feature table of a GeoPackage, from its metadata tables."""

    name: str
    geometry_column: str
    pk: str  # the integer primary key (the R-tree's id)
    crs: str | None  # "EPSG:n" or WKT; None for undefined (srs_id 0 / -1)
    bounds: BBox | None  # extent of its geometries (gpkg_contents, else its R-tree)
    has_rows: bool
    has_geometries: bool  # any non-null geometry (any non-empty one where it has an R-tree)
    fields: tuple[str, ...]  # attribute columns
    rtree: str | None  # its R-tree table, if it has one
    booleans: frozenset[str] = frozenset()  # BOOLEAN columns (0/1 in SQLite; "True"/"False" as GDAL reads them)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _crs(con: sqlite3.Connection, srs_id: int) -> str | None:
    if srs_id in (0, -1):
        return None
    row = con.execute("SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
                      "WHERE srs_id = ?", (srs_id,)).fetchone()
    if row is None:
        return None
    org, code, definition = row
    if isinstance(org, str) and org.lower() == "epsg" and code is not None:
        return f"EPSG:{int(code)}"
    return definition if isinstance(definition, str) and definition.strip().lower() not in ("", "undefined") else None


def _table(con: sqlite3.Connection, name: str, geom: str, srs_id: int, extent, sqlite_tables: set) -> GpkgTable:
    q = _quote(name)
    columns = con.execute(f"SELECT name, type, pk FROM pragma_table_info({_literal(name)})").fetchall()
    pk = next((c[0] for c in columns if c[2] and str(c[1]).upper() == "INTEGER"), "rowid")
    fields = tuple(c[0] for c in columns if c[0] not in (pk, geom))
    rtree = f"rtree_{name}_{geom}" if f"rtree_{name}_{geom}" in sqlite_tables else None
    has_rows = bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {q})").fetchone()[0])
    if rtree is not None:
        has_geoms = bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {_quote(rtree)})").fetchone()[0])
    else:
        has_geoms = bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {q} WHERE {_quote(geom)} IS NOT NULL)")
                         .fetchone()[0])
    bounds = tuple(float(v) for v in extent) if all(v is not None for v in extent) else None
    if bounds is None and rtree is not None and has_geoms:
        row = con.execute(f"SELECT min(minx), min(miny), max(maxx), max(maxy) FROM {_quote(rtree)}").fetchone()
        bounds = tuple(float(v) for v in row) if all(v is not None for v in row) else None
    booleans = frozenset(c[0] for c in columns if str(c[1]).upper() == "BOOLEAN")
    return GpkgTable(name, geom, pk, _crs(con, srs_id), bounds, has_rows, has_geoms, fields, rtree, booleans)


def gpkg_tables(path: Path) -> list[GpkgTable] | None:
    """The feature tables of a GeoPackage in file order; None when sqlite3 cannot read its metadata
    (not a GeoPackage, locked, an unusual layout: the caller then reads it layer by layer through GDAL)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except (sqlite3.Error, ValueError, OSError):
        return None
    try:
        rows = con.execute(
            "SELECT c.table_name, g.column_name, g.srs_id, c.min_x, c.min_y, c.max_x, c.max_y "
            "FROM gpkg_contents c JOIN gpkg_geometry_columns g ON c.table_name = g.table_name "
            "WHERE c.data_type = 'features' ORDER BY c.rowid").fetchall()
        sqlite_tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return [_table(con, name, geom, srs_id, extent, sqlite_tables) for name, geom, srs_id, *extent in rows]
    except (sqlite3.Error, TypeError, ValueError):
        return None
    finally:
        con.close()


def _value(column: str, boolean: bool) -> str:
    """SQL for a column's tag value: blobs dropped, booleans as GDAL spells them."""
    q = _quote(column)
    if boolean:
        return f"CASE WHEN {q} IS NULL THEN NULL WHEN {q} THEN 'True' ELSE 'False' END"
    return f"CASE WHEN typeof({q}) = 'blob' THEN NULL ELSE {q} END"


def _select(table: GpkgTable, n_json: int, bbox: BBox | None) -> str:
    """One UNION term: the geometry, the layer's name and its attributes as ``n_json`` JSON columns."""
    chunks = [table.fields[i:i + COLUMNS_PER_JSON] for i in range(0, len(table.fields), COLUMNS_PER_JSON)]
    json_columns = []
    for k in range(n_json):
        cols = chunks[k] if k < len(chunks) else ()
        args = ", ".join(f"{_literal(c)}, {_value(c, c in table.booleans)}" for c in cols)
        json_columns.append(f"json_object({args}) AS _tags{k}")
    where = ""
    if bbox is not None and table.rtree is not None:
        where = (f" WHERE {_quote(table.pk)} IN (SELECT id FROM {_quote(table.rtree)} WHERE maxx >= {bbox[0]!r} "
                 f"AND minx <= {bbox[2]!r} AND maxy >= {bbox[1]!r} AND miny <= {bbox[3]!r})")
    return (f"SELECT {_quote(table.geometry_column)} AS geom, {_literal(table.name)} AS _layer, "
            f"{', '.join(json_columns)} FROM {_quote(table.name)}{where}")


def _tags(row_json: Sequence[str | None]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for text in row_json:
        for key, value in (json.loads(text) if text else {}).items():
            if value is None:
                continue
            tags[key] = str(value)
    return tags


def read_tables(path: Path, tables: Sequence[GpkgTable], bbox: BBox | None) -> dict[str, tuple[np.ndarray, list]]:
    """``{layer: (WKB array, tag dicts)}`` for ``tables`` (one CRS; ``bbox`` in it), one GDAL open per
    ``TABLES_PER_QUERY`` tables. Raises what pyogrio raises."""
    import pyogrio

    out: dict[str, tuple[np.ndarray, list]] = {t.name: (np.array([], dtype=object), []) for t in tables}
    for start in range(0, len(tables), TABLES_PER_QUERY):
        chunk = tables[start:start + TABLES_PER_QUERY]
        n_json = max(1, max(-(-len(t.fields) // COLUMNS_PER_JSON) for t in chunk))
        sql = " UNION ALL ".join(_select(t, n_json, bbox) for t in chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta, _, wkb, fields = pyogrio.raw.read(path, sql=sql, bbox=bbox)
        names = list(meta["fields"])
        layer_of = fields[names.index("_layer")]
        json_columns = [fields[names.index(f"_tags{k}")] for k in range(n_json)]
        wkb = wkb if wkb is not None else np.full(len(layer_of), None, dtype=object)
        for table in chunk:
            rows = np.flatnonzero(layer_of == table.name)
            out[table.name] = (wkb[rows], [_tags([col[i] for col in json_columns]) for i in rows])
    return out
