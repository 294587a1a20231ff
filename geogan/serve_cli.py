"""`geogan serve`: a synthetic XYZ basemap over HTTP (see :mod:`geogan.serve` and :mod:`geogan.serve_http`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

SERVE_MODULES = ("serve", "serve_http", "serve_cli")


class _TileLogFilter(logging.Filter):
    """While serving: the server's own lines, and only errors of the renders (not each tile's notes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.module in SERVE_MODULES or record.levelno >= logging.ERROR


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    osm: Optional[list[Path]] = typer.Option(None, "--osm", help="Vector source(s): OSM .osm/.osm.pbf, GPKG, "
                                             "GeoJSON or Shapefile. Repeat for several. None: --bbox from Overpass."),
    bbox: Optional[str] = typer.Option(None, help="Served area west,south,east,north in degrees (default: the "
                                                  "data's extent)."),
    model: str = typer.Option("default", help="Zoo model name or path to a model .json/.safetensors."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16 (see geogan render --help)."),
    rules: Optional[Path] = typer.Option(None, help="Class rules TOML (default: built-in schema)."),
    class_field: Optional[str] = typer.Option(None, help="Attribute holding class names/ids instead of OSM tags."),
    seed: int = typer.Option(0, help="Random seed (same seed, same tiles)."),
    tile_cache: Optional[Path] = typer.Option(None, help="Tile cache folder (default: <cache-dir>/tiles); one "
                                                         "subfolder per model, data and seed."),
    overview_levels: int = typer.Option(3, help="Zooms below the model's own built from finer tiles (0..6; each "
                                                "costs 4x the renders)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on (0: any free port)."),
    threads: int = typer.Option(6, help="HTTP worker threads (renders still run one at a time)."),
    max_age: int = typer.Option(0, help="Cache-Control max-age of tiles in seconds (0: no-cache, clients "
                                        "revalidate with the ETag)."),
    overpass_url: Optional[str] = typer.Option(None, help="Overpass API endpoint when no --osm is given (default "
                                                          "$GEOGAN_OVERPASS_URL or the public one)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache for downloaded/clipped OSM (default ~/.cache/geogan)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the OSM cache (still writes it)."),
) -> None:
    """Serve synthetic aerial XYZ tiles (/{z}/{x}/{y}.png, TileJSON, a viewer at /) rendered on demand."""
    from .cli import parse_bbox, run_guarded
    from .serve import ServeSettings
    from .settings import OsmFetch

    def settings() -> ServeSettings:
        return ServeSettings(tuple(osm or ()), parse_bbox(bbox), model, device, precision, rules, class_field, seed,
                             tile_cache, overview_levels, OsmFetch(overpass_url, cache_dir, not no_cache))

    service, server = run_guarded(lambda: _start(settings(), host, port, threads, max_age))
    _announce(service, host, server.effective_port)
    server.run()  # returns on Ctrl-C
    counts = service.counts
    typer.echo(f"stopped: {counts['rendered']} tiles rendered, {counts['built']} built from finer ones, "
               f"{counts['hit']} answered from the cache")


def _start(settings, host: str, port: int, threads: int, max_age_s: int):
    """The HTTP server (bound first, so a taken port is refused before the model loads; not yet running) and
    the tile service (model loaded, area opened) behind it."""
    from .errors import InputError
    from .serve import TileService
    from .serve_http import TileApp, create_server

    if not 1 <= threads <= 64:
        raise InputError(f"--threads {threads} must be 1..64")
    app = _Deferred()
    server = create_server(app, host, port, threads)
    try:
        service = TileService(settings)
        service.warm_up()
    except BaseException:
        server.close()
        raise
    app.target = TileApp(service, max_age_s)
    return service, server


class _Deferred:
    """A WSGI app set once the service is ready (the server only answers after that, in ``run``)."""

    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


def _announce(service, host: str, port: int) -> None:
    """Where to look (viewer, TileJSON, the QGIS URL); from here on only the server's own log lines."""
    from .cli import _state

    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
    low, high = service.policy.served_range()
    typer.echo(f"serving model '{service.model_name}' over {', '.join(map(str, service.area.paths))}; zooms "
               f"{low}..{high}; tiles cached in {service.cache.root}")
    typer.echo(f"viewer: {url}/   TileJSON: {url}/tilejson.json   QGIS XYZ URL: {url}/{{z}}/{{x}}/{{y}}.png")
    typer.echo("Ctrl-C stops the server")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is 1" while tiles render
    if not _state["verbose"]:
        for handler in logging.getLogger("geogan").handlers:
            handler.addFilter(_TileLogFilter())
