"""The NBD transmission phase, sans-IO: requests in, replies out, and the spec's checks.

Requests (28 bytes, then a WRITE's payload):
    u32 0x25609513, u16 command flags, u16 type, u64 cookie, u64 offset, u32 length
Simple reply (16 bytes; a successful READ's data follows):
    u32 0x67446698, u32 error, u64 cookie
Structured reply chunk (20 bytes, then ``length`` bytes of payload):
    u32 0x668e33ef, u16 flags (DONE), u16 type, u64 cookie, u32 length

``RequestReader`` cuts a byte stream into requests; the server feeds it whatever one socket read
returned and takes every complete request out (many pipelined requests per read). ``buffered``
is every byte it holds (a large WRITE payload on its way in, too): what the server counts
against its budget before reading more. ``check`` applies the spec's checklist to a request
before any work: the error it names is the reply.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from store.nbd.constants import (
    REPLY_FLAG_DONE,
    REQUEST_MAGIC,
    SIMPLE_REPLY_MAGIC,
    STRUCTURED_REPLY_MAGIC,
    Command,
    CommandFlag,
    Errno,
    ReplyType,
    TransmissionFlag,
)
from store.nbd.handshake import ProtocolError

REQUEST = struct.Struct(">IHHQQI")
SIMPLE_REPLY = struct.Struct(">IIQ")
CHUNK = struct.Struct(">IHHQI")
_DATA_HEAD = struct.Struct(">IHHQIQ")  # an OFFSET_DATA chunk header and its offset
_COMPACT_BYTES = 1 << 20  # drop consumed bytes from the buffer once this many have piled up
LARGE_PAYLOAD_BYTES = 1 << 20  # a WRITE payload this long that is still arriving fills in place


class Request(NamedTuple):  # a tuple: built per request, cheaper than a frozen dataclass
    flags: int
    command: int
    cookie: int
    offset: int
    length: int


class RequestReader:
    """Complete requests from a stream of bytes. A WRITE comes with its payload: a copy, or
    (``LARGE_PAYLOAD_BYTES`` or more, not all there when its header was read) a view of the
    buffer it was gathered in, so it is held once, never twice. A payload longer than
    ``max_payload`` is a protocol error (the connection must close: the stream cannot be
    resynchronised without reading it).

    >>> head = REQUEST.pack(REQUEST_MAGIC, 0, Command.WRITE, 7, 0, 1 << 20)
    >>> wire = head + bytes(range(256)) * 4096 + REQUEST.pack(REQUEST_MAGIC, 0, 3, 8, 0, 0)
    >>> reader = RequestReader(1 << 20)
    >>> reader.receive_data(wire[:1000]); reader.next_request()  # gathering starts
    >>> reader.buffered  # the payload's first 972 bytes
    972
    >>> for at in range(1000, len(wire), 300_000):
    ...     reader.receive_data(wire[at : at + 300_000])
    >>> request, payload = reader.next_request()
    >>> request.cookie, type(payload).__name__, payload == wire[28 : 28 + (1 << 20)]
    (7, 'memoryview', True)
    >>> reader.next_request()  # the FLUSH after it
    (Request(flags=0, command=3, cookie=8, offset=0, length=0), b'')
    """

    def __init__(self, max_payload: int, data: bytes = b"") -> None:
        self.max_payload = max_payload
        self._buffer = bytearray(data)
        self._at = 0
        self._large: tuple[Request, bytearray] | None = None  # a WRITE whose payload arrives
        self._filled = 0  # bytes of its payload so far

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._large is not None:
            payload = self._large[1]
            n = min(len(data), len(payload) - self._filled)
            with memoryview(data) as view:
                payload[self._filled : self._filled + n] = view[:n]
                self._filled += n
                if n == len(view):
                    return
                data = bytes(view[n:])  # the requests after it (at most one socket read)
        if self._at >= _COMPACT_BYTES or self._at == len(self._buffer):
            del self._buffer[: self._at]
            self._at = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._at + self._filled

    def next_request(self) -> tuple[Request, bytes | memoryview] | None:
        """The next request and its payload (b"" unless a WRITE), or None until more bytes."""
        if self._large is not None:
            if self._filled < len(self._large[1]):
                return None
            (request, gathered), self._large, self._filled = self._large, None, 0
            return request, memoryview(gathered)
        at = self._at
        if len(self._buffer) - at < REQUEST.size:
            return None
        magic, flags, command, cookie, offset, length = REQUEST.unpack_from(self._buffer, at)
        if magic != REQUEST_MAGIC:
            raise ProtocolError(f"bad request magic {magic:#x}")
        payload: bytes | memoryview = b""
        end = at + REQUEST.size
        if command == Command.WRITE:
            if length > self.max_payload:
                raise ProtocolError(f"a {length}-byte write is over the {self.max_payload} limit")
            if len(self._buffer) < end + length:
                if length >= LARGE_PAYLOAD_BYTES:  # gather it in its own buffer from here on
                    gathering = bytearray(length)
                    self._filled = len(self._buffer) - end
                    with memoryview(self._buffer) as view:
                        gathering[: self._filled] = view[end:]
                    self._large = Request(flags, command, cookie, offset, length), gathering
                    self._at = len(self._buffer)
                return None
            with memoryview(self._buffer) as view:  # one copy, not a slice and a copy
                payload = bytes(view[end : end + length])
            end += length
        self._at = end
        return Request(flags, command, cookie, offset, length), payload


@dataclass(frozen=True, slots=True)
class ExportState:
    """What the checks need to know about the export and the connection."""

    size: int
    flags: TransmissionFlag
    min_block: int
    max_payload: int
    structured: bool
    meta_contexts: bool
    # Derived once, as plain values: ``check`` runs per request, and IntFlag arithmetic is slow.
    read_only: bool = field(init=False)
    _fua: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_only", bool(self.flags & TransmissionFlag.READ_ONLY))
        fua = int(CommandFlag.FUA) if self.flags & TransmissionFlag.SEND_FUA else 0
        object.__setattr__(self, "_fua", fua)


_EXPORT_FLAGS = (
    TransmissionFlag.HAS_FLAGS
    | TransmissionFlag.SEND_FLUSH
    | TransmissionFlag.SEND_FUA
    | TransmissionFlag.SEND_TRIM
    | TransmissionFlag.SEND_WRITE_ZEROES
    | TransmissionFlag.SEND_DF
    | TransmissionFlag.CAN_MULTI_CONN
    | TransmissionFlag.SEND_CACHE
)


def export_flags(read_only: bool) -> TransmissionFlag:
    """The transmission flags of this server's exports: every command and flag it implements
    (not ROTATIONAL, RESIZE or FAST_ZERO), and READ_ONLY for ``read_only``."""
    return (_EXPORT_FLAGS | TransmissionFlag.READ_ONLY) if read_only else _EXPORT_FLAGS


# Command flags each command accepts (FUA: all of them, once the export offers it).
_FLAGS_ALLOWED = {
    Command.READ: CommandFlag.DF,
    Command.WRITE: CommandFlag(0),
    Command.DISC: CommandFlag(0),
    Command.FLUSH: CommandFlag(0),
    Command.TRIM: CommandFlag(0),
    Command.CACHE: CommandFlag(0),
    Command.WRITE_ZEROES: CommandFlag.NO_HOLE | CommandFlag.FAST_ZERO,
    Command.BLOCK_STATUS: CommandFlag.REQ_ONE,
}
_MODIFIES = (Command.WRITE, Command.TRIM, Command.WRITE_ZEROES)
_WITH_RANGE = (
    Command.READ,
    Command.WRITE,
    Command.TRIM,
    Command.CACHE,
    Command.WRITE_ZEROES,
    Command.BLOCK_STATUS,
)


def check(request: Request, export: ExportState) -> Errno:
    """The error the spec says a request gets before any work is done, or Errno.OK.

    Unknown commands and flags, and flags a command does not take: EINVAL. Writes and trims on a
    read-only export: EPERM. Past the end: ENOSPC for writes, EINVAL otherwise. Offsets and
    lengths not multiples of the minimum block size: EINVAL. Reads and caches over the maximum
    payload (the advertised maximum block size; a write over it never gets here: the reader
    refuses it; WRITE_ZEROES, which the spec also binds to it, is let through: it needs no
    buffer): EINVAL."""
    command, flags = request.command, request.flags
    if command <= 1 and not flags & ~export._fua:  # READ, WRITE (+FUA): plain int arithmetic
        offset, length, block = request.offset, request.length, export.min_block
        if command == 1:
            if export.read_only:
                return Errno.EPERM
            if offset + length > export.size:
                return Errno.ENOSPC
        elif offset + length > export.size or length > export.max_payload:
            return Errno.EINVAL
        return Errno.EINVAL if offset % block or length % block else Errno.OK
    try:
        command = Command(request.command)
    except ValueError:
        return Errno.EINVAL
    allowed = _FLAGS_ALLOWED[command]
    if export.flags & TransmissionFlag.SEND_FUA:
        allowed |= CommandFlag.FUA
    if request.flags & ~int(allowed):  # int(): ~ of an IntFlag keeps only its defined members
        return Errno.EINVAL
    if request.flags & CommandFlag.DF and not (
        export.structured and export.flags & TransmissionFlag.SEND_DF
    ):
        return Errno.EINVAL
    if request.flags & CommandFlag.FAST_ZERO and not export.flags & TransmissionFlag.SEND_FAST_ZERO:
        return Errno.EINVAL
    if command in (Command.FLUSH, Command.DISC):
        return Errno.EINVAL if request.offset or request.length else Errno.OK
    if command == Command.BLOCK_STATUS and not (export.structured and export.meta_contexts):
        return Errno.EINVAL
    if command in _MODIFIES and export.read_only:
        return Errno.EPERM
    if command in _WITH_RANGE:
        if request.offset + request.length > export.size:
            return (
                Errno.ENOSPC if command in (Command.WRITE, Command.WRITE_ZEROES) else Errno.EINVAL
            )
        if request.offset % export.min_block or request.length % export.min_block:
            return Errno.EINVAL
    if command in (Command.READ, Command.CACHE) and request.length > export.max_payload:
        return Errno.EINVAL
    return Errno.OK


# -- replies --------------------------------------------------------------------------------------


def simple_reply(cookie: int, error: int = 0) -> bytes:
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def chunk(cookie: int, reply_type: int, payload_bytes: int, *, done: bool) -> bytes:
    """A structured reply chunk header; ``payload_bytes`` of payload must follow."""
    flags = REPLY_FLAG_DONE if done else 0
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, flags, reply_type, cookie, payload_bytes)


def data_chunk(cookie: int, offset: int, data_bytes: int, *, done: bool) -> bytes:
    """NBD_REPLY_TYPE_OFFSET_DATA's header and offset; ``data_bytes`` of data follow."""
    flags = REPLY_FLAG_DONE if done else 0
    return _DATA_HEAD.pack(
        STRUCTURED_REPLY_MAGIC, flags, _OFFSET_DATA, cookie, 8 + data_bytes, offset
    )


