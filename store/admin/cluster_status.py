"""``cluster.status``: every drive the service places data on, as an operator reads it: where it
is (chunk server address, host, rack, zone, from its registration in the cluster map), whether it
answers, and its capacity; with the placement map's epoch and the coding scheme."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import trio

from store.errors import StoreError
from store.meta.api import prefix_end
from store.objects.engine import ObjectEngine
from store.placement.hrw import DRIVES_PREFIX

STAT_TIMEOUT_S = 3.0


async def cluster_status(engine: ObjectEngine) -> dict[str, Any]:
    chunks = engine.chunks
    found = await engine.kv.range(DRIVES_PREFIX, prefix_end(DRIVES_PREFIX))
    registered: dict[str, Mapping[str, Any]] = {}
    for item in found.kvs:
        try:
            registered[item.key[len(DRIVES_PREFIX) :].decode()] = json.loads(item.value)
        except ValueError:
            continue
    hosts = {d.drive_id: d.host for d in chunks.cmap.drives}
    rows: dict[str, dict[str, Any]] = {}

    async def one(drive_id: str) -> None:
        record = registered.get(drive_id, {})
        row: dict[str, Any] = {
            "drive": drive_id,
            "host": record.get("host") or hosts.get(drive_id, ""),
            "rack": record.get("rack", ""),
            "zone": record.get("zone", ""),
            "address": record.get("address", "local"),
            "registered": drive_id in registered or not registered,
        }
        try:
            with trio.fail_after(STAT_TIMEOUT_S):
                stat = await chunks.drives[drive_id].stat()
        except (StoreError, OSError, trio.TooSlowError) as e:
            row.update(state="down", error=str(e) or "no answer in time")
        else:
            used = stat.total_bytes - stat.free_bytes
            row.update(state="up", total_bytes=stat.total_bytes, used_bytes=used)
            if not row["registered"]:
                row["state"] = "unregistered"  # answers, but its lease has lapsed
        rows[drive_id] = row

    async with trio.open_nursery() as nursery:
        for drive_id in chunks.drives:
            nursery.start_soon(one, drive_id)
    drives = [rows[d] for d in sorted(rows)]
    return {
        "epoch": chunks.cmap.epoch,
        "scheme": str(chunks.scheme),
        "hosts": len({r["host"] for r in drives}),
        "drives": drives,
        "up": sum(1 for r in drives if r["state"] == "up"),
    }


def table(status: Mapping[str, Any]) -> str:
    """The status as a readable table."""
    head = f"epoch {status['epoch']}, scheme {status['scheme']}, {status['hosts']} hosts, "
    head += f"{status['up']} of {len(status['drives'])} drives up"
    lines = [head, ""]
    columns = ["drive", "host", "rack", "zone", "address", "state", "used", "size"]
    cells = []
    for row in status["drives"]:
        used = _size(row.get("used_bytes"))
        cells.append(
            [*(str(row.get(c, "")) for c in columns[:6]), used, _size(row.get("total_bytes"))]
        )
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
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
