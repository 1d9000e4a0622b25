"""io_uring file I/O: the native ring through store.native.Ring, and the Trio driver that batches
submissions per loop turn and wakes tasks from an eventfd. Real files, the real kernel; skipped
(saying why) where the kernel or the build has no io_uring."""

from __future__ import annotations

import errno
import os
from functools import partial
from pathlib import Path

import pytest
import trio

from store import native
from store.chunk import uring
from tests.unit.chunk.rings import skip_if_refused


def _ring_or_skip() -> tuple[native.Ring, int]:
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        return native.Ring(8, efd), efd
    except OSError as e:
        os.close(efd)
        skip_if_refused(e)
        raise


def test_ring_write_linked_sync_read_and_errors(tmp_path: Path) -> None:
    ring, efd = _ring_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        data = bytearray(os.urandom(10_000))
        pins = [ring.write(fd, data, 512, 1, link=True), ring.fsync(fd, 2)]
        assert all(pins) and ring.submit() == 2
        done: list[tuple[int, int]] = []
        while len(done) < 2:
            os.eventfd_read(efd)  # blocks until a completion signals it
            done += ring.reap()
        assert sorted(done) == [(1, 10_000), (2, 0)]
        back = bytearray(10_000)
        assert ring.read(fd, back, 512, 3) is not None and ring.submit() == 1
        while not (got := ring.reap()):
            pass
        assert got == [(3, 10_000)] and back == data
        assert ring.read(-1, back, 0, 4) is not None and ring.submit() == 1
        while not (got := ring.reap()):
            pass
        assert got == [(4, -errno.EBADF)]
        with pytest.raises(ValueError, match="writable"):
            ring.read(fd, b"read-only", 0, 5)
        queued = [ring.fsync(fd, 10 + i) for i in range(9)]
        assert queued[:8] == [True] * 8 and queued[8] is None  # full: submit, then queue again
        assert ring.submit() == 8
    finally:
        os.close(fd)
        os.close(efd)


async def test_driver_reads_writes_and_syncs(tmp_path: Path) -> None:
    io = _driver_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        data = os.urandom(1 << 20)
        await io.pwrite(fd, data, 4096, sync=True)
        assert os.pread(fd, len(data), 4096) == data
        back = bytearray(len(data) + 100)
        assert await io.pread(fd, back, 4096) == len(data)  # short at the end of the file
        assert back[: len(data)] == data
        await io.fdatasync(fd)
        with pytest.raises(OSError) as caught:
            await io.pread(-1, back, 0)
        assert caught.value.errno == errno.EBADF
    finally:
        os.close(fd)


async def test_buffers_are_let_go_once_done(tmp_path: Path) -> None:
    """A finished operation keeps no pin on its buffer: the caller may resize it at once."""
    io = _driver_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pending = bytearray(8192)
        await io.pwrite(fd, memoryview(pending)[:4096], 0, sync=True)
        del pending[:100]
        back = bytearray(4096)
        await io.pread(fd, back, 0)
        back.extend(b"more")
    finally:
        os.close(fd)


async def test_one_loop_turn_is_one_submit(tmp_path: Path) -> None:
    """Forty tasks asking in the same turn share one io_uring_enter."""
    io = _driver_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, bytes(range(256)) * 160, 0)
    results: dict[int, bytes] = {}

    async def read(i: int) -> None:
        buf = bytearray(1024)
        await io.pread(fd, buf, i * 1024)
        results[i] = bytes(buf)

    try:
        before = io.submits
        async with trio.open_nursery() as n:
            for i in range(40):
                n.start_soon(read, i)
        assert io.submits - before == 1
        assert all(results[i] == (bytes(range(256)) * 4) for i in range(40))
    finally:
        os.close(fd)


async def test_a_linked_chain_is_never_split_across_submits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write and its fdatasync go in one submission (a link does not reach across two): with
    one free entry left, the queue is sent first."""
    monkeypatch.setattr(uring, "ENTRIES", 2)
    io = _driver_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, b"a" * 4096, 0)
    back = bytearray(4096)
    try:
        before = io.submits
        async with trio.open_nursery() as n:
            n.start_soon(io.pread, fd, back, 0)  # takes one of the two entries
            n.start_soon(partial(io.pwrite, fd, b"b" * 4096, 4096, sync=True))
        assert io.submits - before == 2
        assert back == b"a" * 4096 and os.pread(fd, 4096, 4096) == b"b" * 4096
    finally:
        os.close(fd)


async def test_a_cancelled_task_waits_for_its_operation(tmp_path: Path) -> None:
    """Cancelled while its write is in flight, a task stays until the kernel is done with the
    buffer: the write finishes (and says so), the cancellation comes at the next checkpoint,
    as after a thread. Cancelled before it starts, nothing is written."""
    io = _driver_or_skip()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    finished = False
    data = os.urandom(16 << 20)
    try:
        with trio.CancelScope() as scope:

            async def cancel_once_in_flight() -> None:
                while not io._waiting:
                    await trio.lowlevel.checkpoint()
                scope.cancel()

            async with trio.open_nursery() as n:
                n.start_soon(cancel_once_in_flight)
                await io.pwrite(fd, data, 0, sync=True)
                finished = True
                await trio.lowlevel.checkpoint()
        assert finished and scope.cancelled_caught
        assert os.pread(fd, len(data), 0) == data
        with trio.CancelScope() as early:
            early.cancel()
            await io.pwrite(fd, b"late", 0)
        assert early.cancelled_caught and os.pread(fd, 4, 0) == data[:4]
    finally:
        os.close(fd)


async def test_the_thread_switch_and_bad_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(uring.MODE_ENV, "threads")
    assert uring.drive_io() is None
    assert uring.drive_io() is None  # decided once per run


async def test_a_bad_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(uring.MODE_ENV, "fast")
    with pytest.raises(ValueError, match="STORE_DRIVE_IO"):
        uring.drive_io()


def _driver_or_skip() -> uring.Uring:
    os.environ.pop(uring.MODE_ENV, None)
    try:
        return uring.Uring.open()
    except OSError as e:
        skip_if_refused(e)
        raise
