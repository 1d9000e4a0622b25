"""The chunk RPC's wire format, sans-IO: a handshake that authenticates both nodes, then frames
whose headers carry a MAC. No sockets and no trio here (``transport.py`` has the I/O): a
``Connection`` turns received bytes into events and events into bytes, like h11.

Handshake (both sides hold the cluster secret; neither sends it):

    client -> HELLO   magic "STRPC1\\r\\n", role 0, a 32-byte nonce, the client's node name
    server -> HELLO   magic, role 1, its nonce, its name
    both   -> AUTH    HMAC-SHA256(auth key, "auth" || role || both HELLOs), 32 bytes

Keys come from HKDF-SHA256 over the secret, salted with both nonces and bound to both names:
one for AUTH, one per direction for frames. A peer without the secret cannot produce a valid
AUTH: the connection fails with ``AuthError`` before any frame is accepted. Fresh nonces on both
sides make every session's keys new, so a recorded session cannot be replayed into another.

Frames (after AUTH), a 40-byte header and a body:

    u8  type        REQUEST, RESPONSE, DATA, CANCEL, PING, PONG
    u8  flags       END: the last frame of the request's (or response's) body
    u16 code        REQUEST: method; RESPONSE: status (0 ok); else 0
    u32 deadline    REQUEST: milliseconds left for the caller; else 0
    u64 request id  pipelining: any number in flight per connection, answered in any order
    u32 length      body bytes
    u32 body CRC    CRC32C of the body (DATA: of its CRC table)
    16  MAC         HMAC-SHA256(direction key, sequence number || the 24 bytes above)[:16]

A DATA body streams shard or extent bytes with their block CRC32Cs: u32 block bytes, u32 count,
``count`` CRCs, then the blocks (the last may be short). The MAC covers the header, so the
frame's type, request, length and (through the body CRC) the CRC table; the table covers the
blocks, which the receiver verifies before handing them over (a damaged block is reported in
its event, spoiling that message only), and can store as they are: the fused encoder computed
them once at the source. Every frame's MAC includes a per-direction
sequence number, so a frame dropped, replayed or reordered fails. As in Ceph msgr2's crc mode,
the MAC authenticates the sender and catches damage; it does not hide the data or stop an active
attacker who rewrites payload bytes under a CRC (use TLS for that).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.native import crc32c, crc32c_blocks, crc32c_verify_blocks

MAGIC: Final = b"STRPC1\r\n"
NONCE_BYTES: Final = 32
MAX_NAME_BYTES: Final = 255
_HELLO = struct.Struct(">8sBB32s")  # magic, role, name length, nonce; then the name
_HEADER = struct.Struct(">BBHIQII")  # type, flags, code, deadline, request id, length, crc
HEADER_BYTES: Final = _HEADER.size + 16
MAC_BYTES: Final = 16
AUTH_BYTES: Final = 32
MAX_BODY_BYTES: Final = 16 << 20
MAX_BLOCK_BYTES: Final = 1 << 20
END: Final = 1


class FrameType(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    DATA = 3
    CANCEL = 4
    PING = 5
    PONG = 6


class Role(IntEnum):
    CLIENT = 0
    SERVER = 1


class ProtocolError(Exception):
    """The peer sent bytes this protocol does not allow: the connection is over."""


class AuthError(ProtocolError):
    """The peer does not hold the cluster secret (or a frame's MAC is wrong)."""


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The handshake is done: ``peer`` proved it holds the secret."""

    peer: str


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    method: int
    deadline_ms: int
    body: bytes
    end: bool = True  # False: DATA frames of this request follow


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    status: int
    body: bytes
    end: bool = True


@dataclass(frozen=True, slots=True)
class Data:
    """Blocks of a request's or response's body, each with its CRC32C, verified on receipt:
    ``bad_block`` is the first block that does not match (-1: all do). A damaged block spoils
    its message, not the connection: the framing around it is MACed and intact."""

    request_id: int
    block_bytes: int
    payload: bytes | bytearray | memoryview
    crcs: tuple[int, ...]
    end: bool = False
    bad_block: int = -1


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: int


@dataclass(frozen=True, slots=True)
class Ping:
    token: int


@dataclass(frozen=True, slots=True)
class Pong:
    token: int


Event = Authenticated | Request | Response | Data | Cancel | Ping | Pong
FrameEvent = Request | Response | Data | Cancel | Ping | Pong


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


# -- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionKeys:
    auth: bytes
    client_to_server: bytes
    server_to_client: bytes


def derive_keys(
    secret: bytes, client_nonce: bytes, server_nonce: bytes, client: str, server: str
) -> SessionKeys:
    """The session's keys (HKDF-SHA256): new for every pair of nonces."""
    info = b"store rpc v1\0" + client.encode() + b"\0" + server.encode()
    raw = HKDF(
        algorithm=hashes.SHA256(), length=96, salt=client_nonce + server_nonce, info=info
    ).derive(secret)
    return SessionKeys(raw[:32], raw[32:64], raw[64:])


def frame_mac(key: bytes, sequence: int, head: bytes) -> bytes:
    return hmac.digest(key, struct.pack(">Q", sequence) + head, "sha256")[:MAC_BYTES]


def _hello(role: Role, nonce: bytes, name: str) -> bytes:
    raw = name.encode()
    if not 0 < len(raw) <= MAX_NAME_BYTES:
        raise ValueError(f"a node name is 1 to {MAX_NAME_BYTES} bytes")
    return _HELLO.pack(MAGIC, role, len(raw), nonce) + raw


def data_table(block_bytes: int, crcs: tuple[int, ...]) -> bytes:
    """The start of a DATA frame's body: the block size and the CRC table (the blocks follow)."""
    return struct.pack(f">II{len(crcs)}I", block_bytes, len(crcs), *crcs)


# -- the connection -----------------------------------------------------------------------------


class Connection:
    """One end of a chunk RPC connection. Feed it what the socket brings (``receive_data``),
    take events out (``next_event`` until NEED_DATA), and turn events into bytes to send
    (``send``). Before ``Authenticated`` only the handshake moves; a bad byte anywhere raises
    ProtocolError (AuthError for the secret or a MAC), after which the connection is dead."""

    def __init__(self, role: Role, name: str, secret: bytes, *, nonce: bytes | None = None) -> None:
        if len(secret) < 16:
            raise ValueError("the cluster secret must be at least 16 bytes")
        self.role = role
        self.name = name
        self._secret = secret
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        if len(self._nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
        self._buffer = bytearray()
        self._my_hello = _hello(role, self._nonce, name)
        self._their_hello: bytes | None = None
        self._keys: SessionKeys | None = None
        self.peer = ""
        self.authenticated = False
        self._dead: ProtocolError | None = None
        self._send_seq = 0
        self._recv_seq = 0
        self._pending = bytearray()  # bytes the handshake has for the peer

    # -- handshake --------------------------------------------------------------------------

    def start(self) -> bytes:
        """The first bytes to send: the client's HELLO (a server speaks once it has heard)."""
        if self.role is Role.CLIENT:
            return self._my_hello
        return b""

    def data_to_send(self) -> bytes:
        """Handshake bytes produced by received data (a server's HELLO, either side's AUTH)."""
        out, self._pending = bytes(self._pending), bytearray()
        return out

    def _auth_tag(self, role: Role) -> bytes:
        assert self._keys is not None and self._their_hello is not None
        client_hello, server_hello = (
            (self._my_hello, self._their_hello)
            if self.role is Role.CLIENT
            else (self._their_hello, self._my_hello)
        )
        transcript = b"auth" + bytes([role]) + client_hello + server_hello
        return hmac.new(self._keys.auth, transcript, hashlib.sha256).digest()

    def _read_hello(self) -> bool:
        if len(self._buffer) < _HELLO.size:
            if self._buffer and not MAGIC.startswith(bytes(self._buffer[: len(MAGIC)])):
                raise ProtocolError("not the chunk RPC (bad magic)")
            return False
        magic, role, name_len, nonce = _HELLO.unpack_from(self._buffer)
        if magic != MAGIC:
            raise ProtocolError("not the chunk RPC (bad magic)")
        if role != (Role.SERVER if self.role is Role.CLIENT else Role.CLIENT):
            raise ProtocolError("the peer claims the wrong role")
        if name_len == 0:
            raise ProtocolError("the peer sent an empty node name")
        if len(self._buffer) < _HELLO.size + name_len:
            return False
        raw_name = bytes(self._buffer[_HELLO.size : _HELLO.size + name_len])
        try:
            self.peer = raw_name.decode()
        except UnicodeDecodeError:
            raise ProtocolError("the peer's node name is not UTF-8") from None
        self._their_hello = bytes(self._buffer[: _HELLO.size + name_len])
        del self._buffer[: _HELLO.size + name_len]
        client_nonce, server_nonce = (
            (self._nonce, nonce) if self.role is Role.CLIENT else (nonce, self._nonce)
        )
        if client_nonce == server_nonce:
            raise ProtocolError("the peer echoed our nonce")
        client, server = (
            (self.name, self.peer) if self.role is Role.CLIENT else (self.peer, self.name)
        )
        self._keys = derive_keys(self._secret, client_nonce, server_nonce, client, server)
        if self.role is Role.SERVER:
            self._pending += self._my_hello
        self._pending += self._auth_tag(self.role)
        return True

    def _read_auth(self) -> bool:
        if len(self._buffer) < AUTH_BYTES:
            return False
        tag = bytes(self._buffer[:AUTH_BYTES])
        del self._buffer[:AUTH_BYTES]
        peer_role = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
        if not hmac.compare_digest(tag, self._auth_tag(peer_role)):
            raise AuthError(f"node {self.peer!r} does not hold the cluster secret")
        self.authenticated = True
        return True

    # -- receiving --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._dead is not None:
            raise self._dead
        self._buffer += data
        if len(self._buffer) > HEADER_BYTES + 3 * MAX_BODY_BYTES:
            self._fail(ProtocolError("the peer sent more than a frame ahead"))

    def _fail(self, error: ProtocolError) -> ProtocolError:
        self._dead = error
        raise error

    def next_event(self) -> Event | _NeedData:
        if self._dead is not None:
            raise self._dead
        try:
            if self._their_hello is None and not self._read_hello():
                return NEED_DATA
            if not self.authenticated:
                if not self._read_auth():
                    return NEED_DATA
                return Authenticated(self.peer)
            return self._read_frame()
        except ProtocolError as e:
            raise self._fail(e) from None

    def _read_frame(self) -> FrameEvent | _NeedData:
        if len(self._buffer) < HEADER_BYTES:
            return NEED_DATA
        assert self._keys is not None
        head = bytes(self._buffer[: _HEADER.size])
        mac = bytes(self._buffer[_HEADER.size : HEADER_BYTES])
        key = (
            self._keys.server_to_client if self.role is Role.CLIENT else self._keys.client_to_server
        )
        if not hmac.compare_digest(mac, frame_mac(key, self._recv_seq, head)):
            raise AuthError(f"a frame from {self.peer!r} fails its MAC (forged, lost or replayed)")
        kind, flags, code, deadline, request_id, length, body_crc = _HEADER.unpack(head)
        if length > MAX_BODY_BYTES:
            raise ProtocolError(f"a frame body of {length} bytes (at most {MAX_BODY_BYTES})")
        if len(self._buffer) < HEADER_BYTES + length:
            return NEED_DATA
        with memoryview(self._buffer) as view:  # one copy (a slice of the buffer is another)
            body = bytes(view[HEADER_BYTES : HEADER_BYTES + length])
        del self._buffer[: HEADER_BYTES + length]
        self._recv_seq += 1
        return _decode(kind, flags, code, deadline, request_id, body, body_crc)

    # -- sending ----------------------------------------------------------------------------

    def send(self, event: FrameEvent) -> bytes:
        """The bytes of one frame (after ``Authenticated``)."""
        return b"".join(self.send_parts(event))

    def send_parts(self, event: FrameEvent) -> list[bytes | memoryview]:
        """The bytes of one frame in pieces to send one after the other: a DATA frame's
        blocks are the caller's buffer, not a copy."""
        if self._dead is not None:
            raise self._dead
        if not self.authenticated or self._keys is None:
            raise ProtocolError("no frames before the handshake is done")
        kind, flags, code, deadline, request_id, body, payload, crc = _encode(event)
        length = len(body) + len(payload)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"a frame body of {length} bytes (at most {MAX_BODY_BYTES})")
        head = _HEADER.pack(kind, flags, code, deadline, request_id, length, crc)
        key = (
            self._keys.client_to_server if self.role is Role.CLIENT else self._keys.server_to_client
        )
        mac = frame_mac(key, self._send_seq, head)
        self._send_seq += 1
        return [head + mac + body, payload] if len(payload) else [head + mac + body]


def _encode(event: FrameEvent) -> tuple[int, int, int, int, int, bytes, memoryview, int]:
    """A frame's header fields, its body, and (DATA) the blocks that follow the body."""
    if isinstance(event, Request):
        if not 0 <= event.method <= 0xFFFF or not 0 <= event.deadline_ms <= 0xFFFFFFFF:
            raise ValueError("method or deadline out of range")
        body = bytes(event.body)
        return (
            FrameType.REQUEST,
            END if event.end else 0,
            event.method,
            event.deadline_ms,
            event.request_id,
            body,
            _NOTHING,
            crc32c(body),
        )
    if isinstance(event, Response):
        body = bytes(event.body)
        return (
            FrameType.RESPONSE,
            END if event.end else 0,
            event.status,
            0,
            event.request_id,
            body,
            _NOTHING,
            crc32c(body),
        )
    if isinstance(event, Data):
        _check_blocks(event.block_bytes, len(event.payload), len(event.crcs))
        table = data_table(event.block_bytes, event.crcs)
        return (
            FrameType.DATA,
            END if event.end else 0,
            0,
            0,
            event.request_id,
            table,
            memoryview(event.payload).cast("B"),
            crc32c(table),
        )
    kinds = {Cancel: FrameType.CANCEL, Ping: FrameType.PING, Pong: FrameType.PONG}
    value = event.request_id if isinstance(event, Cancel) else event.token
    return (kinds[type(event)], 0, 0, 0, value, b"", _NOTHING, crc32c(b""))


_NOTHING = memoryview(b"")


def _check_blocks(block_bytes: int, payload: int, count: int) -> None:
    if not 0 < block_bytes <= MAX_BLOCK_BYTES or block_bytes & (block_bytes - 1):
        raise ProtocolError(f"block size {block_bytes} (a power of two up to {MAX_BLOCK_BYTES})")
    if count != -(-payload // block_bytes):
        raise ProtocolError(f"{count} CRCs for {payload} bytes in blocks of {block_bytes}")


def _decode(
    kind: int, flags: int, code: int, deadline: int, request_id: int, body: bytes, body_crc: int
) -> FrameEvent:
    if flags & ~END:
        raise ProtocolError(f"unknown frame flags {flags:#x}")
    end = bool(flags & END)
    if kind in (FrameType.REQUEST, FrameType.RESPONSE):
        if crc32c(body) != body_crc:
            raise ProtocolError("a frame body fails its CRC")
        if kind == FrameType.REQUEST:
            return Request(request_id, code, deadline, body, end)
        if deadline:
            raise ProtocolError("a response carries a deadline")
        return Response(request_id, code, body, end)
    if kind == FrameType.DATA:
        return _decode_data(request_id, body, body_crc, end, code | deadline)
    if kind in (FrameType.CANCEL, FrameType.PING, FrameType.PONG):
        if body or code or deadline or flags:
            raise ProtocolError("a control frame carries more than its id")
        if kind == FrameType.CANCEL:
            return Cancel(request_id)
        return Ping(request_id) if kind == FrameType.PING else Pong(request_id)
    raise ProtocolError(f"unknown frame type {kind}")


def _decode_data(request_id: int, body: bytes, body_crc: int, end: bool, extra: int) -> Data:
    if extra:
        raise ProtocolError("a DATA frame carries a method or deadline")
    if len(body) < 8:
        raise ProtocolError("a DATA frame without its block table")
    block_bytes, count = struct.unpack_from(">II", body)
    table_end = 8 + 4 * count
    if table_end > len(body):
        raise ProtocolError("a DATA frame's CRC table runs past its body")
    if crc32c(body[:table_end]) != body_crc:
        raise ProtocolError("a DATA frame's CRC table fails its CRC")
    payload = memoryview(body)[table_end:]
    _check_blocks(block_bytes, len(payload), count)
    crcs = struct.unpack_from(f">{count}I", body, 8)
    table = struct.pack(f"<{count}I", *crcs)
    bad = crc32c_verify_blocks(payload, block_bytes, table) if count else -1
    return Data(request_id, block_bytes, payload, crcs, end, bad)


def block_crcs(payload: bytes | bytearray | memoryview, block_bytes: int) -> tuple[int, ...]:
    """The CRC32C of each block (a sender without them from the encoder)."""
    raw = crc32c_blocks(memoryview(payload), block_bytes)
    return struct.unpack(f"<{len(raw) // 4}I", raw)
