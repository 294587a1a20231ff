"""The `geogan` command: outputs, exit codes and one-line errors for bad input.

Most cases call the command in-process (:func:`geogan`: typer's CliRunner on ``geogan.cli.app``, with stdout,
stderr and the exit code kept apart, milliseconds a case); one real process per command (:func:`geogan_process`)
checks the entry point end to end: render, rasterize, classes, models, and the light import.
"""

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geogan.cli import app
from osm_factory import offset_lonlat, to_pbf, write_osm

LON, LAT = 25.70, 60.40


def geogan_process(*args, cwd=None, env_extra=None):
    """The command in a real process (``python -m geogan.cli``)."""
    env = dict(os.environ, **(env_extra or {}))
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "geogan.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@dataclass
class Ran:
    """What a run left: the same fields as subprocess.CompletedProcess."""

    returncode: int
    stdout: str
    stderr: str


def geogan(*args) -> Ran:
    """The command in this process. An exception that escapes the command (which a real process would print
    as a traceback) fails the test; the ``geogan`` logger the command configures is put back afterwards."""
    logger = logging.getLogger("geogan")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], prog_name="geogan")
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"geogan {' '.join(map(str, args))} raised {result.exception!r}; "
                             f"stderr: {result.stderr}") from result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def one_line_error(proc, code, *words):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """A tiny synthetic OSM file: two buildings, a road and a park."""
    d = tmp_path_factory.mktemp("town")
    nodes, ways = {}, []
    nid = 1

    def rect(e0, n0, e1, n1, tags, wid):
        nonlocal nid
        ids = []
        for e, n in ((e0, n0), (e1, n0), (e1, n1), (e0, n1)):
            nodes[nid] = offset_lonlat(LON, LAT, e, n)
            ids.append(nid)
            nid += 1
        ways.append((wid, ids + [ids[0]], tags))

    rect(-60, -60, 60, 60, {"leisure": "park"}, 100)
    rect(-20, -20, 0, 0, {"building": "yes", "building:levels": "3"}, 101)
    rect(10, 10, 30, 25, {"building": "house"}, 102)
    nodes[nid], nodes[nid + 1] = offset_lonlat(LON, LAT, -100, 40), offset_lonlat(LON, LAT, 100, 40)
    ways.append((103, [nid, nid + 1], {"highway": "residential"}))
    path = d / "town.osm"
    write_osm(path, nodes, ways)
    return path


def bbox_text(half_m=50):
    x0, y0 = offset_lonlat(LON, LAT, -half_m, -half_m)
    x1, y1 = offset_lonlat(LON, LAT, half_m, half_m)
    return f"{x0},{y0},{x1},{y1}"


def test_render_tiny_osm_and_pbf(tmp_path, town, tiny_model):
    pbf = to_pbf(town, tmp_path / "town.osm.pbf")
    outs = []
    for run, src, out in ((geogan_process, town, tmp_path / "a"), (geogan, pbf, tmp_path / "b")):
        p = run("render", "--osm", src, "--bbox", bbox_text(), "--crs", "EPSG:3857", "--gsd", "0.5",
                "--out", out, "--model", tiny_model, "--tile-size", "128", "--overlap", "32", "--seed", "3")
        assert p.returncode == 0, p.stderr
        outs.append(out)
    for name in ("aerial.tif", "height.tif", "classes.tif"):
        a, b = (rasterio.open(o / name).read() for o in outs)
        assert np.array_equal(a, b)  # .osm and .pbf give the same result
    with rasterio.open(outs[0] / "height.tif") as ds:
        h = ds.read(1)
    assert np.isclose(h.max(), 9.0)  # building:levels=3 x 3 m
    assert np.isclose(np.unique(h[h > 0]), [7.0, 9.0]).any()  # the house gets its type default


def test_rasterize_command(tmp_path, town):
    out = tmp_path / "c.tif"
    p = geogan_process("rasterize", "--osm", town, "--bbox", bbox_text(), "--crs", "EPSG:32635", "--gsd", "1",
                       "--out", out)
    assert p.returncode == 0, p.stderr
    with rasterio.open(out) as ds:
        arr = ds.read(1)
        assert ds.crs.to_epsg() == 32635 and ds.colormap(1)[7][:3] == (120, 200, 90)
    assert {1, 7} <= set(np.unique(arr))


def test_classes_version_help():
    p = geogan_process("classes")
    assert p.returncode == 0 and "woodland" in p.stdout and "highway" in p.stdout
    p = geogan("--version")
    assert p.returncode == 0 and p.stdout.startswith("geogan ")
    for cmd in ("render", "rasterize", "classes", "models"):
        p = geogan(cmd, "--help")
        assert p.returncode == 0 and "--help" in p.stdout


