"""Runs geogan for the QGIS plugin, in a Python process of its own.

QGIS never imports geogan, torch, rasterio or pyproj itself: its own numpy,
GDAL, PROJ and GEOS stay as they are, and geogan's wheels (with their own
bundled GDAL/PROJ/GEOS and a possibly newer numpy) live in a separate
interpreter (by default the plugin-owned venv made by ``installer.py``).

This file is run as a script by that interpreter, never imported by QGIS::

    PYTHON worker.py < request.json

Protocol (stdlib only, so any Python >= 3.10 with geogan can run it):

* stdin, first line: one JSON object ``{"op": OP, "kwargs": {...}}`` with
  OP one of ``check``, ``schema``, ``rasterize``, ``render``, ``mesh``.
* stdin, later lines: ``cancel`` asks the job to stop (checked by geogan once
  per tile). End of stdin (the plugin went away) also cancels.
* stdout: only protocol lines, each ``@@geogan@@ {json}`` with ``type`` one of
  ``progress`` (fraction, message), ``log`` (level, message), ``result`` (op-specific) or ``error``
  (message: one line, exit_code, kind). Anything the libraries print goes to
  stderr, which the plugin keeps for its log.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import traceback

PREFIX = "@@geogan@@ "

# import name -> distribution name, for the dependency check and its message
REQUIRED = {
    "geogan": "geogan",
    "numpy": "numpy",
    "rasterio": "rasterio",
    "pyproj": "pyproj",
    "shapely": "shapely",
    "pyogrio": "pyogrio",
    "safetensors": "safetensors",
}
# what runs the generator, one of them needed: torch (the full install) or onnxruntime (the light one, which
# renders texture banks, numpy only, and models exported to ONNX, ``geogan export-onnx``)
GENERATOR_RUNTIMES = {"torch": "torch", "onnxruntime": "onnxruntime"}

_out = None  # the protocol stream (the original stdout)


def emit(obj: dict) -> None:
    _out.write(PREFIX + json.dumps(obj) + "\n")
    _out.flush()


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def op_check(kwargs: dict) -> dict:
    """Which required modules are findable, and their versions (fast: no imports).

    With ``kwargs["import"]`` true, each module is really imported, which is
    slower (torch) but catches broken installs.
    """
    missing, broken, versions = [], {}, {}
    for mod, dist in REQUIRED.items():
        if importlib.util.find_spec(mod) is None:
            missing.append(dist)
            continue
        _check_import(mod, dist, kwargs.get("import"), broken, versions)
    runtimes = [(mod, dist) for mod, dist in GENERATOR_RUNTIMES.items() if _findable(mod)]
    if not runtimes:
        missing.append(" or ".join(GENERATOR_RUNTIMES.values()))
    for mod, dist in runtimes:
        _check_import(mod, dist, kwargs.get("import"), broken, versions)
    geogan_version = versions.get("geogan")
    if "geogan" not in missing and geogan_version in (None, "?"):
        geogan_version = _source_version()  # a source checkout on the path
        versions["geogan"] = geogan_version or "?"
    return {
        "ok": not missing and not broken,
        "python": sys.executable,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "missing": missing,
        "broken": broken,
        "versions": versions,
        "geogan_version": geogan_version,
        "runtime": "torch" if "torch" in versions else "onnx" if "onnxruntime" in versions else None,
        "models": _models() if "geogan" not in missing else [],
    }


def _findable(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _check_import(mod: str, dist: str, really: bool, broken: dict, versions: dict) -> None:
    """Record ``dist``'s version in ``versions``, or, when ``really`` and importing ``mod`` fails, why in
    ``broken``."""
    if really:
        try:
            __import__(mod)
        except Exception as exc:  # noqa: BLE001 - report any import failure
            broken[dist] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return
    versions[dist] = _version(dist) or "?"


def _source_version() -> str | None:
    """geogan.__version__ read from its __init__.py, without importing geogan."""
    import re

    spec = importlib.util.find_spec("geogan")
    if spec is None or not spec.origin:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            match = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", fh.read(), re.M)
    except OSError:
        return None
    return match.group(1) if match else None


def _schema_json(rules: str | None = None) -> list[dict]:
    """The class schema a run used: ``rules`` (a class rules TOML) or geogan's built-in one."""
    from geogan.classes import load_schema

    return [{"id": int(c.id), "name": str(c.name), "color": [int(v) for v in c.color]}
            for c in load_schema(rules).classes]


def _summary(description, max_chars: int = 200) -> str:
    """A card description's first clause (up to the first '. ' or ': '), cut at a word if long."""
    text = str(description or "").split(". ")[0].split(": ")[0].strip().rstrip(".")
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + "..."


