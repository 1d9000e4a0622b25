"""S3 server-side encryption: SSE-C and SSE-S3 key envelopes, and a seekable authenticated
segment format for the encrypted bytes (pure: no I/O, only ``os.urandom``).

**Keys.** Every encrypted stream has its own 256-bit data key, described by an ``Envelope`` that
the stream's metadata record stores (``Envelope.to_json``):

- SSE-S3 (``MANAGED``): the data key is random, stored wrapped by a 32-byte master key with AES
  key wrap (RFC 3394, 40 bytes), next to the id of that master key, so master keys can rotate:
  new objects name the current id, old ones keep naming theirs until rewritten.
- SSE-C (``CUSTOMER``): the client sends its key with every request and it is never stored. The
  data key is HKDF-SHA256(ikm = customer key, salt = 32 random bytes, info = ``HKDF_INFO``), so
  one customer key gives a different data key for every object. The record keeps the salt and a
  key check HMAC-SHA256(key = customer key, ``KEY_CHECK_LABEL`` || salt), compared in constant
  time, to tell a wrong key (403 AccessDenied, as AWS answers) from damaged data. The check is
  not the HKDF PRK (that one is an HMAC keyed by the salt), so it tells nothing about the data key.

AES key wrap rather than AES-GCM for the data key: it is the construction made for wrapping keys,
it needs no nonce (GCM with random 96-bit nonces must stay under ~2^32 wraps per master key, one
per object, which a large store could reach), and its integrity check rejects a wrong master key.

**Segments.** A stream of n plaintext bytes is cut into segments of ``segment_bytes`` (64 KiB by
default, recorded in the envelope so it can change for new objects); the last one may be short,
and is empty only when the whole stream is: an empty stream is one empty final segment (its tag
alone), so every stream, even an empty one, ends in an authenticated final segment. Segment i
is stored as its AES-256-GCM ciphertext (same length) followed by its 16-byte tag, back to back:

    nonce = nonce_prefix (8 random bytes, in the envelope) || i (4 bytes, big-endian)
    aad   = FORMAT_VERSION (1 byte) || i (4 bytes, big-endian) || final (1 byte) || binding

    stored size = n + 16 * max(1, ceil(n / segment_bytes))
    n = 10, segment_bytes = 4:  [4 + 16][4 + 16][2 + 16]  = 58 bytes, segment 2 final

Invariants:

- No nonce repeats under one key: the data key belongs to one envelope (random, or HKDF over a
  random salt) and the envelope's segment indexes are distinct (i < 2^32: 256 TiB at 64 KiB).
  An envelope encrypts one stream; ``Envelope.fresh_stream`` makes another envelope sharing the
  key material with a new random nonce prefix (multipart parts under one key check).
- Segments cannot be reordered, dropped, truncated or appended: the index is in the nonce and in
  the aad, and the aad says which segment is final, so a stream cut at a segment boundary ends in
  a segment that was not sealed as final, and a segment after the final one has no valid tag.
- The binding (chosen by the caller: the version id, or upload id and part number) is in every
  aad, so segments cannot be moved to another stream that shares the key material.
- A range read decrypts only the segments it touches (``stored_range``); every byte it returns
  comes from a segment whose tag was checked first, so a tag failure releases none of that
  segment (a streaming read may have returned earlier, verified segments already).

**Use.** Writing: an envelope and data key (``new_customer_envelope``, ``new_managed_envelope``),
then ``SegmentEncryptor`` over the stream; the record keeps ``Envelope.to_json()`` and the
plaintext size. Reading: ``data_key_for`` (or ``customer_data_key``/``managed_data_key``), then
``SegmentDecryptor`` (streaming) or ``decrypt_range`` (one buffer) over exactly the stored bytes
their span names. The record's plaintext size is authoritative: stored bytes short of or past the
span are ``DecryptionFailed``, so a stream cut at a segment boundary cannot pass for a shorter one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from store.codec.segments import (
    SEGMENT_BYTES,
    DecryptionFailed,
    StoredRange,
    plain_size_of,
    stored_range,
    stored_size_of,
)
from store.errors import (
    Corrupt,
    EncryptionMismatch,
    InvalidArgument,
    InvalidEncryptionAlgorithm,
    PermissionDenied,
    Unavailable,
)

CUSTOMER = "SSE-C"
MANAGED = "SSE-S3"
MODES = (CUSTOMER, MANAGED)
SSE_C_ALGORITHM = "AES256"  # the only value of x-amz-server-side-encryption-customer-algorithm

FORMAT_VERSION = 1
MAX_SEGMENT_BYTES = 16 << 20
KEY_BYTES = 32  # data keys, customer keys and master keys are all AES-256 keys
NONCE_PREFIX_BYTES = 8
MAX_SEGMENTS = 1 << 32  # the 4-byte index in the nonce
SALT_BYTES = 32
KEY_CHECK_BYTES = 32
WRAPPED_KEY_BYTES = KEY_BYTES + 8  # RFC 3394 adds one 64-bit block
MAX_KEY_ID_CHARS = 128
MAX_BINDING_BYTES = 1024

HKDF_INFO = b"store sse-c data key v1"
KEY_CHECK_LABEL = b"store sse-c key check v1\0"


# -- errors: subclasses, so the protocol maps of their bases cover them ---------------------------


class WrongCustomerKey(PermissionDenied):
    """The SSE-C key of the request is not the one the object was stored with (AWS: 403)."""


class MasterKeyUnavailable(Unavailable):
    """The master key id an object names is not loaded here (for instance on a gateway whose
    configuration has not received a rotated key yet): another gateway or a retry may have it."""


# -- the envelope ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """How one stream is encrypted: what the metadata record stores. Holds no secret in clear:
    ``key_check`` is a keyed hash, ``wrapped_key`` needs the master key."""

    mode: str
    nonce_prefix: bytes
    salt: bytes = b""  # SSE-C: HKDF salt, also hashed into key_check
    key_check: bytes = b""  # SSE-C: HMAC of the customer key
    wrapped_key: bytes = b""  # SSE-S3: the data key wrapped by the master key
    master_key_id: str = ""  # SSE-S3
    segment_bytes: int = SEGMENT_BYTES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(f"unknown encryption mode {self.mode!r}")
        if len(self.nonce_prefix) != NONCE_PREFIX_BYTES:
            raise InvalidArgument(f"nonce prefix must be {NONCE_PREFIX_BYTES} bytes")
        if not 1 <= self.segment_bytes <= MAX_SEGMENT_BYTES:
            raise InvalidArgument(
                f"segment size {self.segment_bytes} outside 1..{MAX_SEGMENT_BYTES}"
            )
        if self.mode == CUSTOMER:
            ok = (
                len(self.salt) == SALT_BYTES
                and len(self.key_check) == KEY_CHECK_BYTES
                and not self.wrapped_key
                and not self.master_key_id
            )
        else:
            ok = (
                len(self.wrapped_key) == WRAPPED_KEY_BYTES
                and 0 < len(self.master_key_id) <= MAX_KEY_ID_CHARS
                and not self.salt
                and not self.key_check
            )
        if not ok:
            raise InvalidArgument(f"inconsistent {self.mode} envelope")

    def fresh_stream(self) -> Envelope:
        """The same key material with a new random nonce prefix, for another stream under the
        same key (each multipart part): store each stream's prefix, and never encrypt two
        streams with one envelope."""
        return replace(self, nonce_prefix=os.urandom(NONCE_PREFIX_BYTES))

    def stored_size_of(self, plain_size: int) -> int:
        """``stored_size_of`` with this envelope's segment size."""
        return stored_size_of(plain_size, self.segment_bytes)

    def plain_size_of(self, stored_size: int) -> int:
        """``plain_size_of`` with this envelope's segment size."""
        return plain_size_of(stored_size, self.segment_bytes)

    def stored_range(self, offset: int, length: int, plain_size: int) -> StoredRange:
        """``stored_range`` with this envelope's segment size."""
        return stored_range(offset, length, plain_size, self.segment_bytes)

    def to_json(self) -> dict[str, str]:
        """A JSON object of strings (bytes in base64); only the fields of its mode."""
        out = {
            "v": str(FORMAT_VERSION),
            "mode": self.mode,
            "segment": str(self.segment_bytes),
            "nonce": _b64(self.nonce_prefix),
        }
        if self.mode == CUSTOMER:
            out |= {"salt": _b64(self.salt), "check": _b64(self.key_check)}
        else:
            out |= {"key": _b64(self.wrapped_key), "kid": self.master_key_id}
        return out

    @classmethod
    def from_json(cls, record: Mapping[str, object]) -> Envelope:
        """The envelope ``to_json`` wrote; anything else is a damaged record (``Corrupt``).

        >>> env, _ = new_managed_envelope({"k1": bytes(32)}, "k1")
        >>> Envelope.from_json(env.to_json()) == env
        True
        """
        try:
            fields = {k: v for k, v in record.items() if isinstance(v, str)}
            if len(fields) != len(record) or fields.get("v") != str(FORMAT_VERSION):
                raise ValueError("not a version 1 envelope of strings")
            mode = fields["mode"]
            names = {"v", "mode", "segment", "nonce"}
            names |= {"salt", "check"} if mode == CUSTOMER else {"key", "kid"}
            if set(fields) != names or not fields["segment"].isdigit():
                raise ValueError(f"fields {sorted(fields)}")
            return cls(
                mode=mode,
                nonce_prefix=_unb64(fields["nonce"]),
                salt=_unb64(fields.get("salt", "")),
                key_check=_unb64(fields.get("check", "")),
                wrapped_key=_unb64(fields.get("key", "")),
                master_key_id=fields.get("kid", ""),
                segment_bytes=int(fields["segment"]),
            )
        except (KeyError, ValueError, InvalidArgument) as e:
            raise Corrupt(f"malformed encryption envelope: {e}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None


# -- SSE-C ----------------------------------------------------------------------------------------

_SSE_C = "Requests specifying Server Side Encryption with Customer provided keys must provide"
# AWS's 400 InvalidRequest messages, for EncryptionMismatch raised here or by the caller (SSE-C
# headers on an unencrypted object).
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
PARAMETERS_REQUIRED = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)


