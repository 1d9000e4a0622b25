"""S3 additional checksums: streaming digests, multipart checksums and header values (pure).

Algorithms (``ALGORITHMS``) and how S3 encodes their digests:

    name        function                               digest
    CRC32       CRC-32 (zlib, gzip), reflected         4 bytes, big-endian
    CRC32C      CRC-32C (Castagnoli), reflected        4 bytes, big-endian
    CRC64NVME   CRC-64/NVME, reflected                 8 bytes, big-endian
    SHA1        SHA-1                                  20 bytes
    SHA256      SHA-256                                32 bytes

The three CRCs start from and are finally xored with all ones, so the CRC of no bytes is 0. A
``x-amz-checksum-<algorithm>`` header carries the standard (padded) base64 of the digest, e.g.
``x-amz-checksum-crc32: y/Q5Jg==`` for ``b"123456789"``.

A multipart upload declares one of two checksum types, which say how the object checksum is made
from the part checksums:

- ``COMPOSITE`` (CRC32, CRC32C, SHA1, SHA256): the checksum of the concatenated raw part digests,
  in part order, written as its base64 followed by ``-N`` for N parts (``"+vEo6Q==-3"``). It depends
  on where the parts were cut, so it is not the checksum of the object's bytes.
- ``FULL_OBJECT`` (CRC32, CRC32C, CRC64NVME): the CRC of the whole object, as if uploaded in one
  request. It is computed from each part's CRC and length without reading the data again, because
  CRC(A || B) = CRC(A) * x^(8 * len(B)) mod P  xor  CRC(B) (the all-ones init and xorout cancel
  out). ``combine_crc`` does that in O(log len(B)) multiplications mod P per part, the way zlib's
  ``crc32_combine`` does, for any reflected CRC of the kind above (``crc_combine``).

SHA digests cannot be combined (no FULL_OBJECT), and S3 offers CRC64NVME only as FULL_OBJECT
(``checksum_type_allowed``). A single-request upload is always FULL_OBJECT.

``Checksum.update`` is meant to run in worker threads on large buffers: zlib, hashlib and awscrt
release the GIL on long inputs (over 2-5 KiB), and memoryviews are passed through without copying.
CRC32C comes from awscrt rather than ``store.native.crc32c`` (same speed, same result; the tests
check one against the other) because store.codec and store.native are independent layers.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from store.errors import InvalidArgument

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")
COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"
CHECKSUM_TYPES = (COMPOSITE, FULL_OBJECT)

DIGEST_BYTES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}

# (width in bits, reflected polynomial) of each CRC; init and xorout are all ones for all three.
CRC_PARAMS = {
    "CRC32": (32, 0xEDB88320),
    "CRC32C": (32, 0x82F63B78),
    "CRC64NVME": (64, 0x9A6C9329AC4BC9B5),
}

_ALLOWED_TYPES = {
    "CRC32": (COMPOSITE, FULL_OBJECT),
    "CRC32C": (COMPOSITE, FULL_OBJECT),
    "CRC64NVME": (FULL_OBJECT,),
    "SHA1": (COMPOSITE,),
    "SHA256": (COMPOSITE,),
}

MAX_PARTS = 10_000  # S3 part numbers are 1..10000
MAX_LENGTH_BYTES = (1 << 63) - 1  # far above S3's object size limit; bounds crc_combine's work

Buffer = bytes | bytearray | memoryview


def canonical_algorithm(algorithm: str) -> str:
    """The upper-case name of a checksum algorithm, or InvalidArgument if S3 has no such one.

    >>> canonical_algorithm("crc64nvme")
    'CRC64NVME'
    """
    name = algorithm.upper()
    if name not in DIGEST_BYTES:
        raise InvalidArgument(
            f"unknown checksum algorithm {algorithm!r}; algorithms are {', '.join(ALGORITHMS)}"
        )
    return name


def header_name(algorithm: str) -> str:
    """The header that carries this algorithm's checksum.

    >>> header_name("CRC32C")
    'x-amz-checksum-crc32c'
    """
    return "x-amz-checksum-" + canonical_algorithm(algorithm).lower()


# ---------------------------------------------------------------------------------------------
# Streaming digests


def _as_bytes_view(data: Buffer) -> Buffer:
    """data as a flat byte buffer without copying (a typed or multi-dimensional memoryview is
    cast to bytes; a non-contiguous one is refused, since hashing it would need a copy)."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    if not view.c_contiguous:
        raise ValueError("checksum input must be a C-contiguous buffer")
    return view.cast("B")


