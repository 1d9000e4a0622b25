"""Every domain error has an NBD error value, one the spec allows for the purpose; bugs are EIO."""

from __future__ import annotations

import inspect

import pytest

from store import errors as E
from store.nbd.constants import Errno
from store.nbd.errors import DOMAIN_ERRORS, errno_for

# proto.md "Error values": the only numbers a reply may carry.
SPEC_ERRNOS = {1, 5, 12, 22, 28, 75, 95, 108}

STORE_ERRORS = [
    cls
    for _, cls in inspect.getmembers(E, inspect.isclass)
    if issubclass(cls, E.StoreError) and cls.__module__ == E.__name__
]


def make(cls: type[E.StoreError]) -> E.StoreError:
    return cls("message")  # every domain error takes a message first; the rest are keywords


def test_the_domain_errors_were_found() -> None:
    names = {cls.__name__ for cls in STORE_ERRORS}
    assert {"StoreError", "NotFound", "NoSpace", "ReadOnly", "TooFewShards", "BadDigest"} <= names


@pytest.mark.parametrize("cls", STORE_ERRORS, ids=lambda cls: cls.__name__)
def test_every_domain_error_resolves_through_its_mro(cls: type[E.StoreError]) -> None:
    mapped = [base for base in cls.__mro__ if base in DOMAIN_ERRORS]
    assert mapped, f"{cls.__name__} has no mapping in its MRO"
    # Only the base class itself may rely on the StoreError catch-all: every category has its own.
    assert mapped[0] is not E.StoreError or cls is E.StoreError
    errno = errno_for(make(cls))
    assert isinstance(errno, Errno)
    assert errno == DOMAIN_ERRORS[mapped[0]]


def test_the_table_holds_only_domain_errors_and_spec_values() -> None:
    for cls, errno in DOMAIN_ERRORS.items():
        assert issubclass(cls, E.StoreError), cls
        assert isinstance(errno, Errno)
        assert int(errno) in SPEC_ERRNOS
        # ENOTSUP and EOVERFLOW are reserved for FAST_ZERO and DF; ENOMEM "SHOULD NOT" be sent.
        assert errno not in (Errno.OK, Errno.ENOTSUP, Errno.EOVERFLOW, Errno.ENOMEM), cls


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (E.NoSpace("full"), Errno.ENOSPC),
        (E.ReadOnly("snapshot"), Errno.EPERM),
        (E.PermissionDenied("no"), Errno.EPERM),
        (E.OutOfRange("past the end"), Errno.EINVAL),
        (E.InvalidArgument("bad"), Errno.EINVAL),
        (E.BadDigest("x"), Errno.EINVAL),  # through InvalidArgument
        (E.PayloadDigestMismatch("x"), Errno.EINVAL),  # two levels down
        (E.NoSuchKey("k", delete_marker=True), Errno.EINVAL),  # through NotFound
        (E.Unavailable("quorum"), Errno.EIO),
        (E.TooFewShards("stripe"), Errno.EIO),  # through Unavailable
        (E.Corrupt("checksum"), Errno.EIO),
        (E.Conflict("lease lost"), Errno.EIO),
        (E.StoreError("generic"), Errno.EIO),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_specific_mappings(error: E.StoreError, expected: Errno) -> None:
    assert errno_for(error) is expected


@pytest.mark.parametrize(
    "error",
    [
        KeyError("bug"),
        ValueError("bug"),
        AssertionError(),
        OSError(28, "No space left on device"),  # a raw OSError is a bug here, not ENOSPC
        ExceptionGroup("many", [E.NoSpace("a"), E.ReadOnly("b")]),
        KeyboardInterrupt(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_eio(error: BaseException) -> None:
    assert errno_for(error) is Errno.EIO


def test_a_subclass_defined_elsewhere_still_resolves() -> None:
    class VolumeFull(E.NoSpace):
        pass

    class LeaseLost(E.Conflict):
        pass

    assert errno_for(VolumeFull("x")) is Errno.ENOSPC
    assert errno_for(LeaseLost("x")) is Errno.EIO
