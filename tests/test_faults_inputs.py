"""Issue 27: inputs that used to end in a wrong "success" (or a hang) are refused with one line.

NaN/inf models (at load and in the generator's output), cut-short PBF and OSM XML files, a FIFO or a
directory given as input, layers whose geometries are all null or empty, and a GeoPackage of many layers
read with one GDAL open instead of two per layer.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import torch

import geogan
import geogan.infer as infer
from conftest import make_tiny_model
from geogan.errors import ModelError, RenderError, SourceError
from geogan.models.checkpoint import load_generator, save_generator
from geogan.sources import read_layer, read_sources
from osm_factory import offset_lonlat, square_building_osm, to_pbf, write_osm

LON, LAT = 25.70, 60.40
BBOX = (*offset_lonlat(LON, LAT, -60, -60), *offset_lonlat(LON, LAT, 60, 60))


# ----------------------------------------------------------------- NaN / inf models


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused_at_load(tmp_path, bad):
    module, card = load_generator(make_tiny_model(tmp_path / "good"))
    key, param = next(iter(module.state_dict().items()))
    with torch.no_grad():
        param.view(-1)[0] = bad
    save_generator(module, card, tmp_path / "poisoned")  # the project's own writer: a valid checksum
    with pytest.raises(ModelError, match="poisoned.safetensors' holds NaN/inf weights in '" + key.replace(".", r"\.")):
        load_generator(tmp_path / "poisoned.json")
    with pytest.raises(ModelError, match="NaN/inf"):
        geogan.render(out_dir=tmp_path / "out", model=str(tmp_path / "poisoned.json"))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_generator_giving_nan_fails_the_render_and_leaves_no_file(tmp_path, tiny_model, monkeypatch):
    real = infer._generate
    monkeypatch.setattr(infer, "_generate", lambda *a: real(*a) * float("nan"))
    osm = square_building_osm(tmp_path / "b.osm", LON, LAT, 20)
    out = tmp_path / "out"
    with pytest.raises(RenderError, match=r"NaN/inf values in fp32 .*try --device cpu or another --model"):
        geogan.render(osm=osm, bbox=BBOX, out_dir=out, model=str(tiny_model), gsd_m=1.0, tile_px=128,
                      overlap_px=32, device="cpu")
    assert not out.exists() or list(out.iterdir()) == []  # no all-black aerial.tif, no partials


def test_low_precision_overflow_is_redone_in_fp32_and_refused_only_when_fp32_fails(tiny_model, schema, monkeypatch):
    model = infer.load_model(str(tiny_model), schema, "cpu", precision="bf16")
    ids = np.zeros((1, 128, 128), np.uint8)
    noise = np.zeros((1, 1, 128, 128), np.float32)
    real = infer._generate

    def overflow_in_half(module, style, onehot, z, dtype):
        out = real(module, style, onehot, z, dtype)
        return out * float("inf") if dtype != torch.float32 else out

    monkeypatch.setattr(infer, "_generate", overflow_in_half)
    assert np.isfinite(infer.run_batch(model, ids, noise, 128)).all()
    monkeypatch.setattr(infer, "_generate", lambda *a: real(*a) * float("nan"))
    with pytest.raises(RenderError, match="in bf16 and again in fp32"):
        infer.run_batch(model, ids, noise, 128)


# ----------------------------------------------------------------- cut-short OSM files


def _blocks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each PBF block (length prefix, BlobHeader, blob), walked independently of geogan."""
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        header, i, size = data[pos + 4:pos + 4 + n], 0, None
        while i < len(header):  # protobuf: find field 3 (datasize, a varint)
            key, i = _varint(header, i)
            if key & 7 == 2:
                length, i = _varint(header, i)
                i += length
            else:
                value, i = _varint(header, i)
                size = value if key >> 3 == 3 else size
        out.append((pos, pos + 4 + n + size))
        pos = out[-1][1]
    return out


def _varint(buf, i):
    value = shift = 0
    while True:
        value |= (buf[i] & 0x7F) << shift
        shift += 7
        i += 1
        if buf[i - 1] < 0x80:
            return value, i


