"""The NBD endpoint's memory limits, through real sockets: a client cannot make the server hold
more than its byte budgets (NBD_CMD_CACHE in bounded pieces, over-maximum requests refused,
pipelined READs whose replies are never read, WRITE payloads pushed faster than they are
written), and the server goes on serving other clients meanwhile.

Memory is the server process's own figure: VmHWM (peak resident set) from /proc/PID/status,
reset before each step by writing 5 to /proc/PID/clear_refs, so a peak that came and went is
still seen. `--workers 1`: NBD is served by that one process.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from store import app
from store.config import Config
from store.gateway.http import Drain
from store.gateway.metrics import NbdMetrics
from store.gateway.nbd import NbdLimits, NbdServer
from store.node import local_volumes, open_local_engine
from store.volumes.open_volume import OpenVolume
from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_nbd import nbdsh, run, store

MIB = 1 << 20
GIB = 1 << 30
VOLUME_BYTES = 4 * GIB
DATA_BYTES = 64 * MIB  # written at offset 0; the rest of the volume is unwritten
GROWTH_LIMIT_BYTES = 200 * MIB

NBDMAGIC, IHAVEOPT, OPTION_REPLY_MAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
REQUEST_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698
OPT_GO, REP_ACK = 7, 1
READ, WRITE, DISC, CACHE = 0, 1, 2, 5
FUA = 1
EINVAL = 22


# -- the server process's memory and descriptors --------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    return _status(pid)["VmRSS"]


def reset_peak(pid: int) -> int:
    """Reset the peak resident set to the current one (Linux >= 4.0); the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss(pid)


def peak(pid: int) -> int:
    return _status(pid)["VmHWM"]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def report(**figures: object) -> None:
    """One JSON line per measurement (pytest -s shows them)."""
    print(json.dumps(figures))


# -- a minimal raw NBD client: it sends what the test says and reads only when told ---------------


class RawClient:
    """Fixed-newstyle handshake with NBD_OPT_GO (no structured replies: simple replies), then
    requests written straight to the socket. Nothing is read unless the test asks."""

    def __init__(self, address: str, export: str, receive_buffer_bytes: int = 0) -> None:
        host, port = address.removeprefix("nbd://").rsplit(":", 1)
        self.sock = socket.socket()
        if receive_buffer_bytes:  # before connecting: no autotuning to megabytes of buffer
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        self.sock.settimeout(30)
        self.sock.connect((host, int(port)))
        magic, opt, _flags = struct.unpack(">QQH", self.exactly(18))
        assert (magic, opt) == (NBDMAGIC, IHAVEOPT)
        self.sock.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        name = export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
        while True:
            magic, option, reply, length = struct.unpack(">QIII", self.exactly(20))
            assert magic == OPTION_REPLY_MAGIC and option == OPT_GO
            self.exactly(length)
            assert not reply & (1 << 31), f"GO refused: {reply:#x}"
            if reply == REP_ACK:
                break
        self.cookie = 0

    def exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            part = self.sock.recv(min(n - len(out), 1 << 20))
            assert part, "the server closed the connection"
            out += part
        return bytes(out)

    def request(
        self, command: int, offset: int, length: int, payload: bytes = b"", flags: int = 0
    ) -> int:
        self.sock.sendall(self._head(command, offset, length, flags) + payload)
        return self.cookie

    def reads(self, ranges: list[tuple[int, int]]) -> None:
        """READ requests for (offset, length) ranges, pipelined in one send."""
        self.sock.sendall(b"".join(self._head(READ, *r) for r in ranges))

    def _head(self, command: int, offset: int, length: int, flags: int = 0) -> bytes:
        self.cookie += 1
        return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, command, self.cookie, offset, length)

    def reply(self, data_bytes: int = 0) -> tuple[int, int]:
        """The next simple reply: (error, cookie); ``data_bytes`` of READ data are skipped."""
        magic, error, cookie = struct.unpack(">IIQ", self.exactly(16))
        assert magic == SIMPLE_REPLY_MAGIC
        if not error:
            for _ in range(0, data_bytes, 1 << 20):
                self.exactly(min(1 << 20, data_bytes))
        return error, cookie

    def close(self) -> None:
        self.sock.close()


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("nbd-limits"), ["--workers", "1"])
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def big_volume(limits_server: Server) -> str:
    """A 4 GiB volume: 64 MiB of random data at offset 0, the rest never written."""
    store(limits_server, "volume", "create", "big", "--size", str(VOLUME_BYTES))
    nbdsh(
        f"{limits_server.nbd}/big",
        f"""
        import os
        for at in range(0, {DATA_BYTES}, 4 << 20):
            h.pwrite(os.urandom(4 << 20), at)
        h.flush()
        """,
    )
    return "big"


