"""OSM data for any bbox without a local file: an Overpass API client, and a
clipper that cuts a bbox out of a country-size ``.osm.pbf``.

:func:`fetch_osm` asks an Overpass endpoint for just the features the class
rules can draw (:func:`build_query`), streams the OSM XML answer into a cache
file and returns its path, which :func:`geogan.sources.read_sources` reads
like any ``--osm`` file. Politeness and robustness:

* one POST per bbox, a ``User-Agent`` naming geogan, gzip transfer;
* HTTP 429/502/503/504 honour ``Retry-After`` (seconds or HTTP date, capped at
  :data:`MAX_RETRY_WAIT_S`), otherwise exponential backoff with jitter; socket
  timeouts and dropped/truncated transfers are retried the same way;
* connection refused, DNS failure, offline, HTTP 4xx, HTML/JSON instead of
  OSM XML and Overpass ``<remark>`` runtime errors (timeout, out of memory)
  fail at once with a one-line :class:`SourceError` (exit code 2);
* the answer is written to ``<key>.osm.<random>.part`` next to its cache
  entry and renamed into place only once it is complete and valid (parsed
  to the end as XML with an ``<osm>`` root), so the cache never holds a
  partial or broken file. Cache key: sha256 of (endpoint, query without its
  ``[timeout:N]``) -> ``<cache>/overpass/<key>.osm`` plus a ``<key>.json``
  sidecar (url, bbox, query, fetched_at, bytes, seconds);
* an answer with no nodes, ways or relations (every query asks for some) or
  larger than :data:`MAX_CACHE_BYTES` is used for this run but not cached
  (it goes to ``<key>.uncached.osm``, removed an hour later by a later fetch):
  a rerun asks the server again instead of trusting a suspicious answer or
  filling the disk;
* a cache entry is checked the same way before it is used; one that fails
  (an empty or broken answer cached by an older geogan, a damaged file) is
  deleted and fetched again.

:func:`clip_large_osm` is for the other case: a big local extract. GDAL's OSM
driver applies the bbox only *after* parsing the whole file, once per layer
(geogan reads two), so a country ``.pbf`` costs two full parses per render.
The clipper reads it with pyosmium (if installed) in a few streaming passes
and writes a small reference-complete ``.osm.pbf`` (ways touching the bbox
with *all* their nodes, multipolygon relations touching it with all their
member ways), cached under ``<cache>/clips/``.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import http.client
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.parsers.expat
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .classes import Rule, Schema
from .errors import GridError, SourceError

log = logging.getLogger("geogan")

BBox = tuple[float, float, float, float]
ProgressFn = Callable[[float | None, str], None]

DEFAULT_OVERPASS_URL = "https://overpass-api.de/api/interpreter"
OVERPASS_URL_ENV = "GEOGAN_OVERPASS_URL"
PROJECT_URL = "https://github.com/geogan/geogan"
#: Longest wait honoured from a ``Retry-After`` header, seconds.
MAX_RETRY_WAIT_S = 60.0
#: Cap for one exponential-backoff wait, seconds.
MAX_BACKOFF_S = 60.0
#: Extra seconds the socket waits beyond the Overpass ``[timeout:N]`` (the
#: server sends nothing while it evaluates the query).
SOCKET_GRACE_S = 30.0
#: Answers larger than this are used but not cached (a rerun downloads them again): bounds the cache's
#: growth; for areas this large a local extract (``--osm`` with a Geofabrik .osm.pbf) is the better source.
MAX_CACHE_BYTES = 64 * 1024 * 1024
#: Uncached answers (empty or over :data:`MAX_CACHE_BYTES`) older than this are deleted by the next fetch.
UNCACHED_MAX_AGE_S = 3600.0
_DATA_ELEMENTS = ("node", "way", "relation")
#: Files below this size are not worth clipping (GDAL reads them quickly).
CLIP_MIN_BYTES = 64 * 1024 * 1024
_CHUNK = 256 * 1024
_RETRY_STATUS = (429, 502, 503, 504)

_sleep = time.sleep  # tests may patch this


# ---------------------------------------------------------------- settings
def overpass_url(url: str | None = None) -> str:
    """The endpoint: ``url``, else ``$GEOGAN_OVERPASS_URL``, else the main public instance."""
    chosen = (url or os.environ.get(OVERPASS_URL_ENV) or DEFAULT_OVERPASS_URL).strip()
    parsed = urllib.parse.urlsplit(chosen)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SourceError(f"Overpass URL '{chosen}' is not an http(s) URL; pass e.g. --overpass-url "
                          f"{DEFAULT_OVERPASS_URL}")
    return chosen


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/geogan``, else ``~/.cache/geogan``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "geogan"


def user_agent() -> str:
    from . import __version__

    return f"geogan/{__version__} (+{PROJECT_URL})"


def _check_bbox(bbox_lonlat: Sequence[float]) -> BBox:
    try:
        w, s, e, n = (float(v) for v in bbox_lonlat)
    except (TypeError, ValueError):
        raise GridError(f"bbox {bbox_lonlat!r} must be four numbers west,south,east,north in degrees") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise GridError(f"bbox {bbox_lonlat!r} has non-finite values; pass west,south,east,north in degrees")
    w, e = max(w, -180.0), min(e, 180.0)
    s, n = max(s, -90.0), min(n, 90.0)
    if not (w < e and s < n):
        raise GridError(f"bbox ({w}, {s}, {e}, {n}) is empty or crosses the antimeridian; pass "
                        "west<east and south<north in degrees (split a bbox across 180° in two)")
    return w, s, e, n


def _fmt_bbox(bbox: BBox) -> str:
    return "(" + ", ".join(f"{v:.6f}" for v in bbox) + ")"


# ---------------------------------------------------------------- the query
def _ql_string(text: str) -> str:
    """An Overpass QL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


