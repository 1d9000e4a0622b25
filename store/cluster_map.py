"""The cluster map in the metadata: the drives, their liveness, and a placement map per epoch.

Keys (all under ``CM/``):

    CM/drives/<drive id>   {address, host, rack, zone, weight, state}: the drive as registered
                           and as the operator set it; kept when its server is down
    CM/alive/<drive id>    {address}: under the chunk server's lease, gone when it stops
    CM/epoch               {epoch}: the newest placement map's epoch
    CM/maps/<epoch>        the placement map of that epoch (the drives that take new data)
    CM/pgs/<pg>            {epoch}: the rebalancer moved the PG's chunks of that epoch and
                           older to that epoch's drives (store/admin/rebalance.py)
    CM/gateways/<id>       {settled, revision}: a gateway's lowest epoch with chunks still
                           unrecorded, and the CM/ revision it has applied; under its lease

Liveness never moves placement: a down drive stays in the map and its shards are read around
and rebuilt. What moves placement (a drive added, reweighted, drained, taken out, or moved to
another host, rack or zone) writes the new ``CM/drives`` records, the next ``CM/epoch`` and that
epoch's ``CM/maps`` entry in one transaction that compares the epoch key's revision, so two
changes never make the same epoch and every gateway reads the same map for it. The states: ``up``
(takes new data), ``draining`` and ``out`` (take none; what they hold stays readable where its
epoch's map put it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from store.errors import Conflict, InvalidArgument, NotFound
from store.meta.api import KV, Compare, Put, prefix_end
from store.placement.history import MapHistory
from store.placement.hrw import ClusterMap, DriveInfo, drives_for_pg

ALIVE_PREFIX = b"CM/alive/"
DRIVES_PREFIX = b"CM/drives/"
GATEWAYS_PREFIX = b"CM/gateways/"
PGS_PREFIX = b"CM/pgs/"
REBALANCE_LOCK = b"CM/rebalance"  # held (under a lease) by the one rebalance running
REBALANCED_KEY = b"CM/rebalanced"  # bumped by every switch: the commit fence of new chunks
EPOCH_KEY = b"CM/epoch"
MAPS_PREFIX = b"CM/maps/"
PG_COUNT = 256
STATES = ("up", "draining", "out")
TXN_RETRIES = 20


@dataclass(frozen=True, slots=True)
class DriveRecord:
    drive_id: str
    address: str
    host: str
    rack: str = ""
    zone: str = ""
    weight: float = 1.0
    state: str = "up"

    def encode(self) -> bytes:
        record = asdict(self)
        del record["drive_id"]
        return json.dumps(record, sort_keys=True).encode()

    @classmethod
    def decode(cls, drive_id: str, value: bytes) -> DriveRecord:
        try:
            record = json.loads(value)
            out = cls(
                drive_id,
                str(record["address"]),
                str(record["host"]),
                str(record.get("rack", "")),
                str(record.get("zone", "")),
                float(record.get("weight", 1.0)),
                str(record.get("state", "up")),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"a bad cluster map record for {drive_id}: {e}") from None
        if out.state not in STATES:
            raise InvalidArgument(f"drive {drive_id}: unknown state {out.state!r}")
        return out

    @property
    def placement(self) -> DriveInfo | None:
        """What the placement map holds of it: nothing at weight 0; a drive draining or out
        stays for its weight (so the other shards keep their drives) but is never chosen."""
        if self.weight <= 0:
            return None
        placeable = self.state == "up"
        return DriveInfo(self.drive_id, self.host, self.weight, self.rack, self.zone, placeable)


def encode_map(cmap: ClusterMap) -> bytes:
    drives = [[d.drive_id, d.host, d.rack, d.zone, d.weight, d.placeable] for d in cmap.drives]
    record = {"epoch": cmap.epoch, "pg_count": cmap.pg_count, "algorithm": cmap.algorithm}
    return json.dumps({**record, "drives": drives}).encode()


def decode_map(value: bytes) -> ClusterMap:
    """The inverse of ``encode_map``.

    >>> m = ClusterMap(4, 64, (DriveInfo("a", "h", 2.0, "r", "z", False),), algorithm=2)
    >>> decode_map(encode_map(m)) == m
    True
    """
    try:
        record = json.loads(value)
        drives = tuple(
            DriveInfo(str(d[0]), str(d[1]), float(d[4]), str(d[2]), str(d[3]), d[5:6] != [False])
            for d in record["drives"]
        )
        algorithm = int(record.get("algorithm", 1))
        return ClusterMap(int(record["epoch"]), int(record["pg_count"]), drives, algorithm)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"a bad placement map record: {e}") from None


def map_key(epoch: int) -> bytes:
    return MAPS_PREFIX + b"%016d" % epoch


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The cluster map as read at one revision."""

    drives: dict[str, DriveRecord]
    alive: dict[str, str]  # drive id -> the address its live server registered
    epoch: int  # 0 before the first drive registered
    epoch_revision: int  # mod revision of CM/epoch, 0 when absent: what a change compares
    history: MapHistory | None
    revision: int
    moved: dict[int, int] = field(default_factory=dict)  # pg -> the epoch it was moved to
    drive_revisions: dict[str, int] = field(default_factory=dict)  # what a change compares
    gateways: dict[str, tuple[int, int]] = field(default_factory=dict)  # (settled, revision)


