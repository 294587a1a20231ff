"""The tiles of ``geogan serve``: Web Mercator XYZ tiles rendered on demand with one loaded model.

:class:`TileService` is the server without HTTP (:mod:`geogan.serve_http` puts it on the network):

* the area: ``--osm`` files (a large OSM file clipped once to ``--bbox``) or, with no file, ``--bbox``
  fetched once from Overpass through the OSM cache (:func:`prepare_area`); tiles that do not meet it are 404;
* the zooms (:class:`ZoomPolicy`): a tile is rendered by the model where its ground pixel at the tile's
  latitude is 0.5..2 times the model's GSD (:func:`geogan.xyz.native_zoom_range`), and by a coarser member of
  the model's resolution pyramid (:func:`geogan.zoo.pyramid_cards`, e.g. ``default_8m``) where that member is
  the one a render of the tile's GSD takes (:func:`geogan.zoo.choose_for_gsd`) and the pixel is within its
  own window; up to ``overview_levels`` zooms coarser than a rendered zoom are built from their four
  children (box-filtered, cached too); other zooms are 404 with a line saying the range;
* a native tile is one call of the public API (:meth:`geogan.api.Renderer.render`) on the tile's exact
  EPSG:3857 bounds at the GSD that makes it 256 x 256 px, so whatever the render core does (e.g. world
  anchoring) applies to tiles too;
* the disk cache (:class:`TileCache`): PNGs under ``<cache_dir>/<key>/z/x/y.png``, written atomically; the
  key hashes the geogan version, the model card and weights, the precision, the class rules, the sources
  (paths, sizes, times) and the seed, so another model or data never serves stale tiles. The ETag is
  the key and the tile.

Renders run one at a time (one model; torch already uses every core); cached tiles are answered
concurrently, and two requests for the same uncached tile render it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import __version__
from .errors import InputError, RenderError, SourceError
from .settings import OsmFetch, RuntimeSettings
from .xyz import (TILE_PX, LonLatBox, TileId, TileRequestError, boxes_meet, ground_resolution_m, native_zoom_range,
                  tile_bounds_lonlat, tile_bounds_m, tile_centre_lat, tile_of_lonlat)
from .zoo import choose_for_gsd, pyramid_cards

log = logging.getLogger("geogan")

FETCH_MARGIN_M = 500.0  # OSM read around the served box (a tile render reads a tile of context around it)
OVERVIEW_LEVELS = 3  # zooms below the model's built from finer tiles (a tile then needs up to 4**3 renders)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclass(frozen=True)
class ServeSettings:
    """What ``geogan serve`` renders: ``osm`` vector files (empty: ``bbox`` fetched from Overpass through
    ``fetch``), ``bbox`` the served area (west, south, east, north degrees; None: the data's extent),
    the model (zoo name or card path) with ``device`` and ``precision``, class ``rules``, ``class_field``,
    ``seed``, the tile ``cache_dir`` and how many ``overview_levels`` below the model's zooms are built."""

    osm: tuple[Path, ...] = ()
    bbox: LonLatBox | None = None
    model: str = "default"
    device: str = "auto"
    precision: str = "auto"
    rules: Path | None = None
    class_field: str | None = None
    seed: int = 0
    cache_dir: Path | None = None  # None: <OSM cache dir>/tiles
    overview_levels: int = OVERVIEW_LEVELS
    fetch: OsmFetch = field(default_factory=OsmFetch)

    def __post_init__(self) -> None:
        object.__setattr__(self, "osm", tuple(Path(p) for p in self.osm))
        if self.bbox is not None:
            object.__setattr__(self, "bbox", check_lonlat_box(self.bbox))
        RuntimeSettings(seed=self.seed)  # the render's own seed check, before any work
        if not isinstance(self.overview_levels, int) or not 0 <= self.overview_levels <= 6:
            raise InputError(f"--overview-levels {self.overview_levels} must be a whole number 0..6 (each level "
                             "costs four times the renders of the one above)")


def check_lonlat_box(box: Sequence[float]) -> LonLatBox:
    """``box`` as (west, south, east, north) degrees, or a one-line InputError."""
    w, s, e, n = (float(v) for v in box)
    if not (-180 <= w < e <= 180 and -85.05 <= s < n <= 85.05):
        raise InputError(f"--bbox {w:g},{s:g},{e:g},{n:g} must be west,south,east,north in degrees with west < east "
                         "and south < north, inside -180..180 and -85.05..85.05 (Web Mercator)")
    return w, s, e, n


# ---------------------------------------------------------------- the area served
@dataclass(frozen=True)
class ServedArea:
    """The files every tile reads, the box served (degrees) and a fingerprint of the files for the cache key."""

    paths: tuple[Path, ...]
    box: LonLatBox
    fingerprint: str


def grown_box(box: LonLatBox, margin_m: float) -> LonLatBox:
    """``box`` grown by ``margin_m`` ground metres on every side (clamped to Web Mercator)."""
    lat = max(abs(box[1]), abs(box[3]))
    dlat = margin_m / 111_000.0
    dlon = dlat / max(np.cos(np.radians(min(lat + dlat, 85.0))), 1e-6)
    return (max(box[0] - dlon, -180.0), max(box[1] - dlat, -85.05), min(box[2] + dlon, 180.0),
            min(box[3] + dlat, 85.05))


def files_fingerprint(paths: Sequence[Path]) -> str:
    """Hash of each file's absolute path, size and modification time."""
    parts = []
    for p in paths:
        st = p.stat()
        parts.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def prepare_area(settings: ServeSettings, schema) -> ServedArea:
    """Open the area once: Overpass fetch of ``bbox`` (no files), large OSM files clipped to ``bbox``."""
    from .overpass import CLIP_MIN_BYTES, clip_large_osm, fetch_osm
    from .sources import is_osm_path

    fetch = settings.fetch
    if not settings.osm:
        if settings.bbox is None:
            raise InputError("geogan serve needs --osm FILE, or --bbox west,south,east,north (degrees) to fetch "
                             "the area from Overpass")
        path = fetch_osm(grown_box(settings.bbox, FETCH_MARGIN_M), schema, url=fetch.url, cache_dir=fetch.cache_dir,
                         use_cache=fetch.use_cache)
        return ServedArea((path,), settings.bbox, files_fingerprint([path]))
    paths = list(settings.osm)
    for p in paths:
        if not p.is_file():
            raise SourceError(f"input '{p}' does not exist or is not a file; check the path given to --osm")
    big = [p for p in paths if is_osm_path(p) and p.stat().st_size >= CLIP_MIN_BYTES]
    if big and settings.bbox is None:
        raise InputError(f"'{big[0]}' is {big[0].stat().st_size / 1e6:.0f} MB, so every tile would parse all of it; "
                         "give --bbox west,south,east,north (degrees) to serve a part (it is clipped once)")
    if big:
        margin = grown_box(settings.bbox, FETCH_MARGIN_M)
        paths = [clip_large_osm(p, margin, cache_dir=fetch.cache_dir, use_cache=fetch.use_cache) if p in big else p
                 for p in paths]
    box = settings.bbox or data_box(paths, settings.class_field)
    return ServedArea(tuple(paths), box, files_fingerprint(paths))


def data_box(paths: Sequence[Path], class_field: str | None) -> LonLatBox:
    """The extent of the data in degrees: a lone OSM XML file's <bounds>, else the features' bounds."""
    from .sources import data_bounds_lonlat, osm_file_bounds, read_sources

    bounds = osm_file_bounds(paths[0]) if len(paths) == 1 else None
    if bounds is None:
        bounds = data_bounds_lonlat(read_sources(list(paths), None, class_field))
    w, s, e, n = bounds
    if not (w < e and s < n):
        raise SourceError(f"the data's extent {w:g},{s:g},{e:g},{n:g} has no area; give --bbox "
                          "west,south,east,north (degrees)")
    return check_lonlat_box(bounds)


# ---------------------------------------------------------------- zooms
@dataclass(frozen=True)
class ZoomPolicy:
    """Which tiles a model renders itself ("render"), which are built from children ("overview"), and the
    one-line 404 for the rest. ``pyramid``: the model family's cards, its own first (:func:`geogan.zoo.
    pyramid_cards`; empty without members): a coarser member renders the zooms a render of the tile's GSD
    would draw with it, within its own window (0.5..2 times its GSD, as the model's)."""

    gsd_m: float
    box: LonLatBox
    overview_levels: int = OVERVIEW_LEVELS
    pyramid: tuple[dict, ...] = ()

    def native_range(self, lat_deg: float) -> tuple[int, int]:
        return native_zoom_range(self.gsd_m, lat_deg)

    def member_zooms(self, lat_deg: float) -> dict[int, str]:
        """Zoom -> the pyramid member (zoo name) that renders it at ``lat_deg``."""
        cards, out = list(self.pyramid), {}
        for card in cards[1:]:
            try:
                low, high = native_zoom_range(float(card.get("gsd_m", 0.5)), lat_deg)
            except ValueError:
                continue
            out.update({z: card["stem"] for z in range(low, high + 1)
                        if choose_for_gsd(cards, ground_resolution_m(z, lat_deg)) is card})
        return out

    def render_zooms(self, lat_deg: float) -> list[int]:
        """Every zoom rendered at ``lat_deg``, by the model or a pyramid member."""
        low, high = self.native_range(lat_deg)
        return sorted(set(range(low, high + 1)) | set(self.member_zooms(lat_deg)))

    def model_for(self, tile: TileId) -> str | None:
        """The pyramid member that renders ``tile`` (its zoo name), or None: the model itself."""
        return self.member_zooms(tile_centre_lat(tile)).get(tile.z)

    def served_range(self) -> tuple[int, int]:
        """(lowest, highest) zoom served at the centre of the box (what TileJSON advertises)."""
        zooms = self.render_zooms((self.box[1] + self.box[3]) / 2)
        return max(zooms[0] - self.overview_levels, 0), zooms[-1]

    def kind(self, tile: TileId) -> str:
        if not boxes_meet(tile_bounds_lonlat(tile), self.box):
            w, s, e, n = self.box
            raise TileRequestError(f"tile {tile} is outside the served area {w:.5f},{s:.5f},{e:.5f},{n:.5f} "
                                   "(west,south,east,north degrees)", 404)
        lat = tile_centre_lat(tile)
        zooms = self.render_zooms(lat)
        if tile.z in zooms:
            return "render"
        if any(tile.z < z <= tile.z + self.overview_levels for z in zooms):
            return "overview"
        raise TileRequestError(self._not_served(tile.z, lat, zooms), 404)

    def _not_served(self, z: int, lat: float, zooms: list[int]) -> str:
        low, high = self.native_range(lat)
        served = f"{max(zooms[0] - self.overview_levels, 0)}..{zooms[-1]}"
        members = sorted(set(zooms) - set(range(low, high + 1)))
        drawn = f"model GSD {self.gsd_m:g} m: renders zooms {low}..{high}" + \
            (f", its pyramid zooms {', '.join(map(str, members))}" if members else "")
        if z > zooms[-1]:
            return (f"zoom {z} is finer than this server's zooms {served} at latitude {lat:.2f} ({drawn}); let the "
                    f"client scale up zoom {zooms[-1]}")
        where = "coarser than" if z < zooms[0] else "in a gap of"
        return (f"zoom {z} is {where} this server's zooms {served} at latitude {lat:.2f} ({drawn}, and "
                f"{self.overview_levels} coarser levels below each); zoom in, or restart with more --overview-levels")


# ---------------------------------------------------------------- the disk cache
class TileCache:
    """PNG tiles under ``root/z/x/y.png``; writes are atomic (a temporary file renamed into place), and a
    file that is not a whole PNG is treated as missing (and replaced)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, tile: TileId) -> Path:
        return self.root / str(tile.z) / str(tile.x) / f"{tile.y}.png"

    def read(self, tile: TileId) -> bytes | None:
        try:
            data = self.path(tile).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data if data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END) else None

    def write(self, tile: TileId, png: bytes) -> None:
        target = self.path(tile)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{tile.y}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(png)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cache_key(loaded, rules: Path | None, area: ServedArea, seed: int, members: Sequence[dict] = ()) -> str:
    """20 hex digits naming everything a tile's pixels depend on (see the module docstring); ``members``: the
    cards of the pyramid members that render zooms too (their card and weights files count)."""
    h = hashlib.sha256()
    card = Path(loaded.card_path) if loaded.card_path else None
    h.update(json.dumps({"geogan": __version__, "precision": loaded.precision, "device": loaded.device.type,
                         "seed": int(seed), "sources": area.fingerprint, "card": loaded.card}, sort_keys=True,
                        default=str).encode())
    models = ([card] if card else []) + [Path(m["path"]) for m in members]
    for path in [p for c in models for p in (c, c.with_suffix(".safetensors"))] + ([rules] if rules else []):
        if path.is_file():
            h.update(_file_digest(path))
    return h.hexdigest()[:20]


def tile_cache_root(settings: ServeSettings) -> Path:
    """``settings.cache_dir``, else ``tiles`` in the OSM cache folder (``~/.cache/geogan/tiles``)."""
    from .overpass import default_cache_dir

    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    return (Path(settings.fetch.cache_dir) if settings.fetch.cache_dir else default_cache_dir()) / "tiles"


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


# ---------------------------------------------------------------- tiles
@dataclass(frozen=True)
class Tile:
    """A tile answered: its PNG, its ETag and how it was had ("hit", "rendered" or "built")."""

    png: bytes
    etag: str
    source: str


class KeyedLocks:
    """One lock per key, made on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[object, list] = {}  # key -> [lock, users]

    @contextmanager
    def hold(self, key) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3 or 4) uint8 as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes as (H, W, 4) uint8 RGBA."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGBA"))


