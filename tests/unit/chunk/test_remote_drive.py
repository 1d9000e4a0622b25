"""The drive seam through the chunk RPC: the drive conformance suite against a RemoteDrive whose
chunk server (a DriveServer on local drives) listens on a real loopback socket; and the RPC's
refusals: a client without the cluster secret, a call past its deadline, a server gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from store.chunk.drive import Drive
from store.chunk.drive_server import DriveServer
from store.chunk.remote_drive import RemoteDrive
from store.errors import InvalidArgument, NotFound, Unavailable
from store.rpc import transport
from store.rpc.transport import Message, open_rpc_client, serve_rpc
from store.testing.drive_conformance import DRIVE_CHECKS, DriveCheck

SECRET = b"a cluster secret for the tests!"


@asynccontextmanager
async def chunk_server(root: Path, handler: object = None) -> AsyncIterator[int]:
    """A chunk server with one drive "d0" under ``root``; yields its port."""
    server = DriveServer({"d0": Drive(root / "d0")})
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        await nursery.start(
            partial(serve_rpc, listeners, "chunk-1", SECRET, handler or server.handle)
        )
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("check", DRIVE_CHECKS, ids=lambda c: c.__name__)
async def test_remote_drive(check: DriveCheck, tmp_path: Path) -> None:
    async with (
        chunk_server(tmp_path) as port,
        open_rpc_client(("127.0.0.1", port), "gw", SECRET) as client,
    ):
        drive = RemoteDrive(client, "d0")
        await drive.stat()
        assert client.peer == "chunk-1"  # the server proved its name in the handshake
        await check(drive)


async def test_a_client_without_the_secret_gets_nothing(tmp_path: Path) -> None:
    async with chunk_server(tmp_path) as port:
        async with open_rpc_client(("127.0.0.1", port), "gw", b"not the cluster secret!") as bad:
            with pytest.raises(Unavailable, match="secret"):
                await RemoteDrive(bad, "d0").stat()
        assert not list((tmp_path / "d0" / "tmp").iterdir())


async def test_an_unknown_drive_and_a_slow_call(tmp_path: Path) -> None:
    async def slow(request: Message, peer: str) -> Message:
        await trio.sleep(5)
        return Message(0)

    async with (
        chunk_server(tmp_path) as port,
        open_rpc_client(("127.0.0.1", port), "gw", SECRET) as client,
    ):
        with pytest.raises(NotFound, match="no drive"):
            await RemoteDrive(client, "d9").stat()
    async with (
        chunk_server(tmp_path, slow) as port,
        open_rpc_client(("127.0.0.1", port), "gw", SECRET, timeout_s=0.3) as client,
    ):
        with trio.fail_after(3), pytest.raises(Unavailable, match="deadline|no answer"):
            await RemoteDrive(client, "d0").stat()


async def test_a_server_that_is_gone_is_unavailable(tmp_path: Path) -> None:
    async with chunk_server(tmp_path) as port:
        pass
    async with open_rpc_client(("127.0.0.1", port), "gw", SECRET, timeout_s=2) as client:
        with pytest.raises(Unavailable):
            await RemoteDrive(client, "d0").stat()


async def test_a_peer_that_misses_a_deadline_is_routed_around_then_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "SUSPECT_S", 0.5)
    slow = trio.Event()

    async def sometimes_slow(request: Message, peer: str) -> Message:
        if not slow.is_set():
            await trio.sleep(5)
        return Message(0, b'{"total_bytes":1,"free_bytes":1}')

    async with (
        chunk_server(tmp_path, sometimes_slow) as port,
        open_rpc_client(("127.0.0.1", port), "gw", SECRET, timeout_s=0.3) as client,
    ):
        drive = RemoteDrive(client, "d0")
        with pytest.raises(Unavailable, match="no answer"):
            await drive.stat()
        slow.set()
        with trio.fail_after(0.1), pytest.raises(Unavailable, match="suspect"):
            await drive.stat()  # at once: no call goes to a suspect peer
        await trio.sleep(0.6)
        assert (await drive.stat()).total_bytes == 1  # tried again, and it answers


async def test_no_connection_can_stop_the_server(tmp_path: Path) -> None:
    """A client that closes, one that sends garbage after a good handshake, and a call whose
    handler fails unexpectedly each end only their own connection (the channel's errors come
    out of its nursery as exception groups: they must still be caught)."""
    from store.rpc import wire

    async def handler(request: Message, peer: str) -> Message:
        if request.body == b"boom":
            raise RuntimeError("a bug in a handler")
        return await DriveServer({"d0": Drive(tmp_path / "d0")}).handle(request, peer)

    async with chunk_server(tmp_path, handler) as port:
        address = ("127.0.0.1", port)
        async with open_rpc_client(address, "gw", SECRET) as client:
            await RemoteDrive(client, "d0").stat()
        for garbage in [b"\x00" * 100, b"\xff" * 41]:
            stream = await trio.open_tcp_stream(*address)
            channel = transport._Channel(stream, wire.Connection(wire.Role.CLIENT, "gw", SECRET))
            await channel.handshake()
            await stream.send_all(garbage)
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""  # the server hangs up
            await stream.aclose()
        async with open_rpc_client(address, "gw", SECRET) as client:
            with pytest.raises(Unavailable):
                await client.call(Message(1, b"boom"))
        async with open_rpc_client(address, "gw", SECRET) as client:
            assert (await RemoteDrive(client, "d0").stat()).total_bytes > 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A cluster CA with a chunk server's and a gateway's certificates, and a stranger's."""
    import trustme

    from store.rpc.tls import TlsFiles

    root = tmp_path_factory.mktemp("rpc-pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    out: dict[str, object] = {}
    for name, issuer, identity in [
        ("server", ca, "127.0.0.1"),
        ("gateway", ca, "gateway-1"),
        ("stranger", other, "gateway-9"),
    ]:
        pem = root / f"{name}.pem"
        issuer.issue_cert(identity).private_key_and_cert_chain_pem.write_to_path(str(pem))
        out[name] = TlsFiles(str(pem), str(pem), str(root / "ca.pem"))
    return out


async def test_mutual_tls_on_top_of_the_secret(tmp_path: Path, pki: dict[str, object]) -> None:
    from store.rpc.tls import TlsFiles, client_context, server_context

    server = DriveServer({"d0": Drive(tmp_path / "d0")})
    server_files, gateway, stranger = pki["server"], pki["gateway"], pki["stranger"]
    assert isinstance(server_files, TlsFiles) and isinstance(gateway, TlsFiles)
    assert isinstance(stranger, TlsFiles)
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        tls = server_context(server_files)
        await nursery.start(
            partial(serve_rpc, listeners, "chunk-1", SECRET, server.handle, tls=tls)
        )
        address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        async with open_rpc_client(address, "gw", SECRET, tls=client_context(gateway)) as good:
            assert (await RemoteDrive(good, "d0").stat()).total_bytes > 0
        # A certificate from another CA, or none at all, is refused before the secret is tried.
        async with open_rpc_client(address, "gw", SECRET, tls=client_context(stranger)) as bad:
            with pytest.raises(Unavailable):
                await RemoteDrive(bad, "d0").stat()
        async with open_rpc_client(address, "gw", SECRET) as plain:
            with pytest.raises(Unavailable):
                await RemoteDrive(plain, "d0").stat()
        nursery.cancel_scope.cancel()
    with pytest.raises(InvalidArgument, match="no key"):
        TlsFiles.of("cert.pem", "", "ca.pem")
    assert TlsFiles.of("", "", "") is None