def settle(pid: int, seconds: float = 1.0, deadline_s: float = 20.0) -> int:
    """Wait until the server's RSS stops moving (the requests it took are as far as they go)."""
    end = time.monotonic() + deadline_s
    last = rss(pid)
    while time.monotonic() < end:
        time.sleep(seconds)
        now = rss(pid)
        if abs(now - last) < 4 * MIB:
            return now
        last = now
    return last


# -- NBD_CMD_CACHE --------------------------------------------------------------------------------


def test_cache_over_the_maximum_block_size_is_einval(
    limits_server: Server, big_volume: str
) -> None:
    """proto.md: for NBD_CMD_CACHE "the client MUST NOT use a length larger than any advertised
    maximum block size ... The server SHOULD report an NBD_EINVAL error". A 2 GiB CACHE on the
    4 GiB volume used to read all of it into one buffer (52 MiB -> 2.1 GB RSS)."""
    pid = limits_server.process.pid
    client = RawClient(limits_server.nbd, big_volume)
    try:
        before = reset_peak(pid)
        cookie = client.request(CACHE, 0, 2 * GIB)
        answer = client.reply()
        growth = peak(pid) - before
        report(test="cache 2 GiB", rss_before=before, peak_growth=growth, reply=answer)
        assert answer == (EINVAL, cookie)
        assert growth < GROWTH_LIMIT_BYTES
        cookie = client.request(READ, 0, 4096)  # the connection goes on
        assert client.reply(4096) == (0, cookie)
    finally:
        client.close()


def test_pipelined_caches_at_the_maximum_read_ahead_in_pieces(
    limits_server: Server, big_volume: str
) -> None:
    """64 CACHEs of 32 MiB (the maximum) of written data in flight at once, 2 GiB in all: each
    reads ahead CACHE_PIECE_BYTES at a time, counted against the byte budgets like READ data
    (they used to read their whole range at once: ~100 MB peak here, from the page cache)."""
    pid = limits_server.process.pid
    before = reset_peak(pid)
    nbdsh(
        f"{limits_server.nbd}/{big_volume}",
        """
        assert h.can_cache()
        for i in range(64):
            h.aio_cache(32 << 20, i % 2 * (32 << 20))
        while h.aio_in_flight():
            h.poll(-1)
        for _ in range(64):
            h.aio_command_completed(h.aio_peek_command_completed())
        h.cache(4096, 0)
        """,
    )
    growth = peak(pid) - before
    report(test="64 x 32 MiB caches", rss_before=before, peak_growth=growth)
    assert growth < GROWTH_LIMIT_BYTES


def test_block_status_of_a_whole_volume_answers_a_bounded_part(
    limits_server: Server, big_volume: str
) -> None:
    """One BLOCK_STATUS covers at most 256 MiB; nbdinfo --map asks again and maps it all."""
    uri = f"{limits_server.nbd}/{big_volume}"
    out = nbdsh(
        uri,
        f"""
        h2 = nbd.NBD()
        h2.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h2.connect_uri({uri!r})
        seen = []
        def cb(metacontext, offset, entries, err):
            seen.extend(entries)
        h2.block_status({VOLUME_BYTES - 4096}, 0, cb)
        print(sum(seen[0::2]))
        """,
    )
    assert 0 < int(out) <= 256 * MIB
    mapped = json.loads(run("nbdinfo", "--map", "--json", uri))
    assert sum(e["length"] for e in mapped) == VOLUME_BYTES
    assert mapped[-1]["type"] & 1  # the unwritten end is a hole


# -- clients that do not read their replies, or write faster than the server does -----------------