class Checksum:
    """A running S3 checksum: feed it with ``update``, read it with ``digest`` or ``b64``.

    >>> c = new_checksum("crc32")
    >>> c.update(b"12345"); c.update(memoryview(b"6789"))
    >>> c.digest().hex(), c.b64(), c.length
    ('cbf43926', 'y/Q5Jg==', 9)

    Not safe to update from two threads at once; one thread at a time is fine.
    """

    __slots__ = ("algorithm", "length")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.length = 0  # bytes hashed so far

    def update(self, data: Buffer) -> None:
        view = _as_bytes_view(data)
        self._update(view)
        self.length += len(view)

    def _update(self, data: Buffer) -> None:
        raise NotImplementedError

    def digest(self) -> bytes:
        raise NotImplementedError

    def b64(self) -> str:
        """The digest as an ``x-amz-checksum-*`` header value."""
        return base64.b64encode(self.digest()).decode("ascii")

    def __repr__(self) -> str:
        return f"<Checksum {self.algorithm} {self.b64()} over {self.length} bytes>"


class _CrcChecksum(Checksum):
    __slots__ = ("_crc", "_fn", "_digest_bytes")

    def __init__(self, algorithm: str, fn: Callable[[Any, int], int]) -> None:
        super().__init__(algorithm)
        self._crc = 0
        self._fn = fn
        self._digest_bytes = DIGEST_BYTES[algorithm]

    def _update(self, data: Buffer) -> None:
        self._crc = self._fn(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._digest_bytes, "big")


class _HashChecksum(Checksum):
    __slots__ = ("_hash",)

    def __init__(self, algorithm: str) -> None:
        super().__init__(algorithm)
        self._hash = hashlib.new(algorithm.lower())

    def _update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()


_CRC_FUNCTIONS: dict[str, Callable[[Any, int], int]] = {
    "CRC32": zlib.crc32,
    "CRC32C": _crt.crc32c,
    "CRC64NVME": _crt.crc64nvme,
}


def new_checksum(algorithm: str) -> Checksum:
    """A fresh running checksum of ``algorithm`` (any case).

    >>> new_checksum("sha256").b64()
    '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='
    """
    name = canonical_algorithm(algorithm)
    if name in _CRC_FUNCTIONS:
        return _CrcChecksum(name, _CRC_FUNCTIONS[name])
    return _HashChecksum(name)


def checksum_of(algorithm: str, data: Buffer) -> bytes:
    """The digest of ``data`` in one call.

    >>> checksum_of("CRC64NVME", b"123456789").hex()
    'ae8b14860a799888'
    """
    c = new_checksum(algorithm)
    c.update(data)
    return c.digest()


# ---------------------------------------------------------------------------------------------
# Header values


