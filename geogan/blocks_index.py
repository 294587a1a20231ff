"""The index of a worker-written render (:mod:`geogan.blocks`): a VRT per output and a STAC ItemCollection.

``aerial.vrt``, ``height.vrt``, ``classes.vrt`` (and ``hillshade.vrt``) mosaic the blocks' COGs on the full
output grid (one ``SimpleSource`` per block, the blocks' rows placed where they belong), with the bands'
descriptions, nodata, colour table and the render's provenance metadata; the class names sit beside
``classes.vrt`` as for ``classes.tif`` (:func:`geogan.provenance.write_class_names`). ``stac.json`` is a STAC
1.0 ItemCollection: one Item per block with its lon/lat footprint and bbox, the projection extension's fields
(``proj:epsg`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``) and its COGs as assets. Paths to blocks
inside the index's folder are relative, others absolute. Both are written line by line from the blocks'
records (the client never holds pixels), into a staging folder, and committed as a set
(:func:`geogan.outdir.commit`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

import pyproj

from . import outdir
from .anchor import edge_points
from .grid import Grid
from .pipeline import OutputPaths, RenderJob, output_specs
from .provenance import write_class_names
from .write import RasterSpec

STAC_NAME = "stac.json"
STAC_VERSION = "1.0.0"
PROJ_EXTENSION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
COG_BLOCK_PX = 512  # the block size of the blocks' COGs (geogan.write.OutputSet)
GDAL_TYPES = {"uint8": "Byte", "float32": "Float32"}
COLOUR_NAMES = ("Red", "Green", "Blue", "Alpha")  # an RGB image's bands (a coverage mask adds alpha)


def index_paths(out_dir: Path, hillshade: bool = False) -> OutputPaths:
    """The VRTs of a worker-written render in ``out_dir`` (what its result names)."""
    out_dir = Path(out_dir)
    return OutputPaths(out_dir / "aerial.vrt", out_dir / "height.vrt", out_dir / "classes.vrt",
                       out_dir / "hillshade.vrt" if hillshade else None)


def index_files(out_dir: Path, hillshade: bool = False) -> list[Path]:
    """Every file of the index that must not exist before a run without overwrite: the VRTs and the STAC file."""
    return index_paths(out_dir, hillshade).all() + [Path(out_dir) / STAC_NAME]


def index_names(paths: OutputPaths) -> list[str]:
    """The names the index replaces in its folder: VRTs, the class names beside ``classes.vrt``, the STAC file."""
    return [p.name for p in paths.all()] + [paths.classes.name + ".aux.xml", paths.classes.with_suffix(".qml").name,
                                            STAC_NAME]


def _href(path: Path, index_dir: Path) -> str:
    """``path`` relative to ``index_dir`` when it lies inside it, else absolute (as the workers wrote it)."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(index_dir)).as_posix()
    except ValueError:
        return str(path)


def _band_xml(spec: RasterSpec, band: int | str, grid: Grid, sources: list[tuple[str, int, int]]) -> Iterable[str]:
    """One ``VRTRasterBand`` with a ``SimpleSource`` per block ``(href, row0, rows)``; ``band`` "mask,1": the
    blocks' mask band (the dataset's ``MaskBand``)."""
    dtype = GDAL_TYPES[spec.dtype]
    if band == "mask,1":
        yield '    <VRTRasterBand dataType="Byte">\n'
        yield from _sources_xml(band, dtype, grid.width, sources)
        yield "    </VRTRasterBand>\n"
        return
    interp = COLOUR_NAMES[band - 1] if spec.photometric == "RGB" else "Palette" if spec.colormap else "Gray"
    yield f'  <VRTRasterBand dataType="{dtype}" band="{band}">\n'
    if band <= len(spec.descriptions):
        yield f"    <Description>{escape(spec.descriptions[band - 1])}</Description>\n"
    if spec.nodata is not None:
        yield f"    <NoDataValue>{spec.nodata!r}</NoDataValue>\n"
    yield f"    <ColorInterp>{interp}</ColorInterp>\n"
    if spec.units:
        yield f"    <UnitType>{escape(spec.units)}</UnitType>\n"
    if spec.colormap:
        yield "    <ColorTable>\n"
        for i in range(max(spec.colormap) + 1):
            r, g, b, a = spec.colormap.get(i, (0, 0, 0, 0))
            yield f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>\n'
        yield "    </ColorTable>\n"
    yield from _sources_xml(band, dtype, grid.width, sources)
    yield "  </VRTRasterBand>\n"


