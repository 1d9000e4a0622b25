"""Sizes and ranges of an encrypted stream's segments (pure arithmetic; the format is
``store.codec.encryption``'s): n plaintext bytes are ceil(n / segment_bytes) segments (at least
one: an empty stream is one empty final segment), each stored as its ciphertext plus a 16-byte
tag, back to back, so stored size = n + 16 * segments and a plaintext range maps to the whole
stored segments that hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import Corrupt, InvalidArgument, OutOfRange

SEGMENT_BYTES = 64 << 10
TAG_BYTES = 16


class DecryptionFailed(Corrupt):
    """A segment's tag, a wrapped key or the stored length does not verify: damaged or tampered
    data (the SSE-C key was checked before, so not a wrong key)."""


# -- size and range math --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRange:
    """Stored bytes [stored_offset, stored_offset + stored_length) hold whole segments
    ``first_segment``..``last_segment``; their plaintext starts ``skip_bytes`` before the range."""

    stored_offset: int
    stored_length: int
    first_segment: int
    last_segment: int
    skip_bytes: int


def segment_count(plain_size: int, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Segments of a stream (an empty stream is one empty segment).

    >>> segment_count(0, 4), segment_count(4, 4), segment_count(5, 4)
    (1, 1, 2)
    """
    if plain_size < 0:
        raise InvalidArgument(f"negative size {plain_size}")
    return max(1, -(-plain_size // segment_bytes))


def stored_size_of(plain_size: int, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Stored bytes of a stream of ``plain_size`` plaintext bytes.

    >>> stored_size_of(0), stored_size_of(1), stored_size_of(65536), stored_size_of(65537)
    (16, 17, 65552, 65569)
    """
    return plain_size + TAG_BYTES * segment_count(plain_size, segment_bytes)


def plain_size_of(stored_size: int, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Plaintext bytes of a stream of ``stored_size`` stored bytes; ``DecryptionFailed`` for a
    size no stream has (less than a tag, or a last segment shorter than its tag).

    >>> plain_size_of(16), plain_size_of(65569)
    (0, 65537)
    >>> plain_size_of(65552 + 8)
    Traceback (most recent call last):
    store.codec.segments.DecryptionFailed: no stream is 65560 stored bytes long
    """
    segments = max(1, -(-stored_size // (segment_bytes + TAG_BYTES)))
    plain_size = stored_size - TAG_BYTES * segments
    if plain_size < 0 or stored_size_of(plain_size, segment_bytes) != stored_size:
        raise DecryptionFailed(f"no stream is {stored_size} stored bytes long")
    return plain_size


def stored_range(
    offset: int, length: int, plain_size: int, segment_bytes: int = SEGMENT_BYTES
) -> StoredRange:
    """The whole stored segments holding plaintext [offset, offset + length) of a stream of
    ``plain_size`` bytes. The empty range (0, 0) of an empty stream is its empty final segment,
    so that reading it still checks a tag.

    >>> stored_range(12, 10, 35, segment_bytes=10)  # segments 1 and 2 of [10][10][10][5]
    StoredRange(stored_offset=26, stored_length=52, first_segment=1, last_segment=2, skip_bytes=2)
    >>> stored_range(99_990, 10, 100_000)  # the short last segment of 64 KiB ones
    StoredRange(stored_offset=65552, stored_length=34480, first_segment=1, last_segment=1, \
skip_bytes=34454)
    >>> stored_range(0, 0, 0)
    StoredRange(stored_offset=0, stored_length=16, first_segment=0, last_segment=0, skip_bytes=0)
    """
    if plain_size == 0 and offset == 0 and length == 0:
        return StoredRange(0, TAG_BYTES, 0, 0, 0)
    if offset < 0 or length <= 0 or offset + length > plain_size:
        raise OutOfRange(f"range {offset}+{length} outside a stream of {plain_size} bytes")
    first = offset // segment_bytes
    last = (offset + length - 1) // segment_bytes
    start = first * (segment_bytes + TAG_BYTES)
    end = min(plain_size, (last + 1) * segment_bytes) + (last + 1) * TAG_BYTES
    return StoredRange(start, end - start, first, last, offset - first * segment_bytes)
