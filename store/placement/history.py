"""The cluster maps of every epoch: a chunk or extent is found by the map it was placed under.

Every change to the drives that moves placement (a drive added, drained, taken out, reweighted,
moved to another host, rack or zone) makes a new map with the next epoch; what was written before
stays where its own epoch's map put it (its record names the epoch), so a change never makes
data unreachable. A record older than the epoch field (epoch 0), or older than the oldest map
kept, reads with the oldest map. A placement group the rebalancer has moved to a newer epoch
has its older chunks there instead (``moved``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from store.errors import InvalidArgument
from store.placement.hrw import ClusterMap


class MapHistory:
    def __init__(self, maps: Iterable[ClusterMap]) -> None:
        self._maps: dict[int, ClusterMap] = {}
        self._epochs: list[int] = []
        # PG -> the epoch the rebalancer moved it to: its chunks of that epoch and older are
        # where that epoch's map puts them.
        self.moved: dict[int, int] = {}
        self.revision = 0  # of the cluster map this history was last brought up to
        for cmap in sorted(maps, key=lambda m: m.epoch):
            self.add(cmap)
        if not self._epochs:
            raise InvalidArgument("a map history needs a map")

    @property
    def current(self) -> ClusterMap:
        """The newest map: where new data goes."""
        return self._maps[self._epochs[-1]]

    @property
    def epochs(self) -> list[int]:
        return list(self._epochs)

    def add(self, cmap: ClusterMap) -> None:
        """A new map; its epoch must be above every one known (an equal one is ignored)."""
        if self._epochs and cmap.epoch <= self._epochs[-1]:
            if cmap.epoch in self._maps:
                return
            raise InvalidArgument(f"map epoch {cmap.epoch} is older than {self._epochs[-1]}")
        self._maps[cmap.epoch] = cmap
        self._epochs.append(cmap.epoch)

    def drop(self, epoch: int) -> None:
        """Forget a map no data is placed by any more (``store cluster remove`` pruned it);
        the newest is never dropped."""
        if epoch == self._epochs[-1]:
            raise InvalidArgument("the newest map cannot be dropped")
        if self._maps.pop(epoch, None) is not None:
            self._epochs.remove(epoch)

    def at(self, epoch: int) -> ClusterMap:
        """The map in force at ``epoch``: the newest one not after it.

        >>> from store.placement.hrw import DriveInfo
        >>> maps = [ClusterMap(e, 64, (DriveInfo("a", "h"),)) for e in (3, 5)]
        >>> h = MapHistory(maps)
        >>> [h.at(e).epoch for e in (0, 3, 4, 5, 9)]
        [3, 3, 3, 5, 5]
        """
        i = bisect.bisect_right(self._epochs, epoch)
        return self._maps[self._epochs[max(i - 1, 0)]]

    def for_chunk(self, epoch: int, pg: int) -> ClusterMap:
        """The map placing a chunk written under ``epoch`` in placement group ``pg``."""
        return self.at(max(epoch, self.moved.get(pg, 0)))

    def known(self, epoch: int) -> bool:
        """Whether this history has the map of ``epoch`` (or a newer one): data written by a
        gateway that already follows a newer map must not be looked for with an older one."""
        return epoch <= self._epochs[-1]

    def drive_ids(self) -> set[str]:
        """Every drive any kept map places data on."""
        return {d.drive_id for m in self._maps.values() for d in m.drives}
