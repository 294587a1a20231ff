"""PyTorch is optional (the 'torch' extra): without it, the command line lists every command, renders the default
model (the texture bank, numpy only), and each path that needs PyTorch stops with one line naming the fix
(``pip install 'geogan[torch]'``), exit 2, no traceback and no output.

One real process, in which importing torch fails as where it is not installed (a meta-path finder raising
ModuleNotFoundError for ``torch`` and ``torch.*``), runs the commands in turn through typer's CliRunner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geogan.api import sample_osm_path
from geogan.cli import app
from test_cli import Ran, one_line_error

ROOT = Path(__file__).resolve().parents[1]
BBOX = "25.697,60.398,25.699,60.399"  # 220 x 223 px of the sample town at 0.5 m
FIX = "needs PyTorch, which is not installed; pip install 'geogan[torch]'"

NO_TORCH = '''
import sys


class NoTorch:
    """As where PyTorch is not installed: importing torch or torch.* raises ModuleNotFoundError naming it."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoTorch())
'''

RUN_COMMANDS = '''
import json, logging, sys
from typer.testing import CliRunner
from geogan.cli import app

runs = []
for args in json.loads(sys.argv[1]):
    logging.getLogger("geogan").handlers.clear()
    result = CliRunner().invoke(app, args, prog_name="geogan")
    escaped = None if result.exception is None or isinstance(result.exception, SystemExit) else repr(result.exception)
    runs.append({"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr, "escaped": escaped})
commands = sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)
print(json.dumps({"runs": runs, "commands": commands, "torch_loaded": sys.modules.get("torch") is not None}))
'''


def command_names() -> list[str]:
    return sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)


def without_torch(tmp_path: Path, commands: list[list[str]]) -> dict:
    """Run ``commands`` (each a geogan argument list) in one process where torch cannot be imported."""
    script = tmp_path / "run_without_torch.py"
    script.write_text(NO_TORCH + RUN_COMMANDS)
    env = dict(os.environ, COLUMNS="200",  # this checkout's geogan, the one under test
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(script), json.dumps(commands)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for args, run in zip(commands, result["runs"]):
        assert run["escaped"] is None, f"geogan {' '.join(args)} raised {run['escaped']}; stderr: {run['stderr']}"
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The output folder, the commands' results without torch by name, and the commands it listed."""
    tmp = tmp_path_factory.mktemp("no_torch")
    sample = str(sample_osm_path())
    render = ["render", "--osm", sample, "--bbox", BBOX, "--no-progress"]
    out = tmp / "out"  # the process runs in tmp, where a folder named like a model (default) would be taken for it
    (out / "pairs").mkdir(parents=True)
    commands = {
        "help": ["--help"],
        "train help": ["train", "--help"],
        "render default": [*render, "--out", str(out / "default")],
        "render fast": [*render, "--model", "fast", "--out", str(out / "fast")],
        "render fast torch": [*render, "--model", "fast", "--runtime", "torch", "--out",
                              str(out / "fast_torch")],
        "render style-ref": [*render, "--style-ref", sample, "--style-colours", "--out", str(out / "style")],
        "train": ["train", "--pairs", str(out / "pairs"), "--out", str(out / "run")],
        "chips": ["chips", "--ortho", str(out / "ortho.tif"), "--out", str(out / "chips")],
        "evaluate": ["evaluate", "--pairs", str(out / "pairs")],
        "train-segmenter": ["train-segmenter", "--pairs", str(out / "pairs"), "--out", str(out / "seg")],
        "dream": ["dream", "--bbox", BBOX, "--out", str(out / "dream")],
        "dream-train": ["dream-train", "--osm", sample, "--out", str(out / "dream_run")],
        "export-onnx": ["export-onnx", "--model", "fast", "--out", str(out / "onnx" / "fast.onnx")],
        "build-bank": ["build-bank", "--pairs", str(out / "pairs"), "--out", str(out / "bank" / "bank.json")],
    }
    result = without_torch(tmp, list(commands.values()))
    assert not result["torch_loaded"]
    named = {name: Ran(r["code"], r["stdout"], r["stderr"]) for name, r in zip(commands, result["runs"])}
    return out, named, result["commands"]


def test_every_command_is_listed_and_help_works_without_torch(runs):
    """Missing torch leaves no command out (it is no broken import: commands import torch when they run)."""
    _, ran, commands = runs
    assert commands == command_names()
    assert ran["help"].returncode == 0 and all(name in ran["help"].stdout for name in ("train", "evaluate", "dream"))
    assert ran["train help"].returncode == 0 and "--out" in ran["train help"].stdout


def test_the_default_model_renders_valid_cogs_without_torch(runs):
    out, ran, _ = runs
    assert ran["render default"].returncode == 0, ran["render default"].stderr
    for name, count in (("aerial.tif", 3), ("height.tif", 1), ("classes.tif", 1)):
        valid, errors, _ = cog_validate(str(out / "default" / name))
        assert valid, (name, errors)
        with rasterio.open(out / "default" / name) as ds:
            assert ds.count == count and ds.crs.to_epsg() == 3857
            if count == 3:
                assert ds.read().std() > 0


@pytest.mark.parametrize("name,words", [
    ("render fast", ["model 'fast' " + FIX, "--runtime onnx with a model exported by 'geogan export-onnx'"]),
    ("render fast torch", ["model 'fast' (--runtime torch) " + FIX, "--runtime onnx"]),
    ("render style-ref", ["--style-ref " + FIX]),
    ("train", ["geogan train " + FIX, "--extra-index-url https://download.pytorch.org/whl/cpu"]),
    ("chips", ["geogan chips " + FIX]),
    ("evaluate", ["geogan evaluate " + FIX]),
    ("train-segmenter", ["geogan train-segmenter " + FIX]),
    ("dream", ["geogan dream " + FIX]),
    ("dream-train", ["geogan dream-train " + FIX]),
    ("export-onnx", ["geogan export-onnx " + FIX, "export on a machine that has it"]),
    ("build-bank", ["this command " + FIX]),  # the command line's catch-all for an import of torch
])
def test_what_needs_torch_says_so_in_one_line_and_writes_nothing(runs, name, words):
    out, ran, _ = runs
    one_line_error(ran[name], 2, *words)
    folder = {"render fast": "fast", "render fast torch": "fast_torch", "render style-ref": "style", "train": "run",
              "dream": "dream", "export-onnx": "onnx", "build-bank": "bank"}.get(name)
    if folder is not None:
        assert not (out / folder).exists() or not any((out / folder).iterdir()), sorted((out / folder).iterdir())


def test_torch_is_an_extra_not_a_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]]
    assert "torch" not in names
    extras = project["optional-dependencies"]
    assert any(dep.startswith("torch") for dep in extras["torch"])
    assert any(dep.startswith("torch") for dep in extras["dev"])  # the tests need it