def parse_customer_key(
    algorithm: str | None, key_b64: str | None, key_md5_b64: str | None
) -> bytes | None:
    """The customer key from the three SSE-C headers (``x-amz-server-side-encryption-customer-
    algorithm``, ``-key`` and ``-key-MD5``; or their ``x-amz-copy-source-`` twins), validated as
    AWS does; None when none of them is present. An empty header counts as present.

    >>> key = bytes(range(32))
    >>> md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    >>> parse_customer_key("AES256", base64.b64encode(key).decode(), md5) == key
    True
    >>> parse_customer_key(None, None, None) is None
    True
    """
    if algorithm is None and key_b64 is None and key_md5_b64 is None:
        return None
    if algorithm is None:
        raise InvalidArgument(f"{_SSE_C} a valid encryption algorithm.")
    if algorithm != SSE_C_ALGORITHM:
        raise InvalidEncryptionAlgorithm(
            "The Encryption request you specified is not valid. Supported value: AES256."
        )
    if key_b64 is None:
        raise InvalidArgument(f"{_SSE_C} an appropriate secret key.")
    if key_md5_b64 is None:
        raise InvalidArgument(f"{_SSE_C} the client calculated MD5 of the secret key.")
    try:
        key = base64.b64decode(key_b64, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise InvalidArgument("The secret key was invalid for the specified algorithm.")
    try:
        md5 = base64.b64decode(key_md5_b64, validate=True)
    except binascii.Error:
        raise InvalidArgument(
            "The MD5 hash of the secret key was improperly encoded. "
            "The MD5 hash must be Base64 encoded."
        ) from None
    # Not a secret comparison (the client sent both), but constant time costs nothing.
    if not hmac.compare_digest(md5, hashlib.md5(key, usedforsecurity=False).digest()):
        raise InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided."
        )
    return key


