"""What the installer will download, decided and measured before anything is downloaded.

* Which PyTorch: PyPI's ``torch`` on Linux is a CUDA build that pulls about 3 GB of
  NVIDIA libraries, useless without an NVIDIA GPU. So unless ``nvidia-smi`` finds a
  GPU, torch comes from PyTorch's CPU index (about 200 MB); macOS takes PyPI's.
* What pip would install: ``pip install --dry-run --report`` (resolves from package
  metadata; PyPI serves it without the wheels), then each wheel's size from its URL
  (a HEAD request, or the file's size for a local wheel).
* A CPU plan that still holds CUDA packages (another index in the user's pip
  configuration offering a newer CUDA torch, say) is refused, not downloaded.
* PyTorch is geogan's ``torch`` extra: the full install asks for ``geogan[torch]``
  (:func:`with_extra`) with the chosen torch pinned.
* The light install (:func:`make_light_plan`): no PyTorch at all, onnxruntime runs the
  generator. It renders texture banks (numpy only; the default model) and models
  exported to ONNX (``geogan export-onnx``), not the other neural models. It installs
  plain geogan and the ``onnx`` extra's onnxruntime (its version bound read from
  geogan's own metadata; not the whole extra, whose onnx and onnxscript only export).

Stdlib only: the headless installer runs this with QGIS's Python, before any venv exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
LIGHT_RUNTIME_EXTRA = "onnx"  # geogan's extra whose onnxruntime requirement the light install takes
LIGHT_RUNTIME = "onnxruntime"
# measured (docs/onnx.md): the venv's site-packages with geogan 0.1.0 on Linux x86_64, Python 3.11, in MB (10^6 B):
# light (onnxruntime 1.32, no torch; download 173 MB) and CPU torch (2.13.0+cpu; download 347 MB)
LIGHT_INSTALL_MB, TORCH_CPU_INSTALL_MB = 530, 1311
CUDA_PREFIXES = ("nvidia-", "triton", "cuda-")  # distributions only a CUDA torch needs
GPU_CHOICES = ("auto", "cpu", "cuda")


class PlanError(Exception):
    """The plan cannot be made or would do the wrong thing; the message is one line saying what to do."""


@dataclass(frozen=True)
class TorchChoice:
    spec: str  # pip requirement, e.g. "torch" or "torch==2.13.0"
    index_url: str | None  # None: the default index (PyPI)
    cpu_only: bool
    reason: str  # one line for the user


def has_cuda_gpu() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU (an NVIDIA driver and a GPU are present)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_torch(spec: str = "torch", index_url: str | None = None, gpu: str = "auto") -> TorchChoice:
    """The PyTorch build for this machine: CUDA only where ``gpu`` is "cuda" or "auto" finds a GPU."""
    if gpu not in GPU_CHOICES:
        raise PlanError(f"--gpu {gpu} is not one of {', '.join(GPU_CHOICES)}")
    if index_url:
        return TorchChoice(spec, index_url, gpu == "cpu", f"PyTorch from the index you gave ({index_url})")
    if sys.platform == "darwin":
        return TorchChoice(spec, None, True, "macOS: PyTorch from PyPI (CPU and Apple GPU)")
    if gpu == "cuda" or (gpu == "auto" and has_cuda_gpu()):
        why = "--gpu cuda" if gpu == "cuda" else "an NVIDIA GPU was found (nvidia-smi)"
        return TorchChoice(spec, None, False, f"{why}: PyTorch with CUDA from PyPI (about 3 GB)")
    why = "--gpu cpu" if gpu == "cpu" else "no NVIDIA GPU found"
    cpu_index = os.environ.get("GEOGAN_TORCH_CPU_INDEX", "").strip() or CPU_TORCH_INDEX
    return TorchChoice(spec, cpu_index, True, f"{why}: CPU-only PyTorch from {cpu_index} (about 200 MB)")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    url: str
    size_bytes: int | None = None
    requires: tuple = ()  # its Requires-Dist lines


def dry_run(pip: Sequence[str], args: Sequence[str], env: dict | None = None, timeout_s: float = 900) -> list[Package]:
    """What ``pip install ARGS`` would install (pip's --dry-run --report); downloads no wheel where the index
    serves metadata."""
    with tempfile.TemporaryDirectory(prefix="geogan_plan_") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [*pip, "install", "--dry-run", "--quiet", "--report", str(report), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PlanError(f"cannot run pip ({exc}); check the Python given to the installer") from None
        if proc.returncode != 0 or not report.is_file():
            last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
            raise PlanError(f"pip cannot resolve {' '.join(args)}: {last.strip()}")
        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    return [Package(str(i["metadata"]["name"]).lower().replace("_", "-"), str(i["metadata"]["version"]),
                    str(i.get("download_info", {}).get("url", "")),
                    requires=tuple(i["metadata"].get("requires_dist") or ())) for i in items]


def url_size(url: str, timeout_s: float = 15) -> int | None:
    """Bytes behind a wheel URL: a local file's size, else the Content-Length of a HEAD request."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        return path.stat().st_size if path.is_file() else None
    if parsed.scheme not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
    except (OSError, ValueError):
        return None
    return int(length) if length and length.isdigit() else None


def with_sizes(packages: Sequence[Package]) -> list[Package]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda p: url_size(p.url), packages))
    return [Package(p.name, p.version, p.url, s, p.requires) for p, s in zip(packages, sizes)]


