"""HTTP for ``geogan serve``: a WSGI app over :class:`geogan.serve.TileService`, served by waitress.

Routes (GET and HEAD):

* ``/{z}/{x}/{y}.png``: a 256 px Web Mercator tile; ``ETag`` names the cache key and the tile,
  ``If-None-Match`` with it answers 304 without reading or rendering anything, ``Cache-Control`` is
  ``no-cache`` (clients keep tiles and revalidate them, since another model behind the same URL changes them;
  ``max_age_s`` for a fixed deployment), ``X-Geogan-Tile`` says hit, rendered or built. A malformed path or a
  tile that does not exist at its zoom is 400, a tile outside the area or the zooms 404, a failed render
  500, each with a one-line text body;
* ``/tilejson.json``: TileJSON 3.0.0 (absolute tile URL from the request's Host);
* ``/``: an offline viewer (Leaflet, bundled in ``geogan/data/web/leaflet``, no CDN).

Why waitress: a threaded WSGI server (renders are blocking torch calls, so threads are the natural fit; a
cached tile is answered while another renders), pure Python with no dependencies of its own (it installs
into QGIS's Python on Windows too), maintained by the Pylons project, and production-grade (request
size limits, slow-client buffering, keep-alive).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterable

from .errors import GeoganError, InputError
from .serve import TileService
from .xyz import TileRequestError, parse_tile_path

log = logging.getLogger("geogan")

CONTENT_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".png": "image/png", ".html": "text/html; charset=utf-8", "": "text/plain; charset=utf-8"}
STATUS_TEXT = {200: "200 OK", 304: "304 Not Modified", 400: "400 Bad Request", 404: "404 Not Found",
               405: "405 Method Not Allowed", 500: "500 Internal Server Error"}
TILEJSON_MARK = "/*TILEJSON*/null"


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


def text_response(status: int, line: str) -> Response:
    """A one-line plain-text answer (errors), never cached."""
    body = (line.splitlines()[0] if line else "").encode() + b"\n"
    return Response(status, (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")), body)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak or strong) or is ``*``."""
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in (t[2:] if t.startswith("W/") else t for t in tags)


def tilejson(service: TileService, base_url: str) -> dict:
    """The service's TileJSON 3.0.0 document with tiles under ``base_url``."""
    low, high = service.policy.served_range()
    w, s, e, n = service.area.box
    native_low, _ = service.policy.native_range((s + n) / 2)
    return {"tilejson": "3.0.0", "name": f"geogan synthetic aerial ({service.model_name})",
            "description": f"Synthetic aerial imagery rendered by geogan model '{service.model_name}' "
                           f"(GSD {service.policy.gsd_m:g} m, seed {service.settings.seed}); not a photograph",
            "version": "1.0.0", "attribution": attribution(service), "scheme": "xyz",
            "tiles": [f"{base_url}/{{z}}/{{x}}/{{y}}.png"], "minzoom": low, "maxzoom": high,
            "bounds": [w, s, e, n], "center": [(w + e) / 2, (s + n) / 2, native_low]}


def attribution(service: TileService) -> str:
    """Synthetic imagery, and the data's licence when it is OpenStreetMap's."""
    from .sources import is_osm_path

    text = f"Synthetic imagery: geogan ({service.model_name}), not a photograph"
    if not service.settings.osm or any(is_osm_path(p) for p in service.settings.osm):
        text += "; map data &copy; OpenStreetMap contributors"
    return text


def static_files() -> dict[str, tuple[bytes, str]]:
    """``/leaflet/...`` path -> (bytes, content type) for the bundled Leaflet (read once; nothing else served)."""
    root = resources.files("geogan").joinpath("data/web/leaflet")
    out: dict[str, tuple[bytes, str]] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file():
                suffix = "." + child.name.rsplit(".", 1)[1] if "." in child.name else ""
                out[f"/leaflet/{prefix}{child.name}"] = (child.read_bytes(),
                                                          CONTENT_TYPES.get(suffix, CONTENT_TYPES[""]))

    walk(root, "")
    return out


def viewer_template() -> str:
    return resources.files("geogan").joinpath("data/web/index.html").read_text(encoding="utf-8")