_REGEX_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _tag_filter(key: str, values: Iterable[str]) -> str:
    values = sorted(set(values))
    if "*" in values:
        return f"[{_ql_string(key)}]"
    if len(values) == 1:
        return f"[{_ql_string(key)}={_ql_string(values[0])}]"
    alternatives = "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in values)
    return f"[{_ql_string(key)}~{_ql_string('^(' + alternatives + ')$')}]"


def _selectors(rules: Sequence[Rule]) -> tuple[list[str], list[str]]:
    """Tag selectors for ways and for multipolygon relations, merged per key where possible."""
    single: dict[tuple[str, bool], set[str]] = {}
    multi: list[tuple[str, bool]] = []
    order: list[tuple[str, bool]] = []
    for rule in rules:
        wants_relation = rule.geometry in ("area", "any")
        if len(rule.match) == 1:
            key, values = rule.match[0]
            slot = (key, wants_relation)
            if slot not in single:
                single[slot] = set()
                order.append(slot)
            single[slot].update(values)
        else:
            multi.append(("".join(_tag_filter(k, v) for k, v in rule.match), wants_relation))
    ways: list[str] = []
    relations: list[str] = []
    # a key wanted by both a line rule and an area rule needs one way selector with all values
    way_values: dict[str, set[str]] = {}
    for key, _ in order:
        way_values.setdefault(key, set())
    for (key, _), values in single.items():
        way_values[key] |= values
    for key, values in way_values.items():
        ways.append(_tag_filter(key, values))
    for key, wants_relation in order:
        if wants_relation:
            sel = _tag_filter(key, single[(key, True)])
            if sel not in relations:
                relations.append(sel)
    for sel, wants_relation in multi:
        if sel not in ways:
            ways.append(sel)
        if wants_relation and sel not in relations:
            relations.append(sel)
    return ways, relations


