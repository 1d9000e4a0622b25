"""Names on a drive: chunk ids, shard ids and extent ids (pure). Every id is checked against a
strict pattern before it becomes a path or a request, so no user input can name a file."""

from __future__ import annotations

import re
import secrets
import time

from store.errors import InvalidArgument

_SHARD_ID = re.compile(r"[0-9a-f]{32}\.[0-9]{1,2}")
_EXTENT_ID = re.compile(r"[0-9a-f]{16}\.[0-9a-f]{1,16}")


def new_chunk_id() -> str:
    """32 hex digits: the creation time in seconds (8), then 96 random bits. The time lets
    garbage collection tell a fresh chunk (maybe still being written) from an old orphan."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


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
