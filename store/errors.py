"""Domain errors: what went wrong, in terms of the store, never of HTTP or NBD.

Each protocol maps these once (gateway/ for S3 codes and NBD errnos); a test checks every class
here has a mapping. Anything that is not a StoreError is a bug and is reported as an internal error.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every expected failure."""


class InvalidArgument(StoreError):
    """A request that can never succeed as written (bad name, size, range, option)."""


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
