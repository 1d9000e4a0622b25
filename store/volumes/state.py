"""What an open volume is right now, shared by its parts (I/O, repair, snapshots): the layer it
writes (a live snapshot moves it to a new one), the layers it reads through, and which layer
holds each extent."""

from __future__ import annotations

import math
from dataclasses import dataclass

from store.volumes import records as V


@dataclass(slots=True)
class VolumeState:
    volume: V.Volume
    chain: list[str]  # the layer written, then its ancestors: top first
    allocated: dict[int, str]  # extent index -> the layer holding it (the top or an ancestor)
    writable: bool
    lost: bool = False  # the lease was lost: no more I/O
    fence: int = 0  # the owner's fencing token (its owner key's create revision); 0: no owner
    lease_valid_until: float = math.inf  # time.monotonic(): past it the lease may be gone

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def layer(self) -> str:
        return self.chain[0]
