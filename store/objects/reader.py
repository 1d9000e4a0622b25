"""Reading an object: range resolution, decompression, and read-ahead with bounded memory.

``ObjectReader`` is an async context manager that owns a nursery: a producer task reads the
object window by window (about 1 MiB per shard each) into a channel of capacity one, so the next
window is read while the caller sends the current one, and at most three windows are in memory.
The first window is fetched on entry, so a missing key, an unsatisfiable range or an unreadable
stripe raises before the caller has sent anything.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import trio
import zstandard

from store.chunk.chunkstore import ChunkStore
from store.errors import InvalidArgument, OutOfRange, StoreError, collapse_single_group
from store.objects import records as R
from store.objects.common import EngineStats, chunk_spans
from store.objects.records import Version


class ObjectSource(Protocol):
    """What a reader needs of the object engine (``ObjectEngine``)."""

    chunks: ChunkStore
    stats: EngineStats

    async def head_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> Version: ...

    async def read_stored(
        self, version: Version, offset: int, length: int, data_key: bytes | None = None
    ) -> list[Any]: ...


Job = Callable[[], Awaitable[list[Any]]]
ENCRYPTED_WINDOW = 4 << 20  # plaintext bytes per read (and decryption) of an encrypted object


class ObjectReader:
    version: Version
    offset: int
    length: int

    def __init__(
        self,
        engine: ObjectSource,
        bucket: str,
        key: str,
        version_id: str | None,
        byte_range: tuple[int | None, int | None] | None,
        part_number: int | None,
        version: Version | None,
        deferred: bool = False,
        data_key: bytes | None = None,
    ) -> None:
        self._engine = engine
        self._key = data_key
        self._deferred = deferred
        self._rest: list[Job] = []
        self._args = (bucket, key, version_id)
        self._range = byte_range
        self._part = part_number
        self._given = version
        self._cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._receive: trio.MemoryReceiveChannel[Any] | None = None
        self._first: Any = None

    async def __aenter__(self) -> ObjectReader:
        bucket, key, version_id = self._args
        version = self._given or await self._engine.head_object(bucket, key, version_id)
        self.version = version
        self.offset, self.length = self._resolve(version)
        self._engine.stats.gets += 1
        self._engine.stats.bytes_out += self.length
        jobs = self._plan()
        # The first window is read here, before the caller sends anything; only objects with
        # more windows pay for a read-ahead task.
        self._first = await jobs[0]() if jobs else []
        self._rest = jobs[1:]
        if len(jobs) > 1 and not self._deferred:
            send, self._receive = trio.open_memory_channel[Any](1)
            self._cm = trio.open_nursery()
            self._nursery = await self._cm.__aenter__()
            self._nursery.start_soon(self._produce, send, jobs[1:])
        return self

    def resolve(self, version: Version) -> None:
        """Set ``version``, ``offset`` and ``length`` without reading (HEAD); OutOfRange for a
        range or part the version does not have."""
        self.version = version
        self.offset, self.length = self._resolve(version)

    async def start(self) -> ObjectReader:
        """Read the first window (a ``deferred`` reader, whose bytes ``send_to`` sends from the
        response writer's own frame); raises what ``async with`` would."""
        return await self.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        if self._nursery is None or self._receive is None:
            return
        self._nursery.cancel_scope.cancel()  # stop reading ahead: the caller is done
        self._receive.close()
        await self._cm.__aexit__(None, None, None)

    def _resolve(self, version: Version) -> tuple[int, int]:
        if self._part is not None:
            if self._range is not None:
                raise InvalidArgument("a request cannot name both a part and a range")
            sizes = [p.size for p in version.parts] or [version.size]
            if not 1 <= self._part <= len(sizes):
                raise OutOfRange(f"part {self._part} of an object with {len(sizes)} parts")
            start = sum(sizes[: self._part - 1])
            return start, sizes[self._part - 1]
        if self._range is None:
            return 0, version.size
        return R.resolve_range(*self._range, version.size)

    async def _produce(self, send: trio.MemorySendChannel[Any], jobs: list[Job]) -> None:
        async with send:
            try:
                for job in jobs:
                    await send.send(await job())
                await send.send(None)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except StoreError as e:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(e)

    def _plan(self) -> list[Job]:
        """One job per window of the range, in order; each returns a list of buffers."""
        v = self.version
        if self.length == 0:
            return []
        if v.compression:
            return self._frame_jobs()
        if v.encryption is not None:
            read = self._engine.read_stored
            return [
                functools.partial(
                    read, v, at, min(ENCRYPTED_WINDOW, self.offset + self.length - at), self._key
                )
                for at in range(self.offset, self.offset + self.length, ENCRYPTED_WINDOW)
            ]
        if v.inline is not None:
            piece = memoryview(v.inline)[self.offset : self.offset + self.length]

            async def inline() -> list[Any]:
                return [piece]

            return [inline]
        store = self._engine.chunks
        return [
            functools.partial(store.read, ref, w_off, w_len)
            for ref, off, n in chunk_spans(v.chunks, self.offset, self.length)
            for w_off, w_len in store.windows(ref, off, n)
        ]

    def _frame_jobs(self) -> list[Job]:
        """Decompress only the frames covering the range, in groups of about 8 MiB raw."""
        v = self.version
        first = self.offset // v.frame_bytes
        last = (self.offset + self.length - 1) // v.frame_bytes
        group = max(1, (8 << 20) // v.frame_bytes)
        return [
            functools.partial(self._frames, g, min(last, g + group - 1))
            for g in range(first, last + 1, group)
        ]

    async def _frames(self, g: int, g_end: int) -> list[Any]:
        v = self.version
        starts = [0, *itertools.accumulate(v.frames)]
        raw = await self._engine.read_stored(v, starts[g], starts[g_end + 1] - starts[g], self._key)
        blob = b"".join(bytes(p) for p in raw)
        ctx = zstandard.ZstdDecompressor()
        out = []
        for f in range(g, g_end + 1):
            frame = blob[starts[f] - starts[g] : starts[f + 1] - starts[g]]
            data = await trio.to_thread.run_sync(ctx.decompress, frame)
            lo = max(self.offset, f * v.frame_bytes) - f * v.frame_bytes
            hi = min(self.offset + self.length, (f + 1) * v.frame_bytes) - f * v.frame_bytes
            out.append(memoryview(data)[lo:hi])
        return out

    async def send_to(self, send: Callable[[Any], Awaitable[None]]) -> None:
        """Pass every piece to ``send``, reading one window ahead in a nursery of this call's
        own (for readers opened with ``deferred=True``, whose entry and exit are in different
        frames, as a server's handler and its response writer are)."""
        for piece in self._first:
            await send(piece)
        self._first = []
        if not self._rest:
            return
        to_sender, from_reader = trio.open_memory_channel[Any](1)
        with collapse_single_group():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._produce, to_sender, self._rest)
                async with from_reader:
                    while (item := await from_reader.receive()) is not None:
                        if isinstance(item, BaseException):
                            raise item
                        for piece in item:
                            await send(piece)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        item, self._first = self._first, None
        for piece in item:
            yield piece
        if self._receive is None:
            return
        while (item := await self._receive.receive()) is not None:
            if isinstance(item, BaseException):
                raise item
            for piece in item:
                yield piece
