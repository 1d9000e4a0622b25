"""Placement: chunk id -> placement group -> drives, by weighted rendezvous hashing per level.

Pure and deterministic: the same cluster map and chunk id give the same drives on every gateway.
A chunk's placement group (PG) is a hash of its id modulo the PG count (a power of two, fixed for
the life of the cluster). The drives form a tree of failure domains, zone > rack > host > drive.
A PG's ``width`` shards are spread over the tree level by level as evenly as each level allows
(six shards on three zones: two per zone; within a zone, one per host while there are hosts
enough), and at each level the branches that take the shards (or the extra shard, where they do
not divide evenly) are the ones with the highest weighted rendezvous score ``xxh3_64(pg, name)``
(Ceph's straw2: a branch weighs what its drives weigh). Changing a drive changes only the PGs
where it, or its branch, enters or leaves the chosen set: about ``width / drives`` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import xxhash

from store.errors import InvalidArgument

_MAX64 = float(1 << 64)


@dataclass(frozen=True, slots=True)
class DriveInfo:
    drive_id: str
    host: str
    weight: float = 1.0  # relative capacity; 0 drains the drive (it receives no new PGs)
    rack: str = ""
    zone: str = ""

    @property
    def domains(self) -> tuple[str, str, str, str]:
        """Its branch of the failure-domain tree, top first (names are unique per level
        because each carries its parents')."""
        zone = f"z:{self.zone}"
        rack = f"{zone}/r:{self.rack}"
        host = f"{rack}/h:{self.host}"
        return zone, rack, host, self.drive_id


@dataclass(frozen=True, slots=True)
class ClusterMap:
    epoch: int
    pg_count: int
    drives: tuple[DriveInfo, ...]

    def __post_init__(self) -> None:
        if self.pg_count < 1 or self.pg_count & (self.pg_count - 1):
            raise InvalidArgument("pg_count must be a power of two")
        ids = [d.drive_id for d in self.drives]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("drive ids must be unique")


def pg_of(chunk_id: str, pg_count: int) -> int:
    """The placement group of a chunk.

    >>> pg_of("00" * 16, 256) == pg_of("00" * 16, 256)
    True
    """
    return xxhash.xxh3_64_intdigest(chunk_id.encode()) & (pg_count - 1)


def _score(pg: int, name: str, weight: float) -> float:
    """Weighted rendezvous score: -w / ln(u) keeps choices proportional to weight (straw2)."""
    if weight <= 0:
        return -math.inf
    h = xxhash.xxh3_64_intdigest(f"{pg}\0{name}".encode())
    u = (h + 0.5) / _MAX64  # in (0, 1)
    return -weight / math.log(u)


def _spread(pg: int, drives: list[DriveInfo], level: int, n: int) -> list[DriveInfo]:
    """``n`` of ``drives`` (all in one branch at ``level`` - 1), spread over their branches at
    ``level``: each branch in rank order takes one, round after round, while it has drives."""
    if level == 3:
        ranked = sorted(drives, key=lambda d: _score(pg, d.drive_id, d.weight), reverse=True)
        return ranked[:n]
    branches: dict[str, list[DriveInfo]] = {}
    for drive in drives:
        branches.setdefault(drive.domains[level], []).append(drive)
    order = sorted(
        branches,
        key=lambda b: (_score(pg, b, sum(d.weight for d in branches[b])), b),
        reverse=True,
    )
    counts = dict.fromkeys(order, 0)
    left = n
    while left:
        for branch in order:
            if left and counts[branch] < len(branches[branch]):
                counts[branch] += 1
                left -= 1
    out: list[DriveInfo] = []
    for branch in order:
        if counts[branch]:
            out += _spread(pg, branches[branch], level + 1, counts[branch])
    return out


def drives_for_pg(cmap: ClusterMap, pg: int, width: int) -> list[str]:
    """The ``width`` drives holding PG ``pg`` (shard i goes to entry i), in distinct failure
    domains at every level where the map has enough of them."""
    live = [d for d in cmap.drives if d.weight > 0]
    if width > len(live):
        raise InvalidArgument(f"need {width} drives, the map has {len(live)} with weight")
    return [d.drive_id for d in _spread(pg, live, 0, width)]


def place(cmap: ClusterMap, chunk_id: str, width: int) -> list[str]:
    """Drives for a chunk's shards."""
    return drives_for_pg(cmap, pg_of(chunk_id, cmap.pg_count), width)
