"""One open volume per volume in a process, shared by every NBD connection to it (MULTI_CONN:
a FLUSH on any connection covers the writes of all), kept open briefly after the last one goes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from store.volumes.admin import Volumes
from store.volumes.open_volume import OpenVolume

LINGER_S = 2.0  # a volume stays open this long after its last connection


@dataclass
class _Shared:
    volume: OpenVolume
    users: int = 0
    changed: trio.Event = field(default_factory=trio.Event)  # users went to 0, or back up


class VolumeHub:
    """One OpenVolume per volume in this process, shared by its connections. Opened on first
    use (taking the volume's lease); kept open ``LINGER_S`` after the last connection goes (tools
    such as nbdcopy and qemu-img connect, probe, disconnect and connect again), then closed
    (flushed, lease released). A connection arriving while it closes waits for the close, so
    the lease is never contended within one process."""

    def __init__(self, volumes: Volumes, nursery: trio.Nursery) -> None:
        self.volumes = volumes
        self._nursery = nursery
        self._open: dict[str, _Shared] = {}
        self._busy: dict[str, trio.Event] = {}  # opening or closing

    @asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[OpenVolume]:
        while name in self._busy:
            await self._busy[name].wait()
        shared = self._open.get(name)
        if shared is None:
            self._busy[name] = opening = trio.Event()
            try:
                shared = await self._nursery.start(self._hold, name)
            finally:
                del self._busy[name]
                opening.set()
        shared.users += 1
        shared.changed.set()
        try:
            yield shared.volume
        finally:
            shared.users -= 1
            shared.changed.set()

    async def _hold(self, name: str, task_status: trio.TaskStatus[_Shared]) -> None:
        volume = await self.volumes.get(name)
        closing = None
        try:
            async with self.volumes.open(name, writable=not volume.readonly) as opened:
                shared = _Shared(opened)
                self._open[name] = shared
                task_status.started(shared)
                while True:
                    await shared.changed.wait()
                    shared.changed = trio.Event()
                    if shared.users:
                        continue
                    with trio.move_on_after(LINGER_S):
                        await shared.changed.wait()
                    if not shared.users:
                        break
                self._busy[name] = closing = trio.Event()
                del self._open[name]
        finally:  # the volume is closed (flushed, its lease released)
            if closing is not None:
                del self._busy[name]
                closing.set()
            else:
                self._open.pop(name, None)