def parse_b64_checksum(algorithm: str, value: str) -> bytes:
    """The digest carried by a client's ``x-amz-checksum-*`` value, checked for canonical base64
    and the algorithm's digest length.

    >>> parse_b64_checksum("CRC32", "y/Q5Jg==").hex()
    'cbf43926'
    >>> parse_b64_checksum("CRC32", "y/Q5")
    Traceback (most recent call last):
    ...
    store.errors.InvalidArgument: x-amz-checksum-crc32 must be the base64 of 4 bytes, got 3 bytes
    """
    name = canonical_algorithm(algorithm)
    header = header_name(name)
    want = DIGEST_BYTES[name]
    # Longest valid value is 44 characters (SHA256); refuse big junk before decoding it.
    if len(value) > 4 * ((want + 2) // 3):
        raise InvalidArgument(f"{header} must be the base64 of {want} bytes, got a longer value")
    try:
        digest = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidArgument(f"{header} is not valid base64: {value!r}") from None
    if len(digest) != want:
        raise InvalidArgument(
            f"{header} must be the base64 of {want} bytes, got {len(digest)} bytes"
        )
    if base64.b64encode(digest).decode("ascii") != value:
        # Unused low bits set, e.g. "y/Q5Jh==": decodes, but is not how anyone encodes it.
        raise InvalidArgument(f"{header} is not canonical base64: {value!r}")
    return digest


# ---------------------------------------------------------------------------------------------
# Multipart checksum types


def checksum_type_allowed(algorithm: str, checksum_type: str) -> bool:
    """Whether S3 accepts this (algorithm, checksum type) pair for a multipart upload.

    >>> checksum_type_allowed("CRC64NVME", "COMPOSITE"), checksum_type_allowed("SHA1", "COMPOSITE")
    (False, True)
    >>> checksum_type_allowed("sha256", "FULL_OBJECT")
    False
    """
    name = canonical_algorithm(algorithm)
    if checksum_type not in CHECKSUM_TYPES:
        raise InvalidArgument(
            f"unknown checksum type {checksum_type!r}; types are {', '.join(CHECKSUM_TYPES)}"
        )
    return checksum_type in _ALLOWED_TYPES[name]


def default_checksum_type(algorithm: str) -> str:
    """The checksum type S3 uses for a multipart upload that names an algorithm but no type.

    >>> default_checksum_type("CRC64NVME"), default_checksum_type("crc32")
    ('FULL_OBJECT', 'COMPOSITE')
    """
    return _ALLOWED_TYPES[canonical_algorithm(algorithm)][0]


def _require_type(name: str, checksum_type: str) -> None:
    if not checksum_type_allowed(name, checksum_type):
        raise InvalidArgument(f"checksum type {checksum_type} is not supported with {name}")


def _check_digest(name: str, digest: bytes, index: int) -> None:
    if len(digest) != DIGEST_BYTES[name]:
        raise InvalidArgument(
            f"part {index + 1}: a {name} digest is {DIGEST_BYTES[name]} bytes, got {len(digest)}"
        )


def composite_checksum(algorithm: str, part_digests: Sequence[bytes]) -> str:
    """The COMPOSITE checksum of a multipart object: the base64 of the checksum of the part
    digests (raw bytes, in part order), then ``-N``.

    >>> parts = [checksum_of("CRC32", p) for p in (b"1234", b"5678", b"9")]
    >>> composite_checksum("CRC32", parts)
    '+vEo6Q==-3'
    >>> base64.b64encode(checksum_of("CRC32", b"".join(parts)))
    b'+vEo6Q=='
    """
    name = canonical_algorithm(algorithm)
    _require_type(name, COMPOSITE)
    if not 1 <= len(part_digests) <= MAX_PARTS:
        raise InvalidArgument(
            f"a multipart object has 1 to {MAX_PARTS} parts, not {len(part_digests)}"
        )
    c = new_checksum(name)
    for i, digest in enumerate(part_digests):
        _check_digest(name, digest, i)
        c.update(digest)
    return f"{c.b64()}-{len(part_digests)}"


def combine_crc(algorithm: str, parts: Sequence[tuple[bytes, int]]) -> bytes:
    """The FULL_OBJECT checksum: the CRC of the concatenated parts, from each part's
    (digest, length in bytes). No parts give the CRC of nothing.

    >>> parts = [(checksum_of("CRC32C", b"1234"), 4), (checksum_of("CRC32C", b"56789"), 5)]
    >>> combine_crc("CRC32C", parts) == checksum_of("CRC32C", b"123456789")
    True
    """
    name = canonical_algorithm(algorithm)
    _require_type(name, FULL_OBJECT)
    if len(parts) > MAX_PARTS:
        raise InvalidArgument(f"a multipart object has at most {MAX_PARTS} parts, not {len(parts)}")
    width, poly = CRC_PARAMS[name]
    crc = 0
    for i, (digest, length) in enumerate(parts):
        _check_digest(name, digest, i)
        if not 0 <= length <= MAX_LENGTH_BYTES:
            raise InvalidArgument(f"part {i + 1}: length {length} is out of range")
        if length == 0 and any(digest):
            raise InvalidArgument(f"part {i + 1}: an empty part's {name} is 0, not {digest.hex()}")
        crc = crc_combine(crc, int.from_bytes(digest, "big"), length, width=width, poly=poly)
    return crc.to_bytes(DIGEST_BYTES[name], "big")


# ---------------------------------------------------------------------------------------------
# CRC arithmetic in GF(2)[x] mod P, reflected: bit (width - 1) holds the coefficient of x^0 and
# bit 0 that of x^(width - 1), so "multiply by x" is a right shift (and xor P if a bit falls off).


def _mult_mod(a: int, b: int, width: int, poly: int) -> int:
    """a * b mod P, both reflected (zlib's multmodp)."""
    m = 1 << (width - 1)
    p = 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return p


@functools.cache
def _powers_of_x(width: int, poly: int) -> tuple[int, ...]:
    """x^(2^k) mod P for k in 0..66: enough for x^(8 * n) with n < 2^64 (zlib's x2n_table)."""
    p = 1 << (width - 2)  # x^1
    table = [p]
    for _ in range(66):
        p = _mult_mod(p, p, width, poly)
        table.append(p)
    return tuple(table)


@functools.lru_cache(maxsize=256)
def _x_pow_8n(n: int, width: int, poly: int) -> int:
    """x^(8 * n) mod P, by multiplying the x^(2^k) for the bits of 8 * n: O(log n) products.
    Cached because the parts of one upload nearly all have the same length."""
    table = _powers_of_x(width, poly)
    p = 1 << (width - 1)  # x^0
    k = 3  # 8 = 2^3
    while n:
        if n & 1:
            p = _mult_mod(table[k], p, width, poly)
        n >>= 1
        k += 1
    return p


def crc_combine(crc1: int, crc2: int, length2: int, *, width: int, poly: int) -> int:
    """CRC(A || B) from crc1 = CRC(A), crc2 = CRC(B) and length2 = len(B), for a reflected CRC of
    ``width`` bits with reflected polynomial ``poly`` whose init and xorout are all ones.

    >>> crc = crc_combine(zlib.crc32(b"12345"), zlib.crc32(b"6789"), 4, width=32, poly=0xEDB88320)
    >>> hex(crc), crc == zlib.crc32(b"123456789")
    ('0xcbf43926', True)
    """
    if not 0 <= length2 <= MAX_LENGTH_BYTES:
        raise ValueError(f"length {length2} is out of range")
    return _mult_mod(_x_pow_8n(length2, width, poly), crc1, width, poly) ^ crc2
