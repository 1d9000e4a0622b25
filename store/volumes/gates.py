"""Who may write an open volume when: writes pause for a live snapshot (``WriteGate``), and
wait while a repair has their extent to itself (``ExtentGuard``).

WriteGate: a write call enters through ``call()``, which waits while the gate is paused and
counts the call; ``paused()`` closes the gate and waits for the calls inside to leave, so the
volume can be flushed and switched to a new layer with no write half done.

ExtentGuard: a write to an extent runs inside ``writing(index)``, after ``wait(index)``; a repair
takes ``exclusive(index)``: new writes wait, the ones in progress finish first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio

from store.errors import Conflict


class WriteGate:
    def __init__(self) -> None:
        self._calls = 0
        self._paused: trio.Event | None = None  # set (and dropped) when writes may go on
        self._calls_gone: trio.Event | None = None

    @property
    def is_paused(self) -> bool:
        return self._paused is not None

    async def wait_open(self) -> None:
        while self._paused is not None:
            await self._paused.wait()

    @contextmanager
    def call(self) -> Iterator[None]:
        """Counts a write call; enter it only after ``wait_open`` (no await in between)."""
        self._calls += 1
        try:
            yield
        finally:
            self._calls -= 1
            if not self._calls and self._calls_gone is not None:
                self._calls_gone.set()

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No write call runs inside: new ones wait, those in progress finish first."""
        if self._paused is not None:
            raise Conflict("a snapshot is already being taken")
        self._paused = paused = trio.Event()
        try:
            if self._calls:
                self._calls_gone = trio.Event()
                await self._calls_gone.wait()
            yield
        finally:
            self._calls_gone = None
            self._paused = None
            paused.set()


class ExtentGuard:
    def __init__(self) -> None:
        self._busy: Counter[int] = Counter()  # writes in progress per extent
        self._busy_gone: dict[int, trio.Event] = {}  # a repair waits for writes to finish
        self._exclusive: dict[int, trio.Event] = {}  # writes to these extents wait

    def busy(self, index: int) -> bool:
        return bool(self._busy[index])

    def held(self, index: int) -> bool:
        """Whether a repair has the extent (a write must ``wait`` first)."""
        return index in self._exclusive

    async def wait(self, index: int) -> None:
        while index in self._exclusive:
            await self._exclusive[index].wait()

    @contextmanager
    def writing(self, index: int) -> Iterator[None]:
        self._busy[index] += 1
        try:
            yield
        finally:
            self._busy[index] -= 1
            if not self._busy[index]:
                del self._busy[index]
                if index in self._busy_gone:
                    self._busy_gone.pop(index).set()

    @asynccontextmanager
    async def exclusive(self, index: int) -> AsyncIterator[None]:
        await self.wait(index)
        self._exclusive[index] = done = trio.Event()
        try:
            if self._busy[index]:
                self._busy_gone[index] = gone = trio.Event()
                await gone.wait()
            yield
        finally:
            del self._exclusive[index]
            done.set()