def new_customer_envelope(
    customer_key: bytes, *, segment_bytes: int = SEGMENT_BYTES
) -> tuple[Envelope, bytes]:
    """(envelope, data key) for a new stream under an SSE-C customer key."""
    check_key(customer_key, "customer key")
    salt = os.urandom(SALT_BYTES)
    envelope = Envelope(
        mode=CUSTOMER,
        nonce_prefix=os.urandom(NONCE_PREFIX_BYTES),
        salt=salt,
        key_check=_key_check(customer_key, salt),
        segment_bytes=segment_bytes,
    )
    return envelope, _derive_data_key(customer_key, salt)


def customer_data_key(envelope: Envelope, customer_key: bytes) -> bytes:
    """The data key of an SSE-C stream, once the customer key matches its key check (constant
    time): ``WrongCustomerKey`` if not, ``EncryptionMismatch`` for a stream stored otherwise."""
    check_key(customer_key, "customer key")
    if envelope.mode != CUSTOMER:
        raise EncryptionMismatch(NOT_APPLICABLE)
    if not hmac.compare_digest(_key_check(customer_key, envelope.salt), envelope.key_check):
        raise WrongCustomerKey("Access Denied: the SSE-C key is not the object's key")
    return _derive_data_key(customer_key, envelope.salt)


