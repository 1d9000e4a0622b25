"""AES-256-GCM over the segments of an encrypted stream: sealing while streaming, opening while
streaming or a range at once. The format (nonces, aad, sizes) and its invariants are in
store/codec/encryption.py's docstring; the keys come from its envelopes."""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store.codec.encryption import (
    FORMAT_VERSION,
    MAX_BINDING_BYTES,
    MAX_SEGMENTS,
    Envelope,
    check_key,
)
from store.codec.segments import (
    TAG_BYTES,
    DecryptionFailed,
    segment_count,
    stored_range,
)
from store.errors import EntityTooLarge

_AAD_HEAD = struct.Struct(">BIB")  # format version, segment index, final


class _Segments:
    """AES-256-GCM over the segments of one stream: nonces and aad as the module docstring says."""

    __slots__ = ("_aead", "_binding", "_prefix")

    def __init__(self, data_key: bytes, envelope: Envelope, binding: bytes) -> None:
        check_key(data_key, "data key")
        if not 0 < len(binding) <= MAX_BINDING_BYTES:
            raise ValueError(f"binding must be 1..{MAX_BINDING_BYTES} bytes")
        self._aead = AESGCM(data_key)
        self._prefix = envelope.nonce_prefix
        self._binding = bytes(binding)

    def _nonce_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        if not 0 <= index < MAX_SEGMENTS:
            raise EntityTooLarge(f"a stream holds at most {MAX_SEGMENTS} segments")
        nonce = self._prefix + index.to_bytes(4, "big")
        return nonce, _AAD_HEAD.pack(FORMAT_VERSION, index, final) + self._binding

    def seal_into(self, index: int, final: bool, plain: memoryview, out: memoryview) -> None:
        """Segment ``index`` of ``plain`` into ``out`` (len(plain) + TAG_BYTES bytes)."""
        nonce, aad = self._nonce_aad(index, final)
        self._aead.encrypt_into(nonce, plain, aad, out)

    def open_into(self, index: int, final: bool, stored: memoryview, out: memoryview) -> None:
        """Stored segment ``index`` into ``out`` (len(stored) - TAG_BYTES bytes). On a tag
        failure ``out`` holds unverified bytes: the caller must drop it."""
        nonce, aad = self._nonce_aad(index, final)
        try:
            self._aead.decrypt_into(nonce, stored, aad, out)
        except InvalidTag:
            raise DecryptionFailed(f"segment {index} fails its authentication tag") from None


