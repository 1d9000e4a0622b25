"""The native library: Reed-Solomon erasure coding over GF(2^8) and CRC32C.

This is the only module that imports the compiled cffi module (``store._native``, built from
``native/`` by ``pip install``). Every size, count and buffer is checked here before a call, so a
wrong call raises ValueError and can never reach C with a bad pointer or length. Buffers pass
zero-copy: anything exporting a C-contiguous buffer (bytes, bytearray, memoryview, numpy arrays,
mmap) works, at any alignment. cffi releases the GIL during calls, so large stripes can run in
worker threads beside the event loop.

The code is systematic (data shards are stored as they are) and uses ISA-L's Cauchy matrix, so any
k of the k + m shards rebuild the others and parity is bit-identical to ISA-L's.
"""

from __future__ import annotations

import array
import errno
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from store import _native  # type: ignore[attr-defined]
from store.errors import TooFewShards

ffi = _native.ffi
lib = _native.lib

MAX_SHARDS: int = lib.STORE_EC_MAX_SHARDS
ISAS: tuple[str, ...] = tuple(
    ffi.string(lib.store_isa_name(i)).decode() for i in range(lib.STORE_ISA_COUNT)
)
CRC_KERNELS: tuple[str, ...] = tuple(
    ffi.string(lib.store_crc_name(i)).decode() for i in range(lib.STORE_CRC_COUNT)
)

Buffer = Any  # anything with the buffer protocol (typing.Buffer needs Python 3.12)

_NULL = ffi.NULL
_from_buffer = ffi.from_buffer


class NativeConfigError(RuntimeError):
    """STORE_NATIVE_ISA names a kernel that is unknown or that this CPU cannot run."""


def supported_isas() -> list[str]:
    """The erasure-coding kernels this CPU can run, in id order (``active_isa`` is the one
    preferred: docs/native.md)."""
    return [name for i, name in enumerate(ISAS) if lib.store_isa_supported(i)]


def supported_crc_kernels() -> list[str]:
    """The CRC32C kernels this CPU can run, in id order (``active_crc_kernel`` is the one
    preferred)."""
    return [name for i, name in enumerate(CRC_KERNELS) if lib.store_crc_supported(i)]


def active_isa() -> str:
    """The kernel codecs use by default: the best this CPU runs, or STORE_NATIVE_ISA's choice."""
    isa = lib.store_isa_default()
    if isa < 0:
        forced = os.environ.get("STORE_NATIVE_ISA", "")
        why = "is not a kernel" if forced not in ISAS else "is not supported by this CPU"
        raise NativeConfigError(
            f"STORE_NATIVE_ISA={forced!r} {why}; this CPU supports: {', '.join(supported_isas())}"
        )
    return ISAS[isa]


def active_crc_kernel() -> str:
    """The CRC32C kernel crc32c() uses."""
    active_isa()  # a bad STORE_NATIVE_ISA is an error here too
    return CRC_KERNELS[lib.store_crc_default()]


def _isa_id(isa: str | None) -> int:
    if isa is None:
        return ISAS.index(active_isa())
    if isa not in ISAS:
        raise ValueError(f"unknown kernel {isa!r}; kernels are {', '.join(ISAS)}")
    if not lib.store_isa_supported(ISAS.index(isa)):
        raise ValueError(f"kernel {isa!r} is not supported by this CPU")
    return ISAS.index(isa)


def _view(buf: Buffer, what: str, index: int = -1) -> Any:
    """A cffi view of a contiguous buffer, without copying. Messages are built only on error."""
    try:
        return ffi.from_buffer("uint8_t[]", buf)
    except (TypeError, ValueError, BufferError) as e:
        name = what if index < 0 else f"{what} {index}"
        raise ValueError(f"{name}: needs a C-contiguous buffer ({e})") from None


def _writable(buf: Buffer, what: str, index: int = -1) -> Any:
    try:
        return ffi.from_buffer("uint8_t[]", buf, require_writable=True)
    except (TypeError, ValueError, BufferError) as e:
        name = what if index < 0 else f"{what} {index}"
        raise ValueError(f"{name}: needs a writable C-contiguous buffer ({e})") from None