async def read_cluster(kv: KV) -> ClusterState:
    found = await kv.range(b"CM/", prefix_end(b"CM/"))
    drives: dict[str, DriveRecord] = {}
    alive: dict[str, str] = {}
    maps: list[ClusterMap] = []
    moved: dict[int, int] = {}
    gateways: dict[str, tuple[int, int]] = {}
    drive_revisions: dict[str, int] = {}
    epoch = epoch_revision = 0
    for item in found.kvs:
        if item.key.startswith(DRIVES_PREFIX):
            drive_id = item.key[len(DRIVES_PREFIX) :].decode()
            drives[drive_id] = DriveRecord.decode(drive_id, item.value)
            drive_revisions[drive_id] = item.mod_revision
        elif item.key.startswith(ALIVE_PREFIX):
            try:
                alive[item.key[len(ALIVE_PREFIX) :].decode()] = str(
                    json.loads(item.value)["address"]
                )
            except (ValueError, KeyError, TypeError):
                continue
        elif item.key.startswith(MAPS_PREFIX):
            maps.append(decode_map(item.value))
        elif item.key.startswith(PGS_PREFIX):
            moved[int(item.key[len(PGS_PREFIX) :], 16)] = int(json.loads(item.value)["epoch"])
        elif item.key.startswith(GATEWAYS_PREFIX):
            record = json.loads(item.value)
            name = item.key[len(GATEWAYS_PREFIX) :].decode()
            gateways[name] = (int(record["settled"]), int(record["revision"]))
        elif item.key == EPOCH_KEY:
            epoch = int(json.loads(item.value)["epoch"])
            epoch_revision = item.mod_revision
    history = MapHistory(maps) if maps else None
    if history is not None:
        history.moved = moved
    return ClusterState(
        drives,
        alive,
        epoch,
        epoch_revision,
        history,
        found.revision,
        moved=moved,
        drive_revisions=drive_revisions,
        gateways=gateways,
    )


def _next_map(drives: Mapping[str, DriveRecord], epoch: int) -> ClusterMap:
    placed = tuple(info for d in sorted(drives) if (info := drives[d].placement) is not None)
    return ClusterMap(epoch, PG_COUNT, placed, algorithm=2)


async def _commit(kv: KV, state: ClusterState, changed: Sequence[DriveRecord]) -> bool:
    """Write ``changed`` drive records, with a new epoch if placement moves; False when another
    change came first (read again and retry)."""
    drives = {**state.drives, **{d.drive_id: d for d in changed}}
    ops = [Put(DRIVES_PREFIX + d.drive_id.encode(), d.encode()) for d in changed]
    current = state.history.current if state.history is not None else None
    epoch = state.epoch + 1
    cmap = _next_map(drives, epoch)
    if current is None or cmap.drives != current.drives:
        ops += [
            Put(EPOCH_KEY, json.dumps({"epoch": epoch}).encode()),
            Put(map_key(epoch), encode_map(cmap)),
        ]
    if len(ops) > 128:
        raise InvalidArgument("too many drives in one change (etcd takes 128 per transaction)")
    # The epoch, and each record as read: a change that moves nothing (an address) bumps no
    # epoch, and must not be overwritten by one built from the record before it.
    compares = [Compare(EPOCH_KEY, "mod", "=", state.epoch_revision)]
    for d in changed:
        key = DRIVES_PREFIX + d.drive_id.encode()
        compares.append(Compare(key, "mod", "=", state.drive_revisions.get(d.drive_id, 0)))
    result = await kv.txn(compares, ops)
    return result.succeeded


