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

Two algorithms share that tree and those scores. 1, the embedded node's: the chosen drives in
rank order, shard i on entry i (a drive leaving shifts the shards ranked after it). 2, every
cluster map's: CRUSH's "indep" choice, one draw per shard position (``_draw``), so a drive
leaving or joining moves the positions it held or wins and few others. A map names its
algorithm, so changing the default never moves data already placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import xxhash

from store.errors import InvalidArgument

_MAX64 = float(1 << 64)
DRAW_ATTEMPTS = 25  # redraws of a position that drew a drive taking no data


@dataclass(frozen=True, slots=True)
class DriveInfo:
    drive_id: str
    host: str
    weight: float = 1.0  # relative capacity; 0 drains the drive (it receives no new PGs)
    rack: str = ""
    zone: str = ""
    # False: in the map for its weight's sake (draining or out), never chosen. Keeping it in
    # the draws keeps every other shard where it was (algorithm 2).
    placeable: bool = True

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
    # 1: shards in rank order (the embedded node's maps); 2: one draw per shard position, so a
    # drive leaving or joining moves only the positions it held or wins (cluster maps).
    algorithm: int = 1

    def __post_init__(self) -> None:
        if self.pg_count < 1 or self.pg_count & (self.pg_count - 1):
            raise InvalidArgument("pg_count must be a power of two")
        ids = [d.drive_id for d in self.drives]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("drive ids must be unique")
        if self.algorithm not in (1, 2):
            raise InvalidArgument(f"unknown placement algorithm {self.algorithm}")


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
    placeable = [d for d in live if d.placeable]
    if width > len(placeable):
        raise InvalidArgument(f"need {width} drives, the map has {len(placeable)} with weight")
    if cmap.algorithm == 2:
        return [d.drive_id for d in _draw(pg, live, width)]
    return [d.drive_id for d in _spread(pg, placeable, 0, width)]


def _water_fill(capacities: dict[str, int], need: int) -> dict[str, int]:
    """Per-branch caps as even as the branches' capacities allow: the least ``x`` with
    ``sum(min(c, x)) >= need``, each branch capped at ``min(c, x)``.

    >>> _water_fill({"a": 1, "b": 5, "c": 5}, 6)
    {'a': 1, 'b': 3, 'c': 3}
    """
    x = 0
    while sum(min(c, x) for c in capacities.values()) < need:
        x += 1
    return {b: min(c, x) for b, c in capacities.items()}


def _draw(pg: int, live: list[DriveInfo], width: int) -> list[DriveInfo]:
    """Algorithm 2, CRUSH's "indep" choice: in each round, every position still open descends
    the tree by straw2 scores of (pg, position, round) alone, and keeps what it drew unless
    that drive takes no data, is taken, or would put a branch over its cap (the even spread's
    bound); then it draws again next round. A position's draws never depend on what the others
    drew, so a drive leaving moves the positions it held (and, rarely, one its branch's cap
    had turned away), and a drive joining moves the positions it wins."""
    caps: dict[str, int] = {}
    weight: dict[str, float] = {}
    children: dict[str, list[str]] = {}
    drives_of: dict[str, list[DriveInfo]] = {}
    for d in live:
        zone, rack, host, _ = d.domains
        for parent, name in (("", zone), (zone, rack), (rack, host)):
            if name not in weight:
                children.setdefault(parent, []).append(name)
            weight[name] = weight.get(name, 0.0) + d.weight
        drives_of.setdefault(host, []).append(d)

    def room(name: str, level: int) -> int:
        if level == 2:
            return sum(d.placeable for d in drives_of[name])
        return sum(room(c, level + 1) for c in children[name])

    def cap(parent: str, level: int, need: int) -> None:
        if level == 3:
            return
        for name, n in _water_fill({c: room(c, level) for c in children[parent]}, need).items():
            caps[name] = n
            cap(name, level + 1, n)

    cap("", 0, width)
    out: list[DriveInfo | None] = [None] * width
    used: dict[str, int] = {}

    def take(r: int, d: DriveInfo) -> None:
        out[r] = d
        for name in d.domains[:3]:
            used[name] = used.get(name, 0) + 1

    def fits(d: DriveInfo) -> bool:
        return d.placeable and d not in out and all(used.get(n, 0) < caps[n] for n in d.domains[:3])

    for attempt in range(DRAW_ATTEMPTS):
        for r in range(width):
            if out[r] is not None:
                continue
            key = f"{r}/{attempt}"
            node = ""
            for _ in range(3):
                node = max(children[node], key=lambda b: (_score(pg, f"{key}/{b}", weight[b]), b))
            pick = max(
                drives_of[node],
                key=lambda d: (_score(pg, f"{key}/{d.drive_id}", d.weight), d.drive_id),
            )
            if fits(pick):
                take(r, pick)
        if all(out):
            break
    for r in range(width):  # what the rounds left open: the best drive that fits, in order
        if out[r] is None:
            key = f"{r}/last"
            fitting = [d for d in live if fits(d)]
            take(
                r,
                max(
                    fitting, key=lambda d: (_score(pg, f"{key}/{d.drive_id}", d.weight), d.drive_id)
                ),
            )
    return [d for d in out if d is not None]


def place(cmap: ClusterMap, chunk_id: str, width: int) -> list[str]:
    """Drives for a chunk's shards."""
    return drives_for_pg(cmap, pg_of(chunk_id, cmap.pg_count), width)
