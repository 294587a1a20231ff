"""Bad input and interrupted runs: a clear one-line answer, nothing half-written left behind."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import geogan
from geogan.errors import ModelError, SourceError
from geogan.sources import read_sources
from osm_factory import offset_lonlat, write_osm

from test_cli import bbox_text, geogan as run_cli, one_line_error

LON, LAT = 25.70, 60.40


def _geojson(path, coords, crs=None):
    feat = {"type": "Feature", "properties": {"class": "building"},
            "geometry": {"type": "Polygon", "coordinates": [coords]}}
    doc = {"type": "FeatureCollection", "features": [feat]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def test_geojson_in_another_crs_than_declared(tmp_path):
    # metres (EPSG:3857-like numbers) in a GeoJSON that declares nothing, i.e. lon/lat by the spec
    x, y = 2_860_000.0, 8_480_000.0
    path = _geojson(tmp_path / "wrong.geojson", [[x, y], [x + 50, y], [x + 50, y + 50], [x, y + 50], [x, y]])
    p = run_cli("rasterize", "--osm", path, "--class-field", "class", "--bbox", bbox_text(), "--out",
                tmp_path / "c.tif")
    one_line_error(p, 2, "another CRS", "assign")
    assert not (tmp_path / "c.tif").exists()


def test_geojson_with_a_real_crs_is_reprojected(tmp_path):
    from pyproj import Transformer
    t = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x, y = t.transform(LON, LAT)
    path = _geojson(tmp_path / "ok.geojson", [[x - 20, y - 20], [x + 20, y - 20], [x + 20, y + 20],
                                               [x - 20, y + 20], [x - 20, y - 20]], crs="urn:ogc:def:crs:EPSG::3857")
    arr, grid = geogan.rasterize_array(path, bbox=tuple(map(float, bbox_text().split(","))), gsd_m=1.0,
                                       class_field="class")
    # 40 projected metres at 60.4N = ~19.7 ground metres: ~390 pixels of 1 m
    assert (arr == 1).sum() == pytest.approx((40 * np.cos(np.radians(LAT))) ** 2, rel=0.15)


def test_osm_file_with_no_ways_renders_background_with_a_warning(tmp_path):
    path = write_osm(tmp_path / "nodes.osm", {1: (LON, LAT), 2: (LON + 0.001, LAT)}, [])
    p = run_cli("rasterize", "--osm", path, "--bbox", bbox_text(), "--out", tmp_path / "c.tif")
    assert p.returncode == 0 and "no mapped features" in p.stderr


def _wait_for_partial(out: Path, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if out.exists() and any(p.name.endswith(".partial") for p in out.iterdir()):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_ctrl_c_leaves_nothing_and_a_rerun_works(tmp_path, tiny_model):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "geogan.cli", "render", "--out", str(out), "--model", str(tiny_model),
            "--tile-size", "128", "--overlap", "32", "--gsd", "0.25"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for_partial(out, proc), proc.communicate()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert list(out.iterdir()) == []  # no partial and no complete-looking file
    p = subprocess.run(args[:-2] + ["--gsd", "1.0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["aerial.tif", "classes.qml", "classes.tif", "classes.tif.aux.xml",
                                                     "height.tif"]  # the set, with the class names


def _limit_file_size():
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))


def test_disk_full_while_writing(tmp_path, tiny_model):
    """A file-size limit makes writes fail like a full disk: runtime error (exit 1), no files left."""
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "geogan.cli", "render", "--out", str(out), "--model",
                        str(tiny_model), "--tile-size", "128", "--overlap", "32"], capture_output=True, text=True,
                       preexec_fn=_limit_file_size, timeout=300)
    line = one_line_error(p, 1)
    assert "writing" in line and "disk space" in line
    assert not out.exists() or list(out.iterdir()) == []


def _card(tiny_model):
    return json.loads(Path(tiny_model).read_text())


def _copy_model(tiny_model, dst: Path, **changes):
    card = _card(tiny_model)
    card.update(changes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.with_suffix(".safetensors").write_bytes(Path(tiny_model).with_suffix(".safetensors").read_bytes())
    dst.with_suffix(".json").write_text(json.dumps(card))
    return dst.with_suffix(".json")


@pytest.mark.parametrize("case", ["classes", "arch", "truncated", "hash", "not json"])
def test_broken_models_are_refused_with_one_line(tmp_path, tiny_model, case):
    dst = tmp_path / "m" / "broken"
    if case == "classes":
        mapping = dict(_card(tiny_model)["schema_to_model"])
        del mapping["wetland"]
        path = _copy_model(tiny_model, dst, schema_to_model=mapping)
    elif case == "arch":
        path = _copy_model(tiny_model, dst, arch="spade", arch_params={"label_nc": 5, "ngf": 8})
    elif case == "truncated":
        path = _copy_model(tiny_model, dst)
        w = dst.with_suffix(".safetensors")
        w.write_bytes(w.read_bytes()[:1000])
    elif case == "hash":
        path = _copy_model(tiny_model, dst)
        w = dst.with_suffix(".safetensors")
        data = bytearray(w.read_bytes())
        data[-1] ^= 0xFF
        w.write_bytes(bytes(data))
    else:
        path = _copy_model(tiny_model, dst)
        path.write_text("{not json")
    with pytest.raises(ModelError):
        geogan.render(out_dir=tmp_path / "o", model=str(path))
    p = run_cli("render", "--out", tmp_path / "o2", "--model", path)
    one_line_error(p, 2)
    assert not (tmp_path / "o2").exists() or list((tmp_path / "o2").iterdir()) == []


VALID_OSM = None


def _valid_osm_bytes(tmp_path_factory):
    global VALID_OSM
    if VALID_OSM is None:
        d = tmp_path_factory.mktemp("fuzzseed")
        nodes = {i + 1: offset_lonlat(LON, LAT, 10 * (i % 3), 10 * (i // 3)) for i in range(6)}
        ways = [(100, [1, 2, 5, 4, 1], {"building": "yes"}), (101, [3, 6], {"highway": "residential"})]
        VALID_OSM = write_osm(d / "seed.osm", nodes, ways).read_bytes()
    return VALID_OSM


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_osm_reader_never_crashes(tmp_path_factory, data):
    """Mutated OSM XML either reads or gives a SourceError: never another exception."""
    seed = _valid_osm_bytes(tmp_path_factory)
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "random"]))
    if kind == "truncate":
        blob = seed[:data.draw(st.integers(0, len(seed)))]
    elif kind == "flip":
        b = bytearray(seed)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=20)):
            b[i] = data.draw(st.integers(0, 255))
        blob = bytes(b)
    elif kind == "insert":
        at = data.draw(st.integers(0, len(seed)))
        blob = seed[:at] + data.draw(st.binary(max_size=64)) + seed[at:]
    else:
        blob = data.draw(st.binary(max_size=512))
    suffix = data.draw(st.sampled_from([".osm", ".osm.pbf", ".geojson", ".gpkg"]))
    path = tmp_path_factory.mktemp("fuzz") / f"f{suffix}"
    path.write_bytes(blob)
    try:
        read_sources([path], (LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01))
    except SourceError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=400), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]))
def test_fuzz_sketch_reader_never_crashes(tmp_path_factory, schema, blob, prefix):
    from geogan.errors import InputError
    from geogan.sketch import read_sketch
    path = tmp_path_factory.mktemp("sk") / "s.png"
    path.write_bytes(prefix + blob)
    try:
        classes = read_sketch(path, schema)
        assert classes.dtype == np.uint8
    except InputError:
        pass
