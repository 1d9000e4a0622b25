"""Where a volume's extent replicas live, and which of them are stale.

An extent of a layer has ``replicas`` copies on drives chosen by HRW from its id (placement is
pure and cached here). A replica whose drive failed a write is **stale**: it passes its own
checksums with old data, so from then on it is neither read nor written until repair copies a
good replica over it. Stale marks are committed to the metadata (``VS/<layer>/<index>``: a JSON
list of drive ids) before the write that made them is acknowledged, so they survive a crash and
a reopen on another gateway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

import trio

from store.errors import Unavailable
from store.meta.api import KV
from store.volumes import records as V

log = logging.getLogger(__name__)

PLACEMENTS_CACHED = 4096  # extents whose replica drives are remembered


class ReplicaSet:
    def __init__(
        self,
        kv: KV,
        name: str,
        place: Callable[[str], list[str]],
        stale: Mapping[tuple[str, int], frozenset[str]] | None = None,
    ) -> None:
        self._kv = kv
        self._name = name
        self._place = place  # extent id -> its replica drives, best first
        self._placement: dict[tuple[str, int], tuple[str, list[str]]] = {}
        # Mirrors the VS/ keys: (layer, index) -> the stale replicas' drives.
        self.stale: dict[tuple[str, int], frozenset[str]] = dict(stale or {})
        self._lock = trio.Lock()

    def _placed(self, layer: str, index: int) -> tuple[str, list[str]]:
        key = (layer, index)
        found = self._placement.get(key)
        if found is None:  # HRW ranks every drive: worth remembering per extent
            eid = V.extent_id(layer, index)
            found = (eid, self._place(eid))
            if len(self._placement) >= PLACEMENTS_CACHED:
                self._placement.clear()
            self._placement[key] = found
        return found

    def forget(self, layer: str, index: int) -> None:
        """Drop a remembered placement (an extent made anew may be placed by a newer map)."""
        self._placement.pop((layer, index), None)

    def eid(self, layer: str, index: int) -> str:
        return self._placed(layer, index)[0]

    def drives(self, layer: str, index: int) -> list[str]:
        """Every replica's drive, stale ones included."""
        return self._placed(layer, index)[1]

    def good(self, layer: str, index: int) -> list[str]:
        """The replicas to read and write: every one but those marked stale."""
        return self.target(layer, index)[1]

    def target(self, layer: str, index: int) -> tuple[str, list[str]]:
        """The extent's id and its good replicas' drives (one lookup: the hot path's)."""
        found = self._placement.get((layer, index)) or self._placed(layer, index)
        if not self.stale:
            return found
        stale = self.stale.get((layer, index))
        return (found[0], [d for d in found[1] if d not in stale]) if stale else found

    async def degrade(
        self, layer: str, index: int, drives: list[str], failed: Mapping[str, Exception]
    ) -> None:
        """Some replicas of an extent failed a write: record them stale before the write is
        acknowledged and go on with the others. None left: Unavailable (the write fails)."""
        problems = "; ".join(f"{d}: {e}" for d, e in failed.items())
        if len(failed) == len(drives):
            raise Unavailable(
                f"extent {index} of {self._name}: no replica could be written ({problems})"
            )
        async with self._lock:
            marked = self.stale.get((layer, index), frozenset()) | failed.keys()
            await self._kv.put(V.stale_key(layer, index), json.dumps(sorted(marked)).encode())
            self.stale[(layer, index)] = marked
        log.warning(
            "volume %s extent %d: writing degraded, stale replicas: %s", self._name, index, problems
        )

    async def clear(self, layer: str, index: int, fixed: list[str]) -> None:
        """``fixed`` were rewritten from a good replica: stale no more."""
        async with self._lock:
            left = self.stale.get((layer, index), frozenset()) - set(fixed)
            key = V.stale_key(layer, index)
            if left:
                await self._kv.put(key, json.dumps(sorted(left)).encode())
                self.stale[(layer, index)] = left
            else:
                await self._kv.delete(key)
                self.stale.pop((layer, index), None)
        log.info("volume %s extent %d: stale replicas rewritten: %s", self._name, index, fixed)
