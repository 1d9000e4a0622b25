"""Placement: chunk id -> placement group -> drives, by rendezvous (highest random weight) hashing.

Pure and deterministic: the same cluster map and chunk id give the same drives on every gateway.
A chunk's placement group (PG) is a hash of its id modulo the PG count (a power of two, fixed for
the life of the cluster). A PG's drives are the ``width`` drives with the highest score
``xxh3_64(pg, drive id)`` scaled by drive weight, taking at most one drive per host while enough
hosts exist. Adding or removing a drive changes only the PGs where that drive enters or leaves the
top ``width``: on average ``width / drives`` of them, the minimum any scheme can move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import xxhash

from store.errors import InvalidArgument

_MAX64 = float(1 << 64)
# The cluster map in the metadata: one key per drive under this prefix, each put by the drive's
# chunk server under a lease (store/chunkserver.py; read by store/cluster_drives.py).
DRIVES_PREFIX = b"CM/drives/"


@dataclass(frozen=True, slots=True)
class DriveInfo:
    drive_id: str
    host: str
    weight: float = 1.0  # relative capacity; 0 drains the drive (it receives no new PGs)


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


def _score(pg: int, drive: DriveInfo) -> float:
    """Weighted rendezvous score: -w / ln(u) keeps choices proportional to weight (HRW)."""
    if drive.weight <= 0:
        return -math.inf
    h = xxhash.xxh3_64_intdigest(f"{pg}\0{drive.drive_id}".encode())
    u = (h + 0.5) / _MAX64  # in (0, 1)
    return -drive.weight / math.log(u)


def drives_for_pg(cmap: ClusterMap, pg: int, width: int) -> list[str]:
    """The ``width`` drives holding PG ``pg``, best first (shard i goes to entry i)."""
    live = [d for d in cmap.drives if d.weight > 0]
    if width > len(live):
        raise InvalidArgument(f"need {width} drives, the map has {len(live)} with weight")
    ranked = sorted(live, key=lambda d: _score(pg, d), reverse=True)
    chosen: list[DriveInfo] = []
    hosts: set[str] = set()
    spread = len({d.host for d in live}) >= width
    for drive in ranked:
        if spread and drive.host in hosts:
            continue
        chosen.append(drive)
        hosts.add(drive.host)
        if len(chosen) == width:
            break
    if len(chosen) < width:  # fewer hosts than shards: fill with the best remaining drives
        chosen += [d for d in ranked if d not in chosen][: width - len(chosen)]
    return [d.drive_id for d in chosen]


def place(cmap: ClusterMap, chunk_id: str, width: int) -> list[str]:
    """Drives for a chunk's shards."""
    return drives_for_pg(cmap, pg_of(chunk_id, cmap.pg_count), width)
