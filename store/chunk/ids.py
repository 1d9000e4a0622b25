"""Names on a drive: chunk ids, shard ids and extent ids (pure). Every id is checked against a
strict pattern before it becomes a path or a request, so no user input can name a file."""

from __future__ import annotations

import re
import secrets
import time

from store.errors import InvalidArgument

_SHARD_ID = re.compile(r"[0-9a-f]{32}\.[0-9]{1,2}")
_EXTENT_ID = re.compile(r"[0-9a-f]{16}\.[0-9a-f]{1,16}")


STREAM_ID_HEX = 24


def new_stream_id() -> str:
    """24 hex digits naming one written stream (an object's data, a part): the creation time in
    seconds (8), then 64 random bits. Its chunks' ids extend it with their number, so the
    metadata can keep one reference record per stream, found from any of its chunks' ids."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def chunk_id_in(stream_id: str, number: int) -> str:
    """The id of chunk ``number`` of a stream: 32 hex digits.

    >>> chunk_id_in("0123456789abcdef01234567", 10)
    '0123456789abcdef012345670000000a'
    >>> stream_of(chunk_id_in("0123456789abcdef01234567", 10))
    '0123456789abcdef01234567'
    """
    if not 0 <= number <= 0xFFFFFFFF:
        raise InvalidArgument(f"chunk number {number} out of range")
    return f"{stream_id}{number:08x}"


def stream_of(chunk_id: str) -> str:
    return chunk_id[:STREAM_ID_HEX]


def number_in_stream(chunk_id: str) -> int:
    return int(chunk_id[STREAM_ID_HEX:], 16)


def new_chunk_id() -> str:
    """A chunk of a stream of its own (32 hex digits, creation time first: garbage collection
    tells a fresh chunk, maybe still being written, from an old orphan)."""
    return chunk_id_in(new_stream_id(), 0)


def chunk_created(chunk_id: str) -> float:
    """When a chunk id was made (seconds since the epoch).

    >>> chunk_created("00000010" + "0" * 24)
    16.0
    """
    return float(int(chunk_id[:8], 16))


def shard_id(chunk_id: str, index: int) -> str:
    """Shard ``index`` of a chunk.

    >>> shard_id("ab" * 16, 3)
    'abababababababababababababababab.3'
    """
    sid = f"{chunk_id}.{index}"
    check_shard_id(sid)
    return sid


def check_shard_id(sid: str) -> None:
    if not isinstance(sid, str) or not _SHARD_ID.fullmatch(sid):
        raise InvalidArgument(f"not a shard id: {sid!r}")


def check_extent_id(eid: str) -> None:
    """A volume extent's id: its layer (16 hex digits), a dot, its index in hex."""
    if not isinstance(eid, str) or not _EXTENT_ID.fullmatch(eid):
        raise InvalidArgument(f"bad extent id {eid!r}")