async def register_drives(kv: KV, records: Sequence[DriveRecord]) -> ClusterState:
    """A chunk server's drives into the map: new ones as given; known ones keep the weight and
    state the operator set, and take the address, host, rack and zone given. The state after."""
    for _ in range(TXN_RETRIES):
        state = await read_cluster(kv)
        changed = []
        for record in records:
            known = state.drives.get(record.drive_id)
            if known is not None:
                record = replace(record, weight=known.weight, state=known.state)
            if record != known:
                changed.append(record)
        if not changed or await _commit(kv, state, changed):
            return await read_cluster(kv)
    raise Conflict("the cluster map kept changing under the registration: try again")


async def change_drive(
    kv: KV,
    drive_id: str,
    *,
    weight: float | None = None,
    state: str | None = None,
    min_drives: int = 1,
) -> dict[str, Any]:
    """An operator's change to one drive (``store cluster set-weight|drain|out|in``): its record
    and the epoch after. Refused when fewer than ``min_drives`` (the widest scheme's shards)
    would be left to take new data."""
    if weight is not None and not (0 <= weight <= 1e6):
        raise InvalidArgument("a weight is a number from 0 to 1000000")
    if state is not None and state not in STATES:
        raise InvalidArgument(f"a drive's state is one of {', '.join(STATES)}")
    for _ in range(TXN_RETRIES):
        current = await read_cluster(kv)
        known = current.drives.get(drive_id)
        if known is None:
            raise NotFound(f"no drive {drive_id!r} in the cluster map")
        record = replace(
            known,
            weight=known.weight if weight is None else weight,
            state=known.state if state is None else state,
        )
        if record == known:
            return {"drive": asdict(known), "epoch": current.epoch}
        next_map = _next_map({**current.drives, drive_id: record}, 0)
        left = [d for d in next_map.drives if d.placeable]
        if len(left) < min_drives:
            raise InvalidArgument(
                f"that would leave {len(left)} drives taking new data; "
                f"the coding scheme needs {min_drives}: add a drive first"
            )
        if not await _commit(kv, current, [record]):
            continue
        after = await read_cluster(kv)
        return {"drive": asdict(after.drives[drive_id]), "epoch": after.epoch}
    raise Conflict("the cluster map kept changing: try again")


def misplaced_pgs(history: MapHistory, width: int) -> int:
    """How many placement groups may hold chunks placed by an older map than the newest one
    that puts them elsewhere: what ``store cluster rebalance`` would move."""
    current = history.current
    if width > sum(d.placeable for d in current.drives):
        return 0
    count = 0
    for pg in range(current.pg_count):
        since = history.moved.get(pg, 0)
        now = drives_for_pg(current, pg, width)
        older = [
            e
            for e in history.epochs
            if history.at(since).epoch <= e < current.epoch
            and width <= sum(d.placeable for d in history.at(e).drives)  # else nothing fit
        ]
        if any(drives_for_pg(history.at(e), pg, width) != now for e in older):
            count += 1
    return count


def degraded_pgs(cmap: ClusterMap, width: int, down: set[str]) -> int:
    """How many placement groups of ``cmap`` have a shard on a drive in ``down``."""
    if width > sum(d.placeable for d in cmap.drives):
        return 0
    return sum(1 for pg in range(cmap.pg_count) if down & set(drives_for_pg(cmap, pg, width)))


def pg_key(pg: int) -> bytes:
    return PGS_PREFIX + b"%04x" % pg


def moved_value(epoch: int) -> bytes:
    return json.dumps({"epoch": epoch}).encode()


def gateway_value(settled: int, revision: int) -> bytes:
    return json.dumps({"settled": settled, "revision": revision}).encode()
