"""Getting the plugin (issue 23): the zip from an installed geogan, fit for the QGIS plugin repository, and
the installer's choice of PyTorch: CPU-only on a machine without an NVIDIA GPU, with the download size
shown before anything is downloaded.

The PyTorch choice is checked against package indexes on this machine's disk, with pip's own
configuration switched off (PIP_CONFIG_FILE=/dev/null): a stand-in for PyPI, whose torch is the
CUDA build with its NVIDIA libraries, and a stand-in for PyTorch's CPU index (GEOGAN_TORCH_CPU_INDEX),
whose torch is the ``+cpu`` build. Both are pip "simple" pages pointing at the wheels under /opt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"  # the Python QGIS embeds on Debian
LOCAL_INDEXES = [Path("/opt/pypi/simple"), Path("/opt/pypi-more/simple")]
CUDA_ONLY = re.compile(r"^(torch|nvidia-.*|triton|cuda-.*)$")


# ---------------------------------------------------------------- the zip from an installed geogan
def checkout_wheel(out_dir: Path) -> Path:
    """geogan's wheel from a copy of this checkout (an in-tree build would leave build/ behind, and reuse it)."""
    import shutil

    src = out_dir.parent / "wheel_src"
    shutil.copytree(REPO / "geogan", src / "geogan", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "qgis_plugin" / "geogan_qgis", src / "qgis_plugin" / "geogan_qgis",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out_dir), str(src)], check=True, timeout=600, cwd=out_dir.parent,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "1577836800"})
    return next(out_dir.glob("geogan-*.whl"))


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def test_zip_from_an_installed_wheel_is_repository_ready(tmp_path):
    """Wheel built from the checkout, installed without its dependencies into a fresh venv (no checkout on
    its path); the zip it builds equals the checkout's, has a LICENSE, full metadata and no binaries."""
    from geogan.plugin_build import build_plugin_zip, repository_problems

    wheel = checkout_wheel(tmp_path / "wheels")
    py = _venv(tmp_path / "fresh")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=600)
    code = ("import sys, geogan, geogan.plugin_build as b; "
            "print(geogan.__file__); print(b.plugin_dir()); print(b.build_plugin_zip(sys.argv[1]))")
    out = subprocess.run([str(py), "-c", code, str(tmp_path / "dist")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-3000:]
    geogan_file, plugin_dir, zip_path = out.stdout.split()
    assert geogan_file.startswith(str(tmp_path / "fresh")) and plugin_dir.startswith(str(tmp_path / "fresh"))

    from_checkout = build_plugin_zip(tmp_path / "checkout")
    assert Path(zip_path).read_bytes() == from_checkout.read_bytes()
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        meta = zf.read("geogan_qgis/metadata.txt").decode()
        licence = zf.read("geogan_qgis/LICENSE").decode()
    assert repository_problems(names, meta) == []
    assert not any(n.endswith((".whl", ".pyc", ".so")) for n in names) and "geogan_qgis/icon.svg" in names
    assert "MIT License" in licence
    for key in ("homepage=", "tracker=", "repository=", "tags=", "qgisMinimumVersion=3.22", "icon=icon.svg"):
        assert key in meta
    assert sum(zf.file_size for zf in zipfile.ZipFile(zip_path).infolist()) < 500_000  # sources only


def test_repository_problems_names_what_is_wrong():
    from geogan.plugin_build import repository_problems

    meta = "[general]\nname=x\nversion=1\nicon=icon.svg\n"
    problems = repository_problems(["geogan_qgis/__init__.py", "geogan_qgis/wheels/geogan-0.1.0-py3-none-any.whl"],
                                   meta)
    assert "binary file geogan_qgis/wheels/geogan-0.1.0-py3-none-any.whl" in problems
    assert "no LICENSE file" in problems and "metadata.txt lacks 'tracker'" in problems
    assert "the icon 'icon.svg' named in metadata.txt is not in the zip" in problems


# ---------------------------------------------------------------- the installer's PyTorch choice
def _write_index(root: Path, pages: dict[str, list[str]]) -> str:
    """A pip "simple" index at ``root``: one page per project listing absolute wheel URLs."""
    for name, links in pages.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        body = "".join(f'<a href="{url}">{url.rsplit("/", 1)[-1].split("#")[0]}</a>\n' for url in links)
        (root / name / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{body}</body></html>\n",
                                                encoding="utf-8")
    return root.as_uri()


def _local_pages() -> dict[str, list[str]]:
    """Every project of the machine's local indexes, links made absolute (file://)."""
    pages: dict[str, list[str]] = {}
    for index in LOCAL_INDEXES:
        for page in sorted(index.glob("*/index.html")):
            base = page.parent.as_uri() + "/"
            hrefs = re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8", errors="replace"))
            links = []
            for href in hrefs:
                url = href if "://" in href else (Path(page.parent, href.split("#")[0]).resolve().as_uri()
                                                  + ("#" + href.split("#", 1)[1] if "#" in href else ""))
                links.append(url)
            pages.setdefault(page.parent.name, []).extend(links)
    return pages


TORCH_EXTRA_REQUIRES = "Provides-Extra: torch\nRequires-Dist: torch>=2.2; extra == \"torch\"\n"


def _dummy_geogan(tmp: Path, requires: str = TORCH_EXTRA_REQUIRES) -> Path:
    """A wheel named geogan whose torch extra needs torch, as the real one's (whose other dependencies are not on
    local disk)."""
    dist = "geogan-0.0.1.dist-info"
    meta = "Metadata-Version: 2.1\nName: geogan\nVersion: 0.0.1\n" + requires
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    path = tmp / "geogan-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("geogan_dummy/__init__.py", "")
        zf.writestr(f"{dist}/METADATA", meta)
        zf.writestr(f"{dist}/WHEEL", wheel)
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    cpu_wheels = sorted(Path("/opt/wheels").glob("torch-*+cpu-cp311-*.whl"))
    has_cuda_torch = any((i / "torch").is_dir() for i in LOCAL_INDEXES)
    if not (cpu_wheels and has_cuda_torch and Path(SYSTEM_PYTHON).exists()):
        pytest.skip("needs the local indexes (/opt/pypi*/simple with torch), a +cpu torch wheel in /opt/wheels "
                    "and /usr/bin/python3")
    root = tmp_path_factory.mktemp("indexes")
    pages = _local_pages()
    pypi = _write_index(root / "pypi", pages)
    cpu_pages = {k: v for k, v in pages.items() if not CUDA_ONLY.match(k)}
    cpu_pages["torch"] = [w.as_uri() for w in cpu_wheels]
    cpu = _write_index(root / "cpu", cpu_pages)
    return pypi, cpu, _dummy_geogan(root)


def _plan(tmp_path: Path, indexes, *args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    pypi, cpu, geogan = indexes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=pypi, PIP_DISABLE_PIP_VERSION_CHECK="1",
               GEOGAN_TORCH_CPU_INDEX=cpu, PATH="/usr/bin:/bin")  # no nvidia-smi on PATH: a CPU machine
    installer = REPO / "qgis_plugin" / "geogan_qgis" / "installer.py"
    proc = subprocess.run([SYSTEM_PYTHON, str(installer), "--env", str(tmp_path / "env"), "--geogan", str(geogan),
                           "--plan", "--json", *args], capture_output=True, text=True, timeout=900, env=env)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return proc, (json.loads(last)["plan"] if last.startswith("{") else None)


def test_installer_plans_cpu_torch_without_a_gpu(tmp_path, indexes):
    proc, plan = _plan(tmp_path, indexes)
    assert proc.returncode == 0 and plan, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = {p["name"]: p["version"] for p in plan["packages"]}
    assert plan["torch_version"].endswith("+cpu") and names["torch"].endswith("+cpu")
    assert plan["cuda_packages"] == [] and not any(CUDA_ONLY.match(n) and n != "torch" for n in names)
    assert "no NVIDIA GPU found: CPU-only PyTorch" in plan["reason"]
    assert f"resolving {indexes[2]}[torch] with torch=={plan['torch_version']}" in proc.stdout  # geogan[torch]
    assert 0 < plan["total_bytes"] < 1_000_000_000
    assert f"download: about {plan['total_bytes'] / 1e6:,.0f} MB" in proc.stdout  # shown before any download
    assert not list((tmp_path / "env").glob("lib/python*/site-packages/torch"))  # a plan installs nothing


def test_installer_plan_with_cuda_takes_pypis_cuda_torch(tmp_path, indexes):
    """The control: PyPI's Linux torch is the CUDA build (its NVIDIA libraries, about 3 GB more, are not all
    on this machine's disk, so dependencies are left out here: --no-deps)."""
    proc, plan = _plan(tmp_path, indexes, "--gpu", "cuda", "--pip-arg=--no-deps")
    assert proc.returncode == 0 and plan, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not plan["torch_version"].endswith("+cpu")
    assert "PyTorch with CUDA from PyPI" in plan["reason"]
    assert plan["total_bytes"] > 500_000_000  # the CUDA torch wheel alone; the CPU plan's whole download is less


# ---------------------------------------------------------------- the light install (no PyTorch)
LIGHT_REQUIRES = ("Requires-Dist: numpy>=1.24\n" + TORCH_EXTRA_REQUIRES + "Provides-Extra: onnx\n"
                  "Requires-Dist: onnxruntime>=1.18; extra == \"onnx\"\nProvides-Extra: dask\n"
                  "Requires-Dist: dask[distributed]>=2024.1; extra == \"dask\"\n")


def test_light_plan_takes_onnxruntime_and_no_torch(tmp_path, indexes):
    """installer.py --runtime onnx: plain geogan (PyTorch is its torch extra) and the onnx extra's onnxruntime, no
    torch and nothing of CUDA; the size is shown before anything is downloaded."""
    pypi, cpu, _ = indexes
    (tmp_path / "wheel").mkdir()
    light = _dummy_geogan(tmp_path / "wheel", LIGHT_REQUIRES)
    proc, plan = _plan(tmp_path, (pypi, cpu, light), "--runtime", "onnx")
    assert proc.returncode == 0 and plan, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = {p["name"] for p in plan["packages"]}
    assert plan["runtime"] == "onnx" and plan["torch_version"] is None and "light install" in plan["reason"]
    assert {"geogan", "numpy", "onnxruntime"} <= names and not any(CUDA_ONLY.match(n) for n in names)
    assert "dask" not in names
    assert plan["requirements"] == [str(light), "onnxruntime>=1.18"]
    assert 0 < plan["total_bytes"] < 150_000_000
    assert f"download: about {plan['total_bytes'] / 1e6:,.0f} MB" in proc.stdout
    assert not list((tmp_path / "env").glob("lib/python*/site-packages/onnxruntime"))  # a plan installs nothing


def _plugin_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_geogan_qgis_{name}", REPO / "qgis_plugin" / "geogan_qgis" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_light_install_reads_onnxruntime_and_torch_from_geogan_metadata():
    plan = _plugin_module("plan")
    lines = ["numpy>=1.24", "torch>=2.2; extra == 'torch'", "Torch_Extra>=1; extra == 'onnx'", "rasterio>=1.3",
             "onnxruntime>=1.18; extra == 'onnx'", "onnx>=1.16; extra == 'onnx'", "waitress>=3; extra == \"serve\""]
    assert plan.runtime_requirement(lines) == "onnxruntime>=1.18"
    assert plan.runtime_requirement(["numpy"]) == "onnxruntime"  # a geogan without the onnx extra
    assert not plan.requires_torch(lines) and plan.requires_torch(["numpy", "torch>=2.2"])  # an older geogan


@pytest.mark.parametrize("spec,wanted", [
    ("geogan", "geogan[torch]"), ("geogan==0.2.0", "geogan[torch]==0.2.0"),
    ("geogan[onnx]>=0.2", "geogan[onnx,torch]>=0.2"), ("geogan[torch]", "geogan[torch]"),
    ("/tmp/dist/geogan-0.2-py3-none-any.whl", "/tmp/dist/geogan-0.2-py3-none-any.whl[torch]"),
    ("geogan-0.2-py3-none-any.whl", "geogan-0.2-py3-none-any.whl[torch]"), (".", ".[torch]"),
    ("/src/geogan[dev]", "/src/geogan[dev,torch]"), ("https://h/geogan-0.2.whl", "geogan[torch] @ https://h/geogan-0.2.whl"),
    ("geogan @ https://h/g.whl", "geogan[torch] @ https://h/g.whl"),
])
def test_the_full_install_asks_for_the_torch_extra(spec, wanted):
    assert _plugin_module("plan").with_extra(spec, "torch") == wanted


def test_the_light_install_is_one_pip_call_of_plain_geogan_and_onnxruntime(monkeypatch):
    """No --no-deps and no second call (which made pip warn that geogan requires torch): geogan's own metadata
    no longer asks for PyTorch."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # run as a script, installer.py puts its folder first
    loaded = set(sys.modules)
    try:
        installer = _plugin_module("installer")
    finally:
        for name in set(sys.modules) - loaded - {"_geogan_qgis_installer"}:
            del sys.modules[name]  # its plan and runner, imported by those plain names
    calls = []
    monkeypatch.setattr(installer, "_run", lambda cmd, log: calls.append(list(cmd)) or 0)
    made = SimpleNamespace(requirements=("geogan==0.2", "onnxruntime>=1.18"))
    installer._install_light(["pip"], made, ["-q"], False, log=lambda s: None)
    assert calls == [["pip", "install", "-q", "geogan==0.2", "onnxruntime>=1.18"]]


def test_worker_check_accepts_onnxruntime_without_torch(tmp_path, monkeypatch):
    """The light install's Python passes the plugin's check (onnxruntime stands in for torch), and its model
    list holds only the models it can run: those with an ONNX file, and texture banks."""
    import importlib.util

    worker = _plugin_module("worker")
    for name, onnx in (("exported", True), ("plain", False)):
        card = {"name": name, "outputs": ["rgb"], "gsd_m": 0.5, "license": "MIT", "description": f"{name}. More."}
        if onnx:
            card["onnx"] = {"file": f"{name}.onnx", "sha256": "0" * 64}
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    monkeypatch.setenv("GEOGAN_MODEL_DIR", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    info = worker.op_check({})
    assert info["ok"] and info["runtime"] == "onnx" and "torch" not in info["versions"], info
    names = [m["name"] for m in info["models"]]
    assert "exported" in names and "plain" not in names and "fast" not in names  # fast: a U-Net without ONNX
    assert "default" in names  # the texture bank: numpy only
    assert all(m["torch_free"] for m in info["models"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "onnxruntime")
                        else real(name, *a))
    info = worker.op_check({})
    assert not info["ok"] and "torch or onnxruntime" in info["missing"]


def test_light_plan_that_would_bring_torch_is_refused(monkeypatch):
    """A requirement of geogan that pulls torch in would make the light install a PyTorch one, and so would an
    older geogan that requires torch itself: refused in one line naming what pulls it, nothing installed."""
    plan = _plugin_module("plan")
    geogan = plan.Package("geogan", "0.0.1", "", requires=("numpy", "needs-torch", "torch>=2.2; extra == 'torch'"))
    resolved = {True: [geogan], False: [plan.Package("numpy", "2.0", ""),
                                        plan.Package("needs-torch", "1.0", "", requires=("torch",)),
                                        plan.Package("torch", "2.13.0", ""), plan.Package("onnxruntime", "1.32", "")]}
    monkeypatch.setattr(plan, "dry_run", lambda pip, args, env=None: resolved["--no-deps" in args])
    with pytest.raises(plan.PlanError, match=r"the light install would still download torch \(required by "
                                             r"needs-torch\); install with PyTorch instead \(--runtime torch\)"):
        plan.make_light_plan(["pip"], "geogan", log=lambda s: None)
    resolved[True] = [plan.Package("geogan", "0.0.1", "", requires=("numpy", "torch>=2.2"))]
    with pytest.raises(plan.PlanError, match=r"geogan 0.0.1 requires PyTorch \(later versions have it as the 'torch' "
                                             r"extra\): install with PyTorch instead \(--runtime torch\), or give "
                                             r"--geogan a newer geogan"):
        plan.make_light_plan(["pip"], "geogan", log=lambda s: None)


def test_light_plan_where_geogan_is_installed_already(monkeypatch):
    """A second light install (or an upgrade) into the same venv: pip's dry run reports nothing to install for an
    installed geogan unless told to ignore it, and the plan still needs geogan's requirements from its metadata."""
    plan = _plugin_module("plan")
    geogan = plan.Package("geogan", "0.0.1", "", requires=("numpy", "torch>=2.2; extra == 'torch'"))

    def dry_run(pip, args, env=None):
        if "--no-deps" in args:
            return [geogan] if "--ignore-installed" in args else []  # pip: already installed, nothing to do
        return []  # its requirements are installed too
    monkeypatch.setattr(plan, "dry_run", dry_run)
    made = plan.make_light_plan(["pip"], "geogan", log=lambda s: None)
    assert made.requirements == ("geogan", "onnxruntime") and made.runtime == "onnx"
