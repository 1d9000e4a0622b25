"""The HTTP server's hostile-client limits over in-memory streams, on a virtual clock: request
heads it must refuse (HTTP versions, Content-Length with Transfer-Encoding), bodies that break
their framing or stop short, and bodies that trickle in (the minimum transfer rate)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from store.gateway.http import (
    BadRequest,
    BodyIncomplete,
    BodyTimeout,
    Limits,
    Request,
    Response,
    serve_connection,
)

Client = Callable[[trio.abc.Stream], Awaitable[None]]


async def echo(request: Request) -> Response:
    if request.target.startswith("/reject"):  # answers without reading the body
        return Response(403, [], b"no")
    if request.target.startswith("/slow-handler"):  # a slow disk between two body reads
        first = await request.receive()
        await trio.sleep(100)
        body = first + b"".join([piece async for piece in request])
    else:
        body = b"".join([piece async for piece in request])
    return Response(200, [], b"len=%d" % len(body))


class Session:
    """One connection served by ``serve_connection``: what the client got, and the errors the
    server answered with ``on_bad_request``."""

    def __init__(self) -> None:
        self.received = b""
        self.errors: list[BadRequest] = []
        self.elapsed_s = 0.0

    def bad(self, request: Request | None, error: BadRequest) -> Response:
        self.errors.append(error)
        return Response(error.status, [], type(error).__name__.encode())

    @property
    def closes(self) -> bool:
        """The (last) response said ``Connection: close``."""
        return b"\r\nconnection: close\r\n" in self.received.lower()

    @property
    def statuses(self) -> list[bytes]:
        return [
            line.split(b" ")[1] for line in self.received.split(b"\r\n") if b"HTTP/1.1 " in line
        ]


async def converse(limits: Limits, send: Client) -> Session:
    """Run ``send`` as the client while reading everything the server sends until it closes."""
    session = Session()
    client, server = trio.testing.memory_stream_pair()
    started = trio.current_time()
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, server, echo, session.bad, limits)

            async def sender() -> None:
                # The server may hang up first.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send(client)

            nursery.start_soon(sender)
            while data := await client.receive_some(65536):
                session.received += data
            session.elapsed_s = trio.current_time() - started
            nursery.cancel_scope.cancel()  # a sender still trickling
    return session


def sends(*parts: bytes, gap_s: float = 0.0, eof: bool = False) -> Client:
    async def send(stream: trio.abc.Stream) -> None:
        for i, part in enumerate(parts):
            if i and gap_s:
                await trio.sleep(gap_s)
            await stream.send_all(part)
        if eof:
            assert isinstance(stream, trio.StapledStream)
            await stream.send_eof()
        await trio.sleep_forever()

    return send


PUT = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
CHUNKED = b"PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
GET = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
RATE = Limits(body_rate_grace_s=10, body_min_rate_bytes_s=100, body_read_timeout_s=60)


async def test_a_trickled_body_is_cut_once_the_grace_window_is_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One byte every 5 s: ~0.2 B/s against a 100 B/s minimum. The per-read timeout (60 s) alone
    # would let this run for 1000 * 5 s; the rate cuts it after the 10 s grace (plus 1/100 s
    # per byte received).
    session = await converse(RATE, sends(PUT % 1000, *[b"x"] * 1000, gap_s=5))
    assert [type(e) for e in session.errors] == [BodyTimeout]
    assert session.statuses == [b"400"] and session.closes
    assert 10 <= session.elapsed_s < 11


async def test_a_slow_but_steady_upload_is_not_cut(autojump_clock: trio.testing.MockClock) -> None:
    # 200 B/s for two minutes: above the minimum, so no deadline however long it takes.
    session = await converse(RATE, sends(PUT % 24000, *[b"y" * 200] * 120, gap_s=1))
    assert session.errors == [] and session.statuses == [b"200"]
    assert b"len=24000" in session.received
    assert session.elapsed_s >= 119


async def test_time_the_handler_spends_between_reads_is_not_the_clients(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The handler sleeps 100 s between two reads (a slow disk): all that time the rest of the
    # body waits in the buffer, and none of it counts against the client.
    head = PUT.replace(b"/a", b"/slow-handler") % 1000
    session = await converse(RATE, sends(head + b"z" * 100, b"z" * 900, gap_s=1))
    assert session.errors == [] and b"len=1000" in session.received


async def test_each_request_on_a_connection_has_its_own_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each request waits 8 s of a 10 s budget; together they would be over it.
    session = await converse(RATE, sends(PUT % 2 + b"a", b"a" + PUT % 2 + b"b", b"b", gap_s=8))
    assert session.errors == [] and session.statuses == [b"200", b"200"]


async def test_a_stalled_body_times_out_per_read_with_the_rate_check_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(body_min_rate_bytes_s=0, body_read_timeout_s=30)
    session = await converse(limits, sends(PUT % 10 + b"abc"))
    assert [type(e) for e in session.errors] == [BodyTimeout]
    assert session.statuses == [b"400"] and 30 <= session.elapsed_s < 31


@pytest.mark.parametrize(
    "wire",
    [PUT % 10 + b"abc", CHUNKED + b"3\r\nab", CHUNKED + b"3\r\nabc\r\n"],
    ids=["content-length", "mid-chunk", "before-last-chunk"],
)
async def test_a_body_cut_short_is_answered_and_the_connection_closed(wire: bytes) -> None:
    session = await converse(Limits(), sends(wire, eof=True))
    assert [type(e) for e in session.errors] == [BodyIncomplete]
    assert session.statuses == [b"400"] and session.closes


@pytest.mark.parametrize(
    "body",
    [b"ZZ\r\nabc\r\n0\r\n\r\n", b"-3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n"],
    ids=["hex", "negative", "missing-crlf"],
)
async def test_broken_chunked_framing_gets_400_and_a_pipelined_request_is_not_served(
    body: bytes,
) -> None:
    session = await converse(Limits(), sends(CHUNKED + body + GET))
    assert [type(e) for e in session.errors] == [BadRequest]
    assert session.statuses == [b"400"] and session.closes


async def test_an_unread_body_with_broken_framing_just_closes_the_connection() -> None:
    # The handler answers without reading the body; draining it then fails: no second answer,
    # no error out of serve_connection, and the pipelined request is not served.
    wire = CHUNKED.replace(b"/a", b"/reject") + b"ZZ\r\n" + GET
    session = await converse(Limits(), sends(wire))
    assert session.errors == [] and session.statuses == [b"403"]


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n" + GET, b"505"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET / HTTP/0.9\r\n\r\n", b"505"),
        (
            b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n0\r\n\r\n" + GET,
            b"400",
        ),
        (
            b"PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 0"
            b"\r\n\r\n0\r\n\r\n" + GET,
            b"400",
        ),
        # Held by h11 already: conflicting lengths, codings other than chunked.
        (b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", b"400"),
        (b"PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
    ],
    ids=["http-9.9", "http-2.0", "http-0.9", "cl-then-te", "te-then-cl", "two-lengths", "gzip"],
)
async def test_heads_refused_before_any_handler(wire: bytes, status: bytes) -> None:
    session = await converse(Limits(), sends(wire))
    assert session.statuses == [status] and session.closes
    assert [e.status for e in session.errors] == [int(status)]


async def test_http_1_0_is_still_served() -> None:
    session = await converse(Limits(), sends(b"GET / HTTP/1.0\r\n\r\n"))
    assert session.errors == [] and session.statuses == [b"200"]


async def test_idle_connections_and_slow_heads_are_still_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(idle_timeout_s=60, head_timeout_s=20)
    idle = await converse(limits, sends())
    assert idle.received == b"" and 60 <= idle.elapsed_s < 61
    # Slowloris: a header line a second, the head never ends: cut at the head deadline.
    slow = await converse(limits, sends(b"GET / HTTP/1.1\r\n", *[b"X: y\r\n"] * 100, gap_s=1))
    assert slow.received == b"" and 20 <= slow.elapsed_s < 21


async def test_100_continue_is_still_answered_before_the_body_is_read() -> None:
    client, server = trio.testing.memory_stream_pair()
    session = Session()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo, session.bad, Limits())
        await client.send_all(PUT.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n") % 3)
        assert (await client.receive_some(1000)).startswith(b"HTTP/1.1 100 ")
        await client.send_all(b"abc" + GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        while data := await client.receive_some(65536):
            session.received += data
    assert session.statuses == [b"200", b"200"] and b"len=3" in session.received
