"""ONNX export (geogan export-onnx) and the onnxruntime inference path (geogan.onnx_infer).

The exported files must give the renders PyTorch gives, within 1 grey level: the tiny test model, a style
model, a model with a card output filter (a forward hook) and the shipped default model are exported and
run on the same inputs by both runtimes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'geogan[onnx]'")
pytest.importorskip("onnx", reason="onnx is not installed: pip install 'geogan[onnx]'")
pytest.importorskip("onnxscript", reason="onnxscript (torch's ONNX exporter) is not installed: "
                                        "pip install 'geogan[onnx]'")

from conftest import make_tiny_model, make_tiny_style_model  # noqa: E402
from osm_factory import offset_lonlat, write_osm  # noqa: E402
from test_cli import geogan, geogan_process, one_line_error  # noqa: E402

from geogan import api  # noqa: E402
from geogan.errors import InputError, ModelError, OutputError, RenderError  # noqa: E402
from geogan.infer import _unorient_tensor, encode_style, load_model, run_batch  # noqa: E402
from geogan.onnx_export import DEFAULT_OPSET, export_onnx  # noqa: E402
from geogan.onnx_infer import (OnnxModel, grey_levels, max_grey_difference, resize_bilinear,  # noqa: E402
                               unorient)

LON, LAT = 25.70, 60.40


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """The tiny test model and its export (card copy, weights, ONNX file) in another folder."""
    root = tmp_path_factory.mktemp("onnx")
    card = make_tiny_model(root / "src" / "tiny")
    report = export_onnx(str(card), root / "out" / "tiny.onnx")
    return card, report


@pytest.fixture(scope="module")
def town_maps(tmp_path_factory, schema):
    """Schema-id class maps (4, 256, 256) cut from a rasterized little town (buildings, roads, wood, water)."""
    nodes, ways, nid = {}, [], 1

    def area(wid, corners_m, tags):
        nonlocal nid
        refs = []
        for dx, dy in corners_m:
            nodes[nid] = offset_lonlat(LON, LAT, dx, dy)
            refs.append(nid)
            nid += 1
        ways.append((wid, refs + [refs[0]], tags))

    for i in range(6):
        x, y = -120 + 45 * i, -60 + 20 * (i % 3)
        area(1 + i, [(x, y), (x + 25, y), (x + 25, y + 18), (x, y + 18)], {"building": "yes"})
    area(10, [(-140, 40), (0, 40), (0, 140), (-140, 140)], {"landuse": "forest"})
    area(11, [(20, 60), (140, 60), (140, 140), (20, 140)], {"natural": "water"})
    for wid, (a, b) in enumerate((((-150, 0), (150, 0)), ((30, -150), (30, 150))), start=20):
        nodes[nid], nodes[nid + 1] = offset_lonlat(LON, LAT, *a), offset_lonlat(LON, LAT, *b)
        ways.append((wid, [nid, nid + 1], {"highway": "residential"}))
        nid += 2
    osm = write_osm(tmp_path_factory.mktemp("town") / "town.osm", nodes, ways)
    classes, _ = api.rasterize_array(str(osm), gsd_m=0.5)
    h, w = classes.shape
    corners = [(0, 0), (h - 256, w - 256), (0, w - 256), ((h - 256) // 2, (w - 256) // 2)]
    maps = np.stack([classes[r:r + 256, c:c + 256] for r, c in corners])
    assert len(np.unique(maps)) >= 4, np.unique(maps)  # real-looking: several classes in the tiles
    return maps


def _noise(batch: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, side, side), dtype=np.float32)


def _both(card, schema) -> tuple:
    return load_model(str(card), schema, "cpu", runtime="torch"), load_model(str(card), schema, "cpu", runtime="onnx")


def _assert_same_renders(torch_model, onnx_model, maps, cases) -> None:
    """run_batch of both runtimes within 1 grey level (raw outputs) for each (out_px, orientations) case."""
    for seed, (out_px, orientations) in enumerate(cases):
        z = _noise(len(maps), maps.shape[-1], seed)
        a = run_batch(torch_model, maps, z, out_px, orientations)
        b = run_batch(onnx_model, maps, z, out_px, orientations)
        assert a.shape == b.shape == (len(maps), a.shape[1], out_px, out_px)
        assert max_grey_difference(a, b) <= 1.0, (out_px, max_grey_difference(a, b))
        assert np.abs(grey_levels(a).astype(int) - grey_levels(b)).max() <= 1


CASES = [(256, None), (200, [1, 6, 0, 3]), (320, [5, 0, 2, 7])]


def test_tiny_export_writes_a_complete_model_folder(tiny_export, schema):
    card_path, report = tiny_export
    card = json.loads(report.card_path.read_text())
    entry = card["onnx"]
    assert report.onnx_path.name == entry["file"] == "tiny.onnx"
    assert entry["opset"] == report.opset == DEFAULT_OPSET
    assert entry["inputs"] == ["onehot", "noise"] and entry["size_multiple"] == 32
    assert entry["max_grey_difference_vs_torch"] <= 1.0
    import hashlib
    assert entry["sha256"] == hashlib.sha256(report.onnx_path.read_bytes()).hexdigest()
    assert report.weights_path.read_bytes() == Path(card_path).with_suffix(".safetensors").read_bytes()
    original = json.loads(Path(card_path).read_text())
    assert {k: v for k, v in card.items() if k != "onnx"} == original
    import onnx
    model = onnx.load(str(report.onnx_path))
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert all(isinstance(d[0], str) and isinstance(d[2], str) and isinstance(d[3], str) for d in dims), dims
    # the copy is a model of its own for the torch runtime too
    assert load_model(str(report.card_path), schema, "cpu", runtime="torch").name == "tiny"


def test_tiny_onnx_matches_torch_within_one_grey_level(tiny_export, schema, town_maps, one_torch_thread):
    torch_model, onnx_model = _both(tiny_export[1].card_path, schema)
    assert isinstance(onnx_model, OnnxModel) and onnx_model.runtime == "onnx"
    _assert_same_renders(torch_model, onnx_model, town_maps, CASES)
    small = town_maps[:2, :64, :96]  # a batch of 2 non-square 64 x 96 tiles: free batch and sides
    z = np.random.default_rng(3).standard_normal((2, 1, 64, 96), dtype=np.float32)
    with torch.inference_mode():
        onehot = torch.from_numpy(torch_model.onehot_table[small]).permute(0, 3, 1, 2)
        expected = torch_model.module(onehot, noise=torch.from_numpy(z)).numpy()
    feeds = {"onehot": np.ascontiguousarray(onehot.numpy()), "noise": z}
    assert max_grey_difference(onnx_model.session.run(None, feeds)[0], expected) <= 1.0


def test_shipped_default_model_onnx_matches_torch(tmp_path, schema, town_maps, one_torch_thread):
    report = export_onnx("fast", tmp_path / "default.onnx")
    assert report.max_grey_difference <= 1.0
    torch_model, onnx_model = _both(report.card_path, schema)
    _assert_same_renders(torch_model, onnx_model, town_maps, CASES[:2])


def test_card_output_filter_hook_is_in_the_graph(tmp_path, schema, town_maps, one_torch_thread):
    card_path = make_tiny_model(tmp_path / "src" / "lattice", arch_params={"upsample": "transpose"})
    card = json.loads(card_path.read_text())
    card["postprocess"] = {"lattice_period_px": 8}  # a forward hook on the generator (models/postprocess.py)
    card_path.write_text(json.dumps(card))
    report = export_onnx(str(card_path), tmp_path / "out" / "lattice.onnx")
    torch_model, onnx_model = _both(report.card_path, schema)
    _assert_same_renders(torch_model, onnx_model, town_maps[:2], CASES[:1])
    del card["postprocess"]  # the same weights without the filter render visibly otherwise
    plain = tmp_path / "src" / "plain.json"
    plain.write_text(json.dumps(card))
    shutil.copyfile(card_path.with_suffix(".safetensors"), plain.with_suffix(".safetensors"))
    z = _noise(2, 256)
    unfiltered = run_batch(load_model(str(plain), schema, "cpu"), town_maps[:2], z, 256)
    assert max_grey_difference(unfiltered, run_batch(onnx_model, town_maps[:2], z, 256)) > 1.0


def test_style_model_exports_its_latent_input(tmp_path, schema, town_maps, one_torch_thread):
    card_path = make_tiny_style_model(tmp_path / "src" / "styled")
    card = json.loads(card_path.read_text())
    card["default_style"] = np.linspace(-1.5, 1.5, card["arch_params"]["z_dim"]).round(3).tolist()
    card_path.write_text(json.dumps(card))
    report = export_onnx(str(card_path), tmp_path / "out" / "styled.onnx")
    assert json.loads(report.card_path.read_text())["onnx"]["inputs"] == ["onehot", "noise", "style"]
    torch_model, onnx_model = _both(report.card_path, schema)
    _assert_same_renders(torch_model, onnx_model, town_maps[:2], CASES[:1])
    with pytest.raises(InputError, match="--style-ref needs the torch runtime"):
        encode_style(onnx_model, tmp_path / "any.png")


@pytest.mark.parametrize("in_px,out_px", [(256, 200), (256, 97), (128, 256), (192, 320), (256, 256), (64, 13)])
def test_numpy_resize_matches_torch_interpolate(in_px, out_px):
    x = np.random.default_rng(in_px + out_px).standard_normal((2, 3, in_px, in_px), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(x), size=(out_px, out_px), mode="bilinear", align_corners=False,
                             antialias=in_px > out_px).numpy()
    np.testing.assert_allclose(resize_bilinear(x, out_px), expected, atol=1e-4)  # 0.013 grey levels


def test_numpy_unorient_matches_torch():
    x = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32)
    for k in range(8):
        np.testing.assert_array_equal(unorient(x, k), _unorient_tensor(torch.from_numpy(x), k).numpy())


@pytest.mark.parametrize("dtype,samples", [(np.uint8, 1), (np.uint8, 3), (np.float32, 2)])
def test_numpy_warp_matches_torch_grid_sample(dtype, samples, monkeypatch):
    """geogan.warp.sample without torch (numpy) gives what it gives with torch (grid_sample, avg_pool2d): uint8
    values differ at most at exact half levels (by 1), float32 by rounding; points past the edge take the edge's."""
    from geogan import warp
    rng = np.random.default_rng(samples)
    shape = (3, 60, 90)
    values = (rng.integers(0, 256, shape) if dtype == np.uint8 else rng.standard_normal(shape)).astype(dtype)
    rows, cols = np.meshgrid(np.arange(40 * samples) / samples, np.arange(70 * samples) / samples, indexing="ij")
    u, v = 3 + 0.95 * cols - 0.3 * rows + 1e-7 * np.sin(cols), 5 + 0.3 * cols + 0.95 * rows
    u[0, :4], v[0, :4] = -3.0, 80.0  # beyond the left and bottom edges
    with_torch = warp.sample(values, u, v, samples)
    monkeypatch.setitem(sys.modules, "torch", None)  # as where torch is not installed
    without = warp.sample(values, u, v, samples)
    assert without.dtype == with_torch.dtype and without.shape == with_torch.shape == (3, 40, 70)
    diff = np.abs(without.astype(float) - with_torch)
    assert diff.max() <= (1 if dtype == np.uint8 else 1e-6) and (diff > 0).mean() < 1e-3
    monkeypatch.setitem(sys.modules, "torch", torch)
    nodes = rng.uniform(0, 500, (2, 5, 9))
    between = warp._between_nodes(warp._between_nodes(nodes, 70, axis=2), 40, axis=1)
    expected = F.interpolate(torch.from_numpy(nodes[None]), size=(40, 70), mode="bilinear", align_corners=True)[0]
    np.testing.assert_allclose(between, expected.numpy(), rtol=0, atol=1e-9)


