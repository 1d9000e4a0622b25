"""Domain errors as NBD error values, mapped once (QEMU's system_errno_to_nbd_errno, for us).

The spec allows only a few values; the client passes them to the guest as an I/O error of that
kind, so what matters is the class: the caller's mistake (EINVAL), a refusal (EPERM), no space
(ENOSPC), or the storage failing (EIO).
"""

from __future__ import annotations

from store import errors as E
from store.nbd.constants import Errno

DOMAIN_ERRORS: dict[type[E.StoreError], Errno] = {
    E.StoreError: Errno.EIO,
    E.InvalidArgument: Errno.EINVAL,
    E.InvalidEncryptionAlgorithm: Errno.EINVAL,
    E.EncryptionMismatch: Errno.EINVAL,
    E.OutOfRange: Errno.EINVAL,
    E.NotFound: Errno.EINVAL,
    E.AlreadyExists: Errno.EINVAL,
    E.NotEmpty: Errno.EINVAL,
    E.MethodNotAllowed: Errno.EINVAL,
    E.ReadOnly: Errno.EPERM,
    E.PermissionDenied: Errno.EPERM,
    E.Locked: Errno.EPERM,
    E.NoSpace: Errno.ENOSPC,
    E.PreconditionFailed: Errno.EIO,
    E.Unavailable: Errno.EIO,  # TooFewShards too: the data exists but cannot be read now
    E.Corrupt: Errno.EIO,
    E.Conflict: Errno.EIO,  # the volume's lease was lost to another gateway
}


def errno_for(error: BaseException) -> Errno:
    """The NBD error value for an exception (EIO for bugs, which the server also logs).

    >>> errno_for(E.NoSpace("full")), errno_for(E.BadDigest("x")), errno_for(KeyError())
    (<Errno.ENOSPC: 28>, <Errno.EINVAL: 22>, <Errno.EIO: 5>)
    """
    for cls in type(error).__mro__:
        found = DOMAIN_ERRORS.get(cls)
        if found is not None:
            return found
    return Errno.EIO