def _sources_xml(band: int | str, dtype: str, w: int, sources: list[tuple[str, int, int]]) -> Iterable[str]:
    for href, row0, rows in sources:
        relative = "0" if os.path.isabs(href) else "1"
        yield (f"    <SimpleSource><SourceFilename relativeToVRT=\"{relative}\">{escape(href)}</SourceFilename>"
               f"<SourceBand>{band}</SourceBand><SourceProperties RasterXSize=\"{w}\" RasterYSize=\"{rows}\" "
               f"DataType=\"{dtype}\" BlockXSize=\"{COG_BLOCK_PX}\" BlockYSize=\"{COG_BLOCK_PX}\"/>"
               f"<SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{w}\" ySize=\"{rows}\"/>"
               f"<DstRect xOff=\"0\" yOff=\"{row0}\" xSize=\"{w}\" ySize=\"{rows}\"/></SimpleSource>\n")


def write_vrt(path: Path, spec: RasterSpec, grid: Grid, sources: list[tuple[str, int, int]],
              tags: dict[str, str] | None) -> None:
    """A VRT mosaic of ``sources`` (``(href, row0, rows)``, full-width blocks) on ``grid``."""
    t = grid.transform
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">\n')
        fh.write(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(grid.crs.to_wkt())}</SRS>\n')
        fh.write(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>\n")
        if tags:
            fh.write("  <Metadata>\n")
            fh.writelines(f"    <MDI key={quoteattr(str(k))}>{escape(str(v))}</MDI>\n" for k, v in tags.items())
            fh.write("  </Metadata>\n")
        masked = getattr(spec, "alpha", False) and spec.compress == "JPEG"  # the COGs hold it as a mask band
        for band in range(1, spec.count + 1 - masked):
            fh.writelines(_band_xml(spec, band, grid, sources))
        if masked:
            fh.write("  <MaskBand>\n")
            fh.writelines(_band_xml(spec, "mask,1", grid, sources))
            fh.write("  </MaskBand>\n")
        fh.write("</VRTDataset>\n")


def lonlat_footprint(grid: Grid) -> tuple[list[list[float]], list[float]]:
    """The grid's outline in lon/lat (a closed ring through its corners, counterclockwise for a north-up grid
    as GeoJSON wants) and its bbox (edges densified)."""
    to_ll = pyproj.Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    corners = [(0, 0), (0, grid.height), (grid.width, grid.height), (grid.width, 0), (0, 0)]
    ring = [list(to_ll.transform(*grid.transform * (c, r))) for c, r in corners]
    lon, lat = to_ll.transform(*edge_points(grid))
    return ring, [float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat))]


def stac_item(record, grid: Grid, index_dir: Path, created: str) -> dict:
    """The STAC Item of one block (``record``: a :class:`geogan.blocks.BlockRecord`)."""
    block = grid.window(record.row0, 0, record.rows, grid.width)
    ring, bbox = lonlat_footprint(block)
    epsg = grid.crs.to_epsg()
    t = block.transform
    props = {"datetime": created, "proj:epsg": epsg, "proj:shape": [record.rows, grid.width],
             "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f], "geogan:rows": [record.row0, record.row0 + record.rows]}
    if epsg is None:
        props["proj:wkt2"] = grid.crs.to_wkt()
    assets = {key: {"href": _href(Path(record.folder) / name, index_dir), "type": COG_MEDIA_TYPE,
                    "roles": ["visual" if key == "aerial" else "data"], "title": f"{key} of {Path(record.folder).name}"}
              for key, name in record.files}
    return {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [PROJ_EXTENSION],
            "id": Path(record.folder).name, "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": bbox,
            "properties": props, "assets": assets, "links": []}


def write_stac(path: Path, records: Sequence, grid: Grid, index_dir: Path) -> None:
    """The STAC ItemCollection of the blocks, written item by item."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for i, record in enumerate(records):
            fh.write(("," if i else "") + json.dumps(stac_item(record, grid, index_dir, created)) + "\n")
        fh.write('], "links": []}\n')


def write_index(job: RenderJob, records: Sequence, out_dir: Path) -> list[Path]:
    """Write the VRTs and the STAC file of ``records`` into ``out_dir`` as a set; the caller holds its lock."""
    staging = outdir.new_staging(out_dir)
    try:
        new = staging / "new"
        specs = output_specs(job.paths, job.schema, job.compression, job.tags, job.coverage)
        for key, spec in specs.items():
            sources = [(_href(Path(r.folder) / dict(r.files)[key], out_dir), r.row0, r.rows) for r in records]
            write_vrt(new / spec.path.name, spec, job.grid, sources, job.tags)
        write_class_names(new / job.paths.classes.name, job.schema)
        write_stac(new / STAC_NAME, records, job.grid, out_dir)
        return outdir.commit(staging, out_dir, index_names(job.paths))
    finally:
        outdir.discard(staging)