def test_render_with_the_onnx_runtime_matches_torch(tiny_export, tmp_path, schema, one_torch_thread):
    """A whole render (tiles, blending, writing) through the run_batch seam, with the model given preloaded."""
    osm = write_osm(tmp_path / "b.osm", {1: offset_lonlat(LON, LAT, -20, -20), 2: offset_lonlat(LON, LAT, 20, -20),
                                          3: offset_lonlat(LON, LAT, 20, 20), 4: offset_lonlat(LON, LAT, -20, 20)},
                    [(1, [1, 2, 3, 4, 1], {"building": "yes"})], bounds=(LON - 0.001, LAT - 0.0005, LON + 0.001,
                                                                          LAT + 0.0005))
    card = str(tiny_export[1].card_path)
    import rasterio
    pixels = {}
    for model in _both(card, schema):
        out = tmp_path / model.runtime
        api.render(osm=str(osm), out_dir=out, model=card, _preloaded=model)
        with rasterio.open(out / "aerial.tif") as ds:
            pixels[model.runtime] = ds.read().astype(int)
    assert pixels["torch"].shape == pixels["onnx"].shape
    assert np.abs(pixels["torch"] - pixels["onnx"]).max() <= 1


def test_qgis_worker_renders_without_torch(tiny_export, tmp_path, monkeypatch):
    """The QGIS plugin's worker (qgis_plugin/geogan_qgis/worker.py, through its runner) in a Python where importing
    torch raises ImportError: its check passes on onnxruntime and lists the exported model and the default texture
    bank (not the neural models without an ONNX file), and it renders the example town with the exported model."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_geogan_qgis_runner", Path(__file__).resolve().parents[1] /
                                                  "qgis_plugin" / "geogan_qgis" / "runner.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(TORCH_BLOCKER)
    monkeypatch.setenv("GEOGAN_PYTHONPATH", os.pathsep.join([str(blocker), str(Path(__file__).resolve().parents[1])]))
    monkeypatch.setenv("GEOGAN_MODEL_DIR", str(tiny_export[1].card_path.parent))
    info = runner.check_python(sys.executable, full_import=True, timeout_s=120)
    assert info["ok"] and info["runtime"] == "onnx" and "torch" not in info["versions"], info
    names = sorted(m["name"] for m in info["models"])
    assert "tiny" in names and "default" in names and "fast" not in names  # the texture bank runs; fast needs torch
    result = runner.run_worker(sys.executable, "render", {
        "example": True, "bbox": [25.697, 60.398, 25.699, 60.399], "out_dir": str(tmp_path / "out"),
        "model": "tiny"}, timeout_s=300)
    with rasterio.open(result["aerial"]) as ds:
        assert ds.count == 3 and ds.read().std() > 0


def test_onnx_runtime_refusals_are_one_line(tiny_export, tmp_path, schema):
    card_path, report = tiny_export
    with pytest.raises(ModelError, match="has no ONNX file; export one with 'geogan export-onnx"):
        load_model(str(card_path), schema, "cpu", runtime="onnx")
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        load_model(str(card_path), schema, "cpu", runtime="tensorrt")
    with pytest.raises(InputError, match="runs on the CPU only"):
        load_model(str(report.card_path), schema, "cuda", runtime="onnx")
    with pytest.raises(InputError, match="runs in fp32 only"):
        load_model(str(report.card_path), schema, "cpu", precision="bf16", runtime="onnx")
    with pytest.raises(InputError, match="--compile needs the torch runtime"):
        load_model(str(report.card_path), schema, "cpu", compile=True, runtime="onnx")
    changed = tmp_path / "changed"
    shutil.copytree(report.card_path.parent, changed)
    with open(changed / "tiny.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256 .* does not match the card's"):
        load_model(str(changed / "tiny.json"), schema, "cpu", runtime="onnx")
    (changed / "tiny.onnx").unlink()
    with pytest.raises(ModelError, match="its ONNX file .* does not exist"):
        load_model(str(changed / "tiny.json"), schema, "cpu", runtime="onnx")


def test_onnx_path_runs_without_torch(tiny_export, tmp_path, schema):
    """geogan.onnx_infer imports no torch: with torch unimportable it loads the card's ONNX file (runtime auto
    chooses onnx), renders a batch equal to the torch runtime's, and refuses a card without one."""
    card_path, report = tiny_export
    maps = np.random.default_rng(1).integers(0, 12, (2, 64, 64), dtype=np.uint8)
    z = _noise(2, 64)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "z.npy", z)
    code = f"""
import sys; sys.modules["torch"] = None
import numpy as np
from geogan.classes import load_schema
from geogan.errors import ModelError
from geogan.onnx_infer import choose_runtime, load_onnx_model, run_onnx_batch
assert choose_runtime("auto", {str(report.card_path)!r}) == "onnx"
try:
    choose_runtime("auto", {str(card_path)!r}); raise SystemExit("no error")
except ModelError as exc:
    print("refused:", exc)
m = load_onnx_model({str(report.card_path)!r}, load_schema())
out = run_onnx_batch(m, np.load({str(tmp_path / 'maps.npy')!r}), np.load({str(tmp_path / 'z.npy')!r}), 48, [3, 0])
np.save({str(tmp_path / 'out.npy')!r}, out)
print("torch" in sys.modules and sys.modules["torch"] is not None)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "refused: model 'tiny' needs PyTorch, which is not installed; pip install 'geogan[torch]'" in proc.stdout
    assert proc.stdout.strip().endswith("False")
    expected = run_batch(load_model(str(card_path), schema, "cpu"), maps, z, 48, [3, 0])
    assert max_grey_difference(np.load(tmp_path / "out.npy"), expected) <= 1.0


def test_export_onnx_cli_writes_the_files(tiny_export, tmp_path):
    card_path = tiny_export[0]
    ran = geogan("export-onnx", "--model", card_path, "--out", tmp_path / "m" / "tiny.onnx")
    assert ran.returncode == 0, ran.stderr
    assert "wrote" in ran.stdout and "grey levels" in ran.stdout
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["tiny.json", "tiny.onnx", "tiny.safetensors"]
    before = (tmp_path / "m" / "tiny.onnx").read_bytes()
    one_line_error(geogan("export-onnx", "--model", card_path, "--out", tmp_path / "m" / "tiny.onnx"), 2,
                   "already exists", "--overwrite")
    assert (tmp_path / "m" / "tiny.onnx").read_bytes() == before


@pytest.mark.parametrize("args,code,words", [
    (["--out", "model.onx"], 2, ["must name a .onnx file"]),
    (["--model", "no_such_model", "--out", "m.onnx"], 2, ["unknown model 'no_such_model'"]),
    (["--out", "m.onnx", "--opset", "9"], 2, ["--opset 9 is not supported", "18..28"]),
    (["--model", "segmenter_landcoverai", "--out", "m.onnx"], 2, ["segmenter_landcoverai"]),
])
def test_export_onnx_cli_refuses_bad_input_in_one_line(tmp_path, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    one_line_error(geogan("export-onnx", *args), code, *words)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_missing_exporter_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    import geogan.onnx_infer as onnx_infer
    monkeypatch.setattr(onnx_infer, "has_module", lambda name: name != "onnxscript")
    import geogan.onnx_export as onnx_export
    monkeypatch.setattr(onnx_export, "has_module", lambda name: name != "onnxscript")
    with pytest.raises(InputError, match=r"needs the package\(s\) onnxscript; pip install 'geogan\[onnx\]'"):
        export_onnx("fast", tmp_path / "d.onnx")
    assert list(tmp_path.iterdir()) == []


def test_an_exporter_failure_is_one_line_and_writes_nothing(tiny_export, tmp_path, monkeypatch):
    """What the exporter raises (e.g. for the SPADE architecture: area resizing to a free tile size) becomes
    one RenderError line, and nothing is written."""
    def fail(*args, **kwargs):
        raise RuntimeError("\x1b[96mFailed to convert\x1b[0m the exported program\nstep 3/3")
    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RenderError) as info:
        export_onnx(str(tiny_export[0]), tmp_path / "out" / "t.onnx")
    assert str(info.value) == ("torch.onnx.export could not export this generator with free batch and tile sizes "
                               "(RuntimeError: Failed to convert the exported program); keep the torch runtime for it")
    assert list((tmp_path / "out").iterdir()) == []


def test_output_error_when_the_folder_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError):
        export_onnx("fast", tmp_path / "f" / "d.onnx")


TORCH_BLOCKER = """
import sys