def test_pipelined_reads_never_read_hold_a_bounded_amount(
    limits_server: Server, big_volume: str
) -> None:
    """32 READs of 32 MiB sent at once by a client that never reads a reply: the server stops
    taking requests from it at its byte budget (it used to hold all 1 GiB, 4 GiB with 128 in
    flight), serves another client meanwhile, and lets go of everything once it closes."""
    pid = limits_server.process.pid
    base_fds = open_fds(pid)
    before = reset_peak(pid)
    hostile = RawClient(limits_server.nbd, big_volume)
    closed = False
    try:
        hostile.reads([(0, 32 * MIB)] * 32)
        held = settle(pid)
        growth = peak(pid) - before
        report(test="32 x 32 MiB reads unread", rss_before=before, held=held, peak_growth=growth)
        assert growth < GROWTH_LIMIT_BYTES
        # another client is served meanwhile: its reads, writes and a flush
        started = time.monotonic()
        nbdsh(
            f"{limits_server.nbd}/{big_volume}",
            """
            h.pwrite(b"w" * 65536, 3 << 30)
            assert h.pread(65536, 3 << 30) == b"w" * 65536
            assert len(h.pread(4 << 20, 0)) == 4 << 20
            h.flush()
            """,
        )
        report(test="other client while one is stuck", seconds=time.monotonic() - started)
        hostile.close()
        closed = True
        # What must go is what the budget held (128 MiB here). About one 32 MiB read buffer's
        # worth stays mapped by the allocator after the first such round: 33.7-33.9 MB over
        # ``before`` 3 s after the close, on the thread-pool and io_uring drive paths alike.
        deadline = time.monotonic() + 20
        while open_fds(pid) > base_fds or rss(pid) > before + 48 * MIB:
            assert time.monotonic() < deadline, (open_fds(pid), base_fds, rss(pid), before)
            time.sleep(0.2)
        report(test="after the stuck client closed", rss=rss(pid), fds=open_fds(pid))
    finally:
        if not closed:
            hostile.close()


def test_pipelined_writes_faster_than_the_disk_are_paced(
    limits_server: Server, big_volume: str
) -> None:
    """8 FUA WRITEs of 32 MiB (each synced to disk on every replica before its reply) pushed as
    fast as the socket takes them: the server reads payloads only as its budget frees (TCP
    pushes back on the client), so it holds a bounded amount however far ahead the client is
    (it used to read them all in, and hold each payload twice: 2 copies x 8 x 32 MiB)."""
    pid = limits_server.process.pid
    before = reset_peak(pid)
    client = RawClient(limits_server.nbd, big_volume)
    try:
        payload = os.urandom(32 * MIB)
        sent: list[int] = []

        def push() -> None:
            for _ in range(8):
                sent.append(client.request(WRITE, 0, 32 * MIB, payload, flags=FUA))

        pusher = threading.Thread(target=push)
        pusher.start()
        pusher.join(120)
        assert not pusher.is_alive()
        replies = [client.reply() for _ in sent]
        assert sorted(replies) == [(0, cookie) for cookie in sent]
        growth = peak(pid) - before
        cookie = client.request(READ, 0, 32 * MIB)  # the payload, gathered in place, is intact
        assert client.reply() == (0, cookie)
        assert client.exactly(32 * MIB) == payload
        report(test="8 x 32 MiB FUA writes", rss_before=before, peak_growth=growth)
        assert growth < GROWTH_LIMIT_BYTES
    finally:
        client.close()


# -- the limits are the server's parameters: small ones, watched from inside ----------------------

SMALL = NbdLimits(
    max_bytes_in_flight_per_connection=4 * MIB,
    max_bytes_in_flight=6 * MIB,
    send_stall_timeout_s=2.0,
)


@asynccontextmanager
async def in_process_server(data: Path, limits: NbdLimits) -> AsyncIterator[tuple[NbdServer, str]]:
    """An NbdServer with ``limits`` in this process, serving a 256 MiB volume "v"; and its
    address. Sockets it accepts get a 64 KiB receive buffer, so TCP pushes back early."""
    async with open_local_engine(data, drives=2) as engine:
        volumes = local_volumes(engine)
        await volumes.create("v", 256 * MIB, replicas=1)
        server = NbdServer(volumes, NbdMetrics(CollectorRegistry()), Drain(), limits=limits)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        listeners[0].socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listeners)
            yield server, f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            nursery.cancel_scope.cancel()


