"""``cluster.status``: every drive the service places data on, as an operator reads it: where it
is (chunk server address, host, rack, zone, from the cluster map), its state and weight in the
map, whether it is up (its server holds its lease and it answers a stat in time), and its
capacity; with the map's epoch, the coding scheme and how many placement groups are degraded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from store.cluster_map import DriveRecord, degraded_pgs, misplaced_pgs, read_cluster
from store.errors import StoreError
from store.objects.engine import ObjectEngine

STAT_TIMEOUT_S = 3.0


async def cluster_status(engine: ObjectEngine) -> dict[str, Any]:
    chunks = engine.chunks
    cluster = await read_cluster(engine.kv)
    rows: dict[str, dict[str, Any]] = {}

    async def one(drive_id: str) -> None:
        record = cluster.drives.get(drive_id) or DriveRecord(drive_id, "local", "local")
        row: dict[str, Any] = {
            "drive": drive_id,
            "host": record.host,
            "rack": record.rack,
            "zone": record.zone,
            "address": record.address,
            "state": record.state,
            "weight": record.weight,
        }
        registered = not cluster.drives or drive_id in cluster.alive
        try:
            with trio.fail_after(STAT_TIMEOUT_S):
                stat = await chunks.drives[drive_id].stat()
        except (StoreError, OSError, trio.TooSlowError) as e:
            row.update(status="down", error=str(e) or "no answer in time")
        else:
            used = stat.total_bytes - stat.free_bytes
            # Answers, but its server's lease lapsed: it is cut off from etcd.
            row.update(status="up" if registered else "unregistered")
            row.update(total_bytes=stat.total_bytes, used_bytes=used)
        rows[drive_id] = row

    async with trio.open_nursery() as nursery:
        for drive_id in chunks.drives:
            nursery.start_soon(one, drive_id)
    drives = [rows[d] for d in sorted(rows)]
    down = {r["drive"] for r in drives if r["status"] != "up"}
    return {
        "epoch": chunks.cmap.epoch,
        "scheme": str(chunks.scheme),
        "hosts": len({r["host"] for r in drives}),
        "drives": drives,
        "up": len(drives) - len(down),
        "pgs": chunks.cmap.pg_count,
        "degraded_pgs": degraded_pgs(chunks.cmap, chunks.scheme.width, down),
        "misplaced_pgs": misplaced_pgs(chunks.maps, chunks.scheme.width),
        "gateways": [
            {"gateway": name, "settled_epoch": settled, "revision": revision}
            for name, (settled, revision) in sorted(cluster.gateways.items())
        ],
    }


def table(status: Mapping[str, Any]) -> str:
    """The status as a readable table."""
    head = f"epoch {status['epoch']}, scheme {status['scheme']}, {status['hosts']} hosts, "
    head += f"{status['up']} of {len(status['drives'])} drives up, "
    head += f"{status['degraded_pgs']} of {status['pgs']} placement groups degraded, "
    head += f"{status['misplaced_pgs']} to rebalance"
    lines = [head, ""]
    columns = ["drive", "host", "rack", "zone", "address", "state", "weight", "status"]
    cells = []
    for row in status["drives"]:
        sizes = [_size(row.get("used_bytes")), _size(row.get("total_bytes"))]
        cells.append([*(str(row.get(c, "")) for c in columns), *sizes])
    columns += ["used", "size"]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    if status.get("gateways"):
        lines += ["", "GATEWAY  PLACES BY EPOCH  MAP REVISION"]
        for g in status["gateways"]:
            lines.append(f"{g['gateway']}  {g['settled_epoch']}  {g['revision']}")
    return "\n".join(lines)


def _size(value: Any) -> str:
    """Bytes as a short figure.

    >>> _size(3 << 30), _size(None)
    ('3.0G', '-')
    """
    if not isinstance(value, int):
        return "-"
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)
