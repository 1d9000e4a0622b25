"""The HTTP server over real loopback sockets: keep-alive, 100-continue, limits, slow clients."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import trio

from store.gateway.http import BadRequest, Limits, Request, Response, serve_http


async def echo(request: Request) -> Response:
    if request.target.startswith("/reject"):
        return Response(403, [("content-type", "text/plain")], b"no")
    body = b"".join([piece async for piece in request])

    async def stream() -> AsyncIterator[bytes]:
        yield b"len="
        yield str(len(body)).encode()

    return Response(200, [("x-method", request.method)], stream(), length=4 + len(str(len(body))))


def bad(request: Request | None, error: BadRequest) -> Response:
    return Response(error.status, [], str(error).encode())


async def start(nursery: trio.Nursery, limits: Limits) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await nursery.start(functools.partial(serve_http, listeners, echo, bad, limits))
    return port


async def exchange(port: int, data: bytes, wait: float = 0.3) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    out = b""
    with trio.move_on_after(wait):
        while chunk := await stream.receive_some(65536):
            out += chunk
    await stream.aclose()
    return out


async def test_keep_alive_pipelining_and_streamed_bodies() -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, Limits())
        two = (
            b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        out = await exchange(port, two)
        assert out.count(b"HTTP/1.1 200") == 2
        assert b"len=5" in out and b"len=3" in out
        nursery.cancel_scope.cancel()


async def test_expect_100_continue() -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, Limits())
        head = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(head)
        assert (await stream.receive_some(1000)).startswith(b"HTTP/1.1 100")
        await stream.send_all(b"abc")
        got = b""
        with trio.fail_after(5):
            while b"len=3" not in got:
                got += await stream.receive_some(1000)
        await stream.aclose()
        # Refused before the body: the error comes at once and the connection closes.
        out = await exchange(port, head.replace(b"/a", b"/reject"), wait=2)
        assert out.startswith(b"HTTP/1.1 403") and b"100 Continue" not in out
        nursery.cancel_scope.cancel()


async def test_malformed_oversized_and_slow_clients() -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, Limits(head_timeout_s=0.3, idle_timeout_s=5))
        assert (await exchange(port, b"NOT HTTP\r\n\r\n")).startswith(b"HTTP/1.1 400")
        huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        assert (await exchange(port, huge)).startswith(b"HTTP/1.1 431")
        many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n"
        assert (await exchange(port, many)).startswith(b"HTTP/1.1 431")
        # Slowloris: a head trickling in is cut off after head_timeout_s.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\n")
        with trio.fail_after(3):
            while True:
                await trio.sleep(0.1)
                try:
                    await stream.send_all(b"X: y\r\n")
                except trio.BrokenResourceError:
                    break
                with trio.move_on_after(0.01):
                    if await stream.receive_some(100) == b"":
                        break
        await stream.aclose()
        # The server is still up.
        assert (await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 200"
        )
        nursery.cancel_scope.cancel()
