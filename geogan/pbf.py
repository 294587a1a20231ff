"""Cheap structural checks of OSM PBF files, to refuse a cut-short download before rendering it.

A PBF is a sequence of blocks: a 4-byte big-endian length, a ``BlobHeader`` protobuf of that length
(``type`` = "OSMHeader" or "OSMData", ``datasize``), then the blob of ``datasize`` bytes; the first
block is the OSMHeader. GDAL's OSM driver reads a file cut between two blocks (or with 1-3 stray bytes
of a next block) without an error and renders the part it got; inside a block it fails with "error
during the parsing of data". :func:`pbf_problem` walks the block headers (seeking over the blobs,
nothing decompressed: 0.08 s for 10,000 blocks, about a 1 GB extract, from the page cache) and then
looks into the last data blob only: PBF writers (osmium, osmosis) write all nodes, then all ways, then
all relations, each block holding one kind, so a file whose last block holds nodes was cut before its
ways (or holds no ways, which geogan would not draw either).

A cut exactly between two blocks of ways or relations leaves a well-formed, shorter file; nothing in
the format tells it apart from a complete one.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

MAX_HEADER_BYTES = 64 * 1024  # the format's limits on a BlobHeader and a blob
MAX_BLOB_BYTES = 32 * 1024 * 1024
_GROUP_KINDS = {1: "nodes", 2: "nodes", 3: "ways", 4: "relations", 5: "changesets"}  # PrimitiveGroup fields
CLIP_GENERATOR_PREFIX = "geogan/"  # clips written by geogan.overpass.clip_large_osm; may hold no data


class PbfDamage(ValueError):
    """What is wrong with a PBF file's structure, as a phrase for a message."""


@dataclass(frozen=True)
class Block:
    kind: str  # the BlobHeader type: "OSMHeader", "OSMData"
    offset: int  # byte offset of the blob (after its header)
    size: int  # blob bytes


@dataclass(frozen=True)
class PbfLayout:
    header: Block | None
    data_blocks: int
    last_data: Block | None


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise PbfDamage("a malformed protobuf varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise PbfDamage("a protobuf field longer than its message")
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i:i + n], i + n
        else:
            raise PbfDamage(f"protobuf wire type {wire}")
        yield number, value


def _read_block(fh: BinaryIO, offset: int, file_bytes: int, index: int) -> Block:
    prefix = fh.read(4)
    if len(prefix) < 4:
        raise PbfDamage(f"it ends inside the length of block {index + 1} (byte {offset})")
    (header_bytes,) = struct.unpack(">I", prefix)
    if not 0 < header_bytes <= MAX_HEADER_BYTES:
        raise PbfDamage(f"block {index + 1} at byte {offset} has no valid header (length {header_bytes})")
    raw = fh.read(header_bytes)
    if len(raw) < header_bytes:
        raise PbfDamage(f"it ends inside the header of block {index + 1} (byte {offset})")
    fields = dict(_fields(raw))
    kind, size = fields.get(1), fields.get(3)
    if not isinstance(kind, bytes) or not isinstance(size, int) or size > MAX_BLOB_BYTES:
        raise PbfDamage(f"block {index + 1} at byte {offset} has no valid header")
    start = offset + 4 + header_bytes
    if start + size > file_bytes:
        raise PbfDamage(f"it ends inside block {index + 1} ({file_bytes - start} of its {size} bytes are there)")
    return Block(kind.decode("ascii", "replace"), start, size)


def walk(path: str | Path) -> PbfLayout:
    """The block layout of a PBF file; :class:`PbfDamage` if it is not one or ends inside a block."""
    path = Path(path)
    file_bytes = path.stat().st_size
    header = last = None
    blocks = data_blocks = offset = 0
    with open(path, "rb") as fh:
        while offset < file_bytes:
            block = _read_block(fh, offset, file_bytes, blocks)
            if blocks == 0 and block.kind != "OSMHeader":
                raise PbfDamage(f"its first block is {block.kind[:20]!r}, not 'OSMHeader'")
            if block.kind == "OSMHeader":
                header = header or block
            elif block.kind == "OSMData":
                last = block
                data_blocks += 1
            blocks += 1
            offset = block.offset + block.size
            fh.seek(offset)
    return PbfLayout(header, data_blocks, last)


def _blob_bytes(fh: BinaryIO, block: Block) -> bytes | None:
    """The uncompressed content of a blob; None for a compression the standard library lacks (lz4, zstd)."""
    fh.seek(block.offset)
    fields = dict(_fields(fh.read(block.size)))
    try:
        if isinstance(fields.get(1), bytes):
            return fields[1]
        if isinstance(fields.get(3), bytes):
            return zlib.decompress(fields[3])
        if isinstance(fields.get(4), bytes):
            return lzma.decompress(fields[4])
    except (zlib.error, lzma.LZMAError) as exc:
        raise PbfDamage(f"a block does not decompress ({exc})") from None
    return None


def data_kinds(path: str | Path, block: Block) -> set[str]:
    """The kinds of objects ("nodes", "ways", "relations") in one OSMData block; empty if unknown."""
    with open(path, "rb") as fh:
        content = _blob_bytes(fh, block)
    if content is None:
        return set()
    return {_GROUP_KINDS.get(number, "other") for group_field, group in _fields(content) if group_field == 2
            and isinstance(group, bytes) for number, _ in _fields(group)}


def writing_program(path: str | Path, header: Block) -> str:
    """The OSMHeader's ``writingprogram`` ("" if absent or not readable)."""
    with open(path, "rb") as fh:
        content = _blob_bytes(fh, header)
    fields = dict(_fields(content or b""))
    value = fields.get(16)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def pbf_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete OSM PBF, as a phrase; None when its structure looks whole."""
    try:
        layout = walk(path)
        if layout.header is None:
            return "it holds no OSMHeader block"
        if layout.last_data is None:
            if writing_program(path, layout.header).startswith(CLIP_GENERATOR_PREFIX):
                return None  # geogan's own clip of an area without data
            return "it holds a header but no data (cut after its header?)"
        if data_kinds(path, layout.last_data) == {"nodes"}:
            return "it ends among its nodes, before any way or relation (cut short?)"
    except PbfDamage as exc:
        return str(exc)
    return None
