"""HTTP/1.1 server on Trio and h11: keep-alive, streaming bodies both ways, bounded everything.

One task per connection, one request at a time on it (h11 keeps pipelined requests queued in its
buffer until the previous response is complete, so pipelining is safe). The handler gets a
``Request`` whose body is read on demand: reading it answers ``Expect: 100-continue`` first, and a
handler that fails before reading it never makes the client send the body (the connection is
then closed instead of draining an unread upload). Responses stream from an async iterable.

Limits: header block size (h11's incomplete-event limit), header count, an idle timeout between
requests, a deadline for receiving the request head (a slowloris client is cut off), and, while a
body streams in, a per-read timeout plus a minimum transfer rate (below).

Refused before any handler runs, with the connection closed after the answer: an HTTP version
other than 1.0/1.1 (505), and a request with both Content-Length and Transfer-Encoding (400,
RFC 9112 section 6.1: the two framings disagree, so where the next request starts is unknown and
the connection cannot be reused). A body that fails to arrive (broken chunked framing, the client
closing mid-body, a timeout) raises ``BadRequest`` in the handler that reads it, and the
connection closes after the answer: its framing can no longer be trusted.

Body transfer rate (like Apache's mod_reqtimeout ``body=20,MinRate=1024``): the time spent
waiting for body bytes may reach ``body_rate_grace_s`` plus one second per
``body_min_rate_bytes_s`` bytes received so far; past that the read fails with ``BodyTimeout``
(S3's RequestTimeout). Only waits for the client count, never the time the handler spends between
reads (a slow disk is not the client's fault), and there is no cap on the total: a large upload
at a steady rate never runs out of time, and a client that trickles bytes is cut after about
``body_rate_grace_s``. Each connection's socket has TCP_NODELAY.

Connections: at most ``max_connections`` are served at once per process. One accepted past it
has its request head read (for a few seconds at most), gets 503 (S3's SlowDown, which clients
retry with backoff) and is closed; a flood beyond a sixteenth of that again is closed at once,
unanswered. Hostile clients holding connections open are cut by the timeouts above, so a
flood delays real clients for at most those timeouts, never indefinitely.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11
import trio

from store.gateway.admission import Admission

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 << 10
MAX_HEADERS = 100
READ_BYTES = 256 << 10
REFUSAL_TIMEOUT_S = 5.0  # to read the head of a request refused for want of connections
COALESCE_BYTES = 64 << 10  # a response head goes out in one send with a body piece this small


@dataclass(frozen=True, slots=True)
class Limits:
    idle_timeout_s: float = 60.0  # between requests on a kept-alive connection
    head_timeout_s: float = 20.0  # to receive a whole request head once it has started
    body_read_timeout_s: float = 60.0  # for each read of a request body
    # Body reads may wait body_rate_grace_s plus 1 s per body_min_rate_bytes_s bytes received in
    # all (see the module docstring); 0 turns the rate check off.
    body_rate_grace_s: float = 20.0
    body_min_rate_bytes_s: float = 1024.0
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    # Connections one process serves at once; past it, new ones get 503 SlowDown (see serve_http).
    max_connections: int = 4096


class ClientGone(Exception):
    """The client closed the connection or stopped sending within the deadline."""


class BadRequest(Exception):
    """The bytes are not HTTP/1.1 a server can answer (h11 protocol error, limits)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyIncomplete(BadRequest):
    """The client closed its side of the connection before the whole request body arrived."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class BodyTimeout(BadRequest):
    """The request body came in too slowly (``body_read_timeout_s`` or the minimum rate)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class _ReadTimedOut(ClientGone):
    pass


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes | bytearray | memoryview] = b""
    length: int | None = None  # Content-Length of a streamed body (None: chunked)
    close: Callable[[], Awaitable[None]] | None = None  # called once the body is sent (or not)