_OFFSET_DATA = int(ReplyType.OFFSET_DATA)


def hole_chunk(cookie: int, offset: int, hole_bytes: int, *, done: bool) -> bytes:
    return chunk(cookie, ReplyType.OFFSET_HOLE, 12, done=done) + struct.pack(
        ">QI", offset, hole_bytes
    )


def none_chunk(cookie: int) -> bytes:
    return chunk(cookie, ReplyType.NONE, 0, done=True)


def error_chunk(cookie: int, error: int, message: str = "", *, done: bool = True) -> bytes:
    text = message.encode()[:4096].decode(errors="ignore").encode()  # never half a character
    payload = struct.pack(">IH", error, len(text)) + text
    return chunk(cookie, ReplyType.ERROR, len(payload), done=done) + payload


# A BLOCK_STATUS answers for at most this much of its range (the spec lets a reply cover less
# than asked; the client asks again from where it ends): a fragmented volume's descriptors for a
# 4 GiB request would be a million, 8 MiB of reply per request.
STATUS_MAX_BYTES = 256 << 20


def status_length(request: Request) -> int:
    """How much of a BLOCK_STATUS request's range the reply describes."""
    return min(request.length, STATUS_MAX_BYTES)


def block_status_chunk(
    cookie: int, context_id: int, extents: Sequence[tuple[int, int]], *, done: bool
) -> bytes:
    """``extents``: (length, status flags) descriptors, consecutive from the request's offset."""
    payload = struct.pack(">I", context_id) + b"".join(
        struct.pack(">II", length, status) for length, status in extents
    )
    return chunk(cookie, ReplyType.BLOCK_STATUS, len(payload), done=done) + payload


def error_reply(request: Request, error: int, *, structured: bool, message: str = "") -> bytes:
    """An error answer in the form the client expects: an error chunk for a structured reply
    (a READ or BLOCK_STATUS needs one once structured replies are on), else a simple reply."""
    if structured:
        return error_chunk(request.cookie, error, message)
    return simple_reply(request.cookie, error)
