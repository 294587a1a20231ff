"""Issue 27, defect 4: a .pbf cut exactly between two blocks is well-formed; geogan.pbf guesses the cut.

Files are written by pyosmium (libosmium: 8000 objects a block, one kind a block) or, for osmosis's
layout (blocks of a fixed count that run across kinds), block by block here; they are cut at the block
boundaries geogan.pbf's own walker finds.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import osmium
import pytest

from geogan import pbf
from geogan.errors import SourceError
from geogan.sources import read_sources

LON, LAT = 24.94, 60.17
FULL = 8000  # libosmium's objects per block


def _write_osmium(path: Path, ways: int, relations: int, untagged_every: int = 10,
                  generator: str = "osmium/tests") -> Path:
    """Closed 4-node buildings (every ``untagged_every``-th way untagged), relations of one way each."""
    header = osmium.io.Header()
    header.set("generator", generator)
    with osmium.SimpleWriter(str(path), header=header, overwrite=True) as writer:
        for i in range(1, 101):
            writer.add_node(osmium.osm.mutable.Node(id=i, location=(LON + (i % 10) * 1e-4, LAT + (i // 10) * 1e-4)))
        for i in range(1, ways + 1):
            a = 1 + i % 80
            tags = {} if untagged_every and i % untagged_every == 0 else {"building": "yes"}
            writer.add_way(osmium.osm.mutable.Way(id=i, nodes=[a, a + 1, a + 11, a + 10, a], tags=tags))
        for i in range(1, relations + 1):
            writer.add_relation(osmium.osm.mutable.Relation(
                id=i, members=[("w", 1 + i % ways, "outer")], tags={"type": "multipolygon", "landuse": "grass"}))
    return path


def _cut_after(path: Path, data_blocks: int, out: Path) -> Path:
    """The first ``data_blocks`` OSMData blocks of ``path`` (with its header), cut where geogan's walker says."""
    block = pbf.walk(path).data[data_blocks - 1]
    out.write_bytes(path.read_bytes()[:block.offset + block.size])
    return out


def _kinds(path: Path) -> list[tuple[tuple[str, ...], int]]:
    with open(path, "rb") as fh:
        return [(c.kinds, c.objects) for c in (pbf.block_content(fh, b) for b in pbf.walk(path).data)]


@pytest.fixture(scope="module")
def big_pbf(tmp_path_factory) -> Path:
    path = _write_osmium(tmp_path_factory.mktemp("pbf") / "whole.osm.pbf", ways=20_000, relations=17_000)
    assert _kinds(path) == [(("nodes",), 100), (("ways",), FULL), (("ways",), FULL), (("ways",), 4000),
                            (("relations",), FULL), (("relations",), FULL), (("relations",), 1000)]
    return path


@pytest.mark.parametrize("blocks, reason", [
    (3, "its last block holds exactly 8000 objects (ways), as many as a full block before it"),  # ways | ways
    (4, "yet 2000 of its last 20000 ways are untagged (the members of relations), so its relations look cut off"),
    (5, "its last block holds exactly 8000 objects (relations)"),  # after the first block of relations
    (6, "its last block holds exactly 8000 objects (relations)"),  # relations | relations
], ids=["between two blocks of ways", "between the ways and the relations", "after the first block of relations",
        "between two blocks of relations"])
def test_a_file_cut_between_two_blocks_is_refused(tmp_path, big_pbf, blocks, reason):
    assert pbf.pbf_problem(big_pbf) is None
    cut = _cut_after(big_pbf, blocks, tmp_path / "cut.osm.pbf")
    problem = pbf.pbf_problem(cut)
    assert problem is not None and reason in problem and problem.endswith("set GEOGAN_PBF_COMPLETE=1)")


def test_the_refusal_is_one_line_naming_the_way_to_read_a_complete_file(tmp_path, big_pbf, monkeypatch):
    cut = _cut_after(big_pbf, 6, tmp_path / "cut.osm.pbf")
    with pytest.raises(SourceError) as info:
        read_sources([cut], None)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"input '{cut}' is not a complete OSM PBF: its last block")
    assert "(if the file is complete, set GEOGAN_PBF_COMPLETE=1); download or export it again" in message
    monkeypatch.setenv("GEOGAN_PBF_COMPLETE", "1")
    assert pbf.pbf_problem(cut) is None