def _key_check(customer_key: bytes, salt: bytes) -> bytes:
    return hmac.digest(customer_key, KEY_CHECK_LABEL + salt, "sha256")


def _derive_data_key(customer_key: bytes, salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=HKDF_INFO)
    return hkdf.derive(customer_key)


# -- SSE-S3 ---------------------------------------------------------------------------------------


def new_managed_envelope(
    master_keys: Mapping[str, bytes], key_id: str, *, segment_bytes: int = SEGMENT_BYTES
) -> tuple[Envelope, bytes]:
    """(envelope, data key) for a new SSE-S3 stream: a random data key wrapped by master key
    ``key_id`` (the current one)."""
    data_key = os.urandom(KEY_BYTES)
    envelope = Envelope(
        mode=MANAGED,
        nonce_prefix=os.urandom(NONCE_PREFIX_BYTES),
        wrapped_key=aes_key_wrap(_master_key(master_keys, key_id), data_key),
        master_key_id=key_id,
        segment_bytes=segment_bytes,
    )
    return envelope, data_key


def managed_data_key(envelope: Envelope, master_keys: Mapping[str, bytes]) -> bytes:
    """The data key of an SSE-S3 stream, unwrapped with the master key it names:
    ``MasterKeyUnavailable`` if that key is not loaded, ``DecryptionFailed`` if it does not
    unwrap (a damaged record, or a master key file changed under the same id)."""
    if envelope.mode != MANAGED:
        raise EncryptionMismatch(PARAMETERS_REQUIRED)
    master_key = _master_key(master_keys, envelope.master_key_id)
    try:
        return aes_key_unwrap(master_key, envelope.wrapped_key)
    except InvalidUnwrap:
        raise DecryptionFailed(
            f"the data key does not unwrap with master key {envelope.master_key_id!r}"
        ) from None


def data_key_for(
    envelope: Envelope, *, customer_key: bytes | None, master_keys: Mapping[str, bytes]
) -> bytes:
    """The data key to read a stream, from what a request brought (``parse_customer_key``):
    SSE-C headers on an SSE-S3 object, or none on an SSE-C object, are ``EncryptionMismatch``."""
    if customer_key is not None:
        return customer_data_key(envelope, customer_key)
    return managed_data_key(envelope, master_keys)


def _master_key(master_keys: Mapping[str, bytes], key_id: str) -> bytes:
    key = master_keys.get(key_id)
    if key is None:
        raise MasterKeyUnavailable(f"master key {key_id!r} is not configured")
    check_key(key, f"master key {key_id!r}")
    return key


def check_key(key: bytes, what: str) -> None:
    # A key of another length is a bug or a bad config file, not a client error.
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes, not {len(key)}")
