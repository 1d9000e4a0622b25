"""The chunk RPC on Trio streams: authenticated connections that pipeline many calls, deadlines
carried to the server, cancellation, and a bound on every call's bytes (wire.py has the format).

A call is a ``Message`` each way: a code (the method, or the answer's status), a small body (the
arguments or result, JSON by convention of the caller), and optionally a payload of blocks with
their CRC32Cs, sent as DATA frames of at most ``FRAME_PAYLOAD_BYTES`` each and reassembled (at
most ``MAX_PAYLOAD_BYTES``). Frames of many calls interleave on one connection; each side sends
under one lock, so frames leave in the order their MACs' sequence numbers say.

Client (``RpcClient``): one connection per peer, opened on first use and again after a failure;
every call has a deadline, sent along as the milliseconds left; a call that gives up sends CANCEL.
A connection that fails fails the calls waiting on it with Unavailable (the caller decides
whether to retry: a write may or may not have been applied). A peer that lets a call miss its
deadline (paused, overloaded, cut off) is **suspect** for ``SUSPECT_S``: calls to it fail at once
with Unavailable, so the quorum layer routes around it within one deadline instead of waiting
out every call, long before its registration lease expires; then calls try it again.

Server (``serve_rpc``): a handshake under a deadline, then every request handled in its own task
(at most ``MAX_CALLS_PER_CONNECTION`` at once: the reader waits, and TCP pushes back), under the
deadline the caller sent; a CANCEL cancels it. A peer that fails the handshake or sends a bad
frame is logged and disconnected. A server may also answer some calls at once (``Inline``: a
read the page cache holds): those take no task, and the answers to everything that arrived in
one read of the socket leave together, in one send, before the server waits for more.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from store.errors import Corrupt, Unavailable
from store.rpc import wire

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 80 << 20  # an extent image (64 MiB) and then some
FRAME_PAYLOAD_BYTES = 1 << 20
DEFAULT_BLOCK_BYTES = 64 << 10
HANDSHAKE_TIMEOUT_S = 10.0
MAX_CALLS_PER_CONNECTION = 64
READ_BYTES = 1 << 20
STATUS_DEADLINE = 0xFFFE  # the server gave up: the call's deadline passed
STATUS_CANCELLED = 0xFFFD
STATUS_CORRUPT = 0xFFFC  # a request's payload arrived damaged (a block failed its CRC)
SUSPECT_S = 10.0  # a peer that missed a deadline gets no calls for this long
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
JOIN_BELOW_BYTES = 64 << 10  # frames smaller than this are joined into one send
SEND_TIMEOUT_S = 30.0  # a peer that takes no bytes this long is dropped
MAX_ANSWERED_FRAMES = 64  # inline answers held for one send (DATA frames are 1 MiB at most)

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Message:
    code: int
    body: bytes = b""
    payload: Buffer = b""
    block_bytes: int = 0  # of the payload's CRC blocks (0: no payload)
    crcs: tuple[int, ...] = ()


def _frames(
    request_id: int, head: wire.Request | wire.Response, msg: Message
) -> list[wire.FrameEvent]:
    """A message as frames: its head, then DATA frames of whole CRC blocks."""
    if not len(msg.payload):
        return [head]
    if len(msg.payload) > MAX_PAYLOAD_BYTES:
        raise Unavailable(f"a payload of {len(msg.payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    block = msg.block_bytes or DEFAULT_BLOCK_BYTES
    crcs = msg.crcs or wire.block_crcs(msg.payload, block)
    view = memoryview(msg.payload).cast("B")
    per_frame = max(1, FRAME_PAYLOAD_BYTES // block)
    out: list[wire.FrameEvent] = [head]
    for first in range(0, len(crcs), per_frame):
        piece = view[first * block : (first + per_frame) * block]
        last = first + per_frame >= len(crcs)
        out.append(wire.Data(request_id, block, piece, crcs[first : first + per_frame], last))
    return out


@dataclass
class _Incoming:
    """A message being reassembled from its frames."""

    code: int
    body: bytes
    pieces: list[Buffer] = field(default_factory=list)  # the DATA frames' blocks
    length: int = 0
    block_bytes: int = 0
    crcs: list[int] = field(default_factory=list)
    damaged: bool = False  # a block failed its CRC on the way

    def add(self, data: wire.Data) -> None:
        if self.block_bytes and data.block_bytes != self.block_bytes:
            raise wire.ProtocolError("DATA frames of one message change their block size")
        if self.length % data.block_bytes:
            raise wire.ProtocolError("a DATA frame after a short block")
        if self.length + len(data.payload) > MAX_PAYLOAD_BYTES:
            raise wire.ProtocolError(f"a payload past {MAX_PAYLOAD_BYTES} bytes")
        self.block_bytes = data.block_bytes
        self.pieces.append(data.payload)
        self.length += len(data.payload)
        self.crcs += data.crcs
        self.damaged = self.damaged or data.bad_block >= 0

    def message(self) -> Message:
        # One frame's blocks are the payload as they are (read-only); more are joined once.
        pieces = self.pieces
        payload = pieces[0] if len(pieces) == 1 else bytearray().join(pieces)
        return Message(self.code, self.body, payload, self.block_bytes, tuple(self.crcs))


class _Channel:
    """One authenticated connection: sends frames in order, reads events."""

    def __init__(self, stream: trio.abc.Stream, conn: wire.Connection) -> None:
        self.stream = stream
        self.conn = conn
        self._send_lock = trio.Lock()
        self._outbox: list[Buffer] = []  # encoded frames not yet sent, in sequence order

    async def handshake(self) -> str:
        with trio.fail_after(HANDSHAKE_TIMEOUT_S):
            if isinstance(self.stream, trio.SSLStream):  # mutual TLS first, when configured
                await self.stream.do_handshake()
            await self.stream.send_all(self.conn.start())
            while True:
                try:
                    event = await self.next_event()
                except wire.ProtocolError:
                    # Our AUTH still goes out, so the peer learns why too (and logs who).
                    with contextlib.suppress(*_BROKEN):
                        await self._flush_handshake()
                    raise
                await self._flush_handshake()
                if isinstance(event, wire.Authenticated):
                    return event.peer

    async def _flush_handshake(self) -> None:
        pending = self.conn.data_to_send()
        if pending:
            await self.stream.send_all(pending)

    async def next_event(self, idle: Callable[[], Awaitable[None]] | None = None) -> wire.Event:
        """The next event; ``idle`` runs first whenever that means waiting for the peer."""
        while True:
            event = self.conn.next_event()
            if event is not wire.NEED_DATA:
                assert not isinstance(event, wire._NeedData)
                return event
            if idle is not None:
                await idle()
            await self._flush_handshake()
            data = await self.stream.receive_some(READ_BYTES)
            if not data:
                raise Unavailable("the peer closed the connection")
            self.conn.receive_data(data)

    async def send(self, frames: list[wire.FrameEvent]) -> None:
        """Frames are encoded at once, so their MAC sequence numbers follow the order the
        callers came in; whoever holds the send lock writes everything encoded by then in one
        send, so calls made together share system calls (on loopback a send costs the
        receiver's work too: a third of a gateway's time went to sends of one frame each)."""
        for frame in frames:
            self._outbox += self.conn.send_parts(frame)
        await trio.lowlevel.checkpoint()  # let the calls made in this turn queue theirs too
        async with self._send_lock:
            if not self._outbox:
                return  # sent by the holder before us
            out, self._outbox = self._outbox, []
            # Others' frames ride in this batch and their sequence numbers are spent: a flush
            # cut short would leave the peer a gap, so it is not cancelled with our caller; a
            # peer that takes nothing for SEND_TIMEOUT_S gets the connection closed instead.
            with trio.CancelScope(shield=True), trio.move_on_after(SEND_TIMEOUT_S) as late:
                await self._flush(out)
            if late.cancelled_caught:
                await trio.aclose_forcefully(self.stream)
                raise Unavailable(f"the peer took nothing for {SEND_TIMEOUT_S:.0f} s")

    async def _flush(self, out: list[Buffer]) -> None:
        small: list[Buffer] = []
        for encoded in out:  # small pieces joined; a big one (DATA blocks) sent as it is
            if len(encoded) < JOIN_BELOW_BYTES:
                small.append(encoded)
                continue
            if small:
                await self.stream.send_all(b"".join(small))
                small = []
            await self.stream.send_all(encoded)
        if small:
            await self.stream.send_all(b"".join(small))


# -- client -------------------------------------------------------------------------------------


class RpcClient:
    """Calls to one peer (``address``), many in flight on one connection. Use inside
    ``open_rpc_client`` (its nursery runs the connection's reader)."""

    def __init__(
        self,
        address: tuple[str, int],
        name: str,
        secret: bytes,
        nursery: trio.Nursery,
        *,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.name = name
        self._secret = secret
        self._tls = tls
        self._nursery = nursery
        self.timeout_s = timeout_s
        self._channel: _Channel | None = None
        self._connecting: trio.Event | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[Message | Exception]]] = {}
        self.peer = ""
        self.suspect_until = 0.0  # trio clock: no calls before then
        self.where = f"chunk server {address[0]}:{address[1]}"  # for messages

    async def _connected(self) -> _Channel:
        while self._channel is None:
            if self._connecting is not None:
                await self._connecting.wait()
                continue
            self._connecting = done = trio.Event()
            try:
                host, port = self.address
                stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                if self._tls is not None:
                    stream = trio.SSLStream(stream, self._tls, server_hostname=host)
                channel = _Channel(
                    stream, wire.Connection(wire.Role.CLIENT, self.name, self._secret)
                )
                try:
                    self.peer = await channel.handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                self._channel = channel
                self._nursery.start_soon(self._read, channel)
            except (*_BROKEN, trio.TooSlowError, wire.ProtocolError, Unavailable) as e:
                raise Unavailable(f"{self.where}: {e.__cause__ or e}") from e
            finally:
                self._connecting = None
                done.set()
        return self._channel

    async def _read(self, channel: _Channel) -> None:
        incoming: dict[int, _Incoming] = {}
        where = self.where
        failure = Unavailable(f"{where}: the connection closed")
        try:
            while True:
                event = await channel.next_event()
                if isinstance(event, wire.Response):
                    incoming[event.request_id] = _Incoming(event.status, event.body)
                    if event.end:
                        self._answer(event.request_id, incoming.pop(event.request_id).message())
                elif isinstance(event, wire.Data):
                    part = incoming.get(event.request_id)
                    if part is None:
                        raise wire.ProtocolError("DATA for no response")
                    part.add(event)
                    if event.end:
                        done = incoming.pop(event.request_id)
                        result: Message | Exception = done.message()
                        if done.damaged:
                            result = Corrupt(f"{where}: an answer's data arrived damaged")
                        self._answer(event.request_id, result)
                elif isinstance(event, wire.Ping):
                    await channel.send([wire.Pong(event.token)])
        except (*_BROKEN, wire.ProtocolError, Unavailable) as e:
            failure = Unavailable(f"{where}: {e}")
        finally:
            if self._channel is channel:
                self._channel = None
            await trio.aclose_forcefully(channel.stream)
        for request_id in list(self._waiting):
            self._answer(request_id, failure)

    def _answer(self, request_id: int, result: Message | Exception) -> None:
        waiting = self._waiting.pop(request_id, None)
        if waiting is not None:
            waiting[1].append(result)
            waiting[0].set()

    async def call(self, request: Message, *, timeout_s: float | None = None) -> Message:
        """Send ``request`` (its code is the method) and wait for the answer; Unavailable when
        the peer cannot be reached, the connection fails or the deadline passes."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        now = trio.current_time()
        where = self.where
        if now < self.suspect_until:
            raise Unavailable(f"{where}: suspect (it missed a deadline), routed around")
        deadline = now + timeout
        with trio.move_on_at(deadline) as scope:
            channel = await self._connected()
            request_id = next(self._ids)
            done, slot = trio.Event(), list[Message | Exception]()
            self._waiting[request_id] = (done, slot)
            millis = max(1, min(0xFFFFFFFF, math.ceil((deadline - trio.current_time()) * 1000)))
            head = wire.Request(
                request_id, request.code, millis, request.body, not len(request.payload)
            )
            try:
                await channel.send(_frames(request_id, head, request))
                await done.wait()
            except _BROKEN as e:
                self._waiting.pop(request_id, None)
                raise Unavailable(f"{self.where}: {e}") from e
            finally:
                if not done.is_set():
                    self._waiting.pop(request_id, None)
                    if self._channel is channel:
                        self._nursery.start_soon(self._cancel, channel, request_id)
            result = slot[0]
            if isinstance(result, Exception):
                raise result
            return result
        assert scope.cancelled_caught
        if trio.current_time() >= self.suspect_until:
            log.warning("%s missed a %.1f s deadline: suspect %.0f s", where, timeout, SUSPECT_S)
        self.suspect_until = trio.current_time() + SUSPECT_S
        raise Unavailable(f"{where}: no answer in {timeout} s")

    async def _cancel(self, channel: _Channel, request_id: int) -> None:
        try:
            with trio.move_on_after(1.0):
                await channel.send([wire.Cancel(request_id)])
        except (*_BROKEN, wire.ProtocolError):
            pass  # the connection is gone: so is the call

    async def aclose(self) -> None:
        if self._channel is not None:
            await trio.aclose_forcefully(self._channel.stream)
            self._channel = None


@asynccontextmanager
async def open_rpc_client(
    address: tuple[str, int],
    name: str,
    secret: bytes,
    *,
    timeout_s: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[RpcClient]:
    async with trio.open_nursery() as nursery:
        client = RpcClient(address, name, secret, nursery, timeout_s=timeout_s, tls=tls)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


# -- server -------------------------------------------------------------------------------------

Handler = Callable[[Message, str], Awaitable[Message]]
# Answers a call at once, without blocking (None: it cannot, so ``Handler`` will).
Inline = Callable[[Message, str], Message | None]


async def serve_rpc(
    listeners: list[trio.SocketListener],
    name: str,
    secret: bytes,
    handler: Handler,
    *,
    inline: Inline | None = None,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve calls on ``listeners`` until cancelled: ``inline(request, peer)``, if given,
    answers what it can at once and ``handler(request, peer)`` the rest (over mutual TLS
    first, with ``tls``: store/rpc/tls.py)."""

    async def connection(stream: trio.SocketStream) -> None:
        wrapped = stream if tls is None else trio.SSLStream(stream, tls, server_side=True)
        channel = _Channel(wrapped, wire.Connection(wire.Role.SERVER, name, secret))
        try:
            peer = await channel.handshake()
        except (
            trio.TooSlowError,
            wire.ProtocolError,
            Unavailable,
            OSError,
            trio.BrokenResourceError,
        ) as e:
            why = e.__cause__ or e  # a TLS failure is an SSLError under BrokenResourceError
            log.warning("chunk RPC: refused a connection from %s: %s", _remote(stream), why)
            await trio.aclose_forcefully(stream)
            return
        # The channel's tasks run in a nursery, so what ends it arrives as an exception group.
        # Nothing one connection does (a close, a bad frame, a bug) may stop the server.
        try:
            await _serve_channel(channel, peer, handler, inline)
        except* (wire.ProtocolError, Unavailable, *_BROKEN) as group:
            ended = group.exceptions[0]
            log.warning(
                "chunk RPC: connection from %s (%s) ended: %s", _remote(stream), peer, ended
            )
        except* Exception as group:
            log.error(
                "chunk RPC: connection from %s (%s) failed",
                _remote(stream),
                peer,
                exc_info=group.exceptions[0],
            )
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(connection, listeners, task_status=task_status)


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def _serve_channel(
    channel: _Channel, peer: str, handler: Handler, inline: Inline | None = None
) -> None:
    limiter = trio.CapacityLimiter(MAX_CALLS_PER_CONNECTION)
    incoming: dict[int, _Incoming] = {}
    scopes: dict[int, trio.CancelScope] = {}
    deadlines: dict[int, int] = {}
    answered: list[wire.FrameEvent] = []  # inline answers, sent before the next wait

    async def send_answered() -> None:
        if answered:
            frames = answered[:]
            answered.clear()
            await channel.send(frames)

    async def answer(request_id: int, request: Message, millis: int) -> None:
        try:
            with trio.CancelScope() as scope:
                scopes[request_id] = scope
                with trio.move_on_after(millis / 1000) as timer:
                    reply = await handler(request, peer)
                if timer.cancelled_caught:
                    reply = Message(STATUS_DEADLINE, b"the call's deadline passed")
            if scope.cancelled_caught:
                return  # the caller cancelled: it waits for nothing
            head = wire.Response(request_id, reply.code, reply.body, not len(reply.payload))
            await channel.send(_frames(request_id, head, reply))
        finally:
            scopes.pop(request_id, None)
            limiter.release_on_behalf_of(request_id)

    async def reply_now(request_id: int, reply: Message) -> None:
        try:
            await channel.send([wire.Response(request_id, reply.code, reply.body, True)])
        finally:
            limiter.release_on_behalf_of(request_id)

    async with trio.open_nursery() as nursery:
        while True:
            event = await channel.next_event(send_answered)
            if isinstance(event, wire.Request):
                if event.request_id in incoming or event.request_id in scopes:
                    raise wire.ProtocolError(f"request id {event.request_id} is in use")
                incoming[event.request_id] = _Incoming(event.method, event.body)
                deadlines[event.request_id] = event.deadline_ms
                if not event.end:
                    continue
                rid = event.request_id
            elif isinstance(event, wire.Data):
                part = incoming.get(event.request_id)
                if part is None:
                    raise wire.ProtocolError("DATA for no request")
                part.add(event)
                if not event.end:
                    continue
                rid = event.request_id
            elif isinstance(event, wire.Cancel):
                incoming.pop(event.request_id, None)
                if (scope := scopes.get(event.request_id)) is not None:
                    scope.cancel()
                continue
            elif isinstance(event, wire.Ping):
                await channel.send([wire.Pong(event.token)])
                continue
            else:
                raise wire.ProtocolError(f"a client sent {type(event).__name__}")
            done = incoming.pop(rid)
            millis = deadlines.pop(rid)
            request = done.message()
            if inline is not None and not done.damaged:
                reply = inline(request, peer)
                if reply is not None:
                    head = wire.Response(rid, reply.code, reply.body, not len(reply.payload))
                    answered.extend(_frames(rid, head, reply))
                    if len(answered) >= MAX_ANSWERED_FRAMES:  # a bound on what waits here
                        await send_answered()
                    continue
            if answered and not limiter.available_tokens:
                await send_answered()  # ready answers never wait on slower calls
            await limiter.acquire_on_behalf_of(rid)
            if done.damaged:  # answered without the handler: nothing damaged is ever used
                damaged = Message(STATUS_CORRUPT, b"the request's data arrived damaged")
                nursery.start_soon(reply_now, rid, damaged)
                continue
            nursery.start_soon(answer, rid, request, millis)