class SegmentEncryptor:
    """Streaming encryption: ``feed`` plaintext pieces of any size and get the stored bytes of
    each completed segment; ``finish`` seals the final one. Holds at most one segment of
    plaintext: a full segment waits for the next byte, since only then is it known not to be
    the final one.

    >>> from store.codec.encryption import new_managed_envelope
    >>> from store.codec.segments import stored_size_of
    >>> envelope, key = new_managed_envelope({"k1": bytes(32)}, "k1", segment_bytes=4)
    >>> enc = SegmentEncryptor(key, envelope, b"version-1")
    >>> stored = enc.feed(b"hello") + enc.finish()
    >>> len(stored) == stored_size_of(5, 4) == 5 + 2 * TAG_BYTES, enc.plain_bytes
    (True, 5)
    >>> bytes(decrypt_range(key, envelope, b"version-1", stored, 5))
    b'hello'
    """

    __slots__ = ("_buffer", "_finished", "_index", "_segment_bytes", "_segments", "plain_bytes")

    def __init__(self, data_key: bytes, envelope: Envelope, binding: bytes) -> None:
        self._segments = _Segments(data_key, envelope, binding)
        self._segment_bytes = envelope.segment_bytes
        self._buffer = bytearray()
        self._index = 0
        self._finished = False
        self.plain_bytes = 0  # fed so far; the stream's plain_size once finished

    def feed(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Stored bytes of the segments ``data`` completes (possibly none)."""
        if self._finished:
            raise ValueError("feed after finish")
        view = memoryview(data).cast("B")
        seg = self._segment_bytes
        self.plain_bytes += len(view)
        pos = 0
        sealed: list[memoryview] = []
        if self._buffer:
            need = seg - len(self._buffer)
            if len(view) <= need:  # still not known to be followed by more bytes
                self._buffer += view
                return bytearray()
            self._buffer += view[:need]
            pos = need
            sealed.append(memoryview(self._buffer))
            self._buffer = bytearray()  # a new one: the full one is exported until sealed
        # Seal full segments straight from the caller's buffer while more bytes follow them.
        while len(view) - pos > seg:
            sealed.append(view[pos : pos + seg])
            pos += seg
        self._buffer += view[pos:]
        out = bytearray(len(sealed) * (seg + TAG_BYTES))
        self._seal_all(sealed, memoryview(out), final=False)
        return out

    def finish(self) -> bytearray:
        """Stored bytes of the final segment (empty plaintext for an empty stream)."""
        if self._finished:
            raise ValueError("finish twice")
        self._finished = True
        out = bytearray(len(self._buffer) + TAG_BYTES)
        self._seal_all([memoryview(self._buffer)], memoryview(out), final=True)
        self._buffer = bytearray()
        return out

    def _seal_all(self, pieces: list[memoryview], out: memoryview, *, final: bool) -> None:
        at = 0
        for piece in pieces:
            n = len(piece) + TAG_BYTES
            self._segments.seal_into(self._index, final, piece, out[at : at + n])
            self._index += 1
            at += n


class SegmentDecryptor:
    """Streaming decryption of plaintext [offset, offset + length) of a stream: fetch the stored
    bytes ``span`` names, ``feed`` them in pieces of any size and get exactly the plaintext of
    the range back, in order; ``finish`` checks nothing is missing. Holds at most one stored
    segment. ``length`` None reads to the end (an empty stream's whole range is its empty
    final segment, which is still checked).

    >>> from store.codec.encryption import new_managed_envelope
    >>> from store.codec.segments import stored_size_of
    >>> envelope, key = new_managed_envelope({"k1": bytes(32)}, "k1", segment_bytes=4)
    >>> enc = SegmentEncryptor(key, envelope, b"v1")
    >>> stored = enc.feed(b"0123456789") + enc.finish()
    >>> dec = SegmentDecryptor(key, envelope, b"v1", 10, offset=3, length=5)
    >>> dec.span.stored_offset, dec.span.stored_length
    (0, 40)
    >>> piece = stored[dec.span.stored_offset : dec.span.stored_offset + dec.span.stored_length]
    >>> bytes(dec.feed(piece[:7]) + dec.feed(piece[7:])), dec.finish()
    (b'34567', None)
    """

    __slots__ = (
        "_buffer",
        "_final_index",
        "_index",
        "_plain_size",
        "_remaining",
        "_segment_bytes",
        "_segments",
        "_skip",
        "_stored_left",
        "span",
    )

    def __init__(
        self,
        data_key: bytes,
        envelope: Envelope,
        binding: bytes,
        plain_size: int,
        offset: int = 0,
        length: int | None = None,
    ) -> None:
        self._segments = _Segments(data_key, envelope, binding)
        self._segment_bytes = envelope.segment_bytes
        self._plain_size = plain_size
        if length is None:
            length = plain_size - offset
        self.span = stored_range(offset, length, plain_size, envelope.segment_bytes)
        self._index = self.span.first_segment
        self._final_index = segment_count(plain_size, envelope.segment_bytes) - 1
        self._skip = self.span.skip_bytes
        self._remaining = length
        self._stored_left = self.span.stored_length
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> bytearray:
        """The range's plaintext in the segments ``data`` completes (possibly none)."""
        view = memoryview(data).cast("B")
        if len(view) > self._stored_left:
            # More than the record says the range holds: the stream was extended, or misread.
            raise DecryptionFailed(f"stored data runs {len(view) - self._stored_left} bytes past")
        self._stored_left -= len(view)
        pos = 0
        whole: list[memoryview] = []
        if self._buffer:
            need = self._stored_len(self._index) - len(self._buffer)
            if len(view) < need:
                self._buffer += view
                return bytearray()
            self._buffer += view[:need]
            pos = need
            whole.append(memoryview(self._buffer))
            self._buffer = bytearray()  # a new one: the full one is exported until opened
        index = self._index + len(whole)
        while index <= self.span.last_segment and len(view) - pos >= (n := self._stored_len(index)):
            whole.append(view[pos : pos + n])
            pos += n
            index += 1
        self._buffer += view[pos:]
        return self._open_all(whole)

    def finish(self) -> None:
        """``DecryptionFailed`` if the span's stored bytes did not all arrive (a stream cut
        short, even at a segment boundary)."""
        if self._stored_left:
            raise DecryptionFailed(f"stored data ends {self._stored_left} bytes short")

    def _stored_len(self, index: int) -> int:
        return min(self._segment_bytes, self._plain_size - index * self._segment_bytes) + TAG_BYTES

    def _open_all(self, whole: list[memoryview]) -> bytearray:
        sizes = [len(stored) - TAG_BYTES for stored in whole]
        skip = self._skip if whole else 0  # only the span's first segment starts before the range
        out = bytearray(sum(sizes) - skip)
        out_view = memoryview(out)
        at = 0
        for stored, n in zip(whole, sizes, strict=True):
            final = self._index == self._final_index
            if skip:
                # Open it aside and copy its tail, rather than move the whole output after.
                head = bytearray(n)
                self._segments.open_into(self._index, final, stored, memoryview(head))
                out_view[: n - skip] = memoryview(head)[skip:]
                at, skip, self._skip = n - skip, 0, 0
            else:
                self._segments.open_into(self._index, final, stored, out_view[at : at + n])
                at += n
            self._index += 1
        out_view.release()
        del out[self._remaining :]  # the range ends inside its last segment
        self._remaining -= len(out)
        return out


def decrypt_range(
    data_key: bytes,
    envelope: Envelope,
    binding: bytes,
    stored: bytes | bytearray | memoryview,
    plain_size: int,
    offset: int = 0,
    length: int | None = None,
) -> bytearray:
    """Plaintext [offset, offset + length) of a stream of ``plain_size`` bytes (from the
    record) out of ``stored``, exactly the stored bytes ``envelope.stored_range`` names for that
    range (the whole stream by default). Stored bytes too few or too many, or a tag mismatch,
    are ``DecryptionFailed``: a prefix of whole segments is not taken for the whole stream."""
    decryptor = SegmentDecryptor(data_key, envelope, binding, plain_size, offset, length)
    out = decryptor.feed(stored)
    decryptor.finish()
    return out
