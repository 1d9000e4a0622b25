"""The extent half of a local drive: extent files under ``<root>/extents``, served through the
drive seam (store/chunk/api.py) by ``Drive``.

An open extent file holds its checksum and state tables in memory (extentfile.py), so open files
are cached per drive: at most ``open_limit``, the least recently used closed first (tables
saved). A file a call is using is never closed under it: eviction passes it by, and a release
marks it for its last user to close. There is one handle per extent at any time, so two sets of
tables never race for one file. Calls that may wait for the device run in the drive's threads;
a read first tries the page cache inline (RWF_NOWAIT), and ``inline_extents`` offers that path,
and small writes into the page cache, to callers that can use them without awaiting.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from store.chunk import extentfile
from store.chunk.extentfile import ExtentFile, ExtentGeometry, ExtentImage
from store.chunk.fsio import Threads, remove_durably
from store.chunk.ids import check_extent_id
from store.errors import InvalidArgument

OPEN_EXTENTS = 1024  # extent files kept open per drive

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")


class _Handle:
    __slots__ = ("file", "users", "closing", "keep_tables")

    def __init__(self, file: ExtentFile) -> None:
        self.file = file
        self.users = 0
        self.closing = False  # close when the last user is done
        self.keep_tables = True  # False: the file is being replaced; its tables are void


class LocalExtents:
    def __init__(self, root: Path, threads: Threads, *, open_limit: int = OPEN_EXTENTS) -> None:
        self._extent_root = root / "extents"
        self._threads = threads
        self._open_limit = open_limit
        self._handles: OrderedDict[str, _Handle] = OrderedDict()

    def extent_path(self, eid: str) -> Path:
        """Where extent ``eid``'s file lives on this drive (local only: tests and tools)."""
        check_extent_id(eid)
        return self._extent_root / eid[:2] / f"{eid}.ext"

    @functools.cached_property
    def memory_backed(self) -> bool:
        """tmpfs or ramfs: reads never wait for a device (and RWF_NOWAIT is unsupported)."""
        return extentfile.is_memory_backed(self._extent_root.parent)

    # -- handles --------------------------------------------------------------------------------

    def _acquire(self, eid: str, geometry: ExtentGeometry) -> _Handle:
        handle = self._handles.get(eid)
        if handle is None:
            opened = ExtentFile(self.extent_path(eid), geometry, memory_backed=self.memory_backed)
            handle = self._handles[eid] = _Handle(opened)
            self._evict()
        else:
            if handle.file.geometry is not geometry and handle.file.geometry != geometry:
                raise InvalidArgument(f"extent {eid} has geometry {handle.file.geometry}")
            self._handles.move_to_end(eid)
            handle.closing = False
        handle.users += 1
        return handle

    def _done(self, eid: str, handle: _Handle) -> None:
        handle.users -= 1
        if handle.closing and not handle.users:
            self._close(eid, handle)

    def _close(self, eid: str, handle: _Handle) -> None:
        if self._handles.get(eid) is handle:
            del self._handles[eid]
        if handle.keep_tables:
            handle.file.close()
        else:
            handle.file.discard()

    def _evict(self) -> None:
        if len(self._handles) <= self._open_limit:
            return
        for eid, handle in list(self._handles.items()):
            if len(self._handles) <= self._open_limit:
                break
            if not handle.users:
                self._close(eid, handle)

    def _drop(self, eid: str) -> None:
        """Forget the handle of an extent whose file is being replaced or removed."""
        handle = self._handles.pop(eid, None)
        if handle is not None:
            handle.keep_tables = False
            handle.closing = True
            if not handle.users:
                handle.file.discard()

    # -- the seam -------------------------------------------------------------------------------

    async def extent_create(
        self, eid: str, geometry: ExtentGeometry, image: ExtentImage | None = None
    ) -> None:
        """A new extent file (replacing any): all holes, or ``image``; durable on return."""
        path = self.extent_path(eid)
        self._drop(eid)

        def make() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            extentfile.create(path, geometry, image)

        await self._threads.run(make)

    async def extent_read(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray:
        handle = self._acquire(eid, geometry)
        try:
            try:
                return handle.file.read(offset, length, nowait=True)
            except BlockingIOError:
                return await self._threads.run(handle.file.read, offset, length)
        finally:
            self._done(eid, handle)

    async def _in_thread(
        self, eid: str, geometry: ExtentGeometry, work: Callable[[ExtentFile], T]
    ) -> T:
        handle = self._acquire(eid, geometry)
        try:
            return await self._threads.run(work, handle.file)
        finally:
            self._done(eid, handle)

    async def extent_write(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer
    ) -> None:
        await self._in_thread(eid, geometry, lambda f: f.write(offset, data))

    async def extent_zero(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int, *, punch: bool
    ) -> None:
        await self._in_thread(eid, geometry, lambda f: f.zero(offset, length, punch=punch))

    async def extent_sync(self, eid: str, geometry: ExtentGeometry) -> None:
        await self._in_thread(eid, geometry, ExtentFile.sync)

    async def extent_verify(self, eid: str, geometry: ExtentGeometry) -> None:
        await self._in_thread(eid, geometry, ExtentFile.verify)

    async def extent_image(self, eid: str, geometry: ExtentGeometry) -> ExtentImage:
        return await self._in_thread(eid, geometry, ExtentFile.image)

    async def extent_rebuild(self, eid: str, geometry: ExtentGeometry) -> int:
        return await self._in_thread(eid, geometry, ExtentFile.rebuild_table)

    async def extent_states(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytes:
        handle = self._acquire(eid, geometry)  # the tables are in memory: no thread needed
        try:
            return handle.file.states(offset, length)
        finally:
            self._done(eid, handle)

    async def extent_delete(self, eid: str) -> bool:
        """Remove an extent's file; False if it was not there. Durable when this returns."""
        path = self.extent_path(eid)
        self._drop(eid)
        return await self._threads.run(remove_durably, path)

    async def extent_release(self, prefix: str = "") -> None:
        """Close the open extent files whose ids start with ``prefix`` (tables saved), once
        their calls in progress finish: a volume closing, so another process may open it."""
        for eid, handle in list(self._handles.items()):
            if eid.startswith(prefix):
                handle.closing = True
                if not handle.users:
                    self._close(eid, handle)

    def inline_extents(self) -> LocalExtents:
        return self

    # -- inline (the InlineExtents capability) ----------------------------------------------------

    def read_now(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray | None:
        handle = self._acquire(eid, geometry)
        try:
            return handle.file.read(offset, length, nowait=True)
        except BlockingIOError:
            return None
        finally:
            self._done(eid, handle)

    def write_now(self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer) -> None:
        handle = self._acquire(eid, geometry)
        try:
            handle.file.write(offset, data)
        finally:
            self._done(eid, handle)