def _models() -> list[dict]:
    """The installed models that render aerial images: name, a one-sentence summary, licence, GSD, whether it runs
    without torch; without torch (the light install) only those, the models it can run."""
    try:
        from geogan.zoo import list_models

        cards = list_models()
    except Exception:  # noqa: BLE001 - an old or broken geogan: no list, the check still answers
        return []
    out, with_torch = [], _findable("torch")
    for card in cards:
        if "rgb" not in (card.get("outputs") or []):
            continue  # segmenters, class-map dreamers: not render models
        torch_free = _runs_without_torch(card)
        if not with_torch and not torch_free:
            continue
        out.append({"name": str(card.get("name")), "summary": _summary(card.get("description")),
                    "license": str(card.get("license") or "not stated"), "gsd_m": card.get("gsd_m"),
                    "style": bool((card.get("arch_params") or {}).get("use_style_encoder")),
                    "onnx": "onnx" in card, "torch_free": torch_free})
    return out


def _runs_without_torch(card: dict) -> bool:
    """A texture bank (``"arch": "quilt"``: numpy only) or a generator exported to ONNX (run by onnxruntime)."""
    return card.get("arch") == "quilt" or "onnx" in card


class _LogToPlugin(logging.Handler):
    """geogan's log records (INFO and up) as protocol lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            emit({"type": "log", "level": record.levelname, "message": record.getMessage()})
        except Exception:  # noqa: BLE001 - logging must never break a render
            pass


def _progress(fraction: float, message: str = "") -> None:
    emit({"type": "progress", "fraction": float(fraction), "message": str(message)})


def _path_or_none(p) -> str | None:
    return None if p is None else str(p)


def _log_info(message: str) -> None:
    emit({"type": "log", "level": "INFO", "message": message})


def _model_gsd_m(model: str) -> float:
    """The native GSD written in a model's card (a zoo name or a path)."""
    from geogan.zoo import resolve_model

    return float(json.loads(resolve_model(model).read_text(encoding="utf-8"))["gsd_m"])


def _source_options(values: dict):
    """``geogan.sources.SourceOptions`` from the plain values the plugin sends (class_name, height_field,
    levels_field)."""
    from geogan.errors import InputError

    try:
        from geogan.sources import SourceOptions
    except ImportError:
        raise InputError("this geogan has no 'Class for every feature', 'Height field' or 'Levels field'; "
                         "upgrade geogan (installer.py --upgrade)") from None
    return SourceOptions(**{k: v for k, v in values.items() if v is not None})


def _prepared(kwargs: dict, default_gsd_m) -> dict:
    """The plugin's own keys turned into geogan's: ``example`` (the bundled sample town as the input),
    ``square_pixels`` (a box and GSD giving square pixels, see ``worker_grid``; not with ``res``) and
    ``source_options`` (plain values -> ``SourceOptions``)."""
    kwargs = dict(kwargs)
    if kwargs.pop("example", False):
        from geogan.api import sample_osm_path

        kwargs["osm"] = [str(sample_osm_path())]
    if kwargs.get("source_options") is not None:
        kwargs["source_options"] = _source_options(kwargs["source_options"])
    if kwargs.pop("square_pixels", False) and kwargs.get("res") is None:
        here = os.path.dirname(os.path.abspath(__file__))
        if here not in sys.path:  # run as a script it is there; loaded as a module (tests) it may not be
            sys.path.insert(0, here)
        from worker_grid import squared

        gsd_m = kwargs.get("gsd_m") or default_gsd_m()
        kwargs = squared(kwargs, float(gsd_m), _log_info)
    return kwargs


def _render(kwargs: dict, cancel):
    """``geogan.render`` with the request as a typed, checked value (:class:`geogan.settings.RenderRequest`,
    built by ``geogan.api.request_from_kwargs``): a key render() does not take, or a bad value, is a
    one-line GeoganError naming it."""
    try:
        from geogan.api import request_from_kwargs, run_request
    except ImportError:  # a geogan before the render core: its render() checks the keywords itself
        import geogan

        return geogan.render(**kwargs, progress=_progress, cancel=cancel)
    return run_request(request_from_kwargs({**kwargs, "progress": _progress, "cancel": cancel}))


def op_render(kwargs: dict, cancel) -> dict:
    import geogan

    kwargs = _prepared(kwargs, lambda: _model_gsd_m(kwargs.get("model") or "default"))
    result = _render(kwargs, cancel)
    return {
        "aerial": _path_or_none(getattr(result, "aerial", None)),
        "height": _path_or_none(getattr(result, "height", None)),
        "classes": _path_or_none(getattr(result, "classes", None)),
        "scene": _path_or_none(getattr(result, "scene", None)),
        "schema": _schema_json(kwargs.get("rules")),
    }


