"""JSON calls to etcd's v3 gateway over HTTP/1.1, on Trio streams with h11.

etcd's gRPC clients are asyncio-only; its JSON gateway (``POST /v3/kv/range`` and friends, the
protobuf messages in JSON, bytes in base64, 64-bit integers as strings) is plain HTTP/1.1 that h11
speaks on Trio. This module knows HTTP and failover, not etcd's semantics (etcd.py has those).

- A keep-alive pool per endpoint. An idle connection that became readable (the member closed it,
  or died: its FIN or RST arrived) is dropped before use, so a killed member costs no request.
- Failover: calls go to the endpoint that last answered; a failure moves to the next. A call is
  retried on another endpoint only if it cannot have been applied twice: it was never sent (the
  connection failed first), or it is idempotent (reads, lease keep-alives). A write whose
  request went out and whose answer never came is ambiguous; it fails with Unavailable, as
  etcd's own clients do, rather than risk applying a compare-and-swap twice.
- A deadline on every call (``timeout_s``); an idempotent call splits it between endpoints, so
  a paused member does not take it all.
- ``stream`` opens a long-lived response (watches): newline-delimited JSON messages.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h11
import trio

from store.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 256 << 20
MAX_IDLE_S = 30.0  # pooled connections older than this are closed rather than reused
POOL_PER_ENDPOINT = 16
READ_BYTES = 256 << 10


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoints(spec: str) -> list[Endpoint]:
    """``H:P,H:P`` (an ``etcd://`` or ``http://`` prefix allowed) as endpoints.

    >>> parse_endpoints("etcd://127.0.0.1:2379,10.0.0.2:2379")
    [Endpoint(host='127.0.0.1', port=2379), Endpoint(host='10.0.0.2', port=2379)]
    """
    for scheme in ("etcd://", "http://"):
        spec = spec.removeprefix(scheme)
    out = []
    for part in spec.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"not an etcd endpoint (HOST:PORT): {part!r}")
        out.append(Endpoint(host.strip("[]"), int(port)))
    return out


class EtcdError(Exception):
    """etcd answered with a gRPC error (``code`` as in google.rpc.Code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd error {code}: {message}")
        self.code = code
        self.message = message


class _NotSent(Exception):
    """The request cannot have reached etcd: safe to send elsewhere."""


class _Lost(Exception):
    """The request was sent, the answer never came."""


class _Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 << 10)
        self.idle_since = trio.current_time()

    def stale(self) -> bool:
        too_old = trio.current_time() - self.idle_since > MAX_IDLE_S
        return too_old or self.stream.socket.is_readable()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def _request(endpoint: Endpoint, path: str, body: bytes) -> h11.Request:
    return h11.Request(
        method="POST",
        target=path,
        headers=[
            ("Host", str(endpoint)),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ],
    )


async def _next_event(conn: _Conn) -> Any:
    while True:
        event = conn.http.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.http.receive_data(await conn.stream.receive_some(READ_BYTES))


class EtcdHttp:
    def __init__(self, endpoints: Sequence[Endpoint], *, timeout_s: float = 5.0) -> None:
        if not endpoints:
            raise InvalidArgument("no etcd endpoints given")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._current = 0
        self._idle: dict[Endpoint, list[_Conn]] = {e: [] for e in self.endpoints}
        self._closed = False

    # -- connections ----------------------------------------------------------------------------

    async def _checkout(self, endpoint: Endpoint) -> tuple[_Conn, bool]:
        """A connection to ``endpoint`` and whether it was reused."""
        idle = self._idle[endpoint]
        while idle:
            conn = idle.pop()
            if not conn.stale():
                return conn, True
            await conn.aclose()
        try:
            stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        except OSError as e:
            raise _NotSent(f"cannot connect to etcd at {endpoint}: {e}") from e
        return _Conn(stream), False

    async def _checkin(self, endpoint: Endpoint, conn: _Conn) -> None:
        if (
            self._closed
            or conn.http.our_state is not h11.DONE
            or conn.http.their_state is not h11.DONE
            or len(self._idle[endpoint]) >= POOL_PER_ENDPOINT
        ):
            await conn.aclose()
            return
        conn.http.start_next_cycle()
        conn.idle_since = trio.current_time()
        self._idle[endpoint].append(conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def _failed(self, endpoint: Endpoint) -> None:
        """Move on from an endpoint that failed (unless another call already did)."""
        if self.endpoints[self._current] == endpoint:
            self._current = (self._current + 1) % len(self.endpoints)

    # -- calls ----------------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST ``body`` to ``path``; the decoded answer. EtcdError for etcd's errors,
        Unavailable when no endpoint answers in time."""
        if self._closed:
            raise Unavailable("the etcd client is closed")
        payload = json.dumps(body).encode()
        deadline = trio.current_time() + self.timeout_s
        share = self.timeout_s / len(self.endpoints) if idempotent else math.inf
        problems: list[str] = []
        for _ in range(2 * len(self.endpoints)):
            left = deadline - trio.current_time()
            if left <= 0:
                break
            endpoint = self.endpoints[self._current]
            try:
                with trio.fail_after(min(left, max(share, 1.0))):
                    return await self._call_on(endpoint, path, payload)
            except _NotSent as e:
                problems.append(str(e))
            except (_Lost, trio.TooSlowError) as e:
                problems.append(f"{endpoint}: {e or 'no answer in time'}")
                if not idempotent:
                    self._failed(endpoint)
                    raise Unavailable(
                        f"etcd did not answer a write (it may or may not have been applied): "
                        f"{problems[-1]}"
                    ) from e
            self._failed(endpoint)
        raise Unavailable(f"no etcd endpoint answered: {'; '.join(problems) or 'timed out'}")

    async def _call_on(self, endpoint: Endpoint, path: str, payload: bytes) -> dict[str, Any]:
        conn, reused = await self._checkout(endpoint)
        sent = False
        try:
            data = conn.http.send(_request(endpoint, path, payload))
            data += conn.http.send(h11.Data(data=payload)) + conn.http.send(h11.EndOfMessage())
            try:
                await conn.stream.send_all(data)
            except (OSError, trio.BrokenResourceError) as e:
                raise _NotSent(f"{endpoint}: {e}") from e
            sent = True
            status, raw = await self._read_response(conn)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as e:
            await conn.aclose()
            if not sent:
                raise _NotSent(f"{endpoint}: {e}") from e
            how = " (a reused connection)" if reused else ""
            raise _Lost(f"{type(e).__name__}: {e}{how}") from e
        except BaseException:
            await conn.aclose()
            raise
        await self._checkin(endpoint, conn)
        return _decode(status, raw)

    async def _read_response(self, conn: _Conn) -> tuple[int, bytes]:
        status = 0
        body = bytearray()
        while True:
            event = await _next_event(conn)
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_RESPONSE_BYTES:
                    raise h11.RemoteProtocolError("etcd answer too large")
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("etcd closed the connection mid-answer")

    @asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[_Messages]:
        """A long-lived call (a watch) on its own connection to the current endpoint: the
        answer's newline-delimited JSON messages. Connecting is bounded by the deadline; the
        stream itself is not (the caller bounds its waits)."""
        if self._closed:
            raise Unavailable("the etcd client is closed")
        endpoint = self.endpoints[self._current]
        payload = json.dumps(body).encode()
        try:
            with trio.fail_after(self.timeout_s):
                stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
        except (OSError, trio.TooSlowError) as e:
            self._failed(endpoint)
            raise Unavailable(f"cannot connect to etcd at {endpoint}: {e}") from e
        conn = _Conn(stream)
        try:
            data = conn.http.send(_request(endpoint, path, payload))
            data += conn.http.send(h11.Data(data=payload)) + conn.http.send(h11.EndOfMessage())
            await conn.stream.send_all(data)
            yield _Messages(conn, endpoint)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as e:
            self._failed(endpoint)
            raise Unavailable(f"etcd stream from {endpoint} broke: {e}") from e
        finally:
            await conn.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                await idle.pop().aclose()


class _Messages:
    """The JSON messages of a streamed answer, one per line."""

    def __init__(self, conn: _Conn, endpoint: Endpoint) -> None:
        self._conn = conn
        self.endpoint = endpoint
        self._buffer = bytearray()
        self._status = 0

    async def next(self) -> dict[str, Any]:
        """The next message; Unavailable when the stream ends (etcd went away)."""
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = bytearray(rest)
                if line.strip():
                    return _decode(self._status or 200, bytes(line))
                continue
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise Unavailable(f"etcd at {self.endpoint} sent an oversized message")
            try:
                event = await _next_event(self._conn)
            except (OSError, trio.BrokenResourceError, h11.ProtocolError) as e:
                raise Unavailable(f"etcd stream from {self.endpoint} broke: {e}") from e
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._buffer += event.data
            else:  # EndOfMessage or ConnectionClosed: the member stopped the stream
                if self._buffer.strip():
                    raw, self._buffer = bytes(self._buffer), bytearray()
                    return _decode(self._status or 200, raw)
                raise Unavailable(f"etcd at {self.endpoint} ended the stream")


def _decode(status: int, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError as e:
        raise EtcdError(13, f"etcd sent a body that is not JSON (HTTP {status})") from e
    if not isinstance(doc, dict):
        raise EtcdError(13, f"etcd sent a JSON {type(doc).__name__}, not an object")
    if status != 200 or ("code" in doc and "error" in doc):
        raise EtcdError(int(doc.get("code", 2)), str(doc.get("message") or doc.get("error")))
    return doc
