"""Encrypted versions in the engine: compressed then sealed, inline and chunked, multipart with
gaps in the part numbers, copies between keys; every range reads back; damage is detected."""

from __future__ import annotations

import base64
import os

import pytest

from store.codec import encryption as enc
from store.errors import Corrupt, InvalidArgument
from store.objects.engine import ObjectEngine
from store.objects.multipart import CompletedPart
from store.objects.records import Version
from store.objects.sealing import new_stream
from tests.unit.objects.helpers import BUCKET, INLINE, MIN_PART

MASTER = {"k1": os.urandom(32)}


def managed() -> tuple[object, bytes]:
    envelope, key = enc.new_managed_envelope(MASTER, "k1")
    return new_stream(envelope, key), key


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("size", [0, 100, 200_000, 3 << 20])
async def test_sealed_round_trip_and_ranges(
    engine: ObjectEngine, compressed: bool, size: int
) -> None:
    if compressed:
        await engine.update_bucket(BUCKET, compression="zstd")
    data = (b"compressible text " * (size // 18 + 1))[:size]
    sealing, key = managed()
    v = await engine.put_object(BUCKET, "k", data, sealing=sealing)  # type: ignore[arg-type]
    assert v.encryption is not None and bool(v.compression) == (compressed and size > INLINE)
    got = await engine.get_object(BUCKET, "k", data_key=key)
    assert got[1] == data
    for first, last in [(0, 0), (65535, 65537), (size // 3, size // 2), (size - 1, size - 1)]:
        if 0 <= first <= last < size:
            ranged = await engine.get_object(BUCKET, "k", byte_range=(first, last), data_key=key)
            assert ranged[1] == data[first : last + 1]
    if size:
        with pytest.raises(InvalidArgument):
            await engine.get_object(BUCKET, "k")  # no key


async def test_multipart_with_gaps_and_copy(engine: ObjectEngine) -> None:
    envelope, key = enc.new_customer_envelope(os.urandom(32))
    sealed = {"encryption": {"env": envelope.to_json()}}
    upload = await engine.multipart.create(BUCKET, "mp", attributes=sealed)
    parts = {3: os.urandom(MIN_PART), 9: os.urandom(70_001)}
    done = []
    for number, body in parts.items():
        part = await engine.multipart.upload_part(
            BUCKET, "mp", upload.upload_id, number, body, data_key=lambda _u: key
        )
        done.append(CompletedPart(number, part.etag))
    with pytest.raises(InvalidArgument):  # a part without the upload's key
        await engine.multipart.upload_part(BUCKET, "mp", upload.upload_id, 1, b"x")
    v = await engine.multipart.complete(BUCKET, "mp", upload.upload_id, done)
    whole = parts[3] + parts[9]
    assert (await engine.get_object(BUCKET, "mp", data_key=key))[1] == whole
    edge = MIN_PART - 5
    got = await engine.get_object(BUCKET, "mp", byte_range=(edge, edge + 9), data_key=key)
    assert got[1] == whole[edge : edge + 10]
    assert (await engine.get_object(BUCKET, "mp", part_number=2, data_key=key))[1] == parts[9]
    # a copy re-encrypts under the destination's key
    sealing, other = managed()
    _, copied = await engine.copy_object(
        BUCKET,
        "mp",
        BUCKET,
        "copy",
        source_key=lambda _v: key,
        sealing=sealing,  # type: ignore[arg-type]
    )
    assert copied.encryption != v.encryption
    assert (await engine.get_object(BUCKET, "copy", data_key=other))[1] == whole


@pytest.mark.parametrize("size", [100, 1 << 20])
async def test_a_tampered_record_is_detected(engine: ObjectEngine, size: int) -> None:
    """The block CRCs guard the shards; the GCM tags also catch a record whose envelope or
    binding no longer fits the stored bytes (a version's segments moved under another)."""
    sealing, key = managed()
    await engine.put_object(BUCKET, "k", os.urandom(size), sealing=sealing)  # type: ignore[arg-type]
    other = base64.b64encode(os.urandom(16)).decode()

    def rebind(rec: Version) -> Version:
        assert rec.encryption is not None
        return rec.with_(encryption={**rec.encryption, "bind": other})

    await engine.update_version(BUCKET, "k", None, rebind)
    with pytest.raises(Corrupt):
        await engine.get_object(BUCKET, "k", data_key=key)
