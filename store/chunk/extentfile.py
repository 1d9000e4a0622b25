"""Extent files: one replica of a volume extent on a drive, overwritten in place.

Layout of ``<extent id>.ext`` (one file, so one fsync makes data and checksums durable together):

    [0, E)                 the extent's data, E = extent bytes; sparse: unwritten blocks are holes
    [E, E + 4n)            CRC32C of each of the n blocks, little-endian u32
    [E + 4n, E + 5n)       each block's state: HOLE (reads as zeros), DATA, or ZERO (allocated,
                           zeros written)
    [E + 5n, E + 5n + 32)  footer: b"STEXT001", u64 E, u32 block bytes, u32 n, u32 reserved,
                           u32 CRC32C of the footer's first 28 bytes

A hole's CRC is the CRC of a zero block, so one verification call covers every block a read
touches, holes included. Writes are whole blocks. An open ExtentFile holds the tables in
memory: a write puts its data in the file and its CRCs and states in memory; the tables go to
the file on ``sync`` (before the fdatasync), ``close`` and ``verify``. So a 4 KiB write costs
one pwrite, not two or three. After a crash the tables on disk may not match the data; the
volume layer records which extents may be dirty before writing them and rebuilds their tables
on recovery (``rebuild_table``), so no block ever fails its checksum after a crash. Nothing here
does I/O asynchronously: methods are plain syscalls, called from a worker thread, or inline with
``nowait`` (RWF_NOWAIT: served from the page cache, else BlockingIOError).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from store.chunk.fsio import fsync_dir
from store.errors import Corrupt, InvalidArgument, NotFound
from store.native import crc32c, crc32c_blocks, crc32c_verify_blocks

MAGIC = b"STEXT001"
FOOTER = struct.Struct("<8sQIII")  # + u32 crc
FOOTER_BYTES = FOOTER.size + 4
HOLE, DATA, ZERO = 0, 1, 2

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


@functools.cache
def zero_crc(block_bytes: int) -> int:
    return crc32c(bytes(block_bytes))


@dataclass(frozen=True, slots=True)
class ExtentGeometry:
    extent_bytes: int
    block_bytes: int

    @property
    def blocks(self) -> int:
        return self.extent_bytes // self.block_bytes

    @property
    def file_bytes(self) -> int:
        return self.extent_bytes + 5 * self.blocks + FOOTER_BYTES

    def check_range(self, offset: int, length: int) -> None:
        if offset % self.block_bytes or length % self.block_bytes:
            raise InvalidArgument(f"{offset}+{length} is not aligned to {self.block_bytes}")
        if offset < 0 or length < 0 or offset + length > self.extent_bytes:
            raise InvalidArgument(f"{offset}+{length} is outside the extent")


@dataclass(frozen=True, slots=True)
class ExtentImage:
    """A whole extent as one replica held it, every block verified: the source of a
    copy-on-write or of a repair. ``data`` is the full extent (holes read as zeros); ``crcs``
    and ``states`` are its tables (4 and 1 bytes per block)."""

    crcs: bytes
    states: bytes
    data: bytes | bytearray


def footer(geometry: ExtentGeometry) -> bytes:
    head = FOOTER.pack(MAGIC, geometry.extent_bytes, geometry.block_bytes, geometry.blocks, 0)
    return head + struct.pack("<I", crc32c(head))


def create(path: Path, geometry: ExtentGeometry, image: ExtentImage | None = None) -> None:
    """Make an extent file at ``path`` (replacing any): all holes, or ``image``'s data and
    tables (copy-on-write, repair); durable (file and directory synced) before returning. A
    failure leaves the old file as it was and no temporary file behind."""
    if geometry.extent_bytes % geometry.block_bytes:
        raise InvalidArgument("the extent size must be a multiple of the block size")
    if image is not None:
        sizes = (len(image.data), len(image.crcs), len(image.states))
        if sizes != (geometry.extent_bytes, 4 * geometry.blocks, geometry.blocks):
            raise InvalidArgument("the extent image does not match the geometry")
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.ftruncate(fd, geometry.file_bytes)
            if image is not None:
                _copy_data(image, fd, geometry)
                table = bytes(image.crcs) + bytes(image.states)
            else:
                table = struct.pack(
                    f"<{geometry.blocks}I", *[zero_crc(geometry.block_bytes)] * geometry.blocks
                )
                table += bytes(geometry.blocks)
            _pwrite_all(fd, table + footer(geometry), geometry.extent_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _copy_data(image: ExtentImage, fd: int, geometry: ExtentGeometry) -> None:
    """Copy only the allocated blocks (holes stay holes)."""
    states = image.states
    data = memoryview(image.data)
    block = geometry.block_bytes
    index = 0
    while index < geometry.blocks:
        if states[index] == HOLE:
            index += 1
            continue
        end = index
        while end < geometry.blocks and states[end] != HOLE and end - index < 256:
            end += 1
        _pwrite_all(fd, data[index * block : end * block], index * block)
        index = end


class ExtentFile:
    """An open extent file. Offsets and lengths are within the extent, block-aligned."""

    def __init__(
        self, path: Path, geometry: ExtentGeometry, *, memory_backed: bool = False
    ) -> None:
        self.path = path
        self.geometry = geometry
        # tmpfs has no RWF_NOWAIT, and needs none: its reads never wait for a device.
        self._read_flags = 0 if memory_backed else os.RWF_NOWAIT
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"extent file {path.name} is missing") from None
        try:
            self._check_footer()
            # The CRC and state tables, kept in memory (5 bytes per block): a read then takes
            # one syscall, a write that leaves the states as they were (overwriting data) skips
            # a pwrite, and status needs no read. One writer per volume (its lease) means
            # nobody else changes them meanwhile; ``verify`` checks what the disk holds.
            self._crcs, self._states = self._read_tables()
            self._table_dirty = False  # the tables in memory differ from the file's
        except BaseException:
            os.close(self.fd)
            raise

    def _read_tables(self) -> tuple[bytearray, bytearray]:
        g = self.geometry
        raw = os.pread(self.fd, 5 * g.blocks, g.extent_bytes)
        if len(raw) != 5 * g.blocks:
            raise Corrupt(f"extent file {self.path.name} is truncated")
        return bytearray(raw[: 4 * g.blocks]), bytearray(raw[4 * g.blocks :])

    def _check_footer(self) -> None:
        g = self.geometry
        raw = os.pread(self.fd, FOOTER_BYTES, g.extent_bytes + 5 * g.blocks)
        if len(raw) != FOOTER_BYTES or raw != footer(g):
            raise Corrupt(f"extent file {self.path.name}: bad footer or geometry")

    def discard(self) -> None:
        """Close without saving the tables (the file was replaced or removed)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.save_table()
            except OSError:
                pass  # a failing drive: the extent is dirty, recovery rebuilds its table
            finally:
                os.close(self.fd)
                self.fd = -1

    # -- reads ----------------------------------------------------------------------------------

    def read(self, offset: int, length: int, *, nowait: bool = False) -> bytearray:
        """The bytes (a new buffer, the caller's), every block verified (Corrupt names the
        first bad one). With ``nowait``, BlockingIOError unless the page cache holds them all."""
        g = self.geometry
        g.check_range(offset, length)
        data = bytearray(length)
        flags = self._read_flags if nowait else 0
        try:
            got = os.preadv(self.fd, [data], offset, flags)
        except OSError as e:
            if e.errno != errno.EOPNOTSUPP or not flags:
                raise
            raise BlockingIOError(
                errno.EAGAIN, "this file system cannot read without waiting"
            ) from None

        if got != length and nowait:  # RWF_NOWAIT may return a short read: take the slow path
            raise BlockingIOError(errno.EAGAIN, "partly cached")
        return self.verified(offset, data, got)

    def verified(self, offset: int, data: bytearray, got: int) -> bytearray:
        """``data``, read from ``offset`` (``got`` bytes of it), once every block matches its
        CRC: Corrupt names the first that does not. For reads done elsewhere (io_uring)."""
        g = self.geometry
        first, count = offset // g.block_bytes, len(data) // g.block_bytes
        if got != len(data):
            raise Corrupt(f"extent file {self.path.name} is truncated")
        crcs = memoryview(self._crcs)[4 * first : 4 * (first + count)]
        bad = crc32c_verify_blocks(data, g.block_bytes, crcs)
        if bad >= 0:
            raise Corrupt(f"extent file {self.path.name}: block {first + bad} fails its CRC")
        return data

    def verify(self) -> None:
        """Check the whole extent as the disk holds it: the tables read afresh (they must match
        the ones in memory) and every block against its CRC. Corrupt if anything is off."""
        self.image()

    def image(self) -> ExtentImage:
        """The whole extent, checked as ``verify`` checks it."""
        self.save_table()
        crcs, states = self._read_tables()
        if crcs != self._crcs or states != self._states:
            raise Corrupt(f"extent file {self.path.name}: its checksum table changed on disk")
        data = self.read(0, self.geometry.extent_bytes)
        return ExtentImage(bytes(crcs), bytes(states), data)

    def states(self, offset: int, length: int) -> bytes:
        """HOLE/DATA/ZERO of each block of the range."""
        g = self.geometry
        g.check_range(offset, length)
        first, count = offset // g.block_bytes, length // g.block_bytes
        return bytes(self._states[first : first + count])

    # -- writes ---------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        crcs = self.checksums(offset, data)
        _pwrite_all(self.fd, data, offset)
        self.written(offset, crcs)

    def checksums(self, offset: int, data: bytes | bytearray | memoryview) -> bytes:
        """The CRC table entries of a write of ``data`` at ``offset`` (range checked)."""
        self.geometry.check_range(offset, len(data))
        return crc32c_blocks(data, self.geometry.block_bytes)

    def written(self, offset: int, crcs: bytes) -> None:
        """Record a write (its ``checksums``) once its data is in the file."""
        count = len(crcs) // 4
        self._set_table(offset // self.geometry.block_bytes, crcs, bytes([DATA]) * count)

    def zero(self, offset: int, length: int, *, punch: bool) -> None:
        """Make the range read as zeros: punch holes (HOLE) or, with ``punch`` false or where the
        file system cannot punch, write zeros (ZERO: the space stays allocated)."""
        g = self.geometry
        g.check_range(offset, length)
        count = length // g.block_bytes
        state = HOLE
        if not (punch and _punch_hole(self.fd, offset, length)):
            state = ZERO
            for at in range(offset, offset + length, 1 << 20):
                _pwrite_all(self.fd, bytes(min(1 << 20, offset + length - at)), at)
        crcs = struct.pack("<I", zero_crc(g.block_bytes)) * count
        self._set_table(offset // g.block_bytes, crcs, bytes([state]) * count)

    def _set_table(self, first: int, crcs: bytes, states: bytes) -> None:
        self._crcs[4 * first : 4 * first + len(crcs)] = crcs
        self._states[first : first + len(states)] = states
        self._table_dirty = True  # after the update: a concurrent save_table misses nothing

    def save_table(self) -> None:
        """Write the tables held in memory to the file (no fsync)."""
        table = self.unsaved_table()
        if table is not None:
            _pwrite_all(self.fd, table, self.geometry.extent_bytes)

    def table_changed(self) -> None:
        """The tables must be saved again (a save handed out by ``unsaved_table`` failed)."""
        self._table_dirty = True

    def unsaved_table(self) -> bytes | None:
        """The tables to write at ``geometry.extent_bytes`` if they changed since the last
        save, else None; from now on they count as saved (a later change is saved next time)."""
        if not self._table_dirty:
            return None
        self._table_dirty = False  # first: an update racing with this is saved next time
        return bytes(self._crcs) + bytes(self._states)

    def sync(self) -> None:
        self.save_table()
        os.fdatasync(self.fd)

    def rebuild_table(self) -> int:
        """After a crash: recompute every allocated block's CRC from its data (a block whose
        table update was lost gets the CRC of what it holds). Returns the blocks fixed."""
        g = self.geometry
        block = g.block_bytes
        states, crcs = bytearray(self._states), bytearray(self._crcs)  # as opened (+ writes)
        fixed = 0
        for index in range(g.blocks):
            data = os.pread(self.fd, block, index * block)
            crc = crc32c(data)
            if states[index] == HOLE and any(data):
                states[index] = DATA  # written, its state update lost
            if struct.unpack_from("<I", crcs, 4 * index)[0] != crc:
                struct.pack_into("<I", crcs, 4 * index, crc)
                fixed += 1
        self._set_table(0, bytes(crcs), bytes(states))
        self.save_table()
        os.fsync(self.fd)
        return fixed


def is_memory_backed(path: Path) -> bool:
    """Whether ``path`` lives on tmpfs or ramfs (from /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mount = fields[4].replace("\\040", " ")
                kind = fields[fields.index("-") + 1]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, fstype = mount, kind
    except (OSError, ValueError, IndexError):
        return False
    return fstype in ("tmpfs", "ramfs")


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a range (it then reads as zeros); False where the file system cannot."""
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))