@dataclass(frozen=True)
class Plan:
    torch: TorchChoice | None  # None: the light install (no PyTorch)
    torch_version: str | None  # the exact version to install (None: already installed, or the light install)
    packages: tuple = field(default_factory=tuple)  # Package, sizes filled in
    requirements: tuple = ()  # the light install: what is installed after geogan (without its dependencies)

    @property
    def runtime(self) -> str:
        return "torch" if self.torch is not None else "onnx"

    @property
    def reason(self) -> str:
        if self.torch is not None:
            return self.torch.reason
        return (f"light install: {LIGHT_RUNTIME} instead of PyTorch (renders the default texture bank and models "
                "exported with geogan export-onnx, not the other neural models)")

    @property
    def total_bytes(self) -> int:
        return sum(p.size_bytes or 0 for p in self.packages)

    def cuda_packages(self) -> list[str]:
        return [p.name for p in self.packages if p.name.startswith(CUDA_PREFIXES)]

    def describe(self) -> str:
        """One line: the download size and the biggest packages."""
        unknown = sum(p.size_bytes is None for p in self.packages)
        biggest = sorted(self.packages, key=lambda p: -(p.size_bytes or 0))[:3]
        parts = ", ".join(f"{p.name} {p.version} {_mb(p.size_bytes)}" for p in biggest if p.size_bytes)
        installed = LIGHT_INSTALL_MB if self.torch is None else TORCH_CPU_INSTALL_MB if self.torch.cpu_only else None
        return (f"download: about {_mb(self.total_bytes)} for {len(self.packages)} packages"
                + (f" ({parts})" if parts else "") + (f"; {unknown} of unknown size" if unknown else "")
                + (f"; about {installed:,} MB installed" if installed else ""))

    def as_dict(self) -> dict:
        torch = self.torch
        return {"runtime": self.runtime, "torch_spec": torch and torch.spec,
                "torch_index_url": torch and torch.index_url,
                "torch_version": self.torch_version, "reason": self.reason, "total_bytes": self.total_bytes,
                "summary": self.describe(), "cuda_packages": self.cuda_packages(),
                "requirements": list(self.requirements),
                "packages": [{"name": p.name, "version": p.version, "size_bytes": p.size_bytes}
                             for p in self.packages]}


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:,.0f} MB"


def make_plan(pip: Sequence[str], choice: TorchChoice, geogan_spec: str, torch_installed: str | None,
              pip_args: Sequence[str] = (), env: dict | None = None,
              log: Callable[[str], None] = print) -> Plan:
    """Resolve torch (unless installed) and then geogan with that torch pinned; sizes of everything."""
    index = ["--index-url", choice.index_url] if choice.index_url else []
    torch_version = torch_installed
    packages: dict[str, Package] = {}
    if torch_installed is None:
        log(f"resolving {choice.spec} ({choice.reason})")
        for p in dry_run(pip, [*pip_args, *index, choice.spec], env):
            packages[p.name] = p
        torch_version = packages["torch"].version if "torch" in packages else None
        if torch_version is None:
            raise PlanError(f"pip would not install PyTorch for '{choice.spec}'; give --torch a torch requirement")
    with tempfile.TemporaryDirectory(prefix="geogan_plan_") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(f"torch=={torch_version}\n", encoding="utf-8")
        extra = ["--extra-index-url", choice.index_url] if choice.index_url and torch_installed is None else []
        log(f"resolving {geogan_spec} with torch=={torch_version}")
        for p in dry_run(pip, [*pip_args, *extra, "-c", str(constraints), geogan_spec], env):
            packages.setdefault(p.name, p)
    plan = Plan(choice, None if torch_installed else torch_version, tuple(with_sizes(list(packages.values()))))
    if choice.cpu_only and plan.cuda_packages():
        raise PlanError(f"the CPU-only plan would download CUDA packages ({', '.join(plan.cuda_packages()[:3])}"
                        f"...): another index in your pip configuration offers a CUDA torch {torch_version}; "
                        "give --torch 'torch==VERSION+cpu' or remove that index")
    return plan


