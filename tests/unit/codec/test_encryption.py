"""Server-side encryption: the documented format, round trips in any pieces, every range of a
small stream, tampering of every kind, SSE-C keys and headers, SSE-S3 master keys, envelopes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codec.encryption import (
    CUSTOMER,
    HKDF_INFO,
    KEY_CHECK_LABEL,
    MANAGED,
    NOT_APPLICABLE,
    PARAMETERS_REQUIRED,
    SEGMENT_BYTES,
    DecryptionFailed,
    EncryptionMismatch,
    Envelope,
    InvalidEncryptionAlgorithm,
    MasterKeyUnavailable,
    WrongCustomerKey,
    customer_data_key,
    data_key_for,
    managed_data_key,
    new_customer_envelope,
    new_managed_envelope,
    parse_customer_key,
    plain_size_of,
    stored_range,
    stored_size_of,
)
from store.codec.segment_cipher import SegmentDecryptor, SegmentEncryptor, decrypt_range
from store.codec.segments import TAG_BYTES, segment_count
from store.errors import Corrupt, InvalidArgument, OutOfRange, PermissionDenied, Unavailable

MASTER_KEYS = {"k1": bytes(range(32)), "k2": bytes(range(32, 64))}
CUSTOMER_KEY = hashlib.sha256(b"a customer's key").digest()
BINDING = b"bucket/key\0version-0001"
MODES = (CUSTOMER, MANAGED)


def new_envelope(mode: str, segment_bytes: int = SEGMENT_BYTES) -> tuple[Envelope, bytes]:
    if mode == CUSTOMER:
        return new_customer_envelope(CUSTOMER_KEY, segment_bytes=segment_bytes)
    return new_managed_envelope(MASTER_KEYS, "k1", segment_bytes=segment_bytes)


def encrypt(
    key: bytes,
    envelope: Envelope,
    data: bytes,
    pieces: list[int] | None = None,
    binding: bytes = BINDING,
) -> bytes:
    """``data`` through a SegmentEncryptor, fed in pieces of the given sizes (then the rest)."""
    encryptor = SegmentEncryptor(key, envelope, binding)
    out = bytearray()
    view = memoryview(data)
    pos = 0
    for n in pieces or []:
        out += encryptor.feed(view[pos : pos + n])
        pos += n
    out += encryptor.feed(view[pos:])
    out += encryptor.finish()
    assert encryptor.plain_bytes == len(data)
    return bytes(out)


def decrypt_in_pieces(
    key: bytes,
    envelope: Envelope,
    stored: bytes,
    plain_size: int,
    offset: int = 0,
    length: int | None = None,
    piece: int = 3,
) -> bytes:
    """The range through a SegmentDecryptor, fed ``piece`` stored bytes at a time."""
    decryptor = SegmentDecryptor(key, envelope, BINDING, plain_size, offset, length)
    span = decryptor.span
    wanted = stored[span.stored_offset : span.stored_offset + span.stored_length]
    out = bytearray()
    for pos in range(0, len(wanted), piece):
        out += decryptor.feed(wanted[pos : pos + piece])
    decryptor.finish()
    return bytes(out)


def segments_of(stored: bytes, segment_bytes: int) -> list[bytes]:
    step = segment_bytes + TAG_BYTES
    return [stored[i : i + step] for i in range(0, len(stored), step)]


# -- the format, pinned against the cryptography primitives ------------------------------------


def test_format_is_as_documented() -> None:
    """Segments are AES-256-GCM with nonce = prefix || index and aad = version || index ||
    final || binding, back to back; a refactor must not change a byte of what is on disk."""
    envelope, key = new_envelope(MANAGED, segment_bytes=4)
    data = b"abcdefghij"
    aead = AESGCM(key)
    want = b""
    for i, start in enumerate(range(0, len(data), 4)):
        nonce = envelope.nonce_prefix + i.to_bytes(4, "big")
        aad = bytes([1]) + i.to_bytes(4, "big") + bytes([i == 2]) + BINDING
        want += aead.encrypt(nonce, data[start : start + 4], aad)
    assert encrypt(key, envelope, data) == want
    assert len(want) == stored_size_of(10, 4) == 10 + 3 * TAG_BYTES


def test_empty_stream_is_one_empty_final_segment() -> None:
    envelope, key = new_envelope(MANAGED)
    stored = encrypt(key, envelope, b"")
    nonce = envelope.nonce_prefix + bytes(4)
    aad = bytes([1]) + bytes(4) + bytes([1]) + BINDING
    assert stored == AESGCM(key).encrypt(nonce, b"", aad)
    assert len(stored) == TAG_BYTES == stored_size_of(0) and plain_size_of(TAG_BYTES) == 0
    assert decrypt_range(key, envelope, BINDING, stored, 0) == b""
    assert SegmentDecryptor(key, envelope, BINDING, 0).span == stored_range(0, 0, 0)
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, envelope, BINDING, b"", 0)  # a missing tag is not an empty object
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, envelope, BINDING, bytes(16), 0)


def test_sse_c_keys_are_as_documented() -> None:
    envelope, key = new_customer_envelope(CUSTOMER_KEY)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=envelope.salt, info=HKDF_INFO)
    assert key == hkdf.derive(CUSTOMER_KEY) == customer_data_key(envelope, CUSTOMER_KEY)
    check = hmac.digest(CUSTOMER_KEY, KEY_CHECK_LABEL + envelope.salt, "sha256")
    assert envelope.key_check == check
    # The check is not HKDF's PRK (HMAC keyed by the salt), from which the data key would follow.
    assert envelope.key_check != hmac.digest(envelope.salt, CUSTOMER_KEY, "sha256")


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "size",
    [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 7 * SEGMENT_BYTES // 2, 5 << 20],
)
def test_round_trip(mode: str, size: int) -> None:
    data = random.Random(size).randbytes(size)
    envelope, key = new_envelope(mode)
    stored = encrypt(key, envelope, data)
    assert len(stored) == stored_size_of(size) == size + TAG_BYTES * segment_count(size)
    assert plain_size_of(len(stored)) == size
    # Reading back goes through the record: the envelope as JSON, the key from it.
    record = Envelope.from_json(json.loads(json.dumps(envelope.to_json())))
    again = data_key_for(
        record, customer_key=CUSTOMER_KEY if mode == CUSTOMER else None, master_keys=MASTER_KEYS
    )
    assert again == key
    assert decrypt_range(again, record, BINDING, stored, size) == data
    assert decrypt_in_pieces(again, record, stored, size, piece=100_003) == data


def test_large_stream_in_random_pieces() -> None:
    rng = random.Random(7)
    data = rng.randbytes((5 << 20) + 12345)
    envelope, key = new_envelope(CUSTOMER)
    pieces: list[int] = []
    while sum(pieces) < len(data):
        pieces.append(rng.choice([0, 1, 15, 4096, SEGMENT_BYTES, SEGMENT_BYTES + 1, 1 << 20]))
    stored = encrypt(key, envelope, data, pieces)
    assert stored == encrypt(key, envelope, data)
    for piece in (1 << 20, 3 * SEGMENT_BYTES + 7, 1000):
        assert decrypt_in_pieces(key, envelope, stored, len(data), piece=piece) == data


@settings(max_examples=200)
@given(
    data=st.binary(max_size=300),
    segment_bytes=st.integers(1, 40),
    cuts=st.lists(st.integers(0, 60), max_size=20),
    piece=st.integers(1, 70),
)
def test_pieces_never_change_the_stream(
    data: bytes, segment_bytes: int, cuts: list[int], piece: int
) -> None:
    envelope, key = new_envelope(MANAGED, segment_bytes)
    stored = encrypt(key, envelope, data, cuts)
    assert stored == encrypt(key, envelope, data)
    assert len(stored) == stored_size_of(len(data), segment_bytes)
    assert decrypt_in_pieces(key, envelope, stored, len(data), piece=piece) == data


@settings(max_examples=40)
@given(
    size=st.integers(0, 3 * SEGMENT_BYTES + 100),
    cuts=st.lists(st.integers(0, SEGMENT_BYTES + 2), max_size=8),
)
def test_pieces_around_real_segment_boundaries(size: int, cuts: list[int]) -> None:
    data = random.Random(size).randbytes(size)
    envelope, key = new_envelope(MANAGED)
    stored = encrypt(key, envelope, data, cuts)
    assert stored == encrypt(key, envelope, data)
    assert decrypt_range(key, envelope, BINDING, stored, size) == data


@pytest.mark.parametrize("segment_bytes", [1, 5, 64])
def test_the_encryptor_holds_at_most_one_segment(segment_bytes: int) -> None:
    """After n plaintext bytes, every segment but the last (maybe full) one has been output."""
    envelope, key = new_envelope(MANAGED, segment_bytes)
    encryptor = SegmentEncryptor(key, envelope, BINDING)
    out = 0
    rng = random.Random(segment_bytes)
    for n in range(1, 400):
        out += len(encryptor.feed(rng.randbytes(rng.choice([0, 1, segment_bytes, 7]))))
        held = encryptor.plain_bytes - (out - out // (segment_bytes + TAG_BYTES) * TAG_BYTES)
        assert 0 <= held <= segment_bytes
        assert held > 0 or encryptor.plain_bytes == 0, n


def test_the_decryptor_outputs_each_segment_once_it_is_whole() -> None:
    envelope, key = new_envelope(MANAGED, 8)
    data = bytes(range(60))
    stored = encrypt(key, envelope, data)
    decryptor = SegmentDecryptor(key, envelope, BINDING, len(data))
    out = b""
    for fed in range(1, len(stored) + 1):
        out += decryptor.feed(stored[fed - 1 : fed])
        assert out == data[: fed // 24 * 8] or fed == len(stored)
    decryptor.finish()
    assert out == data


# -- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [28, 32])  # 3.5 and 4 segments of 8 bytes
def test_every_range_of_a_small_stream(mode: str, size: int) -> None:
    data = bytes(range(100, 100 + size))
    envelope, key = new_envelope(mode, segment_bytes=8)
    stored = encrypt(key, envelope, data)
    for offset in range(size):
        for length in range(1, size - offset + 1):
            span = envelope.stored_range(offset, length, size)
            assert (span.first_segment, span.last_segment) == (
                offset // 8,
                (offset + length - 1) // 8,
            )
            part = stored[span.stored_offset : span.stored_offset + span.stored_length]
            want = data[offset : offset + length]
            assert decrypt_range(key, envelope, BINDING, part, size, offset, length) == want
            assert decrypt_in_pieces(key, envelope, stored, size, offset, length) == want


@given(
    plain_size=st.integers(1, 10_000),
    segment_bytes=st.integers(1, 600),
    data=st.data(),
)
def test_stored_range_covers_exactly_the_segments(
    plain_size: int, segment_bytes: int, data: st.DataObject
) -> None:
    offset = data.draw(st.integers(0, plain_size - 1))
    length = data.draw(st.integers(1, plain_size - offset))
    span = stored_range(offset, length, plain_size, segment_bytes)
    step = segment_bytes + TAG_BYTES
    last_len = plain_size - (segment_count(plain_size, segment_bytes) - 1) * segment_bytes
    lengths = [
        step if i < segment_count(plain_size, segment_bytes) - 1 else last_len + TAG_BYTES
        for i in range(span.first_segment, span.last_segment + 1)
    ]
    assert span.stored_offset == span.first_segment * step
    assert span.stored_length == sum(lengths)
    assert span.stored_offset + span.stored_length <= stored_size_of(plain_size, segment_bytes)
    assert span.first_segment * segment_bytes + span.skip_bytes == offset
    assert offset + length <= (span.last_segment + 1) * segment_bytes
    assert plain_size_of(stored_size_of(plain_size, segment_bytes), segment_bytes) == plain_size


def test_plain_size_of_accepts_exactly_the_stored_sizes() -> None:
    sizes = {stored_size_of(n, 8): n for n in range(200)}
    for stored_size in range(-1, max(sizes)):
        if stored_size in sizes:
            assert plain_size_of(stored_size, 8) == sizes[stored_size]
        else:
            with pytest.raises(DecryptionFailed):
                plain_size_of(stored_size, 8)


@pytest.mark.parametrize("offset, length, size", [(0, 0, 5), (5, 1, 5), (-1, 1, 5), (0, 6, 5)])
def test_ranges_outside_the_stream(offset: int, length: int, size: int) -> None:
    with pytest.raises(OutOfRange):
        stored_range(offset, length, size)


# -- tampering -----------------------------------------------------------------------------------


def small_stream(mode: str, size: int = 28) -> tuple[Envelope, bytes, bytes, bytes]:
    data = bytes(range(size))
    envelope, key = new_envelope(mode, segment_bytes=8)
    return envelope, key, data, encrypt(key, envelope, data)


def read_both_ways(key: bytes, envelope: Envelope, stored: bytes, record_size: int) -> None:
    """Every way a reader may size the stream must reject tampered bytes: by the record's plain
    size, and by the stored length alone."""
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, envelope, BINDING, stored, record_size)
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, envelope, BINDING, stored, plain_size_of(len(stored), 8))


@pytest.mark.parametrize("mode", MODES)
def test_any_changed_byte_is_detected(mode: str) -> None:
    envelope, key, data, stored = small_stream(mode)
    for i in range(len(stored)):
        for bit in (0x01, 0x80):
            bad = bytearray(stored)
            bad[i] ^= bit
            read_both_ways(key, envelope, bytes(bad), len(data))


@pytest.mark.parametrize("mode", MODES)
def test_swapped_segments_are_detected(mode: str) -> None:
    envelope, key, data, stored = small_stream(mode, size=32)
    segs = segments_of(stored, 8)
    for i in range(len(segs)):
        for j in range(i + 1, len(segs)):
            swapped = list(segs)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            read_both_ways(key, envelope, b"".join(swapped), len(data))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [28, 32])
def test_every_truncation_is_detected(mode: str, size: int) -> None:
    envelope, key, data, stored = small_stream(mode, size)
    for cut in range(len(stored)):
        with pytest.raises(DecryptionFailed):
            decrypt_range(key, envelope, BINDING, stored[:cut], len(data))
        with pytest.raises(DecryptionFailed):  # the size is impossible, or the tag fails
            decrypt_range(key, envelope, BINDING, stored[:cut], plain_size_of(cut, 8))


@pytest.mark.parametrize("mode", MODES)
def test_appended_data_is_detected(mode: str) -> None:
    envelope, key, data, stored = small_stream(mode, size=32)
    segs = segments_of(stored, 8)
    for extra in (segs[0], segs[-1], b"\0" * 24, b"\0" * TAG_BYTES, b"x"):
        read_both_ways(key, envelope, stored + extra, len(data))
    # A whole stream that ends where another one's segments begin: the final flag differs.
    read_both_ways(key, envelope, stored + encrypt(key, envelope, data[:8]), len(data))


@pytest.mark.parametrize("mode", MODES)
def test_segments_do_not_move_between_streams(mode: str) -> None:
    envelope, key, data, stored = small_stream(mode)
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, envelope, b"bucket/key\0version-0002", stored, len(data))
    # Another stream under the same key material (a multipart part) has its own nonces.
    part = envelope.fresh_stream()
    assert part.nonce_prefix != envelope.nonce_prefix and part.salt == envelope.salt
    with pytest.raises(DecryptionFailed):
        decrypt_range(key, part, BINDING, stored, len(data))
    # And a stream under another envelope has another data key.
    other, other_key = new_envelope(mode, segment_bytes=8)
    other_stored = encrypt(other_key, other, data)
    mixed = segments_of(stored, 8)[:2] + segments_of(other_stored, 8)[2:]
    read_both_ways(key, envelope, b"".join(mixed), len(data))


# -- confidentiality -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stored_bytes_never_show_the_plaintext(mode: str) -> None:
    data = b"MARKER" * 10000
    envelope, key = new_envelope(mode)
    stored = encrypt(key, envelope, data, [1, 6, 1000, SEGMENT_BYTES])
    assert b"MARKER" not in stored
    record = json.dumps(envelope.to_json()).encode()
    for secret in (key, CUSTOMER_KEY):
        assert secret not in record and base64.b64encode(secret) not in record
        assert secret not in repr(envelope).encode()


def test_no_keystream_repeats_within_a_stream() -> None:
    """Equal plaintext segments encrypt differently: each segment has its own nonce (a repeated
    nonce would repeat the GCM keystream, so equal ciphertexts would show it)."""
    envelope, key = new_envelope(MANAGED, segment_bytes=32)
    stored = encrypt(key, envelope, bytes(32 * 50))
    bodies = {segment[:32] for segment in segments_of(stored, 32)}
    assert len(bodies) == 50


@pytest.mark.parametrize("mode", MODES)
def test_one_plaintext_under_two_envelopes_differs(mode: str) -> None:
    data = b"same plaintext, twice" * 1000
    (a, key_a), (b, key_b) = new_envelope(mode), new_envelope(mode)
    assert key_a != key_b and a.nonce_prefix != b.nonce_prefix
    stored_a, stored_b = encrypt(key_a, a, data), encrypt(key_b, b, data)
    assert stored_a != stored_b
    assert all(stored_a[i : i + 16] != stored_b[i : i + 16] for i in range(0, len(stored_a), 16))
    fresh = a.fresh_stream()
    assert encrypt(key_a, fresh, data) != stored_a


# -- SSE-C ---------------------------------------------------------------------------------------


def test_a_wrong_customer_key_is_denied() -> None:
    envelope, key = new_customer_envelope(CUSTOMER_KEY)
    assert customer_data_key(envelope, CUSTOMER_KEY) == key
    wrong = bytearray(CUSTOMER_KEY)
    wrong[-1] ^= 1
    with pytest.raises(WrongCustomerKey) as info:
        customer_data_key(envelope, bytes(wrong))
    assert isinstance(info.value, PermissionDenied)
    with pytest.raises(WrongCustomerKey):
        data_key_for(envelope, customer_key=bytes(32), master_keys=MASTER_KEYS)


def test_one_customer_key_gives_each_object_its_own_data_key() -> None:
    (a, key_a), (b, key_b) = (
        new_customer_envelope(CUSTOMER_KEY),
        new_customer_envelope(CUSTOMER_KEY),
    )
    assert a.salt != b.salt and a.key_check != b.key_check and key_a != key_b


def test_modes_must_match_the_request() -> None:
    customer, _ = new_envelope(CUSTOMER)
    managed, _ = new_envelope(MANAGED)
    with pytest.raises(EncryptionMismatch, match=NOT_APPLICABLE):
        data_key_for(managed, customer_key=CUSTOMER_KEY, master_keys=MASTER_KEYS)
    with pytest.raises(EncryptionMismatch, match=PARAMETERS_REQUIRED.split(".")[0]):
        data_key_for(customer, customer_key=None, master_keys=MASTER_KEYS)
    assert issubclass(EncryptionMismatch, InvalidArgument)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


KEY = b64(CUSTOMER_KEY)
MD5 = b64(hashlib.md5(CUSTOMER_KEY).digest())
SHA = b64(hashlib.sha256(CUSTOMER_KEY).digest())
SSE_C = "Requests specifying Server Side Encryption with Customer provided keys must provide"
NO_ALGORITHM = f"{SSE_C} a valid encryption algorithm."
BAD_ALGORITHM = "The Encryption request you specified is not valid. Supported value: AES256."
NO_KEY = f"{SSE_C} an appropriate secret key."
NO_MD5 = f"{SSE_C} the client calculated MD5 of the secret key."
BAD_KEY = "The secret key was invalid for the specified algorithm."
BAD_MD5 = (
    "The MD5 hash of the secret key was improperly encoded. The MD5 hash must be Base64 encoded."
)
WRONG_MD5 = "The calculated MD5 hash of the key did not match the hash that was provided."


def test_parse_customer_key() -> None:
    assert parse_customer_key("AES256", KEY, MD5) == CUSTOMER_KEY
    assert parse_customer_key(None, None, None) is None


@pytest.mark.parametrize(
    "algorithm, key, md5, error, message",
    [
        (None, KEY, MD5, InvalidArgument, NO_ALGORITHM),
        (None, None, MD5, InvalidArgument, NO_ALGORITHM),
        ("aws:kms", KEY, MD5, InvalidEncryptionAlgorithm, BAD_ALGORITHM),
        ("aes256", KEY, MD5, InvalidEncryptionAlgorithm, BAD_ALGORITHM),
        ("AES256", None, MD5, InvalidArgument, NO_KEY),
        ("AES256", KEY, None, InvalidArgument, NO_MD5),
        ("AES256", b64(bytes(16)), MD5, InvalidArgument, BAD_KEY),
        ("AES256", b64(bytes(31)), MD5, InvalidArgument, BAD_KEY),
        ("AES256", b64(bytes(33)), MD5, InvalidArgument, BAD_KEY),
        ("AES256", KEY[:-2] + "!=", MD5, InvalidArgument, BAD_KEY),
        ("AES256", "", MD5, InvalidArgument, BAD_KEY),
        ("AES256", KEY, "not*base64", InvalidArgument, BAD_MD5),
        ("AES256", KEY, b64(hashlib.md5(b"x").digest()), InvalidArgument, WRONG_MD5),
        ("AES256", b64(bytes(32)), MD5, InvalidArgument, WRONG_MD5),
        ("AES256", KEY, SHA, InvalidArgument, WRONG_MD5),
        ("AES256", KEY, "", InvalidArgument, WRONG_MD5),
    ],
)
def test_parse_customer_key_errors(
    algorithm: str | None, key: str | None, md5: str | None, error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        parse_customer_key(algorithm, key, md5)
    assert str(info.value) == message


# -- SSE-S3 --------------------------------------------------------------------------------------


def test_managed_key_unwraps_with_its_master_key_only() -> None:
    envelope, key = new_managed_envelope(MASTER_KEYS, "k1")
    assert len(envelope.wrapped_key) == 40 and key not in envelope.wrapped_key
    assert managed_data_key(envelope, MASTER_KEYS) == key
    with pytest.raises(DecryptionFailed) as info:  # the key file changed under the same id
        managed_data_key(envelope, {"k1": MASTER_KEYS["k2"]})
    assert isinstance(info.value, Corrupt)
    with pytest.raises(MasterKeyUnavailable) as missing:
        managed_data_key(envelope, {"k2": MASTER_KEYS["k2"]})
    assert isinstance(missing.value, Unavailable)
    bad = Envelope.from_json(envelope.to_json() | {"kid": "k2"})
    with pytest.raises(DecryptionFailed):
        managed_data_key(bad, MASTER_KEYS)


def test_master_keys_rotate() -> None:
    old, old_key = new_managed_envelope({"k1": MASTER_KEYS["k1"]}, "k1")
    new, new_key = new_managed_envelope(MASTER_KEYS, "k2")
    assert new.master_key_id == "k2"
    assert managed_data_key(old, MASTER_KEYS) == old_key
    assert managed_data_key(new, MASTER_KEYS) == new_key


def test_master_key_misconfiguration() -> None:
    with pytest.raises(MasterKeyUnavailable):
        new_managed_envelope(MASTER_KEYS, "k3")
    with pytest.raises(ValueError, match="32 bytes"):
        new_managed_envelope({"short": bytes(16)}, "short")


# -- envelopes and misuse ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_envelope_json_round_trip(mode: str) -> None:
    envelope, _ = new_envelope(mode, segment_bytes=4096)
    record = envelope.to_json()
    assert all(isinstance(v, str) for v in record.values())
    assert Envelope.from_json(json.loads(json.dumps(record))) == envelope


@pytest.mark.parametrize(
    "change",
    [
        {"v": "2"},
        {"mode": "SSE-KMS"},
        {"segment": "0"},
        {"segment": "-1"},
        {"segment": "x"},
        {"nonce": "AAAA"},
        {"nonce": "not base64!"},
        {"extra": "field"},
        {"kid": "k1"},
        {"v": 1},
    ],
)
def test_damaged_envelope_records_are_corrupt(change: dict[str, object]) -> None:
    envelope, _ = new_envelope(CUSTOMER)
    with pytest.raises(Corrupt):
        Envelope.from_json(envelope.to_json() | change)
    record = dict(envelope.to_json())
    del record["check"]
    with pytest.raises(Corrupt):
        Envelope.from_json(record)


def test_inconsistent_envelopes_are_refused() -> None:
    envelope, _ = new_envelope(MANAGED)
    with pytest.raises(InvalidArgument):
        Envelope(CUSTOMER, envelope.nonce_prefix, wrapped_key=envelope.wrapped_key)
    with pytest.raises(InvalidArgument):
        Envelope(MANAGED, envelope.nonce_prefix, wrapped_key=envelope.wrapped_key)
    with pytest.raises(InvalidArgument):
        Envelope(MANAGED, b"short", wrapped_key=envelope.wrapped_key, master_key_id="k1")


def test_misuse_is_a_bug() -> None:
    envelope, key = new_envelope(MANAGED)
    encryptor = SegmentEncryptor(key, envelope, BINDING)
    encryptor.finish()
    with pytest.raises(ValueError):
        encryptor.feed(b"late")
    with pytest.raises(ValueError):
        encryptor.finish()
    with pytest.raises(ValueError):
        SegmentEncryptor(key[:16], envelope, BINDING)
    with pytest.raises(ValueError):
        SegmentEncryptor(key, envelope, b"")
