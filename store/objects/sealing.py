"""Server-side encryption of a version's stored bytes (the format: store.codec.encryption).

The stream that is encrypted is what would otherwise be stored: the body, or its zstd frames
when the bucket compresses (encryption comes after compression and before erasure coding). A
version's encryption record (``Version.encryption``, JSON) is one of:

    {"env": <envelope>, "bind": <b64>}                       one stream (PutObject, CopyObject)
    {"env": <envelope>, "upload": <id>, "parts": [<b64>...],  multipart: one stream per part
     "numbers": [<part number>...]}

A multipart upload's envelope is made at CreateMultipartUpload (so every part is under one key
check or wrapped key); each part is its own stream with a fresh nonce prefix (kept in the part
record, then in "parts") and the binding ``<upload id>/<part number>``. The record holds no key:
SSE-C keys come with every request, SSE-S3 data keys are wrapped by a master key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from store.codec.encryption import Envelope
from store.codec.segment_cipher import SegmentDecryptor, SegmentEncryptor
from store.errors import Corrupt

BINDING_BYTES = 16
THREAD_BYTES = 256 << 10  # encrypt or decrypt larger buffers in a worker thread


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def mode_of(record: Mapping[str, Any] | None) -> str:
    """The record's mode (enc.CUSTOMER or enc.MANAGED), "" when not encrypted."""
    return str(record["env"]["mode"]) if record else ""


def envelope_of(record: Mapping[str, Any]) -> Envelope:
    return Envelope.from_json(record["env"])


@dataclass(frozen=True, slots=True)
class Sealing:
    """How one new stream is encrypted: its envelope, data key and binding."""

    envelope: Envelope
    key: bytes
    binding: bytes

    def encryptor(self) -> SegmentEncryptor:
        return SegmentEncryptor(self.key, self.envelope, self.binding)

    def record(self) -> dict[str, Any]:
        return {"env": self.envelope.to_json(), "bind": _b64(self.binding)}

    async def seal(self, encryptor: SegmentEncryptor, pieces: Sequence[Any], final: bool) -> Any:
        """The stored bytes for ``pieces`` of plaintext (all of it when ``final``)."""

        def run() -> bytearray:
            out = bytearray()
            for piece in pieces:
                out += encryptor.feed(piece)
            if final:
                out += encryptor.finish()
            return out

        if sum(len(p) for p in pieces) >= THREAD_BYTES:
            return await trio.to_thread.run_sync(run)
        return run()


def new_stream(envelope: Envelope, key: bytes) -> Sealing:
    """A single-stream object's sealing (its binding is random: the version id is drawn only at
    commit; the data key is the object's own anyway)."""
    return Sealing(envelope, key, os.urandom(BINDING_BYTES))


def part_stream(
    upload_record: Mapping[str, Any], key: bytes, upload_id: str, number: int
) -> Sealing:
    envelope = envelope_of(upload_record).fresh_stream()
    return Sealing(envelope, key, f"{upload_id}/{number}".encode())


@dataclass(frozen=True, slots=True)
class Span:
    """Where plaintext [offset, offset + length) of one stream lies in the stored bytes."""

    envelope: Envelope
    binding: bytes
    plain_size: int  # of the whole stream
    offset: int  # within the stream
    length: int
    stored_offset: int  # within the version's stored bytes
    stored_length: int


@dataclass(frozen=True, slots=True)
class _Stream:
    envelope: Envelope
    binding: bytes
    plain_offset: int
    plain_size: int
    stored_offset: int


class Unsealer:
    """Maps plaintext ranges of a version's (possibly compressed) stream to the stored bytes
    that hold them, and decrypts those bytes."""

    def __init__(self, record: Mapping[str, Any], plain_sizes: Sequence[int], key: bytes) -> None:
        base = envelope_of(record)
        self.key = key
        if "parts" in record:
            nonces = record["parts"]
            if len(nonces) != len(plain_sizes):
                raise Corrupt("the encryption record does not match the parts")
            upload = record["upload"]
            envelopes = [Envelope.from_json({**record["env"], "nonce": n}) for n in nonces]
            numbers = record.get("numbers") or range(1, len(nonces) + 1)
            bindings = [f"{upload}/{n}".encode() for n in numbers]
        else:
            envelopes = [base]
            bindings = [base64.b64decode(record["bind"])]
        self.streams: list[_Stream] = []
        plain = stored = 0
        for env, binding, size in zip(envelopes, bindings, plain_sizes, strict=True):
            self.streams.append(_Stream(env, binding, plain, size, stored))
            plain += size
            stored += env.stored_size_of(size)
        self.stored_size = stored

    def spans(self, offset: int, length: int) -> list[Span]:
        out = []
        end = offset + length
        for s in self.streams:
            lo, hi = max(offset, s.plain_offset), min(end, s.plain_offset + s.plain_size)
            if lo >= hi and not (s.plain_size == 0 and length == 0):
                continue
            r = s.envelope.stored_range(lo - s.plain_offset, hi - lo, s.plain_size)
            out.append(
                Span(
                    s.envelope,
                    s.binding,
                    s.plain_size,
                    lo - s.plain_offset,
                    hi - lo,
                    s.stored_offset + r.stored_offset,
                    r.stored_length,
                )
            )
        return out

    async def open(self, span: Span, stored: Sequence[Any]) -> bytearray:
        """The plaintext of ``span`` from exactly its stored bytes (``DecryptionFailed`` when
        they are damaged, short or long)."""

        def run() -> bytearray:
            decryptor = SegmentDecryptor(
                self.key, span.envelope, span.binding, span.plain_size, span.offset, span.length
            )
            out = bytearray()
            for piece in stored:
                out += decryptor.feed(piece)
            decryptor.finish()
            return out

        if span.stored_length >= THREAD_BYTES:
            return await trio.to_thread.run_sync(run)
        return run()