async def test_small_limits_bound_what_is_held_and_stalled_clients_are_let_go(
    tmp_path: Path,
) -> None:
    """A 4 MiB budget per connection, 6 MiB in all, a 2 s send stall timeout: a client that
    never reads its replies holds at most 4 MiB, two hold 6 MiB between them (sampled every
    millisecond); a third waits its turn and is served once the stalled ones are let go; a
    single READ larger than every budget is served, alone."""
    async with in_process_server(tmp_path, SMALL) as (server, address):
        peaks = [0]  # the server's bytes in flight, highest so far, per phase

        async def sample() -> None:
            while True:
                peaks[-1] = max(peaks[-1], server.budget.used_bytes)
                await trio.sleep(0.001)

        async def until_held(n: int) -> None:
            with trio.fail_after(1.5):  # within the stall timeout
                while True:
                    peaks[-1] = max(peaks[-1], server.budget.used_bytes)
                    if server.budget.used_bytes == n:
                        return
                    await trio.sleep(0.01)

        def stuck_client() -> RawClient:
            client = RawClient(address, "v", receive_buffer_bytes=64 << 10)
            client.reads([(i * 2 * MIB, 2 * MIB) for i in range(64)])  # 128 MiB, never read
            return client

        def served() -> float:
            client = RawClient(address, "v")
            try:
                started = time.monotonic()
                cookie = client.request(READ, 0, 64 << 10)
                assert client.reply(64 << 10) == (0, cookie)
                waited = time.monotonic() - started
                cookie = client.request(READ, 0, 8 * MIB)  # over every budget: alone
                assert client.reply(8 * MIB) == (0, cookie)
                return waited
            finally:
                client.close()

        def closed_by_server(client: RawClient) -> None:
            client.sock.settimeout(10)
            try:
                while client.sock.recv(1 << 20):  # what was sent, then EOF
                    pass
            except ConnectionResetError:
                pass
            client.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            first = await trio.to_thread.run_sync(stuck_client)
            await until_held(4 * MIB)
            peaks.append(0)
            second = await trio.to_thread.run_sync(stuck_client)
            await until_held(6 * MIB)  # the first's 4, and what is left for the second
            peaks.append(0)
            with trio.fail_after(20):
                waited = await trio.to_thread.run_sync(served)
            for stuck in (first, second):
                await trio.to_thread.run_sync(closed_by_server, stuck)
            await trio.sleep(0.1)
            assert server.budget.used_bytes == 0 and not server.budget.waiting
            nursery.cancel_scope.cancel()
    report(test="small limits", peaks=peaks, third_waited_s=waited)
    assert peaks[0] == 4 * MIB and peaks[1] == 6 * MIB
    assert peaks[2] == 8 * MIB  # the 8 MiB READ: admitted alone, over both budgets
    assert waited > 0.5  # its turn came when the stalled clients were let go (2 s)


async def test_writes_faster_than_the_volume_are_paced_by_tcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that take 0.2 s each, 16 x 2 MiB pushed at once with a 4 MiB budget: the server
    holds at most 4 MiB of admitted payloads and reads no further, so the client's send
    blocks (it used to be read in whole at once, whatever the writes' pace)."""
    slow = OpenVolume.write

    async def slow_write(
        self: OpenVolume, offset: int, data: bytes | memoryview, **kw: bool
    ) -> None:
        await trio.sleep(0.2)
        await slow(self, offset, data, **kw)

    monkeypatch.setattr(OpenVolume, "write", slow_write)
    async with in_process_server(tmp_path, SMALL) as (server, address):
        client = await trio.to_thread.run_sync(RawClient, address, "v")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        payload = os.urandom(2 * MIB)
        pushed: list[float] = []
        highest = 0

        def push() -> None:
            for i in range(16):
                client.request(WRITE, i * 2 * MIB, 2 * MIB, payload)
            pushed.append(time.monotonic())

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, push)
            while not pushed:
                highest = max(highest, server.budget.used_bytes)
                await trio.sleep(0.001)
        replies = await trio.to_thread.run_sync(lambda: [client.reply() for _ in range(16)])
        assert sorted(replies) == [(0, cookie) for cookie in range(1, 17)]
        client.close()
    report(test="paced writes", highest=highest, push_s=pushed[0] - started)
    assert 0 < highest <= 4 * MIB
    assert pushed[0] - started > 0.8  # 16 writes, 2 at a time, 0.2 s each: ~1.4 s


def test_the_service_takes_its_limits_from_the_configuration() -> None:
    config = Config()
    config = replace(
        config,
        nbd=replace(
            config.nbd,
            max_bytes_in_flight_per_connection=2 * MIB,
            max_bytes_in_flight=8 * MIB,
            max_requests_in_flight_per_connection=3,
            send_stall_timeout_s=5.0,
            max_connections=7,
        ),
    )
    server = app._nbd_server(config, None, CollectorRegistry(), Drain())  # type: ignore[arg-type]
    assert server.limits == NbdLimits(2 * MIB, 8 * MIB, 3, 5.0, 7)
