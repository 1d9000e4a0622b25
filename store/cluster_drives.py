"""A gateway's drives from the cluster map: the chunk servers' drives, as remote drives.

Every drive in the cluster map (store/cluster_map.py) becomes a ``RemoteDrive`` on one RPC
connection per chunk server address (made on first use, so a server that is down costs nothing
until a call needs it, and then a missed deadline marks it suspect). The placement maps of every
epoch are kept (``MapHistory``): new data goes by the newest, what was written before is found
by its own epoch's map. The gateway watches ``CM/`` and applies a change (a new drive, address
or epoch) at the revision it saw: new drives and connections first, then the new map, so no map
ever names a drive the gateway cannot call.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from store.chunk.api import DriveAPI
from store.chunk.remote_drive import RemoteDrive
from store.cluster_map import (
    ALIVE_PREFIX,
    GATEWAYS_PREFIX,
    ClusterState,
    gateway_value,
    read_cluster,
)
from store.config import parse_address
from store.errors import InvalidArgument, StoreError, Unavailable
from store.meta.api import KV, Compacted
from store.placement.history import MapHistory
from store.rpc.transport import RpcClient

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0  # a chunk server that takes longer is suspect (rpc/transport.py)
# A read waits this long (or 4 times the average shard read, if longer) for a shard before it
# decodes that shard's range from the others (chunk/chunkstore.py).
HEDGE_AFTER_S = 0.05
GATEWAY_TTL_S = 10
REPORT_EVERY_S = 0.5
# Keys whose changes move no data: a gateway does not re-read the map for them.
_NOT_PLACEMENT = (ALIVE_PREFIX, GATEWAYS_PREFIX)


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


class _ClusterView:
    def __init__(
        self,
        kv: KV,
        secret: bytes,
        name: str,
        nursery: trio.Nursery,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._kv = kv
        self._tls = tls
        self._secret = secret
        self._name = name
        self._nursery = nursery
        self._clients: dict[tuple[str, int], RpcClient] = {}
        self._where: dict[str, tuple[str, int]] = {}
        self.drives: dict[str, DriveAPI] = {}
        self.history: MapHistory | None = None

    def apply(self, state: ClusterState) -> None:
        if state.history is None:
            raise Unavailable("no chunk server has registered a drive in the cluster map yet")
        for drive_id, record in state.drives.items():
            address = parse_address(record.address)
            if self._where.get(drive_id) == address:
                continue
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = RpcClient(
                    address,
                    self._name,
                    self._secret,
                    self._nursery,
                    timeout_s=CALL_TIMEOUT_S,
                    tls=self._tls,
                )
            self.drives[drive_id] = RemoteDrive(client, drive_id)
            self._where[drive_id] = address
        if self.history is None:
            self.history = state.history
        else:
            for epoch in state.history.epochs:
                if epoch > self.history.current.epoch:
                    self.history.add(state.history.at(epoch))
                    log.info("cluster map: now at epoch %d", epoch)
            kept = set(state.history.epochs)
            for epoch in self.history.epochs:
                if epoch not in kept and epoch < self.history.current.epoch:
                    self.history.drop(epoch)  # pruned by `store cluster remove`
                    log.info("cluster map: the map of epoch %d is no longer needed", epoch)
        self.history.moved = dict(state.moved)  # after the maps it names
        self.history.revision = state.revision
        # Removed drives last: no map kept names them (the removal pruned those maps first).
        for drive_id in set(self.drives) - set(state.drives) - self.history.drive_ids():
            del self.drives[drive_id]
            del self._where[drive_id]
            log.info("cluster map: drive %s was removed", drive_id)

    async def follow(self, revision: int) -> None:
        """Apply every change to the drives and maps from ``revision`` on."""
        while True:
            try:
                async with self._kv.watch(b"CM/", revision) as changes:
                    async for batch in changes:
                        if any(not e.kv.key.startswith(_NOT_PLACEMENT) for e in batch.events):
                            state = await read_cluster(self._kv)
                            self.apply(state)  # all of CM/ as of then: later batches too
                            revision = max(batch.revision, state.revision) + 1
                        else:
                            revision = batch.revision + 1  # only after it was applied
            except Compacted:
                revision = 0  # read it all again, below
            except (StoreError, ValueError, KeyError, TypeError) as e:
                # etcd unreachable, or a record we cannot read: the map we have serves
                # meanwhile, and nothing is skipped (the watch resumes where it was).
                log.warning("cluster map: cannot follow changes (%s); retrying", e)
                await trio.sleep(1)
            if revision == 0:
                try:
                    state = await read_cluster(self._kv)
                    self.apply(state)
                    revision = state.revision + 1
                except (StoreError, ValueError, KeyError, TypeError) as e:
                    log.warning("cluster map: cannot read it again (%s); retrying", e)
                    await trio.sleep(1)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


async def report_settled(
    kv: KV, settled: Callable[[], int], history: MapHistory, name: str
) -> None:
    """Keep this gateway's ``CM/gateways/<name>`` current under a lease of its own: the lowest
    epoch it still has unrecorded chunks of, and the cluster map revision it has applied (what
    the rebalancer waits on before it moves or deletes anything)."""
    key = GATEWAYS_PREFIX + name.encode()
    while True:
        try:
            lease = await kv.lease_grant(GATEWAY_TTL_S)
            try:
                last, renewed = None, trio.current_time()
                while True:
                    now = (settled(), history.revision)
                    if now != last:
                        await kv.put(key, gateway_value(*now), lease=lease)
                        last = now
                    if trio.current_time() - renewed >= GATEWAY_TTL_S / 3:
                        await kv.lease_keepalive(lease)
                        renewed = trio.current_time()
                    await trio.sleep(REPORT_EVERY_S)
            finally:
                with trio.move_on_after(2, shield=True):
                    await kv.lease_revoke(lease)
        except StoreError as e:
            log.warning("cluster map: cannot report this gateway's state (%s); retrying", e)
            await trio.sleep(1)


@asynccontextmanager
async def open_cluster_drives(
    kv: KV, secret: bytes, name: str, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[dict[str, DriveAPI], MapHistory]]:
    """The cluster map's drives as remote drives (a dict the gateway keeps up to date), and the
    placement maps of every epoch (a history that grows as the map changes)."""
    state = await read_cluster(kv)
    async with trio.open_nursery() as nursery:
        view = _ClusterView(kv, secret, name, nursery, tls)
        view.apply(state)
        assert view.history is not None
        nursery.start_soon(view.follow, state.revision + 1)
        log.info(
            "cluster map at epoch %d: %d drives on %d chunk servers",
            view.history.current.epoch,
            len(view.drives),
            len(view._clients),
        )
        try:
            yield view.drives, view.history
        finally:
            with trio.CancelScope(shield=True):
                await view.aclose()
            nursery.cancel_scope.cancel()
