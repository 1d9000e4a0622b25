"""``store chunkserver``: local drives served over the chunk RPC, registered in etcd.

    store chunkserver --listen HOST:PORT --drive PATH [--drive PATH ...] --secret-file FILE
                      [--meta etcd://H:P,...] [--host NAME] [--rack NAME] [--zone NAME]
                      [--metrics HOST:PORT]

Each drive is served under the id ``<host>.<directory name>`` (unique in the cluster as long as
host names are). The cluster secret (``--secret-file``) authenticates every connection: the file
is made on first start (32 random bytes as hex, mode 0600) and must be copied to every node of
the cluster; it is never logged. With ``--meta``, each drive is registered in the cluster map in
etcd (store/cluster_map.py): ``CM/drives/<drive id>`` (address, host, rack, zone; a new drive
gets weight 1 and state "up" and a new map epoch), which stays when the server stops, and
``CM/alive/<drive id>`` under a lease the server keeps alive, which says it is up. With
``--metrics``, Prometheus metrics (calls by drive, method and outcome, latencies, bytes) are
served at ``http://HOST:PORT/metrics``.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from prometheus_client import start_http_server

from store.chunk.drive import Drive
from store.chunk.drive_server import DriveServer
from store.chunk.server_metrics import DriveServerMetrics
from store.cluster_drives import load_secret
from store.cluster_map import ALIVE_PREFIX, DriveRecord, register_drives
from store.errors import InvalidArgument, StoreError
from store.meta.api import KV
from store.meta.etcd import open_etcd_kv
from store.rpc.tls import TlsFiles, server_context
from store.rpc.transport import serve_rpc

log = logging.getLogger(__name__)

LEASE_TTL_S = 10


@dataclass(frozen=True, slots=True)
class ChunkServerConfig:
    listen: tuple[str, int]
    drives: tuple[Path, ...]
    secret_file: Path
    meta: str = ""
    host: str = ""
    rack: str = ""
    zone: str = ""
    lease_ttl_s: int = LEASE_TTL_S
    metrics: tuple[str, int] | None = None  # where /metrics is served (prometheus-client)
    tls: TlsFiles | None = None  # mutual TLS on the RPC (store/rpc/tls.py)

    @property
    def host_name(self) -> str:
        return self.host or socket.gethostname()

    def drive_ids(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for path in self.drives:
            drive_id = f"{self.host_name}.{path.name or 'drive'}"
            if drive_id in out:
                raise InvalidArgument(f"two drives would be {drive_id!r}: rename a directory")
            out[drive_id] = path
        return out


async def register(kv: KV, config: ChunkServerConfig, port: int, drives: Sequence[str]) -> int:
    """Put this server's drives in the cluster map, and say they are alive under a new lease;
    the lease id."""
    address = f"{config.listen[0]}:{port}"
    records = [DriveRecord(d, address, config.host_name, config.rack, config.zone) for d in drives]
    state = await register_drives(kv, records)
    lease = await kv.lease_grant(config.lease_ttl_s)
    alive = json.dumps({"address": address}).encode()
    for drive_id in drives:
        await kv.put(ALIVE_PREFIX + drive_id.encode(), alive, lease=lease)
    log.info("registered %d drives; the cluster map is at epoch %d", len(drives), state.epoch)
    return lease


async def keep_alive(kv: KV, lease: int, ttl_s: int) -> None:
    while True:
        await trio.sleep(ttl_s / 3)
        try:
            await kv.lease_keepalive(lease)
        except StoreError as e:  # etcd unreachable: keep trying; the map drops us if it lasts
            log.warning("chunk server: cannot renew its registration: %s", e)


async def serve_chunks(
    config: ChunkServerConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    secret = load_secret(config.secret_file)
    by_id = config.drive_ids()
    drives = {drive_id: Drive(path) for drive_id, path in by_id.items()}
    for drive in drives.values():  # writes a crash (or a kill) interrupted are dead
        await drive.clean_tmp()
    metrics = DriveServerMetrics()
    server = DriveServer(drives, metrics)
    if config.metrics is not None:  # prometheus-client's own server, in a thread of its own
        host_m, port_m = config.metrics
        start_http_server(port_m, addr=host_m, registry=metrics.registry)
    host, port = config.listen
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    name = config.host_name
    async with trio.open_nursery() as nursery:
        tls = None if config.tls is None else server_context(config.tls)
        await nursery.start(
            partial(
                serve_rpc, listeners, name, secret, server.handle, inline=server.handle_now, tls=tls
            )
        )
        nursery.start_soon(server.sweep_sinks)
        if config.meta:
            await nursery.start(_registered, config, bound, list(drives))
        print(f"Chunk server: {host}:{bound}, drives {', '.join(sorted(drives))}", flush=True)
        log.info("chunk server ready on %s:%d with %d drives", host, bound, len(drives))
        task_status.started(bound)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


async def _registered(
    config: ChunkServerConfig,
    port: int,
    drives: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with open_etcd_kv(config.meta) as kv:
        lease = await register(kv, config, port, drives)
        task_status.started()
        try:
            await keep_alive(kv, lease, config.lease_ttl_s)
        finally:
            with trio.move_on_after(2, shield=True):
                await kv.lease_revoke(lease)  # a clean stop leaves the map at once


def run(config: ChunkServerConfig) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        trio.run(serve_chunks, config)
    except (InvalidArgument, OSError) as e:
        log.error("chunk server: %s", e)
        return 1
    return 0
