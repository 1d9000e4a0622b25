"""The chunk RPC's wire format, without sockets: the handshake, frames byte for byte against an
independent reading of the format, tampering, replay, wrong secrets, DATA blocks and CRCs."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.native import crc32c
from store.rpc import wire
from store.rpc.wire import (
    NEED_DATA,
    Authenticated,
    AuthError,
    Cancel,
    Connection,
    Data,
    Ping,
    Pong,
    ProtocolError,
    Request,
    Response,
    Role,
)

SECRET = b"cluster secret for the tests!!"
CLIENT_NONCE, SERVER_NONCE = bytes(range(32)), bytes(range(32, 64))


def events(conn: Connection, data: bytes, *, piecewise: bool = False) -> list[object]:
    out: list[object] = []
    for piece in [data[i : i + 1] for i in range(len(data))] if piecewise else [data]:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def pair(
    secret_client: bytes = SECRET, secret_server: bytes = SECRET
) -> tuple[Connection, Connection]:
    client = Connection(Role.CLIENT, "gw-1", SECRET, nonce=CLIENT_NONCE)
    server = Connection(Role.SERVER, "chunk-3", SECRET, nonce=SERVER_NONCE)
    assert events(server, client.start()) == []
    assert events(client, server.data_to_send()) == [Authenticated("chunk-3")]
    assert events(server, client.data_to_send()) == [Authenticated("gw-1")]
    return client, server


def test_the_handshake_authenticates_both_sides() -> None:
    client, server = pair()
    assert client.authenticated and server.authenticated
    assert (client.peer, server.peer) == ("chunk-3", "gw-1")


def test_hello_bytes() -> None:
    client = Connection(Role.CLIENT, "gw-1", SECRET, nonce=CLIENT_NONCE)
    assert client.start() == b"STRPC1\r\n" + b"\x00\x04" + CLIENT_NONCE + b"gw-1"


def test_a_request_frame_byte_for_byte() -> None:
    """Keys, header and MAC recomputed here from the format's description, not the module."""
    client, _ = pair()
    frame = client.send(Request(7, method=3, deadline_ms=1500, body=b'{"sid":"x"}'))
    info = b"store rpc v1\0gw-1\0chunk-3"
    keys = HKDF(hashes.SHA256(), 96, CLIENT_NONCE + SERVER_NONCE, info).derive(SECRET)
    c2s = keys[32:64]
    body = b'{"sid":"x"}'
    head = struct.pack(">BBHIQII", 1, 1, 3, 1500, 7, len(body), crc32c(body))
    mac = hmac.new(c2s, struct.pack(">Q", 0) + head, hashlib.sha256).digest()[:16]
    assert frame == head + mac + body
    assert len(head + mac) == wire.HEADER_BYTES == 40


def test_frames_both_ways_whole_and_byte_by_byte() -> None:
    client, server = pair()
    sent = [
        Request(1, 2, 500, b"args", end=False),
        Data(1, 4096, bytes(range(256)) * 20, wire.block_crcs(bytes(range(256)) * 20, 4096)),
        Data(1, 4096, b"", (), end=True),
        Cancel(9),
        Ping(42),
    ]
    raw = b"".join(client.send(e) for e in sent)
    got = events(server, raw, piecewise=True)
    assert [type(e) for e in got] == [Request, Data, Data, Cancel, Ping]
    assert got[0] == sent[0] and got[3:] == sent[3:]
    assert isinstance(got[1], Data) and bytes(got[1].payload) == bytes(sent[1].payload)
    assert got[1].crcs == sent[1].crcs and not got[1].end and got[2].end  # type: ignore[union-attr]
    back = [Response(1, 0, b"ok"), Pong(42)]
    assert events(client, b"".join(server.send(e) for e in back)) == back


def test_a_peer_without_the_secret_is_refused() -> None:
    client = Connection(Role.CLIENT, "gw-1", b"the wrong secret, same length!", nonce=CLIENT_NONCE)
    server = Connection(Role.SERVER, "chunk-3", SECRET, nonce=SERVER_NONCE)
    events(server, client.start())
    with pytest.raises(AuthError):
        events(client, server.data_to_send())
    with pytest.raises(AuthError):
        events(server, client.data_to_send())
    with pytest.raises(AuthError):  # and it stays refused
        server.next_event()


def test_no_frame_before_the_handshake() -> None:
    client = Connection(Role.CLIENT, "gw-1", SECRET)
    with pytest.raises(ProtocolError):
        client.send(Ping(1))
    server = Connection(Role.SERVER, "chunk-3", SECRET)
    with pytest.raises(ProtocolError, match="magic"):
        events(server, b"GET / HTTP/1.1\r\n\r\n" + bytes(40))


@pytest.mark.parametrize("at", range(0, 40 + 12, 3))
def test_any_byte_changed_is_refused(at: int) -> None:
    client, server = pair()
    frame = bytearray(client.send(Request(5, 1, 100, b"body bytes!!")))
    frame[at] ^= 0x20
    with pytest.raises(ProtocolError):
        events(server, bytes(frame))


def test_a_replayed_or_dropped_frame_is_refused() -> None:
    client, server = pair()
    first = client.send(Ping(1))
    events(server, first)
    with pytest.raises(AuthError, match="MAC"):
        events(server, first)  # the same bytes again
    client2, server2 = pair()
    client2.send(Ping(1))  # never delivered
    with pytest.raises(AuthError):
        events(server2, client2.send(Ping(2)))


def test_a_data_frame_with_a_bad_block_says_which() -> None:
    """The block is damaged, the frame around it is not: the event names the block, and the
    connection goes on."""
    client, server = pair()
    payload = bytes(8192)
    wrong = (crc32c(payload[:4096]), crc32c(b"not this"))
    (got,) = events(server, client.send(Data(3, 4096, payload, wrong)))
    assert isinstance(got, Data) and got.bad_block == 1
    assert events(server, client.send(Ping(5))) == [Ping(5)]


def test_bad_block_tables_are_refused_on_either_side() -> None:
    client, _ = pair()
    with pytest.raises(ProtocolError):
        client.send(Data(1, 3000, bytes(3000), (0,)))  # not a power of two
    with pytest.raises(ProtocolError):
        client.send(Data(1, 4096, bytes(5000), (0,)))  # two blocks, one CRC


def test_a_frame_longer_than_the_limit_is_refused() -> None:
    client, server = pair()
    head = struct.pack(">BBHIQII", 1, 1, 0, 0, 1, wire.MAX_BODY_BYTES + 1, 0)
    keys = wire.derive_keys(SECRET, CLIENT_NONCE, SERVER_NONCE, "gw-1", "chunk-3")
    frame = head + wire.frame_mac(keys.client_to_server, 0, head)
    with pytest.raises(ProtocolError, match="at most"):
        events(server, frame)
