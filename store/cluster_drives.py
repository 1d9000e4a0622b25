"""A gateway's drives from the cluster map: the chunk servers registered in etcd, as remote drives.

Every drive a chunk server registered (``CM/drives/<drive id>``: address, host, rack, zone,
weight, state) becomes a ``RemoteDrive`` on one RPC connection per chunk server, and a
``DriveInfo`` of the placement map (hosts are the failure domain: shards of a chunk go to
distinct hosts while there are enough). The map's epoch is the etcd revision of the newest
registration it was built from, so gateways that read the same registrations build the same
map. The map is read once, when the gateway starts (watching it for changes comes with
rebalancing); a drive whose chunk server is down stays in it, and its shards are written
elsewhere by the quorum rule and rebuilt by the healer.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from store.chunk.remote_drive import RemoteDrive
from store.config import parse_address
from store.errors import InvalidArgument, Unavailable
from store.meta.api import KV, prefix_end
from store.placement.hrw import DRIVES_PREFIX, ClusterMap, DriveInfo
from store.rpc.transport import open_rpc_client

log = logging.getLogger(__name__)

PG_COUNT = 256
CALL_TIMEOUT_S = 5.0  # a chunk server that takes longer is suspect (rpc/transport.py)


def load_secret(path: Path) -> bytes:
    """The cluster secret from ``path``, made (mode 0600) if absent; refused if others may
    read it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        log.info("made a new cluster secret in %s (copy it to every node)", path)
    if path.stat().st_mode & 0o077:
        raise InvalidArgument(f"{path} may be read by others: chmod 600 it")
    secret = path.read_text().strip().encode()
    if len(secret) < 32:
        raise InvalidArgument(f"{path} holds too short a secret (at least 32 characters)")
    return secret


@dataclass(frozen=True, slots=True)
class RegisteredDrive:
    drive_id: str
    address: tuple[str, int]
    host: str
    weight: float
    revision: int


async def registered_drives(kv: KV) -> list[RegisteredDrive]:
    found = await kv.range(DRIVES_PREFIX, prefix_end(DRIVES_PREFIX))
    out = []
    for item in found.kvs:
        try:
            record = json.loads(item.value)
            address = parse_address(str(record["address"]))
            host = str(record.get("host") or address[0])
            weight = float(record.get("weight", 1.0))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"a bad cluster map record {item.key!r}: {e}") from None
        if record.get("state", "up") not in ("up", "draining"):
            continue
        drive_id = item.key[len(DRIVES_PREFIX) :].decode()
        out.append(RegisteredDrive(drive_id, address, host, weight, item.mod_revision))
    return out


@asynccontextmanager
async def open_cluster_drives(
    kv: KV, secret: bytes, name: str
) -> AsyncIterator[tuple[dict[str, RemoteDrive], ClusterMap]]:
    """The registered drives as remote drives, and the placement map over them."""
    drives = await registered_drives(kv)
    if not drives:
        raise Unavailable("no chunk server has registered a drive in the cluster map yet")
    async with AsyncExitStack() as stack:
        clients = {}
        for address in sorted({d.address for d in drives}):
            clients[address] = await stack.enter_async_context(
                open_rpc_client(address, name, secret, timeout_s=CALL_TIMEOUT_S)
            )
        remote = {d.drive_id: RemoteDrive(clients[d.address], d.drive_id) for d in drives}
        epoch = max(d.revision for d in drives)
        cmap = ClusterMap(
            epoch, PG_COUNT, tuple(DriveInfo(d.drive_id, d.host, d.weight) for d in drives)
        )
        log.info(
            "cluster map at epoch %d: %d drives on %d chunk servers",
            epoch,
            len(remote),
            len(clients),
        )
        yield remote, cmap