def downsample_children(children: Sequence[np.ndarray | None]) -> np.ndarray:
    """The parent tile (256 x 256) of four RGBA children (NW, NE, SW, SE; None: transparent), each 2 x 2
    block averaged; RGB when the result is opaque everywhere."""
    mosaic = np.zeros((2 * TILE_PX, 2 * TILE_PX, 4), dtype=np.float32)
    for i, child in enumerate(children):
        if child is not None:
            r, c = divmod(i, 2)
            mosaic[r * TILE_PX:(r + 1) * TILE_PX, c * TILE_PX:(c + 1) * TILE_PX] = child
    parent = mosaic.reshape(TILE_PX, 2, TILE_PX, 2, 4).mean(axis=(1, 3))
    parent = np.clip(np.rint(parent), 0, 255).astype(np.uint8)
    return parent[..., :3].copy() if bool((parent[..., 3] == 255).all()) else parent


class TileService:
    """Tiles of ``settings``' area rendered by one model (loaded once) through the disk cache."""

    def __init__(self, settings: ServeSettings, renderer=None) -> None:
        from .api import Renderer
        from .classes import load_schema
        self.settings = settings
        self.renderer = renderer or Renderer(settings.model, settings.device, settings.rules, settings.precision)
        self.area = prepare_area(settings, load_schema(settings.rules))
        loaded = self.renderer.loaded
        pyramid = tuple(pyramid_cards(settings.model))
        self.policy = ZoomPolicy(loaded.gsd_m, self.area.box, settings.overview_levels, pyramid)
        self.key = cache_key(loaded, settings.rules, self.area, settings.seed, pyramid[1:])
        self._members: dict[str, object] = {}  # pyramid member name -> its Renderer (loaded on first use)
        self.cache = TileCache(tile_cache_root(settings) / self.key)
        self.counts: Counter[str] = Counter()  # "hit", "rendered", "built"
        self._count_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._tile_locks = KeyedLocks()

    @property
    def model_name(self) -> str:
        return self.renderer.loaded.name

    def centre_tile(self) -> TileId:
        """The tile at the middle of the area at the model's coarsest own zoom there."""
        w, s, e, n = self.area.box
        lat = (s + n) / 2
        return tile_of_lonlat((w + e) / 2, lat, self.policy.native_range(lat)[0])

    def warm_up(self) -> Tile:
        """Make (or find in the cache) the centre tile, so a setting that breaks every render (a class field
        the data lacks, ...) is refused at start rather than as a 500 on each tile."""
        return self.get(self.centre_tile())

    def etag(self, tile: TileId) -> str:
        return f'"{self.key}-{tile.z}-{tile.x}-{tile.y}"'

    def check(self, tile: TileId) -> str:
        """The tile's kind ("render" or "overview"), or a TileRequestError (404) saying why it is not served."""
        return self.policy.kind(tile)

    def get(self, tile: TileId) -> Tile:
        """The tile from the cache, else rendered (or built from its children) and cached."""
        kind = self.check(tile)
        png = self.cache.read(tile)
        if png is None:
            with self._tile_locks.hold(tile):
                png = self.cache.read(tile)  # another request may have made it meanwhile
                if png is None:
                    start = time.perf_counter()
                    png = self._render(tile) if kind == "render" else self._build(tile)
                    self.cache.write(tile, png)
                    source = "rendered" if kind == "render" else "built"
                    log.info("tile %s %s in %.2f s", tile, source, time.perf_counter() - start)
                    return self._answer(tile, png, source)
        return self._answer(tile, png, "hit")

    def _answer(self, tile: TileId, png: bytes, source: str) -> Tile:
        with self._count_lock:
            self.counts[source] += 1
        return Tile(png, self.etag(tile), source)

    def _build(self, tile: TileId) -> bytes:
        children = []
        for child in tile.children():
            try:
                children.append(decode_png(self.get(child).png))
            except TileRequestError:  # outside the area (or, at a zoom boundary, outside the zooms)
                children.append(None)
        return encode_png(downsample_children(children))

    def renderer_for(self, tile: TileId):
        """The renderer of ``tile``'s model: the service's own, or a pyramid member's (loaded once)."""
        name = self.policy.model_for(tile)
        if name is None:
            return self.renderer
        if name not in self._members:
            from .api import Renderer

            s = self.settings
            self._members[name] = Renderer(name, s.device, s.rules, s.precision)
        return self._members[name]

    def _render(self, tile: TileId) -> bytes:
        """One render of the tile's exact bounds through the public API, read back and checked."""
        import rasterio

        s = self.settings
        gsd_m = ground_resolution_m(tile.z, tile_centre_lat(tile))  # EPSG:3857's scale: 256 px exactly
        with self._render_lock, tempfile.TemporaryDirectory(prefix="geogan-tile-") as tmp:
            result = self.renderer_for(tile).render(osm=[str(p) for p in self.area.paths], bbox=tile_bounds_m(tile),
                                          bbox_crs="EPSG:3857", crs="EPSG:3857", gsd_m=gsd_m, out_dir=tmp,
                                          overwrite=True, seed=s.seed, class_field=s.class_field,
                                          osm_fetch=s.fetch)
            with rasterio.open(result.aerial) as ds:  # RGB, + alpha where the tile reaches past the data
                rgb = ds.read(indexes=list(range(1, min(ds.count, 4) + 1)))
        if rgb.shape[1:] != (TILE_PX, TILE_PX) or rgb.shape[0] not in (3, 4) or rgb.dtype != np.uint8:
            raise RenderError(f"the render of tile {tile} came back {rgb.shape[2]}x{rgb.shape[1]} {rgb.dtype}, not "
                              f"{TILE_PX}x{TILE_PX} uint8; report this as a bug")
        return encode_png(np.ascontiguousarray(rgb.transpose(1, 2, 0)))  # transparent beyond the data
