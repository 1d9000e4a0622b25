"""io_uring in tests: which refusals mean "no io_uring on this machine" (then a test of the ring
skips, saying so), and the drives' ring for a Trio run."""

from __future__ import annotations

import errno

import pytest

from store.chunk import uring

# The refusals that mean "no io_uring on this machine", where drives use their thread pools
# (tested by the rest of the suite, and by `make test`'s STORE_DRIVE_IO=threads run): a build
# without liburing or an old kernel (ENOSYS), kernel.io_uring_disabled or seccomp (EPERM,
# EACCES). Any other error is a failure, not a skip.
REFUSED = (errno.ENOSYS, errno.EPERM, errno.EACCES)


def skip_if_refused(e: OSError) -> None:
    if e.errno not in REFUSED:
        raise e
    pytest.skip(f"this kernel or build refuses io_uring ({e}); drives use their thread pools")


def drive_ring_or_skip(monkeypatch: pytest.MonkeyPatch) -> uring.Uring:
    """This Trio run's drive ring, forced (``STORE_DRIVE_IO=io_uring``, read at the run's first
    drive call): the test skips only where the kernel or build refuses io_uring."""
    monkeypatch.setenv(uring.MODE_ENV, "io_uring")
    try:
        io = uring.drive_io()
    except OSError as e:
        skip_if_refused(e)
        raise
    assert io is not None
    return io
