"""Fuzz the NBD transmission phase (``store.nbd.transmission``): the request reader, the spec's
checklist (``check``) and the replies.

Input: 8 configuration bytes describing the export (``_export``), then the request stream as
qemu-img/qemu-io and nbdcopy send it (READ, WRITE with payload, FLUSH, TRIM, WRITE_ZEROES,
BLOCK_STATUS, DISC). The stream arrives in pieces. Properties, against an independent reading of
the stream and of proto.md's rules:

- ``RequestReader`` yields exactly the frames in the stream with their payloads, whatever the
  pieces; a bad magic or a WRITE over ``max_payload`` is a ``ProtocolError``, and nothing else
  escapes; a complete request is never left waiting;
- ``check`` answers OK exactly when the spec allows the request on that export (known command,
  flags the command and the export allow, in range and aligned, no writes to a read-only
  export, reads within the maximum payload, BLOCK_STATUS only with structured replies and a
  meta context) and otherwise one of the spec's errors;
- an error reply carries the request's cookie and the declared length of every chunk matches.
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from _harness import pieces

    from store.nbd import transmission as tx
    from store.nbd.constants import (
        REQUEST_MAGIC,
        SIMPLE_REPLY_MAGIC,
        STRUCTURED_REPLY_MAGIC,
        Command,
        Errno,
        TransmissionFlag,
    )
    from store.nbd.handshake import ProtocolError

FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
# proto.md: the command flags each command may carry (FUA: any, once the export offers it).
SPEC_FLAGS = {0: DF, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: NO_HOLE | FAST_ZERO, 7: REQ_ONE}
SPEC_ERRORS = {Errno.EPERM, Errno.EINVAL, Errno.ENOSPC}


def _export(config: bytes) -> tx.ExportState:
    bits, block_shift, payload_shift = config[0], config[1] % 13, 9 + config[2] % 12
    flags = tx.export_flags(bool(bits & 1))
    for bit, flag in (
        (8, TransmissionFlag.SEND_FUA),
        (16, TransmissionFlag.SEND_DF),
        (32, TransmissionFlag.SEND_FAST_ZERO),
    ):
        if bits & bit:
            flags ^= flag
    (size_units,) = struct.unpack(">I", config[3:7])
    return tx.ExportState(
        size=size_units << (config[7] % 24),
        flags=flags,
        min_block=1 << block_shift,
        max_payload=1 << payload_shift,
        structured=bool(bits & 2),
        meta_contexts=bool(bits & 4),
    )


def spec_allows(r: tx.Request, e: tx.ExportState) -> bool:
    if r.command not in SPEC_FLAGS:
        return False
    allowed = SPEC_FLAGS[r.command] | (FUA if e.flags & TransmissionFlag.SEND_FUA else 0)
    if r.flags & ~allowed:
        return False
    if r.flags & DF and not (e.structured and e.flags & TransmissionFlag.SEND_DF):
        return False
    if r.flags & FAST_ZERO and not e.flags & TransmissionFlag.SEND_FAST_ZERO:
        return False
    if r.command in (Command.DISC, Command.FLUSH):
        return r.offset == 0 and r.length == 0
    if r.command == Command.BLOCK_STATUS and not (e.structured and e.meta_contexts):
        return False
    if r.command in (Command.WRITE, Command.TRIM, Command.WRITE_ZEROES) and e.read_only:
        return False
    if r.offset + r.length > e.size or r.offset % e.min_block or r.length % e.min_block:
        return False
    return not (r.command in (Command.READ, Command.CACHE) and r.length > e.max_payload)


def _check_replies(r: tx.Request, error: int, structured: bool) -> None:
    reply = tx.error_reply(r, error, structured=structured, message="x" * (r.length % 5000))
    if structured:
        magic, _, _, cookie, length = tx.CHUNK.unpack_from(reply)
        assert magic == STRUCTURED_REPLY_MAGIC and length == len(reply) - tx.CHUNK.size
    else:
        magic, got, cookie = tx.SIMPLE_REPLY.unpack(reply)
        assert magic == SIMPLE_REPLY_MAGIC and got == error
    assert cookie == r.cookie


def TestOneInput(data: bytes) -> None:
    if len(data) < 8:
        return
    export, wire = _export(data[:8]), data[8:]
    reader = tx.RequestReader(export.max_payload)
    feed = pieces(wire, len(wire) ^ data[0])
    fed = pos = 0
    while True:
        head = wire[pos : pos + tx.REQUEST.size]
        try:
            found = reader.next_request()
        except ProtocolError:
            magic, _, command, _, _, length = tx.REQUEST.unpack(head)
            assert magic != REQUEST_MAGIC or (
                command == Command.WRITE and length > export.max_payload
            ), "ProtocolError on a request the spec allows"
            return
        if found is None:
            if fed - pos >= tx.REQUEST.size:
                magic, _, command, _, _, length = tx.REQUEST.unpack(head)
                assert magic == REQUEST_MAGIC, "bad magic left waiting"
                assert command == Command.WRITE, "a complete request left waiting"
                assert fed - pos < tx.REQUEST.size + length, "a complete WRITE left waiting"
            piece = next(feed, None)
            if piece is None:
                return
            reader.receive_data(piece)
            fed += len(piece)
            assert reader.buffered <= fed - pos
            continue
        request, payload = found
        magic, flags, command, cookie, offset, length = tx.REQUEST.unpack(head)
        assert magic == REQUEST_MAGIC, "accepted a bad magic"
        assert request == (flags, command, cookie, offset, length)
        size = length if command == Command.WRITE else 0
        assert size <= export.max_payload
        assert bytes(payload) == wire[pos + tx.REQUEST.size : pos + tx.REQUEST.size + size]
        pos += tx.REQUEST.size + size
        error = tx.check(request, export)
        allowed = spec_allows(request, export)
        assert (error == Errno.OK) == allowed, (request, export, error)
        assert error == Errno.OK or error in SPEC_ERRORS, error
        if error == Errno.EPERM:
            assert export.read_only
        _check_replies(request, error or Errno.EIO, export.structured)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