def op_rasterize(kwargs: dict, cancel) -> dict:
    import geogan

    kwargs = _prepared(kwargs, lambda: 0.5)
    if kwargs.get("res") is None and not kwargs.get("tap"):
        for key in ("res", "tap"):  # not sent: a geogan without them still runs
            kwargs.pop(key, None)
        path = geogan.rasterize(**kwargs, progress=_progress, cancel=cancel)
    else:
        path = _rasterize_on_grid(kwargs, cancel)
    return {"classes": str(path), "schema": _schema_json(kwargs.get("rules"))}


def _rasterize_on_grid(kwargs: dict, cancel):
    """``geogan.rasterize`` with ``res``/``tap``, which its public signature may lack (the render core's
    ``AreaSettings`` holds them)."""
    import inspect
    from pathlib import Path

    import geogan

    if "res" in inspect.signature(geogan.rasterize).parameters:
        return geogan.rasterize(**kwargs, progress=_progress, cancel=cancel)
    from geogan import core
    from geogan.settings import AreaSettings, RuntimeSettings, SourceSettings

    k = dict(kwargs)
    area = AreaSettings(k.get("bbox"), k.get("bbox_crs") or "EPSG:4326", k.get("crs") or "EPSG:3857",
                        k.get("gsd_m") if k.get("res") is None else None, k.get("res"), bool(k.get("tap")))
    sources = SourceSettings(k.get("osm"), None, k.get("class_field"), k.get("rules"), None, k.get("source_options"))
    runtime = RuntimeSettings(force=bool(k.get("force")), progress=_progress, cancel=cancel)
    return core.rasterize(sources, area, Path(k["out"]), overwrite=bool(k.get("overwrite")), runtime=runtime)


def op_mesh(kwargs: dict, cancel) -> dict:
    from pathlib import Path

    from geogan.errors import InputError

    try:
        from geogan.mesh import export_mesh
    except ImportError:
        raise InputError("this geogan has no mesh export; upgrade geogan "
                         "(installer.py --upgrade)") from None
    kwargs = dict(kwargs)
    aerial, height, out = (Path(kwargs.pop(k)) for k in ("aerial", "height", "out"))
    _progress(0.0, f"writing mesh {out.name}")
    path = export_mesh(aerial, height, out, **kwargs)
    _progress(1.0, f"wrote {path}")
    return {"mesh": str(path)}


def op_schema(kwargs: dict, cancel) -> dict:
    return {"schema": _schema_json(kwargs.get("rules"))}


OPS = {"render": op_render, "rasterize": op_rasterize, "mesh": op_mesh, "schema": op_schema}


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def main() -> int:
    global _out
    # Keep fd 1 for the protocol; send everything else (print, C libraries) to stderr.
    _out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    line = sys.stdin.readline()
    try:
        request = json.loads(line)
        op = request["op"]
        kwargs = dict(request.get("kwargs") or {})
    except (ValueError, KeyError, TypeError):
        emit({"type": "error", "message": "geogan worker: the request is not valid JSON",
              "exit_code": 2, "kind": "ProtocolError"})
        return 2

    if op == "check":
        emit({"type": "result", **op_check(kwargs)})
        return 0
    if op not in OPS:
        emit({"type": "error", "message": f"geogan worker: unknown op '{op}'",
              "exit_code": 2, "kind": "ProtocolError"})
        return 2

    cancelled = threading.Event()

    def watch_stdin() -> None:
        for ln in sys.stdin:
            if ln.strip() == "cancel":
                break
        cancelled.set()  # 'cancel' or end of input (the plugin went away)

    threading.Thread(target=watch_stdin, daemon=True).start()
    geogan_log = logging.getLogger("geogan")
    geogan_log.addHandler(_LogToPlugin())
    geogan_log.setLevel(logging.INFO)

    try:
        from geogan.errors import GeoganError
    except Exception as exc:  # noqa: BLE001
        emit({"type": "error", "exit_code": 3, "kind": "ImportError",
              "message": f"geogan cannot be imported by {sys.executable}: "
                         f"{_one_line(f'{type(exc).__name__}: {exc}')}"})
        return 3

    try:
        result = OPS[op](kwargs, cancelled.is_set)
    except GeoganError as exc:
        emit({"type": "error", "message": _one_line(str(exc)) or type(exc).__name__,
              "exit_code": int(getattr(exc, "exit_code", 1)), "kind": type(exc).__name__})
        return int(getattr(exc, "exit_code", 1)) or 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, traceback in the log
        traceback.print_exc()
        emit({"type": "error", "exit_code": 1, "kind": type(exc).__name__,
              "message": f"geogan failed unexpectedly: {type(exc).__name__}: {_one_line(str(exc))}"})
        return 1
    emit({"type": "result", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