def requirement_name(requirement: str) -> str:
    """The normalised distribution name a requirement line starts with ("torch>=2.2" -> "torch")."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return name.group(1).lower().replace("_", "-") if name else ""


def with_extra(spec: str, extra: str) -> str:
    """The pip spec ``spec`` asking for geogan's ``extra`` too: "geogan==0.2" -> "geogan[torch]==0.2", a wheel or
    source folder "dist/geogan-0.2-py3-none-any.whl" -> "dist/geogan-0.2-py3-none-any.whl[torch]", a URL ->
    "geogan[torch] @ URL"; a spec that already asks for it is returned as it is."""
    spec = spec.strip()
    named = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\s*\[([^\]]*)\])?(.*)", spec, re.S)
    after_name = named.group(4).strip()[:1] if named else None
    looks_like_path = (os.sep in spec or "/" in spec or spec.startswith(".")
                       or spec.lower().endswith((".whl", ".zip", ".tar.gz")))
    if named and (after_name == "@" or (not looks_like_path and after_name in ("", *"<>=!~;"))):
        head, extras_text, rest = named.group(1), named.group(3), named.group(4)  # a requirement: name[extras]rest
    elif "://" in spec:
        head, extras_text, rest = "geogan", None, f" @ {spec}"
    else:  # a wheel or source folder, maybe with extras already
        path_extras = re.search(r"\[([^\]]*)\]$", spec)
        head = spec[:path_extras.start()] if path_extras else spec
        extras_text, rest = (path_extras.group(1) if path_extras else None), ""
    extras = [e.strip() for e in (extras_text or "").split(",") if e.strip()]
    return spec if extra in extras else f"{head}[{','.join([*extras, extra])}]{rest}"


def _extra_marker(marker: str, extra: str) -> bool:
    return re.search(rf"extra\s*==\s*[\"']{extra}[\"']", marker) is not None


def runtime_requirement(requires_dist: Sequence[str]) -> str:
    """The ``onnx`` extra's onnxruntime requirement in geogan's metadata (its version bound, its marker dropped);
    any onnxruntime for a geogan without one."""
    for line in requires_dist:
        req, _, marker = line.partition(";")
        if requirement_name(req) == LIGHT_RUNTIME and _extra_marker(marker, LIGHT_RUNTIME_EXTRA):
            return req.strip()
    return LIGHT_RUNTIME


def requires_torch(requires_dist: Sequence[str]) -> bool:
    """Whether a distribution's own requirements (not an extra's) hold torch; for geogan: one from before PyTorch
    became its ``torch`` extra."""
    return any(requirement_name(req) == "torch" and "extra" not in marker
               for req, _, marker in (line.partition(";") for line in requires_dist))


def make_light_plan(pip: Sequence[str], geogan_spec: str, pip_args: Sequence[str] = (), env: dict | None = None,
                    log: Callable[[str], None] = print) -> Plan:
    """The light install: plain geogan and :func:`runtime_requirement`; sizes of everything. Refused when
    anything would still bring torch (a geogan that requires it, or another requirement)."""
    log(f"resolving {geogan_spec} without PyTorch (light install: {LIGHT_RUNTIME})")
    # --ignore-installed: geogan's metadata even where it is installed already (a second run, an upgrade)
    query = [*pip_args, "--no-deps", "--ignore-installed", geogan_spec]
    found = [p for p in dry_run(pip, query, env) if p.name == "geogan"]
    if not found:
        raise PlanError(f"pip would not install geogan for '{geogan_spec}'; give --geogan a geogan wheel or version")
    if requires_torch(found[0].requires):
        raise PlanError(f"geogan {found[0].version} requires PyTorch (later versions have it as the 'torch' extra): "
                        "install with PyTorch instead (--runtime torch), or give --geogan a newer geogan")
    requirements = (geogan_spec, runtime_requirement(found[0].requires))
    packages = {found[0].name: found[0]}
    for p in dry_run(pip, [*pip_args, *requirements], env):
        packages.setdefault(p.name, p)
    if "torch" in packages:
        pulling = sorted(p.name for p in packages.values() if requires_torch(p.requires)) or ["a dependency"]
        raise PlanError(f"the light install would still download torch (required by {', '.join(pulling)}); "
                        "install with PyTorch instead (--runtime torch)")
    return Plan(None, None, tuple(with_sizes(list(packages.values()))), requirements)