def build_query(schema: Schema, bbox_lonlat: Sequence[float], timeout_s: float = 180) -> str:
    """An Overpass QL query for the ways and multipolygon relations the rules of ``schema`` can draw, the
    nodes of its point rules (trees) and the coastline (the sea) unless the schema draws no sea.

    One ``way[...]`` statement per rule key (values merged, ``["key"]`` for
    ``*``) and, for area rules, a ``relation["type"="multipolygon"][...]``
    statement, all restricted to the bbox; then ``(._;>;);`` adds every node
    and member way they reference (also those outside the bbox, so geometries
    crossing the edge stay whole) and ``out body;`` prints one sorted,
    duplicate-free OSM XML document (nodes, ways, relations) - the order GDAL's
    OSM driver needs. (The usual ``out body; >; out skel qt;`` prints ways
    before their nodes and prints shared ways twice; GDAL then builds nothing.)
    """
    w, s, e, n = _check_bbox(bbox_lonlat)
    box = f"{s:.7f},{w:.7f},{n:.7f},{e:.7f}"
    ways, relations = _selectors([r for r in schema.rules if r.geometry != "point"])
    if not ways:
        raise SourceError(f"the class rules ({schema.source}) match no OSM tags; add [[rules]] with 'match' tables")
    nodes = dict.fromkeys("".join(_tag_filter(k, v) for k, v in r.match) for r in schema.rules
                          if r.geometry in ("point", "any"))  # trees
    if schema.sea_class is not None:  # the sea is built from the coastline (geogan.coastline)
        ways.append(_tag_filter("natural", ["coastline"]))
    lines = [f"[out:xml][timeout:{max(1, math.ceil(timeout_s))}][bbox:{box}];", "("]
    lines += [f"  node{sel}({box});" for sel in nodes]
    lines += [f"  way{sel}({box});" for sel in ways]
    lines += [f'  relation["type"="multipolygon"]{sel}({box});' for sel in relations]
    lines += [");", "(._;>;);", "out body;"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the cache
def cache_key(url: str, query: str) -> str:
    """sha256 of endpoint and query (its ``[timeout:N]`` left out: it does not change the data)."""
    canonical = re.sub(r"\[timeout:\d+\]", "", query)
    return hashlib.sha256(f"{url}\n{canonical}".encode("utf-8")).hexdigest()


def overpass_cache_path(url: str, query: str, cache_dir: str | os.PathLike | None = None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "overpass" / f"{cache_key(url, query)}.osm"


# ---------------------------------------------------------------- fetching
class _Retry(Exception):
    """A transient failure: wait ``wait_s`` (None: backoff) and try again."""

    def __init__(self, reason: str, wait_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class _Fail(Exception):
    """A permanent failure (no point retrying)."""

    def __init__(self, reason: str, advice: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.advice = advice


def _one_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return min(float(value), MAX_RETRY_WAIT_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_WAIT_S)


def _html_text(body: bytes) -> str:
    """The gist of an HTML/plain error body (Overpass puts its message in <p> elements)."""
    text = body.decode("utf-8", "replace")
    paragraphs = re.findall(r"<p[^>]*>(.*?)</p>", text, re.S | re.I)
    chosen = " ".join(p for p in paragraphs if "rror" in p) or " ".join(paragraphs) or text
    chosen = re.sub(r"<[^>]+>", " ", chosen)
    chosen = re.sub(r"&lt;", "<", re.sub(r"&gt;", ">", re.sub(r"&quot;", '"', re.sub(r"&amp;", "&", chosen))))
    return _one_line(chosen, 160)


def _connection_reason(exc: BaseException) -> tuple[str, bool]:
    """(reason, transient) for a low-level network exception."""
    inner = exc.reason if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError) \
        else exc
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return "timed out", True
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve host: {_one_line(str(inner.strerror or inner), 80)}; offline?", False
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(inner, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                          http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return f"connection dropped ({type(inner).__name__})", True
    if isinstance(inner, ssl.SSLError):
        return f"TLS error: {_one_line(str(inner), 100)}", False
    if isinstance(inner, OSError) and inner.errno is not None:
        return _one_line(inner.strerror or str(inner), 100) + " (offline or blocked?)", False
    return _one_line(str(inner) or type(inner).__name__, 120), False


def _write(fh, data: bytes) -> None:
    try:
        fh.write(data)
    except OSError as exc:
        raise _Fail(f"cannot write the download to {Path(fh.name).parent} ({_one_line(str(exc), 100)})",
                    "pass a writable --cache-dir with free space") from None


def _stream_to(resp, fh, progress: ProgressFn | None, host: str) -> tuple[int, int | None]:
    """Copy the (maybe gzip-encoded) body into ``fh``; returns (bytes written, offset of <remark or None)."""
    total = resp.headers.get("Content-Length")
    encoding = (resp.headers.get("Content-Encoding") or "").lower()
    expected = int(total) if total and total.isdigit() and not encoding else None
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else None
    written = received = 0
    remark_at: int | None = None
    tail = b""
    last_report = 0.0
    while True:
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk)
            except zlib.error as exc:
                raise _Retry(f"corrupt gzip transfer ({exc})") from None
        if remark_at is None:
            hit = (tail + chunk).find(b"<remark")
            if hit >= 0:
                remark_at = written - len(tail) + hit
        tail = chunk[-16:]
        _write(fh, chunk)
        written += len(chunk)
        now = time.monotonic()
        if progress is not None and now - last_report >= 0.25:
            last_report = now
            fraction = min(received / expected, 1.0) if expected else None
            progress(fraction, f"downloading OSM from {host}: {received / 1e6:.1f} MB")
    if expected is not None and received < expected:
        raise _Retry(f"connection dropped after {received} of {expected} bytes")
    if inflate is not None:
        try:
            rest = inflate.flush()
        except zlib.error as exc:
            raise _Retry(f"corrupt gzip transfer ({exc})") from None
        if not inflate.eof:
            raise _Retry("truncated gzip transfer")
        _write(fh, rest)
        written += len(rest)
    if progress is not None:
        progress(1.0 if expected else None, f"downloaded OSM from {host}: {received / 1e6:.1f} MB")
    return written, remark_at


_OSM_HEAD = re.compile(rb"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*<osm[\s>/]", re.S)


def _has_osm_data(path: Path) -> bool:
    """Parse ``path`` to the end (expat, C speed); True when it holds a node, way or relation.

    Raises _Retry for a body that is not well-formed XML (a transfer mangled on the way, most likely).
    """
    parser = xml.parsers.expat.ParserCreate()
    found = []

    def start(name: str, attrs) -> None:
        if name in _DATA_ELEMENTS:
            found.append(name)
            parser.StartElementHandler = None  # the rest only needs checking for well-formedness

    parser.StartElementHandler = start
    try:
        with open(path, "rb") as fh:
            parser.ParseFile(fh)
    except xml.parsers.expat.ExpatError as exc:
        raise _Retry(f"malformed OSM XML ({_one_line(str(exc), 80)})") from None
    return bool(found)


def _validate(path: Path, remark_at: int | None) -> bool:
    """Raise _Fail/_Retry unless ``path`` is a complete OSM XML document without runtime errors.

    Returns whether it holds any node, way or relation (:func:`_has_osm_data`).
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf")
        if remark_at is not None:
            fh.seek(max(remark_at, 0))
            remark_blob = fh.read(2048)
        else:
            remark_blob = b""
        fh.seek(max(size - 1024, 0))
        tail_blob = fh.read()
    if not _OSM_HEAD.match(head):
        stripped = head.lstrip().lower()
        if stripped.startswith((b"<!doctype html", b"<html")) or b"<html" in stripped[:512]:
            raise _Fail(f"the server answered with an HTML page, not OSM XML: {_html_text(head)}",
                        "check --overpass-url")
        if stripped.startswith((b"{", b"[")):
            raise _Fail("the server answered with JSON, not OSM XML", "check --overpass-url")
        if not stripped:
            raise _Retry("empty response")
        raise _Fail(f"the answer is not OSM XML (starts with {_one_line(head[:60].decode('utf-8', 'replace'))!r})",
                    "check --overpass-url")
    if remark_blob:
        m = re.search(rb"<remark>(.*?)</remark>", remark_blob, re.S)
        text = _one_line((m.group(1) if m else remark_blob[:300]).decode("utf-8", "replace"), 160)
        if "error" in text.lower():
            advice = "use a smaller bbox"
            if "timed out" in text.lower() or "timeout" in text.lower():
                advice = "use a smaller bbox or a longer timeout"
            raise _Fail(f"Overpass {text}", advice)
        log.warning("Overpass remark: %s", text)
    if not tail_blob.rstrip().endswith(b"</osm>") and not re.search(rb"<osm[^>]*/>\s*$", tail_blob):
        raise _Retry("truncated OSM XML (no closing </osm>)")
    return _has_osm_data(path)


def _request(url: str, query: str, socket_timeout_s: float):
    body = urllib.parse.urlencode({"data": query}).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "User-Agent": user_agent(),
        "Accept": "application/osm3s+xml, application/xml;q=0.9, */*;q=0.1",
        "Accept-Encoding": "gzip",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    })
    return urllib.request.urlopen(req, timeout=socket_timeout_s)  # noqa: S310 (http(s) checked)


def _attempt(url: str, query: str, tmp: Path, socket_timeout_s: float, progress: ProgressFn | None) -> bool:
    host = urllib.parse.urlsplit(url).netloc
    try:
        resp = _request(url, query, socket_timeout_s)
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read(64 * 1024)
            if (exc.headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip"):
                payload = gzip.decompress(payload)
        except Exception:  # the body is only decoration for the message
            payload = b""
        detail = _html_text(payload) if payload else (exc.reason or "")
        reason = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
        if exc.code in _RETRY_STATUS:
            raise _Retry(reason, parse_retry_after(exc.headers.get("Retry-After"))) from None
        advice = "check --overpass-url" if exc.code in (404, 405) else None
        if exc.code == 400:
            advice = "the query was rejected; check the rules file or --overpass-url"
        raise _Fail(reason, advice) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason, transient = _connection_reason(exc)
        if transient:
            raise _Retry(reason) from None
        raise _Fail(reason) from None
    with resp:
        if resp.status in _RETRY_STATUS:  # only if a handler did not raise already
            raise _Retry(f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After")))
        try:
            with open(tmp, "wb") as fh:
                _, remark_at = _stream_to(resp, fh, progress, host)
        except (OSError, http.client.HTTPException) as exc:  # reading the body (writes raise _Fail)
            reason, _ = _connection_reason(exc)
            raise _Retry(reason) from None
    return _validate(tmp, remark_at)


def _fetch_error(bbox: BBox, url: str, reason: str, advice: str | None = None) -> SourceError:
    extra = f"{advice}, or " if advice else ""
    return SourceError(f"could not fetch OSM data for bbox {_fmt_bbox(bbox)} from {url} ({_one_line(reason)}); "
                       f"{extra}pass --osm FILE with a local extract")


def _cache_error(path: Path, problem: str) -> SourceError:
    return SourceError(f"Overpass cache file '{path}' {problem}; delete it or rerun with --no-cache")


def _cached(target: Path, bbox: BBox) -> Path | None:
    """``target`` when it is a usable cache entry (parsed, non-empty); a broken one is deleted, giving None."""
    if not target.is_file():
        return None
    try:
        if _validate(target, None):
            return target
        reason = "holds no OSM nodes, ways or relations"
    except (_Fail, _Retry) as exc:
        reason = exc.reason
    except OSError as exc:
        raise _cache_error(target, f"cannot be read ({_one_line(str(exc), 100)})") from None
    log.warning("cached Overpass answer %s is unusable (%s); deleting it and fetching bbox %s again", target,
                reason, _fmt_bbox(bbox))
    try:
        target.unlink(missing_ok=True)
        target.with_suffix(".json").unlink(missing_ok=True)
    except OSError as exc:
        raise _cache_error(target, f"is unusable ({_one_line(reason, 100)}) and cannot be deleted "
                                   f"({_one_line(str(exc), 80)})") from None
    return None


def _download(endpoint: str, query: str, bbox: BBox, tmp: Path, sock_timeout_s: float,
              progress: ProgressFn | None, max_retries: int, backoff_s: float) -> bool:
    """Fetch the answer into ``tmp`` with retries; returns whether it holds any OSM data."""
    host = urllib.parse.urlsplit(endpoint).netloc
    attempts = max(0, int(max_retries)) + 1
    for attempt in range(attempts):
        if progress is not None:
            progress(None, f"querying Overpass at {host}" + (f" (try {attempt + 1})" if attempt else ""))
        try:
            return _attempt(endpoint, query, tmp, sock_timeout_s, progress)
        except _Fail as exc:
            raise _fetch_error(bbox, endpoint, exc.reason, exc.advice) from None
        except _Retry as exc:
            if attempt + 1 >= attempts:
                tries = f" after {attempts} tries" if attempts > 1 else ""
                raise _fetch_error(bbox, endpoint, exc.reason + tries,
                                   "try again later" if "429" in exc.reason else None) from None
            if exc.wait_s is not None:
                wait = exc.wait_s
            else:
                wait = min(MAX_BACKOFF_S, backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            log.warning("Overpass at %s: %s; retrying in %.1f s (%d/%d)", host, exc.reason, wait,
                        attempt + 1, attempts - 1)
            if progress is not None:
                progress(None, f"Overpass: {exc.reason}; retrying in {wait:.0f} s")
            _sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def _uncached_path(target: Path) -> Path:
    return target.with_name(target.name[: -len(".osm")] + ".uncached.osm")


def _not_cacheable(size: int, has_data: bool, max_cache_bytes: int) -> str | None:
    """Why an answer must not be cached, or None."""
    if not has_data:
        return ("holds no OSM nodes, ways or relations (an empty area, or a server problem); a rerun asks "
                "the server again")
    if size > max_cache_bytes:
        return (f"is {size / 1e6:.0f} MB, over the {max_cache_bytes / 1e6:.0f} MB cache limit; a rerun downloads "
                "it again (for areas this large pass --osm with a local extract)")
    return None


def _prune_uncached(directory: Path, now: float) -> None:
    """Delete uncached answers older than :data:`UNCACHED_MAX_AGE_S` (best effort)."""
    for path in directory.glob("*.uncached.osm"):
        try:
            if now - path.stat().st_mtime > UNCACHED_MAX_AGE_S:
                path.unlink()
        except OSError:
            pass


def _write_sidecar(target: Path, sidecar: dict) -> None:
    try:
        side_tmp = target.with_suffix(f".json.{os.getpid()}.part")
        side_tmp.write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
        os.replace(side_tmp, target.with_suffix(".json"))
    except OSError as exc:  # the sidecar is informative only
        log.warning("could not write %s (%s)", target.with_suffix(".json"), exc)


def _temp_file(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise SourceError(f"cannot use cache directory '{target.parent}' ({_one_line(str(exc), 100)}); "
                          "pass a writable --cache-dir") from None
    return Path(tmp_name)


def fetch_osm(bbox_lonlat: Sequence[float], schema: Schema, *, url: str | None = None,
              cache_dir: str | os.PathLike | None = None, use_cache: bool = True, timeout_s: float = 180,
              max_retries: int = 4, progress: ProgressFn | None = None,
              socket_timeout_s: float | None = None, backoff_s: float = 2.0,
              max_cache_bytes: int = MAX_CACHE_BYTES) -> Path:
    """OSM XML for ``bbox_lonlat`` (west, south, east, north; margin already added) from Overpass.

    Returns the path of a cached ``.osm`` file holding the ways and
    multipolygon relations the rules of ``schema`` can draw. A cache hit makes
    no request; ``use_cache=False`` always downloads (and refreshes the cache).
    An answer without any node, way or relation, or over ``max_cache_bytes``,
    is returned as ``<key>.uncached.osm`` and not cached (a warning says so).

    url:              endpoint; default ``$GEOGAN_OVERPASS_URL`` or :data:`DEFAULT_OVERPASS_URL`
    cache_dir:        default :func:`default_cache_dir`; files go to ``<cache_dir>/overpass/``
    timeout_s:        the Overpass server-side ``[timeout:N]``
    max_retries:      retries after the first try for HTTP 429/502/503/504, timeouts, dropped or mangled transfers
    progress:         ``progress(fraction or None, message)``; fraction only when the size is known
    socket_timeout_s: seconds without data before giving up on a try (default timeout_s + 30)
    backoff_s:        first backoff wait (doubles per retry, with jitter) when there is no Retry-After
    max_cache_bytes:  answers larger than this are used but not cached (default :data:`MAX_CACHE_BYTES`)

    Raises :class:`SourceError` (one line, exit code 2) when the data cannot be had.
    """
    bbox = _check_bbox(bbox_lonlat)
    endpoint = overpass_url(url)
    query = build_query(schema, bbox, timeout_s)
    target = overpass_cache_path(endpoint, query, cache_dir)
    if use_cache and _cached(target, bbox) is not None:
        log.info("OSM data for bbox %s from cache %s", _fmt_bbox(bbox), target)
        if progress is not None:
            progress(1.0, "OSM data from cache")
        return target
    tmp = _temp_file(target)
    sock_timeout = float(socket_timeout_s) if socket_timeout_s is not None else float(timeout_s) + SOCKET_GRACE_S
    started = time.monotonic()
    try:
        has_data = _download(endpoint, query, bbox, tmp, sock_timeout, progress, max_retries, backoff_s)
        seconds = time.monotonic() - started
        size = tmp.stat().st_size
        problem = _not_cacheable(size, has_data, max_cache_bytes)
        result = target if problem is None else _uncached_path(target)
        os.replace(tmp, result)
    finally:
        tmp.unlink(missing_ok=True)
    _prune_uncached(target.parent, time.time())
    host = urllib.parse.urlsplit(endpoint).netloc
    if problem is not None:
        log.warning("the Overpass answer for bbox %s %s; used for this run, not cached (%s)", _fmt_bbox(bbox),
                    problem, result)
        return result
    _uncached_path(target).unlink(missing_ok=True)
    _write_sidecar(target, {"url": endpoint, "bbox": list(bbox), "query": query, "bytes": size,
                            "seconds": round(seconds, 3), "user_agent": user_agent(),
                            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    log.info("fetched %.1f MB of OSM data for bbox %s from %s in %.1f s -> %s", size / 1e6, _fmt_bbox(bbox),
             host, seconds, target)
    return target


# ---------------------------------------------------------------- clipping big extracts
# Tagged nodes a clip keeps inside its bbox besides the nodes of its ways: what the point rules draw.
CLIP_POINT_TAGS = (("natural", "tree"),)
_CLIP_VERSION = "2"  # 2: with CLIP_POINT_TAGS nodes


def _keep_point_nodes(src: str, bbox: BBox, tracker) -> None:
    """Add the CLIP_POINT_TAGS nodes inside ``bbox`` to ``tracker`` (one pass over the nodes, tag-filtered in C++)."""
    import osmium
    import osmium.filter

    fp = osmium.FileProcessor(src, osmium.osm.NODE).with_filter(osmium.filter.TagFilter(*CLIP_POINT_TAGS))
    for node in fp:
        loc = node.location
        if loc.valid() and bbox[0] <= loc.lon <= bbox[2] and bbox[1] <= loc.lat <= bbox[3]:
            tracker.add_node(node.id)


def _clip_cache_path(path: Path, bbox: BBox, cache_dir: str | os.PathLike | None) -> Path:
    st = path.stat()
    ident = f"{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n" + ",".join(f"{v:.7f}" for v in bbox)
    ident += f"\nv{_CLIP_VERSION}"
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "clips" / f"{hashlib.sha256(ident.encode()).hexdigest()}.osm.pbf"


def _linestring_bounds(hex_wkbs: Sequence[str]):
    """(n, 4) minx, miny, maxx, maxy of little-endian 2D WKB linestrings given as hex, vectorised."""
    import numpy as np

    raw = np.frombuffer(bytes.fromhex("".join(hex_wkbs)), dtype=np.uint8)
    nbytes = np.fromiter((len(h) >> 1 for h in hex_wkbs), dtype=np.int64, count=len(hex_wkbs))
    starts = np.cumsum(nbytes) - nbytes
    if not (np.all(raw[starts] == 1) and np.all(raw[starts + 1] == 2)):
        raise ValueError("unexpected WKB from pyosmium (not little-endian 2D linestrings)")
    npts = (nbytes - 9) // 16
    first = np.cumsum(npts) - npts
    k = np.arange(int(npts.sum())) - np.repeat(first, npts)
    offsets = np.repeat(starts + 9, npts) + 16 * k
    coords = raw[offsets[:, None] + np.arange(16)].view("<f8")  # (points, 2) x, y
    x, y = coords[:, 0], coords[:, 1]
    return np.column_stack([np.minimum.reduceat(x, first), np.minimum.reduceat(y, first),
                            np.maximum.reduceat(x, first), np.maximum.reduceat(y, first)])


def _intersects(a: Sequence[float], b: BBox) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def _osmium_or_none(path: Path):
    """The ``osmium`` module, or None (with a log line on how to get it) when pyosmium is not installed."""
    try:
        import osmium
        import osmium.filter
        import osmium.geom
    except ImportError:
        log.info("%s is %.0f MB; install pyosmium (pip install osmium) to clip it to the bbox first "
                 "(GDAL parses the whole file for each layer)", path.name, path.stat().st_size / 1e6)
        return None
    return osmium


def _is_big_osm_file(path: Path, min_bytes: int) -> bool:
    """``path`` is an OSM file (checked to exist) of ``min_bytes`` or more: worth clipping."""
    if not path.is_file():
        raise SourceError(f"input '{path}' does not exist; check the path given to --osm")
    name = path.name.lower()
    return name.endswith((".pbf", ".osm", ".o5m", ".osm.bz2", ".osm.gz")) and path.stat().st_size >= min_bytes


def _make_cache_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"cannot use cache directory '{folder}' ({_one_line(str(exc), 100)}); "
                          "pass a writable --cache-dir") from None


def _multipolygon_members(osmium, src: str) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Pass 1: (relation id -> its member way ids, way id -> the relations it is a member of) of the
    ``type=multipolygon`` relations (tag-filtered in C++)."""
    rel_members: dict[int, list[int]] = {}
    way_rels: dict[int, list[int]] = {}
    fp = osmium.FileProcessor(src, osmium.osm.RELATION).with_filter(osmium.filter.TagFilter(("type", "multipolygon")))
    for rel in fp:
        members = [m.ref for m in rel.members if m.type == "w"]
        rel_members[rel.id] = members
        for wid in members:
            way_rels.setdefault(wid, []).append(rel.id)
    return rel_members, way_rels


def _grow_boxes(rel_box: dict[int, list[float]], rels: Sequence[int], b: list[float]) -> None:
    """Grow the envelope of each relation in ``rels`` by one member way's box ``b``."""
    for rid in rels:
        acc = rel_box.get(rid)
        if acc is None:
            rel_box[rid] = b[:]
        else:
            acc[0], acc[1] = min(acc[0], b[0]), min(acc[1], b[1])
            acc[2], acc[3] = max(acc[2], b[2]), max(acc[3], b[3])


def _track_way_batch(ids: list[int], wkbs: list[str], bbox: BBox, tracker, way_rels: dict[int, list[int]],
                     rel_box: dict[int, list[float]]) -> int:
    """One batch of pass 2: track the ways whose envelope meets ``bbox``, grow their relations' envelopes;
    the number of ways kept."""
    import numpy as np

    if not ids:
        return 0
    bounds = _linestring_bounds(wkbs)
    hit = (bounds[:, 0] <= bbox[2]) & (bounds[:, 2] >= bbox[0]) & (bounds[:, 1] <= bbox[3]) & (bounds[:, 3] >= bbox[1])
    for i in np.flatnonzero(hit).tolist():
        tracker.add_way(ids[i])
    if way_rels:
        for i, wid in enumerate(ids):
            rels = way_rels.get(wid)
            if rels is not None:
                _grow_boxes(rel_box, rels, bounds[i].tolist())
    return int(hit.sum())


def _track_ways(osmium, src: str, bbox: BBox, tracker, way_rels: dict[int, list[int]],
                node_storage: str) -> tuple[int, dict[int, list[float]]]:
    """Pass 2: every way's envelope (locations from the node index, batch-wise from hex WKB); (ways kept,
    relation id -> envelope of its member ways)."""
    rel_box: dict[int, list[float]] = {}
    factory = osmium.geom.WKBFactory()  # hex WKB, decoded batch-wise by _linestring_bounds
    ids: list[int] = []
    wkbs: list[str] = []
    kept_ways = 0
    fp = (osmium.FileProcessor(src, osmium.osm.NODE | osmium.osm.WAY)
          .with_locations(node_storage)
          .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY)))
    for way in fp:
        try:
            wkbs.append(factory.create_linestring(way))
        except Exception:  # fewer than two distinct known locations
            continue
        ids.append(way.id)
        if len(ids) >= 20000:
            kept_ways += _track_way_batch(ids, wkbs, bbox, tracker, way_rels, rel_box)
            ids, wkbs = [], []
    kept_ways += _track_way_batch(ids, wkbs, bbox, tracker, way_rels, rel_box)
    return kept_ways, rel_box


def _track_multipolygons(rel_box: dict[int, list[float]], rel_members: dict[int, list[int]], bbox: BBox,
                         tracker) -> int:
    """Pass 3: track the multipolygons whose envelope meets ``bbox`` with all their member ways; how many."""
    kept_rels = 0
    for rid, box in rel_box.items():
        if _intersects(box, bbox):
            kept_rels += 1
            tracker.add_relation(rid)
            for wid in rel_members[rid]:
                tracker.add_way(wid)
    return kept_rels


def _write_clip(osmium, src: str, bbox: BBox, tracker, target: Path) -> None:
    """Pass 4: copy the tracked objects of ``src`` into ``target`` (C++ id filter -> writer), atomically."""
    header = osmium.io.Header()
    header.add_box(osmium.osm.Box(osmium.osm.Location(bbox[0], bbox[1]), osmium.osm.Location(bbox[2], bbox[3])))
    header.set("generator", user_agent())
    fd, tmp_name = tempfile.mkstemp(prefix=target.name[:-8] + ".", suffix=".osm.pbf", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with osmium.SimpleWriter(str(tmp), header=header, overwrite=True) as writer:
            osmium.apply(src, tracker.id_filter(), writer)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _clip_passes(osmium, src: str, bbox: BBox, target: Path, node_storage: str,
                 report: ProgressFn) -> tuple[int, int]:
    """The four passes of :func:`clip_large_osm` writing ``target``; (ways kept, multipolygons kept)."""
    report(0.0, "reading multipolygon relations")
    rel_members, way_rels = _multipolygon_members(osmium, src)
    report(0.15, "testing ways against the bbox")
    tracker = osmium.IdTracker()
    kept_ways, rel_box = _track_ways(osmium, src, bbox, tracker, way_rels, node_storage)
    report(0.6, "completing ways and multipolygons")
    kept_rels = _track_multipolygons(rel_box, rel_members, bbox, tracker)
    del way_rels, rel_members, rel_box  # free them before the next pass
    tracker.complete_backward_references(src, relation_depth=0)
    _keep_point_nodes(src, bbox, tracker)
    report(0.8, f"writing {kept_ways} ways and {kept_rels} multipolygons")
    _write_clip(osmium, src, bbox, tracker, target)
    return kept_ways, kept_rels


def clip_large_osm(path: str | os.PathLike, bbox_lonlat: Sequence[float], *,
                   cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                   min_bytes: int = CLIP_MIN_BYTES, node_storage: str = "flex_mem",
                   progress: ProgressFn | None = None) -> Path:
    """A small ``.osm.pbf`` holding what of ``path`` touches ``bbox_lonlat`` (margin already added).

    Returns ``path`` itself when it is smaller than ``min_bytes``, not an OSM
    file, or pyosmium (``pip install osmium``) is missing: GDAL's OSM driver
    then applies the bbox itself, after parsing the whole file once per layer.

    Passes over the file (libosmium, C++ except where noted):
      1. relations: members of ``type=multipolygon`` relations (Python sees only those);
      2. nodes + ways with a node-location index: every way's envelope (Python sees
         only ways); keep ways whose envelope meets the bbox; grow each
         multipolygon's envelope from its member ways;
      3. keep multipolygons whose envelope meets the bbox (a forest enclosing the
         whole bbox stays), with all their member ways; then the nodes of every kept
         way (``IdTracker.complete_backward_references``, also those outside the bbox),
         and the tagged nodes point rules draw (``CLIP_POINT_TAGS``: trees) inside the bbox;
      4. copy the kept objects into the clip (C++ id filter -> writer).
    Envelope tests are conservative: a way whose box meets the bbox is kept even if
    its line misses it. ``node_storage`` is the pyosmium location index (default
    ``flex_mem``; ``sparse_file_array,<file>`` keeps memory low for a continent).
    The result is cached under ``<cache_dir>/clips/`` keyed on path, size, mtime and bbox.
    """
    path = Path(path)
    bbox = _check_bbox(bbox_lonlat)
    osmium = _osmium_or_none(path) if _is_big_osm_file(path, min_bytes) else None
    if osmium is None:
        return path
    target = _clip_cache_path(path, bbox, cache_dir)
    if use_cache and target.is_file() and target.stat().st_size > 0:
        log.info("clip of %s for bbox %s from cache %s", path.name, _fmt_bbox(bbox), target)
        return target
    _make_cache_dir(target.parent)
    started = time.monotonic()

    def report(fraction: float, message: str) -> None:
        log.info("clip %s: %s (%.1f s)", path.name, message, time.monotonic() - started)
        if progress is not None:
            progress(fraction, message)

    try:
        kept_ways, kept_rels = _clip_passes(osmium, str(path), bbox, target, node_storage, report)
    except SourceError:
        raise
    except (RuntimeError, OSError, ValueError) as exc:
        raise SourceError(f"cannot clip '{path}' to bbox {_fmt_bbox(bbox)} ({_one_line(str(exc), 120)}); "
                          "check that the file is a complete OSM file (download it again)") from None
    seconds = time.monotonic() - started
    log.info("clipped %s (%.0f MB) to bbox %s in %.1f s: %d ways, %d multipolygons, %.1f MB -> %s",
             path.name, path.stat().st_size / 1e6, _fmt_bbox(bbox), seconds, kept_ways, kept_rels,
             target.stat().st_size / 1e6, target)
    if progress is not None:
        progress(1.0, f"clipped {path.name} in {seconds:.0f} s")
    return target