def test_relations_cut_off_from_a_small_file(tmp_path, monkeypatch):
    """One block of each kind: only the untagged ways (relation members) left without relations tell."""
    whole = _write_osmium(tmp_path / "whole.osm.pbf", ways=40, relations=3, untagged_every=20)
    assert pbf.pbf_problem(whole) is None
    cut = _cut_after(whole, 2, tmp_path / "cut.osm.pbf")
    assert "2 of its last 40 ways are untagged" in pbf.pbf_problem(cut)
    # a complete extract without relations whose ways are all tagged (a tag filter's output) is not guessed at
    assert pbf.pbf_problem(_write_osmium(tmp_path / "tagged.osm.pbf", ways=40, relations=0, untagged_every=0)) is None
    # nor is geogan's own clip (written atomically; it keeps only multipolygon relations)
    clip = _write_osmium(tmp_path / "clip.osm.pbf", ways=40, relations=0, untagged_every=20, generator="geogan/1.0")
    assert pbf.pbf_problem(clip) is None
    monkeypatch.setenv("GEOGAN_PBF_COMPLETE", "1")  # the user's word that the file is complete
    assert read_sources([cut], None).feature_count == 38


# ------------------------------------------------------ osmosis's layout: blocks of a count across kinds


def _uv(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _uv(number << 3 | 2) + _uv(len(payload)) + payload


def _deltas(values: list[int]) -> bytes:  # packed sint64, delta coded
    return b"".join(_uv((d << 1) ^ (d >> 63)) for d in (b - a for a, b in zip([0] + values, values)))


def _block(kind: bytes, content: bytes) -> bytes:
    blob = _uv(2 << 3) + _uv(len(content)) + _ld(3, zlib.compress(content))
    header = _ld(1, kind) + _uv(3 << 3) + _uv(len(blob))
    return struct.pack(">I", len(header)) + header + blob


def _group(kind: str, ids: list[int]) -> bytes:
    if kind == "n":
        dense = _ld(1, _deltas(ids)) + _ld(8, _deltas([int(LAT * 1e7)] * len(ids)))
        return _ld(2, dense + _ld(9, _deltas([int(LON * 1e7) + i for i in ids])))
    if kind == "w":
        return b"".join(_ld(3, _uv(1 << 3) + _uv(i) + _ld(2, b"\x01") + _ld(3, b"\x02") + _ld(8, _deltas([1, 2, 3, 1])))
                        for i in ids)
    return b"".join(_ld(4, _uv(1 << 3) + _uv(i) + _ld(8, b"\x00") + _ld(9, _deltas([i])) + _ld(10, b"\x01"))
                    for i in ids)


def _write_osmosis_like(path: Path, per_block: int, nodes: int, ways: int, relations: int) -> Path:
    objects = [("n", i) for i in range(1, nodes + 1)] + [("w", i) for i in range(1, ways + 1)] + \
        [("r", i) for i in range(1, relations + 1)]
    out = _block(b"OSMHeader", _ld(4, b"OsmSchema-V0.6") + _ld(4, b"DenseNodes") + _ld(16, b"0.47"))
    for start in range(0, len(objects), per_block):
        chunk, groups = objects[start:start + per_block], b""
        for kind in "nwr":
            ids = [i for k, i in chunk if k == kind]
            groups += _ld(2, _group(kind, ids)) if ids else b""
        out += _block(b"OSMData", _ld(1, _ld(1, b"") + _ld(1, b"building") + _ld(1, b"yes")) + groups)
    path.write_bytes(out)
    return path


def test_osmosis_blocks_across_kinds_cut_between_two_blocks_are_refused(tmp_path):
    whole = _write_osmosis_like(tmp_path / "whole.osm.pbf", per_block=50, nodes=120, ways=100, relations=25)
    assert _kinds(whole) == [(("nodes",), 50), (("nodes",), 50), (("nodes", "ways"), 50), (("ways",), 50),
                             (("ways", "relations"), 45)]
    assert pbf.pbf_problem(whole) is None
    for blocks, kind in [(3, "mixed"), (4, "ways")]:
        problem = pbf.pbf_problem(_cut_after(whole, blocks, tmp_path / f"cut{blocks}.osm.pbf"))
        assert f"its last block holds exactly 50 objects ({kind}), as many as a full block" in problem
