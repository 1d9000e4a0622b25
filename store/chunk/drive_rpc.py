"""The drive seam over the chunk RPC: method numbers, argument bodies and error statuses shared by
the chunk server (``drive_server.py``) and the remote drive (``remote_drive.py``).

A call's body is JSON naming the drive (``"drive"``) and the arguments; bulk bytes travel as the
message's payload, with their blocks' CRC32Cs (a shard append passes the encoder's CRCs through
as the frames' CRCs when its blocks fit the wire, so they are computed once, at the source, and
stored as they arrived). Errors come back as a status and a message, turned into the same domain
exception on the caller's side; an OSError keeps its errno, so the volume layer sees a failing
drive as one.
"""

from __future__ import annotations

import base64
import errno
import json
from enum import IntEnum
from typing import Any

from store.errors import (
    Conflict,
    Corrupt,
    InvalidArgument,
    NoSpace,
    NotFound,
    StoreError,
    Unavailable,
)
from store.rpc.transport import STATUS_CORRUPT, STATUS_DEADLINE, Message


class Method(IntEnum):
    CREATE = 1
    SINK_WRITE = 2
    SINK_APPEND = 3
    SINK_COMMIT = 4
    SINK_ABORT = 5
    READ = 6
    READ_BLOCKS = 7
    GEOMETRY = 8
    VERIFY = 9
    DELETE = 10
    LIST = 11
    CLEAN_TMP = 12
    STAT = 13
    EXTENT_CREATE = 20
    EXTENT_READ = 21
    EXTENT_WRITE = 22
    EXTENT_ZERO = 23
    EXTENT_SYNC = 24
    EXTENT_VERIFY = 25
    EXTENT_IMAGE = 26
    EXTENT_REBUILD = 27
    EXTENT_STATES = 28
    EXTENT_DELETE = 29
    EXTENT_RELEASE = 30


OK = 0
_ERRORS: list[tuple[int, type[StoreError]]] = [
    (1, NotFound),
    (2, Corrupt),
    (3, InvalidArgument),
    (4, NoSpace),
    (5, Conflict),
    (6, Unavailable),
]
STATUS_OS_ERROR = 20
STATUS_INTERNAL = 21
LIST_PAGE = 10_000


def encode(**args: Any) -> bytes:
    return json.dumps(args, separators=(",", ":")).encode()


def decode(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        raise InvalidArgument("a drive call's body is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("a drive call's body is not a JSON object")
    return doc


def b64(raw: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(raw)).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def decode_drive(body: bytes) -> str:
    """The drive a call names ("" if the body does not say)."""
    try:
        drive = decode(body).get("drive", "")
    except InvalidArgument:
        return ""
    return drive if isinstance(drive, str) else ""


def error_kind(status: int) -> str:
    """A short name of an error status, for metrics (``not_found``, ``os_error``...)."""
    for code, kind in _ERRORS:
        if code == status:
            return kind.__name__.lower()
    return {STATUS_OS_ERROR: "os_error", STATUS_CORRUPT: "corrupt_in_transit"}.get(
        status, "internal"
    )


def error_reply(error: BaseException) -> Message:
    """The status a domain error or an OSError travels as."""
    if isinstance(error, OSError):
        return Message(STATUS_OS_ERROR, encode(errno=error.errno or errno.EIO, error=str(error)))
    for status, kind in _ERRORS:
        if isinstance(error, kind):
            return Message(status, encode(error=str(error)))
    return Message(STATUS_INTERNAL, encode(error=f"{type(error).__name__}: {error}"))


def raise_for(reply: Message, where: str) -> None:
    """Raise what a non-OK reply says (the error the drive raised, as the same type)."""
    if reply.code == OK:
        return
    try:
        doc = decode(reply.body)
    except InvalidArgument:
        doc = {}
    text = f"{where}: {doc.get('error', reply.body[:200])}"
    if reply.code == STATUS_OS_ERROR:
        raise OSError(int(doc.get("errno", errno.EIO)), text)
    if reply.code == STATUS_CORRUPT:
        raise Corrupt(f"{where}: the data sent was damaged on the way (refused, nothing stored)")
    if reply.code == STATUS_DEADLINE:
        raise Unavailable(f"{where}: the call's deadline passed on the chunk server")
    for status, kind in _ERRORS:
        if reply.code == status:
            raise kind(text)
    raise Unavailable(f"{where}: the chunk server failed ({reply.code}): {text}")
