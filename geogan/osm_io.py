"""OSM file conversion shared by the sample-data script, the tests and the Overpass cache."""

from __future__ import annotations

from pathlib import Path


def xml_to_pbf(osm_path: str | Path, pbf_path: str | Path, generator: str = "geogan") -> Path:
    """Convert an OSM XML file to PBF with pyosmium (``pip install osmium``), keeping the ``<bounds>``.

    Written to a temporary name beside ``pbf_path`` and renamed at the end, so a failed conversion never
    leaves a truncated PBF behind.
    """
    import osmium

    osm_path, pbf_path = Path(osm_path), Path(pbf_path)
    reader = osmium.io.Reader(str(osm_path), osmium.osm.NOTHING)  # header only
    header = reader.header()
    reader.close()
    header.set("generator", generator)
    tmp = pbf_path.with_name(f".{pbf_path.stem}.partial.osm.pbf")
    tmp.unlink(missing_ok=True)
    try:
        with osmium.SimpleWriter(str(tmp), header=header) as writer:
            for obj in osmium.FileProcessor(str(osm_path)):
                writer.add(obj)
        tmp.replace(pbf_path)
    finally:
        tmp.unlink(missing_ok=True)
    return pbf_path
