"""Domain errors: what went wrong, in terms of the store, never of HTTP or NBD.

Each protocol maps these once (gateway/ for S3 codes and NBD errnos); a test checks every class
here has a mapping. Anything that is not a StoreError is a bug and is reported as an internal error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class StoreError(Exception):
    """Base of every expected failure."""


class InvalidArgument(StoreError):
    """A request that can never succeed as written (bad name, size, range, option)."""


class InvalidEncryptionAlgorithm(InvalidArgument):
    """An SSE-C algorithm other than AES256."""


class EncryptionMismatch(InvalidArgument):
    """Encryption parameters that do not fit how an object is stored (SSE-C headers on an object
    stored otherwise, none on an SSE-C object)."""


class NotFound(StoreError):
    """The named bucket, object, version, upload, volume or user does not exist."""


class AlreadyExists(StoreError):
    """Creating something whose name is taken."""


class NotEmpty(StoreError):
    """Deleting a container (bucket, volume with snapshots) that still holds things."""


class PreconditionFailed(StoreError):
    """A conditional request (If-Match, compare-and-swap) whose condition does not hold."""


class OutOfRange(StoreError):
    """A byte range or block address outside the object or volume."""


class ReadOnly(StoreError):
    """Writing to something that only allows reads (a snapshot, a read-only export)."""


class PermissionDenied(StoreError):
    """The caller is authenticated but not allowed to do this."""


class Locked(PermissionDenied):
    """Object lock (a retention period or a legal hold) forbids removing or changing this."""


class NoSpace(StoreError):
    """Not enough free space on enough drives to place the data durably."""


class Unavailable(StoreError):
    """Not enough drives or servers answered in time (quorum not reached); retrying may work."""


class TooFewShards(Unavailable):
    """Fewer than k shards of a stripe are readable: the stripe cannot be decoded now."""


class Corrupt(StoreError):
    """Stored data failed its checksum and could not be rebuilt from redundancy."""


class Conflict(StoreError):
    """A concurrent change won (lease held elsewhere, transaction raced)."""


# -- object store specifics: subclasses, so a mapping of the base class still covers them ---------


class NoSuchBucket(NotFound):
    pass


class NoSuchKey(NotFound):
    """No such object; ``delete_marker`` is set when the latest version is a delete marker."""

    def __init__(self, message: str, *, delete_marker: bool = False, version_id: str = "") -> None:
        super().__init__(message)
        self.delete_marker = delete_marker
        self.version_id = version_id


class NoSuchVersion(NotFound):
    pass


class NoSuchUpload(NotFound):
    pass


class BucketNotEmpty(NotEmpty):
    pass


class MethodNotAllowed(StoreError):
    """The operation does not apply to this target (reading a delete marker by version id)."""

    def __init__(self, message: str, *, delete_marker: bool = False, version_id: str = "") -> None:
        super().__init__(message)
        self.delete_marker = delete_marker
        self.version_id = version_id


class BadDigest(InvalidArgument):
    """The data does not match the digest (Content-MD5, x-amz-checksum-*) the client sent."""


class PayloadDigestMismatch(BadDigest):
    """The body does not match the SHA-256 its signature covers (x-amz-content-sha256)."""


class InvalidPart(InvalidArgument):
    """A multipart completion names a part that was not uploaded or whose ETag differs."""


class InvalidPartOrder(InvalidArgument):
    """A multipart completion lists parts out of ascending order."""


class EntityTooSmall(InvalidArgument):
    """A multipart part other than the last is smaller than the minimum part size."""


class EntityTooLarge(InvalidArgument):
    """An object or part larger than the maximum size."""


class InvalidBucketName(InvalidArgument):
    pass


class KeyTooLong(InvalidArgument):
    pass


class IncompleteBody(InvalidArgument):
    """The request body ended before the declared length."""


class BucketAlreadyExists(AlreadyExists):
    """The bucket name is taken; ``owner`` says by whom (S3 tells its owner apart)."""

    def __init__(self, message: str, *, owner: str = "") -> None:
        super().__init__(message)
        self.owner = owner


@contextlib.contextmanager
def collapse_single_group() -> Iterator[None]:
    """Re-raise a lone exception out of a nursery's ExceptionGroup as itself, so callers (and
    the protocol error maps) see ``NoSpace`` rather than a group holding it."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