class Request:
    """A request head plus a body read on demand (``receive`` / ``async for``)."""

    def __init__(
        self, conn: _Connection, event: h11.Request, peer: str, secure: bool = False
    ) -> None:
        self._conn = conn
        self.method = event.method.decode("ascii")
        self.target = event.target.decode("ascii", errors="replace")
        self.headers: list[tuple[str, str]] = [
            (n.decode("ascii").lower(), v.decode("latin-1")) for n, v in event.headers
        ]
        by_name: dict[str, str] = {}
        for n, v in self.headers:  # looked up many times per request: index once
            by_name[n] = f"{by_name[n]},{v}" if n in by_name else v
        self._by_name = by_name
        self.peer = peer
        self.secure = secure  # over TLS
        self.body_done = False
        self.body_bytes = 0
        # Why reading the body failed, if it did: the connection cannot carry another request.
        self.body_error: Exception | None = None

    @property
    def header_map(self) -> Mapping[str, str]:
        """Every header by lowercase name (repeated fields joined with ",")."""
        return self._by_name

    def header(self, name: str) -> str | None:
        """A header's value (repeated fields joined with ","), by lowercase name."""
        return self._by_name.get(name)

    async def receive(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        if self.body_done:
            return b""
        if self.body_error is not None:
            raise self.body_error
        try:
            data = await self._conn.next_body_piece()
        except (BadRequest, ClientGone) as e:
            self.body_error = e
            raise
        if data is None:
            self.body_done = True
            return b""
        self.body_bytes += len(data)
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        while data := await self.receive():
            yield data


class Drain:
    """A server's shutdown switch: once started, idle connections close at once and busy ones
    after the response in progress."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self._idle: set[trio.CancelScope] = set()

    def is_set(self) -> bool:
        return self.started.is_set()

    def start(self) -> None:
        self.started.set()
        for scope in list(self._idle):
            scope.cancel()

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """Around a wait for the next request: cancelled (silently) when the drain starts."""
        scope = trio.CancelScope()
        if self.is_set():
            scope.cancel()
        self._idle.add(scope)
        try:
            with scope:
                yield
        finally:
            self._idle.discard(scope)


Handler = Callable[[Request], Awaitable[Response]]
ErrorResponder = Callable[[Request | None, BadRequest], Response]


class _Connection:
    def __init__(self, stream: trio.abc.Stream, limits: Limits) -> None:
        self.stream = stream
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.sent_continue = False
        self.eof = False  # the client has closed its sending side
        # The body rate check: seconds spent waiting for body bytes, and the bytes they brought.
        self.body_wait_s = 0.0
        self.body_read_bytes = 0
        # A response head waiting to go out with the first small piece of its body (or its end):
        # one send, one syscall and one packet for a small response instead of two or three.
        self._held = b""

    def start_next_cycle(self) -> None:
        self.h11.start_next_cycle()
        self.sent_continue = False
        self.body_wait_s = 0.0
        self.body_read_bytes = 0

    async def _read_more(self, timeout_s: float) -> int:
        with trio.move_on_after(timeout_s) as scope:
            try:
                data = await self.stream.receive_some(READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise ClientGone(str(e)) from None
        if scope.cancelled_caught:
            raise _ReadTimedOut("timed out waiting for the client")
        if not data:
            self.eof = True
        self.h11.receive_data(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    async def _read_body_bytes(self) -> None:
        """Read more of a request body, within the per-read timeout and the rate budget."""
        limits = self.limits
        timeout = limits.body_read_timeout_s
        by_rate = False
        if limits.body_min_rate_bytes_s > 0:
            budget = (
                limits.body_rate_grace_s
                + self.body_read_bytes / limits.body_min_rate_bytes_s
                - self.body_wait_s
            )
            if budget < timeout:
                timeout, by_rate = max(0.0, budget), True
        started = trio.current_time()
        try:
            got = await self._read_more(timeout)
        except _ReadTimedOut:
            self.body_wait_s += trio.current_time() - started
            if by_rate:
                raise BodyTimeout(
                    f"the request body came in slower than {limits.body_min_rate_bytes_s:g} "
                    f"bytes/s ({self.body_read_bytes} bytes in {self.body_wait_s:.1f} s)"
                ) from None
            raise BodyTimeout(f"no request body bytes for {timeout:g} s") from None
        self.body_wait_s += trio.current_time() - started
        self.body_read_bytes += got

    async def next_body_piece(self) -> bytes | None:
        if self.h11.they_are_waiting_for_100_continue:
            self.sent_continue = True
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                if self.eof:  # h11 saw the end of the stream before the end of the body
                    raise BodyIncomplete(str(e)) from None
                raise BadRequest(e.error_status_hint, str(e)) from None
            if event is not h11.NEED_DATA:
                break
            await self._read_body_bytes()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return None
        if isinstance(event, h11.ConnectionClosed):
            raise ClientGone("the client closed the connection mid-body")
        raise BadRequest(400, f"unexpected {type(event).__name__} in a request body")

    async def send(self, event: h11.Event) -> None:
        await self._send_all(self.h11.send(event) or b"")

    async def send_data(self, piece: bytes | bytearray | memoryview) -> None:
        """Send body bytes without h11 joining them into a new buffer (no copy)."""
        parts = self.h11.send_with_data_passthrough(h11.Data(data=piece))  # type: ignore[arg-type]
        for part in parts or ():
            await self._send_all(part)

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        held, self._held = self._held, b""
        if held:
            if len(data) <= COALESCE_BYTES:
                data = held + data
            else:
                await self._write(held)
        await self._write(data)

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise ClientGone(str(e)) from None

    async def send_response(self, response: Response, head_only: bool) -> None:
        headers = list(response.headers)
        body = response.body
        if response.length is not None:
            headers.append(("content-length", str(response.length)))
        elif isinstance(body, bytes):
            headers.append(("content-length", str(len(body))))
        self._held = (
            self.h11.send(
                h11.Response(
                    status_code=response.status,
                    headers=[(n.encode(), v.encode("latin-1")) for n, v in headers],
                    # Clients parse the status line strictly (botocore's 100-continue handling
                    # wants three fields), so always send the reason phrase.
                    reason=_reason(response.status),
                )
            )
            or b""
        )  # sent with the first piece of the body, or its end
        if not head_only:
            if isinstance(body, bytes):
                if body:
                    await self.send(h11.Data(data=body))
            elif hasattr(body, "send_to"):  # a producer that wants its own nursery
                await body.send_to(self.send_data)
            else:
                pieces = aiter(body)
                try:
                    async for piece in pieces:
                        if piece:
                            await self.send_data(piece)
                finally:
                    aclose = getattr(pieces, "aclose", None)
                    if aclose is not None:
                        with trio.CancelScope(shield=True):
                            await aclose()
        await self.send(h11.EndOfMessage())


async def serve_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    on_bad_request: ErrorResponder,
    limits: Limits = Limits(),  # noqa: B008 - frozen
    draining: Drain | None = None,
) -> None:
    """Serve one client until it closes, idles out, breaks the protocol, or the server drains
    (``draining`` set: the request in progress is finished, then the connection closes)."""
    peer = _peer(stream)
    secure = isinstance(stream, trio.SSLStream)
    tcp = _socket_of(stream)
    if tcp is not None:
        with contextlib.suppress(OSError):
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    conn = _Connection(stream, limits)
    draining = Drain() if draining is None else draining
    try:
        while not draining.is_set():
            try:
                event = await _next_request(conn, draining)
            except BadRequest as e:
                await _answer_bad_request(conn, on_bad_request(None, e))
                return
            if event is None:
                return
            request = Request(conn, event, peer, secure)
            head_bytes = sum(len(n) + len(v) + 4 for n, v in request.headers)
            if len(request.headers) > limits.max_headers or head_bytes > limits.max_header_bytes:
                error = BadRequest(431, "request header fields too large")
                await _answer_bad_request(conn, on_bad_request(request, error))
                return
            try:
                response = await handler(request)
            except BadRequest as e:
                response = on_bad_request(request, e)
            expected_continue = (request.header("expect") or "").lower() == "100-continue"
            unread = not request.body_done and expected_continue and not conn.sent_continue
            # A body that could not be read leaves the connection's framing unknown.
            broken = request.body_error is not None
            if unread or broken or draining.is_set():  # this connection ends with this answer
                response.headers.append(("connection", "close"))
            try:
                await conn.send_response(response, head_only=request.method == "HEAD")
            finally:
                if response.close is not None:
                    with trio.CancelScope(shield=True):
                        await response.close()
            if broken:
                return
            # A body the handler did not read: a client that asked for 100-continue and got a
            # final answer instead may or may not send it, so the connection cannot be reused;
            # otherwise drain a little, or close rather than read a whole upload.
            if not request.body_done and (unread or not await _drain(request)):
                return
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except ClientGone:
        return
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def refuse_connection(
    stream: trio.abc.Stream, on_bad_request: ErrorResponder, limits: Limits
) -> None:
    """Answer a connection the server has no room for: its first request gets 503, then the
    connection closes (an HTTP server cannot answer before it has a request to answer)."""
    conn = _Connection(stream, limits)
    try:
        with trio.move_on_after(REFUSAL_TIMEOUT_S):
            try:
                event = await _next_request(conn, Drain())
            except BadRequest as e:
                await _answer_bad_request(conn, on_bad_request(None, e))
                return
            if event is not None:
                request = Request(conn, event, _peer(stream), isinstance(stream, trio.SSLStream))
                error = BadRequest(503, "too many connections: retry later")
                await _answer_bad_request(conn, on_bad_request(request, error))
    except ClientGone:
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _drain(request: Request, limit: int = 1 << 20) -> bool:
    """Read and drop the rest of an unread body (up to ``limit`` bytes): True if the connection
    can carry another request."""
    drained = 0
    while not request.body_done:
        try:
            drained += len(await request.receive())
        except BadRequest:  # already answered: the body's framing is broken, or it is too slow
            return False
        if drained > limit:
            return False
    return True


async def _next_request(conn: _Connection, draining: Drain) -> h11.Request | None:
    """The next request head, or None when the client is done or idle (or the server drains
    while it is idle). Once the first bytes of a head have arrived the whole head must follow
    within ``head_timeout_s`` (slowloris)."""
    deadline: float | None = None
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as e:
            raise BadRequest(e.error_status_hint, str(e)) from None
        if event is h11.NEED_DATA:
            if deadline is None and conn.h11.trailing_data[0]:
                deadline = trio.current_time() + conn.limits.head_timeout_s
            timeout = (
                conn.limits.idle_timeout_s
                if deadline is None
                else max(0.0, deadline - trio.current_time())
            )
            try:
                if deadline is None:  # idle: a drain ends the wait (and the connection)
                    with draining.idle():
                        await conn._read_more(timeout)
                    if draining.is_set() and not conn.h11.trailing_data[0]:
                        return None
                else:
                    await conn._read_more(timeout)
            except ClientGone:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise BadRequest(400, f"unexpected {type(event).__name__}")
        _check_servable(event)
        return event


def _check_servable(event: h11.Request) -> None:
    """Refuse a request head h11 parses but this server must not serve."""
    if event.http_version not in (b"1.0", b"1.1"):
        version = event.http_version.decode("ascii", "replace")
        raise BadRequest(505, f"HTTP/{version} is not supported (HTTP/1.1 is)")
    names = {name for name, _ in event.headers}  # h11 gives them lowercase
    if b"content-length" in names and b"transfer-encoding" in names:
        # RFC 9112 section 6.1: a request smuggling vector; refused, and the connection closed.
        raise BadRequest(400, "a request cannot have both Content-Length and Transfer-Encoding")


async def _answer_bad_request(conn: _Connection, response: Response) -> None:
    with contextlib.suppress(ClientGone, h11.LocalProtocolError):
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response.headers.append(("connection", "close"))
            await conn.send_response(response, head_only=False)


@functools.cache
def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def _socket_of(stream: trio.abc.Stream) -> trio.SocketStream | None:
    """The TCP stream under a TLS one (or the stream itself); None for other streams (the
    in-memory ones of tests)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream if isinstance(stream, trio.SocketStream) else None


def _peer(stream: trio.abc.Stream) -> str:
    tcp = _socket_of(stream)
    if tcp is None:
        return "?"
    try:
        host, port = tcp.socket.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


async def serve_http(
    listeners: Sequence[trio.abc.Listener[Any]],
    handler: Handler,
    on_bad_request: ErrorResponder,
    limits: Limits = Limits(),  # noqa: B008 - frozen
    *,
    draining: Drain | None = None,
    drain_timeout_s: float = 30.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept and serve connections until cancelled, or until ``draining`` is set: then stop
    accepting, let requests in progress finish (up to ``drain_timeout_s``), close idle
    connections, and return."""
    draining = Drain() if draining is None else draining
    served = Admission(limits.max_connections)
    refusing = Admission(max(1, limits.max_connections // 16))
    async with trio.open_nursery() as connections:

        async def accept(listener: trio.abc.Listener[Any]) -> None:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:  # EMFILE and friends: back off, keep serving
                    log.warning("accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                if served.enter():
                    connections.start_soon(guarded, stream, False)
                elif refusing.enter():
                    connections.start_soon(guarded, stream, True)
                else:
                    await trio.aclose_forcefully(stream)

        async def guarded(stream: trio.abc.Stream, refuse: bool) -> None:
            # One client's failure (a TLS error, a bug) must never take the server down.
            try:
                if refuse:
                    await refuse_connection(stream, on_bad_request, limits)
                else:
                    await serve_connection(stream, handler, on_bad_request, limits, draining)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except Exception:
                log.exception("connection from %s failed", _peer(stream))
            finally:
                (refusing if refuse else served).leave()

        async with trio.open_nursery() as acceptors:
            for listener in listeners:
                acceptors.start_soon(accept, listener)
            task_status.started()
            await draining.started.wait()
            acceptors.cancel_scope.cancel()
        for listener in listeners:
            with contextlib.suppress(trio.ClosedResourceError):
                await listener.aclose()
        connections.cancel_scope.deadline = trio.current_time() + drain_timeout_s