class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"importing {name} is blocked by this test: the onnx runtime must not need it")
        return None


sys.meta_path.insert(0, BlockTorch())
"""


def test_render_runtime_option_runs_the_exported_model_without_torch(tiny_export, tmp_path):
    """``geogan render --runtime onnx --model X.onnx`` in a process where ``import torch`` raises ImportError (a
    sitecustomize on PYTHONPATH) renders what ``--runtime torch`` renders with torch; there ``--runtime torch``
    is refused in one line, which shows the blocker works."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(TORCH_BLOCKER)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH")) if p)}
    card = tiny_export[1].card_path
    common = ["--osm", api.sample_osm_path(), "--bbox", "25.697,60.398,25.699,60.399", "--no-progress"]
    ran = geogan_process("render", *common, "--out", tmp_path / "onnx", "--model", card.with_suffix(".onnx"),
                         "--runtime", "onnx", env_extra=env)
    assert ran.returncode == 0, ran.stderr
    assert "onnxruntime" in ran.stderr + ran.stdout  # the log names the runtime
    one_line_error(geogan_process("render", *common, "--out", tmp_path / "t", "--model", card, "--runtime", "torch",
                                  env_extra=env), 2, "(--runtime torch) needs PyTorch, which is not installed")
    assert geogan("render", *common, "--out", tmp_path / "torch", "--model", card, "--runtime", "torch").returncode == 0
    outs = {}
    for runtime in ("onnx", "torch"):
        with rasterio.open(tmp_path / runtime / "aerial.tif") as ds:
            outs[runtime] = ds.read().astype(int)
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 1
    one_line_error(geogan("render", "--runtime", "gpu", "--out", str(tmp_path / "x")), 2, "unknown runtime 'gpu'",
                   "auto, torch or onnx")