class TileApp:
    """The WSGI application (one instance per server; thread-safe: the service locks what it must)."""

    def __init__(self, service: TileService, max_age_s: int = 0) -> None:
        self.service = service
        self.cache_control = "public, no-cache" if max_age_s <= 0 else f"public, max-age={int(max_age_s)}"
        self.static = static_files()
        self.viewer = viewer_template()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            response = text_response(405, f"method {method} is not served; use GET or HEAD")
            response = Response(405, response.headers + (("Allow", "GET, HEAD"),), response.body)
        else:
            response = self._guarded(environ)
        headers = list(response.headers) + [("Content-Length", str(len(response.body))),
                                            ("Access-Control-Allow-Origin", "*")]
        start_response(STATUS_TEXT[response.status], headers)
        return [b"" if method == "HEAD" else response.body]

    def _guarded(self, environ: dict) -> Response:
        path = environ.get("PATH_INFO", "/") or "/"
        try:
            return self.route(path, environ)
        except TileRequestError as exc:
            return text_response(exc.status, str(exc))
        except GeoganError as exc:
            log.warning("%s: %s", path, exc)
            return text_response(500, f"{path} could not be made: {exc}")
        except Exception as exc:  # a bug: one line to the client, the traceback to the log
            log.exception("%s failed", path)
            return text_response(500, f"{path} failed: {type(exc).__name__}: {str(exc).strip()[:200]}")

    def route(self, path: str, environ: dict) -> Response:
        if path in ("/", "/index.html"):
            return self._viewer(environ)
        if path == "/tilejson.json":
            body = json.dumps(tilejson(self.service, base_url(environ)), indent=1).encode()
            return Response(200, (("Content-Type", "application/json"), ("Cache-Control", "no-cache")), body)
        if path in self.static:
            data, ctype = self.static[path]
            return Response(200, (("Content-Type", ctype), ("Cache-Control", "public, max-age=86400")), data)
        if path.count("/") == 3 and not path.startswith("/leaflet/"):
            return self._tile(path, environ)
        return text_response(404, f"no page '{path[:60]}'; tiles are at /{{z}}/{{x}}/{{y}}.png, TileJSON at "
                                  "/tilejson.json and the viewer at /")

    def _viewer(self, environ: dict) -> Response:
        doc = json.dumps(tilejson(self.service, base_url(environ))).replace("</", "<\\/")
        body = self.viewer.replace(TILEJSON_MARK, doc).encode()
        return Response(200, (("Content-Type", CONTENT_TYPES[".html"]), ("Cache-Control", "no-cache")), body)

    def _tile(self, path: str, environ: dict) -> Response:
        tile = parse_tile_path(path)  # 400
        self.service.check(tile)  # 404
        etag = self.service.etag(tile)
        cached = (("ETag", etag), ("Cache-Control", self.cache_control))
        if etag_matches(environ.get("HTTP_IF_NONE_MATCH"), etag):
            return Response(304, cached)
        answer = self.service.get(tile)
        return Response(200, (("Content-Type", "image/png"),) + cached + (("X-Geogan-Tile", answer.source),),
                        answer.png)


def base_url(environ: dict) -> str:
    """``scheme://host[:port]`` the client used (its Host header), for absolute URLs."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT', '80')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


# ---------------------------------------------------------------- running it
def create_server(app: Callable, host: str = "127.0.0.1", port: int = 8000, threads: int = 6):
    """A waitress server bound to ``host:port`` (0: a free port; see ``.effective_port``), not yet running."""
    try:
        import waitress
    except ImportError:
        raise InputError("geogan serve needs the waitress package: pip install 'geogan[serve]'") from None
    try:
        return waitress.create_server(app, host=host, port=port, threads=threads, ident="geogan",
                                      clear_untrusted_proxy_headers=True)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or "
                         "--host") from None


class BackgroundServer:
    """A waitress server running in a thread (tests, benchmarks): ``url``, and :meth:`stop`."""

    def __init__(self, app: Callable, host: str = "127.0.0.1", port: int = 0, threads: int = 6) -> None:
        self.server = create_server(app, host, port, threads)
        self.url = f"http://{host}:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, name="geogan-serve", daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close every connection and the listening socket from the server's own loop, then its workers."""
        server = self.server

        def close_all() -> None:
            for channel in list(server._map.values()):
                if channel is not server and channel is not server.trigger:
                    channel.close()
            server.close()

        server.trigger.pull_trigger(close_all)
        self.thread.join(timeout_s)
        server.task_dispatcher.shutdown()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
