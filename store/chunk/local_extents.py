"""The extent half of a local drive: extent files under ``<root>/extents``, served through the
drive seam (store/chunk/api.py) by ``Drive``.

An open extent file holds its checksum and state tables in memory (extentfile.py), so open files
are cached per drive: at most ``open_limit``, the least recently used closed first (tables
saved). A file a call is using is never closed under it: eviction passes it by, and a release
marks it for its last user to close. There is one handle per extent at any time, so two sets of
tables never race for one file: while an extent's file is being replaced or removed
(``extent_create``, ``extent_delete``), calls on it wait, and the inline calls decline, so no
handle can open the file on its way out. Calls that may wait for the device run in the drive's
threads; a read first tries the page cache inline (RWF_NOWAIT), and ``inline_extents`` offers
that path, and small writes into the page cache, to callers that can use them without awaiting.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import trio

from store.chunk import extentfile
from store.chunk.extentfile import ExtentFile, ExtentGeometry, ExtentImage
from store.chunk.fsio import Threads, fsync_dir
from store.chunk.ids import check_extent_id
from store.chunk.uring import RING_MAX_BYTES, drive_io
from store.errors import Conflict, Corrupt, InvalidArgument

OPEN_EXTENTS = 256  # extent files kept open per drive (the gateway sizes RLIMIT_NOFILE for them)

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")


class _Handle:
    __slots__ = ("file", "users", "closing", "keep_tables", "syncing")

    def __init__(self, file: ExtentFile) -> None:
        self.file = file
        self.users = 0
        self.closing = False  # close when the last user is done
        self.keep_tables = True  # False: the file is being replaced; its tables are void
        # One io_uring sync at a time: a second that found the tables already handed to the
        # first must not fdatasync (and answer) before the first's table write has landed.
        self.syncing = trio.Lock()


class LocalExtents:
    def __init__(self, root: Path, threads: Threads, *, open_limit: int = OPEN_EXTENTS) -> None:
        self._extent_root = root / "extents"
        self._threads = threads
        self._open_limit = open_limit
        self._handles: OrderedDict[str, _Handle] = OrderedDict()
        self._replacing: dict[str, trio.Event] = {}  # files being replaced or removed
        self._fences: dict[str, int] = {}  # layer -> the highest owner token seen (fences.py)
        self._fence_lock = trio.Lock()

    @property
    def open_limit(self) -> int:
        return self._open_limit

    def extent_path(self, eid: str) -> Path:
        """Where extent ``eid``'s file lives on this drive (local only: tests and tools)."""
        check_extent_id(eid)
        return self._extent_root / eid[:2] / f"{eid}.ext"

    @functools.cached_property
    def memory_backed(self) -> bool:
        """tmpfs or ramfs: reads never wait for a device (and RWF_NOWAIT is unsupported)."""
        return extentfile.is_memory_backed(self._extent_root.parent)

    # -- handles --------------------------------------------------------------------------------

    async def _settled(self, eid: str, geometry: ExtentGeometry) -> _Handle:
        """``_acquire`` once the extent's file is not being replaced."""
        while eid in self._replacing:
            await self._replacing[eid].wait()
        return self._acquire(eid, geometry)

    def _acquire(self, eid: str, geometry: ExtentGeometry) -> _Handle:
        handle = self._handles.get(eid)
        if handle is None:
            if eid in self._replacing:
                raise BlockingIOError(errno.EAGAIN, f"extent {eid} is being replaced")
            handle = _Handle(self._open_extent(eid, geometry))
            handle.users += 1  # before evicting, which must not pick the new handle
            self._handles[eid] = handle
            self._evict()
            return handle
        if handle.file.geometry is not geometry and handle.file.geometry != geometry:
            raise InvalidArgument(f"extent {eid} has geometry {handle.file.geometry}")
        self._handles.move_to_end(eid)
        handle.closing = False
        handle.users += 1
        return handle

    def _open_extent(self, eid: str, geometry: ExtentGeometry) -> ExtentFile:
        path = self.extent_path(eid)
        try:
            return ExtentFile(path, geometry, memory_backed=self.memory_backed)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        self._evict(keep=0)  # out of descriptors: close every idle file, then try once more
        return ExtentFile(path, geometry, memory_backed=self.memory_backed)

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

    def _evict(self, keep: int | None = None) -> None:
        limit = self._open_limit if keep is None else keep
        if len(self._handles) <= limit:
            return
        for eid, handle in list(self._handles.items()):
            if len(self._handles) <= limit:
                break
            if not handle.users:
                self._close(eid, handle)

    def _drop(self, eid: str, *, save: bool) -> None:
        """Forget the handle of an extent whose file is being replaced (``save``: its tables
        go to the old file first, which stays whole if the replacement fails) or removed."""
        handle = self._handles.pop(eid, None)
        if handle is not None:
            handle.keep_tables = save
            handle.closing = True
            if not handle.users:
                self._close(eid, handle)

    @contextlib.asynccontextmanager
    async def _replacing_file(self, eid: str, *, save: bool) -> AsyncIterator[None]:
        while eid in self._replacing:
            await self._replacing[eid].wait()
        self._replacing[eid] = done = trio.Event()
        try:
            self._drop(eid, save=save)
            yield
        finally:
            del self._replacing[eid]
            done.set()

    # -- the seam -------------------------------------------------------------------------------

    # -- fencing (store/chunk/api.py): per layer, the highest owner token seen, kept on disk --

    def _fence_file(self, layer: str) -> Path:
        return self._extent_root / "fences" / layer

    def _known_fence(self, layer: str) -> int:
        found = self._fences.get(layer)
        if found is None:
            found = self._fences[layer] = read_fence(self._fence_file(layer))
        return found

    async def _fenced(self, eid: str, fence: int) -> None:
        """Refuse a change under an older owner's token; remember a newer one (durably, before
        the change it comes with)."""
        if not fence:
            return
        layer = eid.partition(".")[0]
        if fence == self._fences.get(layer):
            return
        async with self._fence_lock:
            known = await self._threads.run(self._known_fence, layer)
            if fence < known:
                raise Conflict(
                    f"extent {eid}: fenced (a newer owner, token {known}, holds its volume)"
                )
            if fence > known:
                await self._threads.run(write_fence, self._fence_file(layer), fence)
                self._fences[layer] = fence

    def _fenced_now(self, eid: str, fence: int) -> bool:
        """The inline path's check: True to go on; Conflict if fenced; False to take the async
        path (a token not yet recorded)."""
        if not fence:
            return True
        known = self._fences.get(eid.partition(".")[0])
        if known is None or fence > known:
            return False
        if fence < known:
            raise Conflict(f"extent {eid}: fenced (a newer owner, token {known}, holds its volume)")
        return True

    async def extent_create(
        self,
        eid: str,
        geometry: ExtentGeometry,
        image: ExtentImage | None = None,
        *,
        fence: int = 0,
    ) -> None:
        """A new extent file (replacing any): all holes, or ``image``; durable on return."""
        path = self.extent_path(eid)
        await self._fenced(eid, fence)

        def make() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            extentfile.create(path, geometry, image)

        async with self._replacing_file(eid, save=True):
            await self._threads.run(make)

    async def extent_read(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray:
        handle = await self._settled(eid, geometry)
        try:
            try:
                return handle.file.read(offset, length, nowait=True)
            except BlockingIOError:  # not all in the page cache
                io = drive_io()
                if io is None or length > RING_MAX_BYTES:
                    return await self._threads.run(handle.file.read, offset, length)
                data = bytearray(length)
                async with self._threads.limiter:
                    got = await io.pread(handle.file.fd, data, offset)
                return handle.file.verified(offset, data, got)
        finally:
            self._done(eid, handle)

    async def _in_thread(
        self, eid: str, geometry: ExtentGeometry, work: Callable[[ExtentFile], T]
    ) -> T:
        handle = await self._settled(eid, geometry)
        try:
            return await self._threads.run(work, handle.file)
        finally:
            self._done(eid, handle)

    async def extent_write(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer, *, fence: int = 0
    ) -> None:
        self.extent_path(eid)  # a bad id is refused before anything else
        await self._fenced(eid, fence)
        io = drive_io()
        if io is None or len(data) > RING_MAX_BYTES:
            await self._in_thread(eid, geometry, lambda f: f.write(offset, data))
            return
        handle = await self._settled(eid, geometry)
        try:
            crcs = handle.file.checksums(offset, data)
            async with self._threads.limiter:
                await io.pwrite(handle.file.fd, data, offset)
            handle.file.written(offset, crcs)
        finally:
            self._done(eid, handle)

    async def extent_zero(
        self,
        eid: str,
        geometry: ExtentGeometry,
        offset: int,
        length: int,
        *,
        punch: bool,
        fence: int = 0,
    ) -> None:
        self.extent_path(eid)
        await self._fenced(eid, fence)
        await self._in_thread(eid, geometry, lambda f: f.zero(offset, length, punch=punch))

    async def extent_sync(self, eid: str, geometry: ExtentGeometry, *, fence: int = 0) -> None:
        self.extent_path(eid)
        await self._fenced(eid, fence)
        io = drive_io()
        if io is None:
            await self._in_thread(eid, geometry, ExtentFile.sync)
            return
        handle = await self._settled(eid, geometry)
        try:
            async with handle.syncing, self._threads.limiter:
                table = handle.file.unsaved_table()
                try:  # the tables, then an fdatasync linked after them: one submission
                    if table is None:
                        await io.fdatasync(handle.file.fd)
                    else:
                        await io.pwrite(handle.file.fd, table, geometry.extent_bytes, sync=True)
                except BaseException:
                    if table is not None:
                        handle.file.table_changed()  # not saved: the next sync tries again
                    raise
        finally:
            self._done(eid, handle)

    async def extent_verify(self, eid: str, geometry: ExtentGeometry) -> None:
        await self._in_thread(eid, geometry, ExtentFile.verify)

    async def extent_image(self, eid: str, geometry: ExtentGeometry) -> ExtentImage:
        return await self._in_thread(eid, geometry, ExtentFile.image)

    async def extent_rebuild(self, eid: str, geometry: ExtentGeometry, *, fence: int = 0) -> int:
        self.extent_path(eid)
        await self._fenced(eid, fence)
        return await self._in_thread(eid, geometry, ExtentFile.rebuild_table)

    async def extent_states(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytes:
        handle = await self._settled(eid, geometry)  # the tables are in memory: no thread
        try:
            return handle.file.states(offset, length)
        finally:
            self._done(eid, handle)

    async def extent_delete(self, eid: str) -> bool:
        """Remove an extent's file; False if it was not there. Not synced: the caller removes
        the extent's key after, and a file a crash left behind names no key (garbage)."""
        path = self.extent_path(eid)
        async with self._replacing_file(eid, save=False):
            return await self._threads.run(_unlink, path)

    async def extent_release(self, prefix: str = "", *, save: bool = True) -> None:
        """Close the open extent files whose ids start with ``prefix``, once their calls in
        progress finish: a volume closing, so another process may open it. ``save`` false: the
        tables in memory are dropped, not written (the volume's lease was lost, and a new owner
        may have written the files since)."""
        for eid, handle in list(self._handles.items()):
            if eid.startswith(prefix):
                handle.closing = True
                handle.keep_tables = handle.keep_tables and save
                if not handle.users:
                    self._close(eid, handle)

    def inline_extents(self) -> LocalExtents:
        return self

    # -- inline (the InlineExtents capability) ----------------------------------------------------

    def read_now(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray | None:
        try:
            handle = self._acquire(eid, geometry)
        except BlockingIOError:
            return None
        try:
            return handle.file.read(offset, length, nowait=True)
        except BlockingIOError:
            return None
        finally:
            self._done(eid, handle)

    def write_now(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer, *, fence: int = 0
    ) -> bool:
        if not self._fenced_now(eid, fence):
            return False
        try:
            handle = self._acquire(eid, geometry)
        except BlockingIOError:
            return False
        try:
            handle.file.write(offset, data)
        finally:
            self._done(eid, handle)
        return True


def read_fence(path: Path) -> int:
    """A layer's recorded owner token (0 if none)."""
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        raise Corrupt(f"fence file {path} is not a number") from None


def write_fence(path: Path, fence: int) -> None:
    """Record an owner token durably: a new file renamed over the old, both synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.new")
    with open(tmp, "w") as f:
        f.write(f"{fence}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
