"""Fuzz the chunk RPC's wire format (``store.rpc.wire``): the handshake and frame decoding.

Input: one mode byte, then bytes. Mode even: the bytes are what a stranger sends a chunk server
(a server ``Connection``), in pieces. Mode odd: a real client completes the handshake, then the
bytes are turned into frames the client MACs correctly (the fuzzer picks the header fields and
the body, as a buggy or hostile node holding the secret could), delivered in pieces. Properties:

- nothing but ProtocolError (AuthError included) ever escapes, and once raised the connection
  stays dead;
- a stranger never gets past the handshake: without the secret no event but NEED_DATA comes;
- every event decoded from a well-MACed frame re-encodes, through the sending side, to the very
  bytes that carried it (so decode accepts exactly what encode produces);
- a DATA event names exactly its first block that does not match its CRC (or none).
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from _harness import pieces

    from store.native import crc32c
    from store.rpc import wire

SECRET = b"the fuzzing cluster's secret!!"
NONCES = (bytes(32), bytes([1]) * 32)
FRAME_EVENTS = (wire.Request, wire.Response, wire.Data, wire.Cancel, wire.Ping, wire.Pong)


def _drain(conn: wire.Connection) -> list[object]:
    out: list[object] = []
    while (event := conn.next_event()) is not wire.NEED_DATA:
        out.append(event)
    return out


def _stranger(data: bytes, seed: int) -> None:
    server = wire.Connection(wire.Role.SERVER, "chunk", SECRET, nonce=NONCES[1])
    try:
        for piece in pieces(data, seed):
            server.receive_data(piece)
            assert _drain(server) == [], "a stranger got an event past the handshake"
    except wire.ProtocolError:
        try:
            server.next_event()
        except wire.ProtocolError:
            return
        raise AssertionError("a failed connection came back to life") from None


def _insider(data: bytes, seed: int) -> None:
    client = wire.Connection(wire.Role.CLIENT, "gw", SECRET, nonce=NONCES[0])
    server = wire.Connection(wire.Role.SERVER, "chunk", SECRET, nonce=NONCES[1])
    server.receive_data(client.start())
    _drain(server)
    client.receive_data(server.data_to_send())
    assert _drain(client) == [wire.Authenticated("chunk")]
    server.receive_data(client.data_to_send())
    assert _drain(server) == [wire.Authenticated("gw")]
    keys = wire.derive_keys(SECRET, NONCES[0], NONCES[1], "gw", "chunk")
    frames: list[bytes] = []
    at = 0
    while at + 20 <= len(data) and len(frames) < 8:
        kind, flags, code, deadline, rid, size = struct.unpack_from(">BBHIQH", data, at)
        at += 18
        body = data[at : at + size % 4096]
        at += len(body)
        crc = crc32c(body) if flags & 0x80 else struct.unpack(">I", (body + bytes(4))[:4])[0]
        if kind == wire.FrameType.DATA and flags & 0x40 and len(body) >= 8:
            crc = crc32c(body[: 8 + 4 * struct.unpack_from(">I", body, 4)[0]])
        head = struct.pack(">BBHIQII", kind % 8, flags & 0x3, code, deadline, rid, len(body), crc)
        frames.append(head + wire.frame_mac(keys.client_to_server, len(frames), head) + body)
    stream = b"".join(frames)
    got: list[object] = []
    try:
        for piece in pieces(stream, seed):
            server.receive_data(piece)
            got += _drain(server)
    except wire.ProtocolError:
        pass  # the frames before the bad one were delivered: checked below
    assert len(got) <= len(frames)
    for sequence, (event, frame) in enumerate(zip(got, frames, strict=False)):
        assert isinstance(event, FRAME_EVENTS), event
        if isinstance(event, wire.Data):
            actual = wire.block_crcs(event.payload, event.block_bytes)
            wrong = [i for i, (a, b) in enumerate(zip(actual, event.crcs, strict=True)) if a != b]
            assert event.bad_block == (wrong[0] if wrong else -1)
        assert _reencode(event, keys, sequence) == frame


def _reencode(event: wire.FrameEvent, keys: wire.SessionKeys, sequence: int) -> bytes:
    kind, flags, code, deadline, rid, body, blocks, crc = wire._encode(event)
    head = struct.pack(">BBHIQII", kind, flags, code, deadline, rid, len(body) + len(blocks), crc)
    return head + wire.frame_mac(keys.client_to_server, sequence, head) + body + bytes(blocks)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris's name
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 2 == 0:
        _stranger(rest, mode)
    else:
        _insider(rest, mode)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
