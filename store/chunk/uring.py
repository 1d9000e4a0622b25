"""io_uring file I/O for one Trio run (the native ring, through ``store.native.Ring``).

Tasks queue operations on the ring as they ask; one submit per event-loop turn sends everything
queued in that turn (a ``run_sync_soon`` callback); completions signal an eventfd that a system
task waits on, which reaps them and wakes their tasks. No thread blocks in the kernel. A task
waiting on an operation is not cancelled out of it (the kernel holds its buffer until the
completion): a cancellation takes effect when the operation completes, as with a thread.

At most ``ENTRIES`` operations are in flight (the completion queue holds twice that, so it never
overflows and no completion is dropped). A submit that fails leaves its entries queued, their
tasks waiting and their buffers pinned: the completion task tries again every
``RESUBMIT_S`` until the kernel takes them (a task is never told an operation failed while the
kernel may still run it: its buffer, or its file descriptor's number, could be reused).

``drive_io()`` decides once per Trio run: io_uring, unless ``STORE_DRIVE_IO=threads`` or the
kernel refuses a ring (``kernel.io_uring_disabled``, seccomp, an old kernel, a build without
liburing); then None, and callers use their drive's thread pool. The choice is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import outcome
import trio

from store import native
from store.native import Buffer

log = logging.getLogger(__name__)

MODE_ENV = "STORE_DRIVE_IO"  # auto (default) | io_uring | threads
MODES = ("auto", "io_uring", "threads")
ENTRIES = 256
# Callers put reads and writes up to this size on the ring; larger ones go to the drive's threads,
# where their CRC work (~40 us a MiB) does not hold the event loop up.
RING_MAX_BYTES = 4 << 20
RESUBMIT_S = 0.01
Queue = Callable[[native.Ring, int, bool], Any]  # (ring, tag, link) -> pin, or None if full


@dataclass(slots=True)
class _Batch:
    """Operations one task waits on together (a write linked to its sync): done when all are."""

    task: Any
    results: list[int]
    pins: list[Any] = field(default_factory=list)
    remaining: int = 0


class Uring:
    def __init__(self, ring: native.Ring, eventfd: int) -> None:
        self._ring = ring
        self._eventfd = eventfd
        self._next_tag = 0
        self._waiting: dict[int, tuple[_Batch, int]] = {}  # tag -> (batch, index in it)
        self._unsubmitted = 0  # entries queued since the last submit that took them
        self._resubmit = False  # a submit failed or fell short: the completion task retries
        self._slots = trio.Semaphore(ENTRIES)  # operations in flight
        self._token = trio.lowlevel.current_trio_token()
        self.submits = 0  # io_uring_enter calls (for tests and metrics)

    @classmethod
    def open(cls) -> Uring:
        eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            uring = cls(native.Ring(ENTRIES, eventfd), eventfd)
        except OSError:
            os.close(eventfd)
            raise
        trio.lowlevel.spawn_system_task(uring._complete_forever, name="io_uring completions")
        return uring

    # -- operations -------------------------------------------------------------------------------

    async def pread(self, fd: int, buf: Buffer, offset: int) -> int:
        """Read into ``buf`` from ``offset``: the bytes read (short only at the end of file)."""
        (got,) = await self._run([_read_op(fd, buf, offset)])
        return got

    async def pwrite(self, fd: int, data: Buffer, offset: int, *, sync: bool = False) -> None:
        """Write all of ``data`` at ``offset``; with ``sync``, an fdatasync linked after it
        (issued once the write completed, in the same submission)."""
        view = memoryview(data).cast("B")
        while len(view):
            ops = [_write_op(fd, view, offset), *([_sync_op(fd)] if sync else [])]
            results = await self._run(ops, check=False)
            written = _checked(results[0])
            if written == len(view):
                if sync:
                    _checked(results[1])
                return  # written (and synced)
            # A short write breaks the link: its sync was cancelled (ECANCELED); write the rest.
            if written == 0:
                raise OSError(f"io_uring: a write at {offset} made no progress")
            view, offset = view[written:], offset + written
        if sync:
            await self.fdatasync(fd)

    async def fdatasync(self, fd: int) -> None:
        await self._run([_sync_op(fd)])

    async def _run(self, ops: Sequence[Queue], *, check: bool = True) -> list[int]:
        """Queue ``ops`` (each linked to the next), wait for all: their results (``check``:
        OSError for the first that failed; a linked operation after a failure or a short
        transfer is cancelled, ECANCELED)."""
        acquired = 0
        try:
            for _ in ops:
                await self._slots.acquire()
                acquired += 1
            # A chain must go in one submission (a link does not reach across two): make room.
            # With at most ENTRIES in flight and the queue sent each turn, one submit makes it.
            while self._ring.space() < len(ops):
                self._submit()
                if self._ring.space() < len(ops):
                    await trio.sleep(RESUBMIT_S)
        except BaseException:
            for _ in range(acquired):
                self._slots.release()
            raise
        batch = _Batch(trio.lowlevel.current_task(), [0] * len(ops))
        for index, queue in enumerate(ops):
            tag = self._next_tag
            self._next_tag += 1
            pin = queue(self._ring, tag, index + 1 < len(ops))
            assert pin is not None  # room was made above, with no checkpoint since
            batch.pins.append(pin)
            batch.remaining += 1
            self._waiting[tag] = (batch, index)
        if not self._unsubmitted and not self._resubmit:
            self._token.run_sync_soon(self._submit)
        self._unsubmitted += len(ops)
        results: list[int] = await trio.lowlevel.wait_task_rescheduled(
            lambda _: trio.lowlevel.Abort.FAILED
        )
        if check:
            for result in results:
                _checked(result)
        return results

    # -- the loop's side --------------------------------------------------------------------------

    def _submit(self) -> None:
        if not self._unsubmitted:
            return
        try:
            taken = self._ring.submit()
            self.submits += 1
        except OSError as e:  # EAGAIN, EBUSY, EINTR: the entries stay queued; try again soon
            if not self._resubmit:
                log.warning("io_uring submit failed (%s): retrying", e)
            taken = 0
        self._unsubmitted -= min(taken, self._unsubmitted)
        if self._unsubmitted and not self._resubmit:
            self._resubmit = True
            os.eventfd_write(self._eventfd, 1)  # wake the completion task: it retries
        self._resubmit = self._unsubmitted > 0

    async def _complete_forever(self) -> None:
        try:
            while True:
                if self._resubmit:
                    with trio.move_on_after(RESUBMIT_S):
                        await trio.lowlevel.wait_readable(self._eventfd)
                else:
                    await trio.lowlevel.wait_readable(self._eventfd)
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._eventfd)
                for tag, result in self._ring.reap():
                    self._complete(tag, result)
                if self._resubmit:
                    self._submit()
        finally:
            os.close(self._eventfd)

    def _complete(self, tag: int, result: int) -> None:
        # A function of its own: no frame of the loop keeps the last batch (and so its buffers'
        # pins, which block resizing them) alive while the loop waits.
        batch, index = self._waiting.pop(tag)
        batch.results[index] = result
        batch.remaining -= 1
        self._slots.release()
        if batch.remaining == 0:
            batch.pins.clear()
            trio.lowlevel.reschedule(batch.task, outcome.Value(batch.results))


def _checked(result: int) -> int:
    if result < 0:
        raise OSError(-result, f"io_uring: {os.strerror(-result)}")
    return result


def _read_op(fd: int, buf: Buffer, offset: int) -> Queue:
    return lambda ring, tag, link: ring.read(fd, buf, offset, tag, link=link)


def _write_op(fd: int, data: Buffer, offset: int) -> Queue:
    return lambda ring, tag, link: ring.write(fd, data, offset, tag, link=link)


def _sync_op(fd: int) -> Queue:
    return lambda ring, tag, link: ring.fsync(fd, tag, link=link)


_DRIVER: trio.lowlevel.RunVar[Uring | None] = trio.lowlevel.RunVar("store_drive_io")


def drive_io() -> Uring | None:
    """This Trio run's io_uring, or None: the drives' thread pools do their file I/O."""
    try:
        return _DRIVER.get()
    except LookupError:
        pass
    mode = os.environ.get(MODE_ENV, "auto") or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}={mode!r}: one of {', '.join(MODES)}")
    driver = None
    why = f"{MODE_ENV}=threads"
    if mode != "threads":
        try:
            driver = Uring.open()
        except OSError as e:
            if mode == "io_uring":
                raise
            why = f"io_uring unavailable: {e}"
    _DRIVER.set(driver)
    log.info("drive I/O: %s", "io_uring" if driver else f"thread pool ({why})")
    return driver
