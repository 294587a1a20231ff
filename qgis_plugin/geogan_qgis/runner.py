"""Start ``worker.py`` in geogan's Python and talk to it (stdlib only, no QGIS).

``run_worker`` is what the algorithms call: it sends one request, turns the
worker's progress lines into ``on_progress`` calls, forwards a cancel request
when ``is_canceled()`` turns true, and returns the result or raises
``WorkerError`` with geogan's one-line message.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

WORKER = Path(__file__).with_name("worker.py")
PREFIX = "@@geogan@@ "

# Variables QGIS sets for its own Python/GDAL/PROJ that would point another
# interpreter (and its wheels' bundled GDAL/PROJ) at the wrong files.
_STRIP_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE",
              "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA", "GEOTIFF_CSV")


class WorkerError(Exception):
    """The worker failed; ``str(exc)`` is one line for the user."""

    def __init__(self, message: str, exit_code: int = 1, kind: str = "", log_tail: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind
        self.log_tail = log_tail


def worker_env() -> dict:
    """Environment for the worker: QGIS's Python/GDAL/PROJ settings removed.

    ``GEOGAN_PYTHONPATH`` (os.pathsep-separated) becomes the worker's
    PYTHONPATH: a source checkout of geogan for development and CI.
    """
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    extra = os.environ.get("GEOGAN_PYTHONPATH", "").strip()
    if extra:
        env["PYTHONPATH"] = extra
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def _popen(python: str, **kw) -> subprocess.Popen:
    if os.name == "nt":  # no console window flashing up from QGIS on Windows
        kw["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return subprocess.Popen([python, "-X", "utf8", str(WORKER)], env=worker_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", bufsize=1, **kw)


def _pump(stream, tag: str, out: "queue.Queue") -> None:
    for line in stream:
        out.put((tag, line.rstrip("\n")))
    out.put((tag, None))


def run_worker(python: str, op: str, kwargs: dict | None = None, *,
               on_progress: Callable[[float, str], None] | None = None,
               on_log: Callable[[str], None] | None = None,
               on_message: Callable[[str, str], None] | None = None,
               is_canceled: Callable[[], bool] | None = None,
               cancel_grace_s: float = 120.0, timeout_s: float | None = None) -> dict:
    """Run one request in a fresh worker process; return its result dict.

    ``on_progress(fraction, message)`` gets geogan's progress,
    ``on_message(level, message)`` its log records (INFO and up) and
    ``on_log(line)`` whatever else the worker writes to stderr.

    Raises ``WorkerError`` with a one-line message when geogan reports an
    error, the worker cannot start, dies, or is cancelled. On cancel the
    worker is asked to stop (geogan checks once per tile); if it has not
    stopped after ``cancel_grace_s`` it is killed.
    """
    try:
        proc = _popen(python)
    except OSError as exc:
        raise WorkerError(f"cannot start geogan's Python '{python}': {exc.strerror or exc}",
                          exit_code=3, kind="StartError") from None
    lines: "queue.Queue" = queue.Queue()
    threads = [threading.Thread(target=_pump, args=(proc.stdout, "out", lines), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, "err", lines), daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.stdin.write(json.dumps({"op": op, "kwargs": kwargs or {}}) + "\n")
        proc.stdin.flush()
    except OSError:
        pass  # the worker died at once; its stderr says why

    result = error = None
    stderr_tail: list[str] = []
    open_streams = 2
    cancel_sent_at = None
    started = time.monotonic()
    while open_streams:
        if is_canceled is not None and cancel_sent_at is None and is_canceled():
            cancel_sent_at = time.monotonic()
            _send_cancel(proc)
        if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > cancel_grace_s:
            proc.kill()
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            proc.kill()
            error = error or {"message": f"geogan's Python '{python}' did not answer within "
                                         f"{timeout_s:.0f} s", "exit_code": 1, "kind": "Timeout"}
        try:
            tag, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        if tag == "err":
            stderr_tail = (stderr_tail + [line])[-40:]
            if on_log is not None and line.strip():
                on_log(line)
            continue
        if not line.startswith(PREFIX):
            if on_log is not None and line.strip():
                on_log(line)
            continue
        try:
            msg = json.loads(line[len(PREFIX):])
        except ValueError:
            continue
        kind = msg.get("type")
        if kind == "progress":
            if on_progress is not None:
                on_progress(float(msg.get("fraction", 0.0)), str(msg.get("message", "")))
        elif kind == "log":
            if on_message is not None:
                on_message(str(msg.get("level", "INFO")), str(msg.get("message", "")))
        elif kind == "result":
            result = msg
        elif kind == "error":
            error = msg
    try:
        proc.stdin.close()
    except OSError:
        pass
    rc = proc.wait()
    for t in threads:
        t.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    tail = "\n".join(stderr_tail)
    if error is not None:
        raise WorkerError(str(error.get("message") or "geogan failed"),
                          exit_code=int(error.get("exit_code", 1) or 1),
                          kind=str(error.get("kind", "")), log_tail=tail)
    if cancel_sent_at is not None and result is None:
        raise WorkerError("geogan was cancelled", exit_code=130, kind="Cancelled", log_tail=tail)
    if result is None:
        last = next((ln for ln in reversed(stderr_tail) if ln.strip()), "no output")
        raise WorkerError(f"geogan's Python '{python}' stopped with exit code {rc}: {last.strip()}",
                          exit_code=1, kind="WorkerDied", log_tail=tail)
    result.pop("type", None)
    return result


def _send_cancel(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
    except OSError:
        proc.kill()


def check_python(python: str, full_import: bool = False, timeout_s: float = 60.0) -> dict:
    """Ask ``python`` whether geogan and its dependencies are there.

    Returns the worker's check dict; on a Python that cannot run at all,
    ``{"ok": False, "error": "..."}``.
    """
    if not python or not Path(python).exists():
        return {"ok": False, "python": python, "error": f"'{python}' does not exist"}
    try:
        return run_worker(python, "check", {"import": bool(full_import)}, timeout_s=timeout_s)
    except WorkerError as exc:
        return {"ok": False, "python": python, "error": str(exc)}


def base_python() -> str:
    """The interpreter QGIS embeds (or that runs this code), as a runnable python.

    Inside QGIS ``sys.executable`` is unreliable: it is QGIS itself on Windows
    and whatever ``python3`` comes first on PATH on Linux (a pyenv shim, say).
    The interpreter is found from ``sys.base_prefix`` instead: Linux/macOS
    ``bin/python3.X``, Windows (OSGeo4W, standalone) ``python.exe``.
    """
    major, minor = sys.version_info[:2]
    base = Path(sys.base_prefix)
    candidates = ([base / "python.exe", base / "python3.exe"] if os.name == "nt" else
                  [base / "bin" / f"python{major}.{minor}", base / "bin" / "python3"])
    for cand in candidates:
        if cand.is_file():
            return str(cand)
    return sys.executable