def _nbytes(buf: Buffer, what: str) -> int:
    try:
        mv = memoryview(buf)
    except TypeError:
        raise ValueError(f"{what}: not a buffer ({type(buf).__name__})") from None
    if not mv.c_contiguous:
        raise ValueError(f"{what}: needs a C-contiguous buffer")
    return mv.nbytes


def _crc_table(shards: int, size: int, block_bytes: int, crcs: Buffer | None) -> tuple[Any, Any]:
    """(array, uint32_t * view) for the fused encode + CRC call: one entry per block per shard."""
    if not isinstance(block_bytes, int) or block_bytes < 1:
        raise ValueError("block_bytes must be a positive integer")
    count = shards * (-(-size // block_bytes))
    out = array.array("I", bytes(4 * count)) if crcs is None else crcs
    view = _writable(out, "crcs")
    if len(view) < 4 * count:
        raise ValueError(f"crcs holds {len(view) // 4} entries, needs {count}")
    return out, ffi.cast("uint32_t *", view)


def _check_status(rc: int, overlap: str) -> None:
    """The codec calls' one failure once arguments are checked: outputs overlapping buffers."""
    if rc != lib.STORE_OK:
        raise ValueError(overlap)


class PreparedCall:
    """One codec call on buffers fixed in advance. The buffers stay pinned while this object
    lives (a pinned bytearray cannot be resized, so the saved pointers stay valid)."""

    __slots__ = ("_fn", "_args", "_pinned")

    def __init__(self, fn: Callable[..., int], args: tuple[Any, ...], pinned: object) -> None:
        self._fn = fn
        self._args = args
        self._pinned = pinned

    def __call__(self) -> int:
        """Run the call; returns the library's status (0: done)."""
        return int(self._fn(*self._args))


class ErasureCode:
    """Reed-Solomon RS(k, m): k data shards, m parity shards, any k of them rebuild the rest.

    One codec may be shared by any number of threads. Decode matrices are cached per loss pattern
    (a bounded cache in the C library).

    >>> ec = ErasureCode(4, 2)
    >>> data = [bytes([i]) * 8 for i in range(4)]
    >>> parity = ec.encode(data)
    >>> shards = [None, data[1], None, data[3], *parity]
    >>> [bytes(s) for s in ec.reconstruct(shards)[:4]] == data
    True
    """

    __slots__ = ("k", "m", "isa", "_ec")

    def __init__(self, k: int, m: int, isa: str | None = None) -> None:
        if not isinstance(k, int) or not isinstance(m, int):
            raise ValueError("k and m must be integers")
        if k < 1 or m < 1 or k + m > MAX_SHARDS:
            raise ValueError(f"need k >= 1, m >= 1 and k + m <= {MAX_SHARDS}; got k={k}, m={m}")
        isa_id = _isa_id(isa)
        status = ffi.new("int *")
        ec = lib.store_ec_new(k, m, isa_id, status)
        if ec == _NULL:
            if status[0] == lib.STORE_ENOMEM:
                raise MemoryError("store_ec_new")
            raise ValueError(f"store_ec_new({k}, {m}, {ISAS[isa_id]}) failed: {status[0]}")
        self.k = k
        self.m = m
        self.isa: str = ISAS[isa_id]
        self._ec = ffi.gc(ec, lib.store_ec_free)

    def __repr__(self) -> str:
        return f"ErasureCode(k={self.k}, m={self.m}, isa={self.isa!r})"

    # -- encode ---------------------------------------------------------------------------------

    def _encode_args(self, data_shards: Sequence[Buffer], parity_shards: Sequence[Buffer]) -> Any:
        if len(data_shards) != self.k:
            raise ValueError(f"need {self.k} data shards, got {len(data_shards)}")
        if len(parity_shards) != self.m:
            raise ValueError(f"need {self.m} parity shards, got {len(parity_shards)}")
        # The hot path: no per-shard helper calls (each costs about 0.1 us); a bad buffer is
        # diagnosed shard by shard only after the fast attempt failed.
        try:
            data = [_from_buffer("uint8_t[]", b) for b in data_shards]
            parity = [_from_buffer("uint8_t[]", b, True) for b in parity_shards]
        except (TypeError, ValueError, BufferError):
            data = [_view(b, "data shard", i) for i, b in enumerate(data_shards)]
            parity = [_writable(b, "parity shard", i) for i, b in enumerate(parity_shards)]
        size = len(data[0])
        if any(len(v) != size for v in data) or any(len(v) != size for v in parity):
            sizes = [len(v) for v in data], [len(v) for v in parity]
            raise ValueError(f"shards differ in length: data {sizes[0]}, parity {sizes[1]}")
        return size, data, parity

    def encode_into(self, data_shards: Sequence[Buffer], parity_shards: Sequence[Buffer]) -> None:
        """Compute the m parity shards of k equal-length data shards into caller buffers."""
        size, data, parity = self._encode_args(data_shards, parity_shards)
        rc = lib.store_ec_encode(self._ec, size, data, parity)
        _check_status(rc, "encode: parity buffers must not overlap each other or the data")

    def prepared_encode(
        self, data_shards: Sequence[Buffer], parity_shards: Sequence[Buffer]
    ) -> PreparedCall:
        """encode_into for buffers fixed in advance: checked and pinned once (a pinned bytearray
        cannot be resized), so each call of the result is one native call, as ISA-L's callers
        pass prebuilt pointer arrays. The call returns the library's status (0: done). The
        operation runs once while preparing (that is its overlap check): the outputs are
        written then too."""
        size, data, parity = self._encode_args(data_shards, parity_shards)
        args = (self._ec, size, ffi.new("uint8_t *[]", data), ffi.new("uint8_t *[]", parity))
        call = PreparedCall(lib.store_ec_encode, args, (data, parity))
        _check_status(call(), "encode: parity buffers must not overlap each other or the data")
        return call

    def encode(self, data_shards: Sequence[Buffer]) -> list[bytearray]:
        """The m parity shards of k equal-length data shards, in new buffers."""
        size = _nbytes(data_shards[0], "data shard 0") if data_shards else 0
        parity = [bytearray(size) for _ in range(self.m)]
        self.encode_into(data_shards, parity)
        return parity

    def encode_into_with_crcs(
        self,
        data_shards: Sequence[Buffer],
        parity_shards: Sequence[Buffer],
        block_bytes: int,
        crcs: Buffer | None = None,
    ) -> array.array[int]:
        """Encode, and CRC32C every block_bytes block of every shard while it is hot in cache.

        Returns (or fills) a uint32 array where entry ``s * nblocks + b`` is block b of shard s
        (data shards first, then parity); nblocks = ceil(shard length / block_bytes).
        """
        size, data, parity = self._encode_args(data_shards, parity_shards)
        out, table = _crc_table(self.k + self.m, size, block_bytes, crcs)
        rc = lib.store_ec_encode_crc(self._ec, size, data, parity, block_bytes, table)
        _check_status(rc, "encode: parity buffers must not overlap each other or the data")
        return out

    # -- reconstruct ----------------------------------------------------------------------------

    def reconstruct_into(self, shards: Sequence[Buffer | None], out: Mapping[int, Buffer]) -> None:
        """Rebuild the shards named by ``out`` ({index: writable buffer}) from the present ones.

        ``shards`` has k + m entries, None where a shard is missing; any k present ones suffice.
        Raises TooFewShards when fewer than k are present.
        """
        size, views, want, outs = self._reconstruct_args(shards, out)
        if not want:
            return
        rc = lib.store_ec_reconstruct(self._ec, size, views, want, len(want), outs)
        _check_status(rc, "reconstruct: output buffers must not overlap each other or the input")

    def prepared_reconstruct(
        self, shards: Sequence[Buffer | None], out: Mapping[int, Buffer]
    ) -> PreparedCall:
        """reconstruct_into for buffers fixed in advance (see prepared_encode)."""
        size, views, want, outs = self._reconstruct_args(shards, out)
        ptrs = ffi.new("uint8_t *[]", views), ffi.new("int[]", want), ffi.new("uint8_t *[]", outs)
        args = (self._ec, size, ptrs[0], ptrs[1], len(want), ptrs[2])
        call = PreparedCall(lib.store_ec_reconstruct, args, (views, outs))
        _check_status(
            call(), "reconstruct: output buffers must not overlap each other or the input"
        )
        return call

    def _reconstruct_args(
        self, shards: Sequence[Buffer | None], out: Mapping[int, Buffer]
    ) -> tuple[int, list[Any], list[int], list[Any]]:
        n = self.k + self.m
        if len(shards) != n:
            raise ValueError(f"need {n} shard slots (None for missing), got {len(shards)}")
        try:
            views = [_NULL if b is None else _from_buffer("uint8_t[]", b) for b in shards]
            outs = [_from_buffer("uint8_t[]", b, True) for b in out.values()]
        except (TypeError, ValueError, BufferError):
            views = [_NULL if b is None else _view(b, "shard", i) for i, b in enumerate(shards)]
            outs = [_writable(b, "output shard", i) for i, b in out.items()]
        sizes = {len(v) for v in views if v is not _NULL}
        present = sum(v is not _NULL for v in views)
        if present < self.k:
            raise TooFewShards(
                f"{present} of {n} shards present, RS({self.k},{self.m}) needs {self.k}"
            )
        if len(sizes) != 1:
            raise ValueError(f"present shards differ in length: {sorted(sizes)}")
        (size,) = sizes
        want = list(out)
        for idx, v in zip(want, outs, strict=True):
            if not isinstance(idx, int) or not 0 <= idx < n:
                raise ValueError(f"output index {idx!r} is not a shard index below {n}")
            if len(v) != size:
                raise ValueError(f"output shard {idx} has {len(v)} bytes, shards have {size}")
        return size, views, want, outs

    def reconstruct(self, shards: Sequence[Buffer | None]) -> list[Buffer]:
        """All k + m shards: the present ones as given, the missing ones rebuilt in new buffers."""
        sizes = {_nbytes(s, f"shard {i}") for i, s in enumerate(shards) if s is not None}
        size = sizes.pop() if len(sizes) == 1 else 0
        out = {i: bytearray(size) for i, s in enumerate(shards) if s is None}
        self.reconstruct_into(shards, out)
        return [out[i] if s is None else s for i, s in enumerate(shards)]

    def cache_stats(self) -> tuple[int, int]:
        """(hits, misses) of this codec's decode-matrix cache."""
        hits = ffi.new("uint64_t *")
        misses = ffi.new("uint64_t *")
        lib.store_ec_cache_stats(self._ec, hits, misses)
        return int(hits[0]), int(misses[0])


STAGGER_BYTES = 7 * 64  # odd multiple of a cache line: distinct offsets mod 4 KiB for 64 shards


class Stripe:
    """Reusable buffers for one stripe: k + m shards of ``shard_bytes`` in one allocation.

    The C pointer arrays are built once, so ``encode`` and ``reconstruct`` cost one native call
    each: this is the engine's hot path (its stripe buffers are recycled, never reallocated).
    ``shards[i]`` is a writable memoryview of shard i (data first, then parity).
    """

    __slots__ = ("ec", "shard_bytes", "shards", "_mem", "_cbuf", "_ptrs")

    def __init__(self, ec: ErasureCode, shard_bytes: int) -> None:
        if not isinstance(shard_bytes, int) or shard_bytes < 1:
            raise ValueError("shard_bytes must be a positive integer")
        n = ec.k + ec.m
        self.ec = ec
        self.shard_bytes = shard_bytes
        # Shards start STAGGER_BYTES apart modulo 4 KiB: streams at equal offsets would share
        # L1/L2 cache sets (and 4K-alias) and run measurably slower on large stripes.
        stride = -(-shard_bytes // 4096) * 4096 + STAGGER_BYTES
        self._mem = bytearray(n * stride)
        view = memoryview(self._mem)
        self.shards = [view[i * stride : i * stride + shard_bytes] for i in range(n)]
        self._cbuf = ffi.from_buffer("uint8_t[]", self._mem, require_writable=True)
        self._ptrs = ffi.new("uint8_t *[]", [self._cbuf + i * stride for i in range(n)])

    def _length(self, length: int | None) -> int:
        if length is None:
            return self.shard_bytes
        if not 0 <= length <= self.shard_bytes:
            raise ValueError(f"length {length} outside 0..{self.shard_bytes}")
        return length

    def encode(self, length: int | None = None) -> None:
        """Fill the parity shards from the first ``length`` bytes of each data shard."""
        lib.store_ec_encode(self.ec._ec, self._length(length), self._ptrs, self._ptrs + self.ec.k)

    def encode_with_crcs(self, block_bytes: int, length: int | None = None) -> array.array[int]:
        """encode() plus a CRC32C per block per shard (as ErasureCode.encode_into_with_crcs)."""
        size = self._length(length)
        k = self.ec.k
        out, table = _crc_table(k + self.ec.m, size, block_bytes, None)
        lib.store_ec_encode_crc(self.ec._ec, size, self._ptrs, self._ptrs + k, block_bytes, table)
        return out

    def reconstruct(self, missing: Sequence[int], length: int | None = None) -> None:
        """Rebuild the shards listed in ``missing`` in place from the others."""
        n = self.ec.k + self.ec.m
        size = self._length(length)
        lost = set(missing)
        if not all(isinstance(i, int) and 0 <= i < n for i in lost):
            raise ValueError(f"missing shard indices must be in 0..{n - 1}")
        if n - len(lost) < self.ec.k:
            raise TooFewShards(f"{n - len(lost)} of {n} shards present, need {self.ec.k}")
        if not lost:
            return
        want = sorted(lost)
        present = ffi.new("uint8_t *[]", [_NULL if i in lost else self._ptrs[i] for i in range(n)])
        out = ffi.new("uint8_t *[]", [self._ptrs[i] for i in want])
        lib.store_ec_reconstruct(self.ec._ec, size, present, want, len(want), out)


def crc32c(buf: Buffer, value: int = 0) -> int:
    """CRC32C (Castagnoli) of buf, continuing from ``value`` (a previous result, 0 to start).

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    >>> crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")
    True
    """
    # At small sizes the call is the cost (a cffi call with its GIL release is ~0.2 us), so this
    # wrapper checks nothing cffi checks anyway: a value outside uint32_t is its OverflowError.
    try:
        if type(buf) is bytes:  # cffi passes bytes as a pointer without a buffer view
            crc: int = lib.store_crc32c(value, buf, len(buf))
        else:
            view = _view(buf, "crc32c input")
            crc = lib.store_crc32c(value, view, len(view))
    except OverflowError:
        raise ValueError("value must be a 32-bit unsigned CRC") from None
    return crc


def crc32c_verify_blocks(buf: Buffer, block_bytes: int, crcs: Buffer) -> int:
    """Index of the first ``block_bytes`` block of ``buf`` whose CRC32C differs from its entry in
    ``crcs`` (little-endian uint32 per block), or -1 if every block matches. One native call.

    >>> import struct
    >>> crcs = struct.pack("<2I", crc32c(b"abcd"), crc32c(b"ef"))
    >>> crc32c_verify_blocks(b"abcdef", 4, crcs), crc32c_verify_blocks(b"abcdeX", 4, crcs)
    (-1, 1)
    """
    if not isinstance(block_bytes, int) or block_bytes < 1:
        raise ValueError("block_bytes must be a positive integer")
    view = _view(buf, "crc32c input")
    table = _view(crcs, "crcs")
    if len(table) < 4 * -(-len(view) // block_bytes):
        raise ValueError("crcs holds fewer entries than there are blocks")
    return int(lib.store_crc32c_verify_blocks(view, len(view), block_bytes, table))


def crc32c_blocks(buf: Buffer, block_bytes: int) -> bytes:
    """The CRC32C of each ``block_bytes`` block of ``buf`` (the last may be short), as
    little-endian uint32s: the table ``crc32c_verify_blocks`` checks. One native call.

    >>> import struct
    >>> crc32c_blocks(b"abcdef", 4) == struct.pack("<2I", crc32c(b"abcd"), crc32c(b"ef"))
    True
    """
    if not isinstance(block_bytes, int) or block_bytes < 1:
        raise ValueError("block_bytes must be a positive integer")
    view = _view(buf, "crc32c input")
    out = bytearray(4 * -(-len(view) // block_bytes))
    lib.store_crc32c_blocks(view, len(view), block_bytes, ffi.from_buffer(out))
    return bytes(out)


_CRC_RUNNABLE: dict[str, int] = {}  # kernel name -> index, for the kernels this CPU runs


def crc32c_with(kernel: str, buf: Buffer, value: int = 0) -> int:
    """crc32c() computed by a named kernel (for tests and benchmarks: as cheap a call as
    crc32c(), so a benchmark of it measures the kernel)."""
    index = _CRC_RUNNABLE.get(kernel)
    if index is None:
        if kernel not in CRC_KERNELS:
            known = ", ".join(CRC_KERNELS)
            raise ValueError(f"unknown CRC kernel {kernel!r}; kernels are {known}")
        if not lib.store_crc_supported(CRC_KERNELS.index(kernel)):
            raise ValueError(f"CRC kernel {kernel!r} is not supported by this CPU")
        index = _CRC_RUNNABLE[kernel] = CRC_KERNELS.index(kernel)
    try:
        if type(buf) is bytes:
            crc: int = lib.store_crc32c_with(index, value, buf, len(buf), ffi.NULL)
        else:
            view = _view(buf, "crc32c input")
            crc = lib.store_crc32c_with(index, value, view, len(view), ffi.NULL)
    except OverflowError:
        raise ValueError("value must be a 32-bit unsigned CRC") from None
    return crc


class Ring:
    """An io_uring ring for file I/O (store_native.h): operations queued with a tag, submitted
    together, their completions reaped without waiting; ``eventfd`` is signalled as they arrive.

    Each queueing call returns the buffer's pin (or None when the submission queue is full:
    submit, then queue again). The caller must hold the pin until the operation's tag is reaped:
    the kernel writes into or reads from the buffer until then, and a pinned bytearray cannot
    be resized or freed. OSError when the kernel or the build has no io_uring.
    """

    REAP_MAX = 256

    def __init__(self, entries: int, eventfd: int) -> None:
        status = ffi.new("int *")
        ring = lib.store_ring_new(entries, eventfd, status)
        if ring == ffi.NULL:
            raise OSError(-status[0], f"io_uring: {os.strerror(-status[0])}")
        self._ring = ffi.gc(ring, lib.store_ring_free)
        self._tags = ffi.new("uint64_t[]", self.REAP_MAX)
        self._results = ffi.new("int32_t[]", self.REAP_MAX)

    @staticmethod
    def _queued(rc: int, pin: Any) -> Any:
        if rc == -errno.EBUSY:
            return None
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return pin

    def read(self, fd: int, buf: Buffer, offset: int, tag: int, *, link: bool = False) -> Any:
        """Queue a read of len(buf) bytes at ``offset`` into ``buf`` (writable)."""
        pin = _writable(buf, "read buffer")
        return self._queued(
            lib.store_ring_read(self._ring, fd, pin, len(pin), offset, tag, link), pin
        )

    def write(self, fd: int, buf: Buffer, offset: int, tag: int, *, link: bool = False) -> Any:
        """Queue a write of ``buf`` at ``offset``."""
        pin = _view(buf, "write buffer")
        return self._queued(
            lib.store_ring_write(self._ring, fd, pin, len(pin), offset, tag, link), pin
        )

    def fsync(self, fd: int, tag: int, *, datasync: bool = True, link: bool = False) -> Any:
        """Queue an fdatasync (``datasync``) or fsync; a link from the operation before it makes
        it wait for that one (a write, then its sync)."""
        return self._queued(lib.store_ring_fsync(self._ring, fd, datasync, tag, link), True)

    def space(self) -> int:
        """Free submission-queue entries (a linked chain must fit whole before a submit)."""
        return int(lib.store_ring_space(self._ring))

    def submit(self) -> int:
        rc = int(lib.store_ring_submit(self._ring))
        if rc < 0:
            raise OSError(-rc, f"io_uring submit: {os.strerror(-rc)}")
        return rc

    def reap(self) -> list[tuple[int, int]]:
        """The (tag, result) of every completion ready now: bytes moved, or -errno."""
        out: list[tuple[int, int]] = []
        while True:
            n = int(lib.store_ring_reap(self._ring, self._tags, self._results, self.REAP_MAX))
            if n < 0:
                raise OSError(-n, f"io_uring reap: {os.strerror(-n)}")
            out += zip(self._tags[0:n], self._results[0:n], strict=True)
            if n < self.REAP_MAX:
                return out
