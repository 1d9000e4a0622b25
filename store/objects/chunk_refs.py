"""Reference and garbage records: which chunks the metadata names (``R/``) and which wait to be
collected (``G/``); their keys, bodies, and the transaction ops that write them (pure).

One reference record per written stream (an object's data, a part: chunk/ids.py) and per
REFS_PER_RECORD of its chunks, ``R/<stream id>.<page hex>``, found from any chunk's id, so
committing, replacing and collecting a stream take a few ops however many chunks it has (etcd
allows 128 per transaction). Records written before streams named one chunk each,
``R/<chunk id>`` (legacy_ref_key), and are still read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from store.chunk.chunkref import ChunkRef
from store.chunk.ids import number_in_stream, stream_of
from store.meta.api import Op, Put

REFS_PER_RECORD = 1024
GARBAGE_PREFIX = b"G/"
REFS_PREFIX = b"R/"


def ref_key(chunk_id: str) -> bytes:
    """The reference record naming ``chunk_id``.

    >>> ref_key("0123456789abcdef01234567" + "00000401")
    b'R/0123456789abcdef01234567.1'
    """
    page = number_in_stream(chunk_id) // REFS_PER_RECORD
    return b"R/%s.%x" % (stream_of(chunk_id).encode(), page)


def legacy_ref_key(chunk_id: str) -> bytes:
    return b"R/" + chunk_id.encode()


def garbage_key(chunk_id: str, when_ns: int | None = None) -> bytes:
    return b"G/%020d/" % (time.time_ns() if when_ns is None else when_ns) + chunk_id.encode()


def refs_value(refs: Sequence[ChunkRef], owner: bytes) -> bytes:
    """A reference (R/) or garbage (G/) record: the chunks, and the key that named them."""
    body = {"refs": [r.to_json() for r in refs], "owner": owner.decode(errors="replace")}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def refs_from_value(raw: bytes) -> list[ChunkRef]:
    """The chunks of an R/ or G/ record (older records held one chunk, as ``ref``)."""
    doc = json.loads(raw)
    if "refs" in doc:
        return [ChunkRef.from_json(r) for r in doc["refs"]]
    return [ChunkRef.from_json(doc["ref"])]


def is_legacy_record(raw: bytes) -> bool:
    """An R/ or G/ record of one chunk, written before reference records named streams."""
    return "refs" not in json.loads(raw)


def grouped_refs(chunks: Sequence[ChunkRef]) -> dict[bytes, list[ChunkRef]]:
    """The chunks by the reference record that names them (ref_key), in order."""
    out: dict[bytes, list[ChunkRef]] = {}
    for c in chunks:
        out.setdefault(ref_key(c.chunk_id), []).append(c)
    return out


def garbage_ops(chunks: Sequence[ChunkRef]) -> list[Op]:
    """Queue chunks for collection (G/): one record per REFS_PER_RECORD of them, so a txn
    dropping an object of many chunks stays within a few ops."""
    now = time.time_ns()
    step = REFS_PER_RECORD
    return [
        Put(garbage_key(chunks[i].chunk_id, now), refs_value(chunks[i : i + step], b""))
        for i in range(0, len(chunks), step)
    ]


def ref_ops(chunks: Sequence[ChunkRef], owner: bytes) -> list[Op]:
    """Name new chunks in the reference index (R/), atomically with the record that uses them:
    one op per stream page (REFS_PER_RECORD), not per chunk."""
    return [Put(key, refs_value(refs, owner)) for key, refs in grouped_refs(chunks).items()]