def test_light_commands_do_not_load_torch_or_gdal():
    """``import geogan`` and the command line's module load no heavy library (the API is imported on first
    use), and ``geogan.render`` is the API function whichever module of the package was imported first."""
    code = ("import sys, geogan, geogan.cli\n"
            "heavy = sorted(m for m in ('torch', 'rasterio', 'pyogrio', 'geopandas', 'shapely') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "import geogan.pipeline, geogan.api\n"
            "assert geogan.render is geogan.api.render and callable(geogan.render)\n"
            "assert geogan.Renderer is geogan.api.Renderer and 'render' in dir(geogan)\n"
            "try:\n"
            "    geogan.no_such_name\n"
            "except AttributeError as exc:\n"
            "    assert 'no_such_name' in str(exc)\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def test_default_render_of_the_bundled_sample_is_refused_when_outputs_exist(tmp_path, tiny_model):
    out = tmp_path / "o"
    out.mkdir()
    (out / "aerial.tif").write_bytes(b"x")
    p = geogan("render", "--out", out, "--model", tiny_model)
    one_line_error(p, 2, "already exists", "--overwrite")


BAD = {
    "missing file": (["--osm", "nope.osm"], 2, ["does not exist"]),
    "inverted bbox": (["--bbox", "25.71,60.41,25.70,60.40"], 2, ["inverted"]),
    "zero-area bbox": (["--bbox", "25.70,60.40,25.70,60.41"], 2, ["zero-area"]),
    "bbox not 4 numbers": (["--bbox", "1,2,3"], 2, ["four numbers"]),
    "unknown crs": (["--crs", "EPSG:999999"], 2, ["unknown CRS"]),
    "gsd zero": (["--gsd", "0"], 2, ["GSD"]),
    "gsd negative": (["--gsd", "-1"], 2, ["GSD"]),
    "gsd absurd": (["--gsd", "100000"], 2, ["absurd"]),
    "beyond 85N in 3857": (["--bbox", "25,86,25.1,86.1"], 2, ["outside"]),
    "missing model": (["--model", "nomodel.json"], 2, ["does not exist"]),
    "unknown model name": (["--model", "no-such-model"], 2, ["unknown model"]),
    "too large": (["--bbox", "20,55,30,65", "--gsd", "0.3"], 2, ["--force", "days"]),
    "bad device": (["--device", "tpu"], 2, ["unknown device"]),
    "bad precision": (["--precision", "fp64"], 2, ["unknown precision", "bf16"]),
    "fp16 on cpu": (["--precision", "fp16", "--device", "cpu"], 2, ["needs a CUDA GPU", "bf16"]),
    "bad tile size": (["--tile-size", "100", "--overlap", "16"], 2, ["multiple"]),
    "tile size for the model": (["--tile-size", "100", "--overlap", "16"], 2, ["multiple of 32 px", "96 or 128"]),
    "tile size too small": (["--tile-size", "8", "--overlap", "0"], 2, ["16 px or more", "multiple"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_give_one_line_and_no_outputs(name, tmp_path, town, tiny_model):
    extra, code, words = BAD[name]
    args = ["render", "--out", tmp_path / "out", "--model", tiny_model, "--osm", town, "--bbox", bbox_text()]
    # later options win in click: the case's own options override the defaults above
    p = geogan(*args, *extra)
    one_line_error(p, code, *words)
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_empty_and_non_osm_files(tmp_path, tiny_model):
    empty = tmp_path / "empty.osm"
    empty.write_text("")
    one_line_error(geogan("rasterize", "--osm", empty, "--bbox", bbox_text(), "--out", tmp_path / "c.tif"), 2, "empty")
    fake = tmp_path / "fake.osm"
    fake.write_text("this is not xml at all\n" * 10)
    one_line_error(geogan("rasterize", "--osm", fake, "--bbox", bbox_text(), "--out", tmp_path / "c.tif"), 2,
                   "not OSM XML")
    truncated = tmp_path / "t.osm.pbf"
    truncated.write_bytes(b"\x00\x00\x00\x0d\n\tOSMHeader\x18" + b"\x07" * 20)
    one_line_error(geogan("rasterize", "--osm", truncated, "--bbox", bbox_text(), "--out", tmp_path / "c.tif"), 2,
                   "t.osm.pbf")
    assert not (tmp_path / "c.tif").exists()


def test_unwritable_output_dir(tmp_path, town):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = geogan("rasterize", "--osm", town, "--bbox", bbox_text(), "--out", blocker / "sub" / "c.tif")
    one_line_error(p, 2, "cannot create output directory")


def test_bbox_without_data_renders_background_with_warning(tmp_path, town, tiny_model):
    x0, y0 = offset_lonlat(LON, LAT, 5000, 5000)
    x1, y1 = offset_lonlat(LON, LAT, 5100, 5100)
    p = geogan("render", "--osm", town, "--bbox", f"{x0},{y0},{x1},{y1}", "--out", tmp_path / "o", "--model",
               tiny_model, "--tile-size", "128", "--overlap", "32", "--fill", "background")  # default: nodata there
    assert p.returncode == 0, p.stderr
    assert "no mapped features" in p.stderr
    with rasterio.open(tmp_path / "o" / "classes.tif") as ds:
        assert (ds.read(1) == 0).all()


def test_unknown_option_is_a_usage_error():
    p = geogan("render", "--no-such-option")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_verbose_gives_the_traceback(tmp_path):
    p = geogan("--verbose", "rasterize", "--osm", tmp_path / "missing.osm", "--bbox", bbox_text(),
               "--out", tmp_path / "c.tif")
    assert p.returncode == 2 and "Traceback" in p.stderr


def test_models_lists_the_shipped_default():
    p = geogan_process("models")
    assert p.returncode == 0, p.stderr
    assert "default" in p.stdout and "unet" in p.stdout and "CC BY-NC-SA" in p.stdout
