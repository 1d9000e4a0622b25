"""Small file-system helpers shared by shard files and extent files, and drives' threads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

T = TypeVar("T")


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Threads:
    """A drive's bounded thread pool for blocking file work: a slow drive cannot take every
    thread of the process."""

    def __init__(self, count: int) -> None:
        self._limiter = trio.CapacityLimiter(count)

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The same bound for the drive's io_uring operations (``async with``): a slow drive
        cannot hold every operation in flight either."""
        return self._limiter

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def remove_durably(path: Path) -> bool:
    """Unlink a file and fsync its directory; False if it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