@pytest.fixture(scope="module")
def pbf_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("pbf")
    nodes = {i + 1: offset_lonlat(LON, LAT, 10 * (i % 10), 10 * (i // 10)) for i in range(100)}
    ways = [(w + 1, [w + 1, w + 2, w + 12, w + 11, w + 1], {"building": "yes"}) for w in range(0, 80, 2)]
    relations = [(1, [("way", 1, "outer")], {"type": "multipolygon", "landuse": "grass"})]
    return to_pbf(write_osm(d / "t.osm", nodes, ways, relations), d / "t.osm.pbf").read_bytes()


def test_whole_pbf_reads(tmp_path, pbf_bytes):
    path = tmp_path / "whole.osm.pbf"
    path.write_bytes(pbf_bytes)
    assert read_sources([path], None).feature_count > 0


@pytest.mark.parametrize("cut", ["after the header block", "after the node blocks", "2 bytes into a block's length",
                                 "inside the way block's header", "inside the way block"])
def test_cut_short_pbf_is_refused(tmp_path, pbf_bytes, cut):
    blocks = _blocks(pbf_bytes)
    assert len(blocks) == 4  # OSMHeader, nodes, ways, relations: one block each (a kind per block)
    end = {"after the header block": blocks[0][1], "after the node blocks": blocks[1][1],
           "2 bytes into a block's length": blocks[1][0] + 2, "inside the way block's header": blocks[2][0] + 7,
           "inside the way block": (blocks[2][0] + blocks[2][1]) // 2}[cut]
    path = tmp_path / "cut.osm.pbf"
    path.write_bytes(pbf_bytes[:end])  # GDAL read the first three as a whole file (0 or fewer features, exit 0)
    with pytest.raises(SourceError, match="cut.osm.pbf' is not a complete OSM PBF: .*; download or export it again"):
        read_sources([path], BBOX)


def test_cut_short_pbf_fails_the_render_with_no_output(tmp_path, tiny_model, pbf_bytes):
    path = tmp_path / "cut.osm.pbf"
    path.write_bytes(pbf_bytes[:_blocks(pbf_bytes)[1][1]])
    with pytest.raises(SourceError, match="not a complete OSM PBF"):
        geogan.render(osm=path, bbox=BBOX, out_dir=tmp_path / "out", model=str(tiny_model), gsd_m=1.0)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cut_short_osm_xml_is_refused(tmp_path):
    whole = write_osm(tmp_path / "whole.osm", {i + 1: offset_lonlat(LON, LAT, 5 * i, 0) for i in range(40)},
                      [(1, list(range(1, 41)), {"highway": "residential"})])
    cut = tmp_path / "cut.osm"
    data = whole.read_bytes()
    cut.write_bytes(data[:data.index(b"<way")])  # all the nodes, no way, no </osm>
    with pytest.raises(SourceError, match="cut.osm' is not a complete OSM XML file: it does not end with </osm>"):
        read_sources([cut], BBOX)
    assert read_sources([whole], BBOX).feature_count == 1


# ----------------------------------------------------------------- not a regular file


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_input_is_refused_at_once(tmp_path):
    """A real process, so that a regression hangs only that process (killed at the timeout), not the suite."""
    fifo = tmp_path / "in.osm"
    os.mkfifo(fifo)
    bbox = ",".join(map(str, BBOX))
    p = subprocess.run([sys.executable, "-m", "geogan.cli", "rasterize", "--osm", str(fifo), "--bbox", bbox,
                        "--out", str(tmp_path / "c.tif")], capture_output=True, text=True, timeout=120)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "is a named pipe (FIFO), not a regular file" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "c.tif").exists()


def test_directory_and_device_inputs_are_refused(tmp_path):
    with pytest.raises(SourceError, match="is a directory, not a regular file"):
        read_sources([tmp_path], BBOX)
    if Path("/dev/null").exists():
        with pytest.raises(SourceError, match="is a character device, not a regular file"):
            read_sources(["/dev/null"], BBOX)


# ----------------------------------------------------------------- layers without geometry


def _geojson(path: Path, geometries) -> Path:
    feats = [{"type": "Feature", "properties": {"class": "building"}, "geometry": g} for g in geometries]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


@pytest.mark.parametrize("geometry", [None, {"type": "Polygon", "coordinates": []}], ids=["null", "empty"])
def test_layer_with_only_null_or_empty_geometries_says_so(tmp_path, geometry):
    path = _geojson(tmp_path / "nothing.geojson", [geometry, geometry])
    with pytest.raises(SourceError, match="its 2 feature.* have only empty or null geometries") as err:
        read_sources([path], BBOX, "class")
    assert "inf" not in str(err.value) and "CRS" not in str(err.value)


def test_geopackage_layer_with_only_null_geometries_says_so(tmp_path):
    import geopandas as gpd

    path = tmp_path / "nulls.gpkg"
    frame = gpd.GeoDataFrame({"class": ["building"] * 2}, geometry=gpd.GeoSeries([None, None], crs="EPSG:4326"))
    pyogrio.write_dataframe(frame, path, layer="nulls", geometry_type="Polygon")
    with pytest.raises(SourceError, match="layer 'nulls' of .*: its features have only empty or null geometries"):
        read_sources([path], BBOX, "class")


# ----------------------------------------------------------------- GeoPackages of many layers


def _many_layer_gpkg(path: Path, n_layers: int) -> Path:
    import geopandas as gpd

    for i in range(n_layers):
        boxes = [shapely.box(*offset_lonlat(LON, LAT, 40 * j - 40, 6 * i - 40),
                             *offset_lonlat(LON, LAT, 40 * j - 30, 6 * i - 36))
                 for j in range(4)]  # the last box lies beyond BBOX's east edge
        frame = gpd.GeoDataFrame({"class": ["building", "water", None, "road"], "height": [3, 5, 7, 9]},
                                 geometry=boxes, crs="EPSG:4326")
        if i % 3 == 2:
            frame = frame.to_crs("EPSG:3067")  # some layers in a projected CRS
        pyogrio.write_dataframe(frame, path, layer=f"layer {i}", append=i > 0)
    return path


def test_geopackage_layers_are_read_with_one_open_per_crs_and_match_a_layer_by_layer_read(tmp_path, monkeypatch):
    path = _many_layer_gpkg(tmp_path / "many.gpkg", 12)
    calls = []

    def counting(module, name):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or real(*a, **k))

    counting(pyogrio, "read_info")
    counting(pyogrio, "list_layers")
    counting(pyogrio.raw, "read")
    report = read_sources([path], BBOX, "class")
    assert calls == ["read", "read"]  # one query per CRS (was list_layers + read_info and read per layer: 25)
    monkeypatch.undo()
    assert [layer.source for layer in report.layers] == [f"many.gpkg:layer {i}" for i in range(12)]
    for layer in report.layers:
        one = read_layer(path, layer.source.split(":", 1)[1], BBOX, "class")
        assert layer.tags == one.tags and layer.dropped == one.dropped and len(layer.tags) == 3
        assert all(shapely.equals_exact(layer.geometries, one.geometries, 1e-9))
