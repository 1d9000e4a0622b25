"""A single node's engine from a data directory: SQLite metadata and local drives.

    DIR/meta.sqlite        the metadata KV (or etcd, with ``meta="etcd://..."``)
    DIR/drives/d0 .. dN-1  one directory per drive (``--drives N``), or the paths given

The drive ids are stable names ("d0", ...; or the basename of a given path), so placement does
not change when the service restarts; a replaced drive keeps its id and is refilled by heal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from store.auth.master_keys import MasterKeys, ensure_master_keys, ensure_shared_master_keys
from store.chunk.api import DriveAPI
from store.chunk.chunkstore import ChunkStore
from store.chunk.drive import Drive
from store.cluster_drives import (
    HEDGE_AFTER_S,
    load_secret,
    open_cluster_drives,
    report_settled,
)
from store.cluster_map import PG_COUNT, REBALANCED_KEY
from store.errors import InvalidArgument
from store.meta.api import KV
from store.meta.etcd import open_etcd_kv
from store.meta.sqlite import open_sqlite_kv
from store.objects.engine import ObjectEngine
from store.placement.history import MapHistory
from store.placement.hrw import ClusterMap, DriveInfo
from store.placement.layout import scheme_from_spec
from store.rpc.tls import TlsFiles, client_context
from store.volumes.admin import Volumes

DEFAULT_DRIVES = 6


def local_drives(data_dir: Path, drives: int | Sequence[Path]) -> dict[str, Drive]:
    if isinstance(drives, int):
        if drives < 1:
            raise InvalidArgument("need at least one drive")
        return {f"d{i}": Drive(data_dir / "drives" / f"d{i}") for i in range(drives)}
    out = {}
    for path in drives:
        name = Path(path).name or str(path)
        if name in out:
            raise InvalidArgument(f"two drives named {name}")
        out[name] = Drive(path)
    return out


def local_volumes(engine: ObjectEngine) -> Volumes:
    """The block volumes of an engine: on the same drives and cluster map as its objects."""
    chunks = engine.chunks
    return Volumes(engine.kv, chunks.drives, chunks.maps, hedge_after_s=chunks.hedge_after_s)


@asynccontextmanager
async def open_metadata(data_dir: Path, meta: str = "") -> AsyncIterator[KV]:
    """The metadata KV: SQLite in the data directory, or the etcd cluster ``meta`` names. Both
    refuse transactions of more than 128 ops, so the engine's fit either."""
    if meta:
        async with open_etcd_kv(meta) as kv:
            yield kv
    else:
        async with open_sqlite_kv(data_dir / "meta.sqlite") as kv:
            yield kv


def cluster_secret(data_dir: Path, secret_file: str = "") -> bytes:
    """The cluster secret a gateway authenticates with (``storage.secret_file``)."""
    return load_secret(Path(secret_file) if secret_file else data_dir / "cluster.secret")


async def master_keys(kv: KV, data_dir: Path, *, cluster: bool, secret_file: str) -> MasterKeys:
    """The SSE-S3 master keys: the data directory's own, or with ``cluster`` the cluster's,
    shared through the metadata (store/auth/master_keys.py)."""
    if cluster:
        secret = cluster_secret(data_dir, secret_file)
        return await ensure_shared_master_keys(kv, secret, data_dir)
    return await ensure_master_keys(data_dir)


@asynccontextmanager
async def open_drives(
    data_dir: Path,
    drives: int | Sequence[Path],
    kv: KV,
    *,
    cluster: bool,
    secret_file: str,
    rpc_tls: TlsFiles | None = None,
) -> AsyncIterator[tuple[Mapping[str, DriveAPI], MapHistory | ClusterMap]]:
    """The engine's drives and their placement map: local directories (``drives``), or with
    ``cluster`` the chunk servers registered in the metadata's cluster map."""
    if cluster:
        secret = cluster_secret(data_dir, secret_file)
        name = f"{socket.gethostname()}-gateway"
        tls = None if rpc_tls is None else client_context(rpc_tls)
        async with open_cluster_drives(kv, secret, name, tls) as placed:
            yield placed
        return
    by_id = local_drives(data_dir, drives)
    yield by_id, ClusterMap(1, PG_COUNT, tuple(DriveInfo(d, "local") for d in by_id))


@asynccontextmanager
async def open_local_engine(
    data_dir: Path | str,
    *,
    drives: int | Sequence[Path] = DEFAULT_DRIVES,
    scheme: str = "auto",
    clean_tmp: bool = True,
    meta: str = "",
    cluster: bool = False,
    secret_file: str = "",
    rpc_tls: TlsFiles | None = None,
    **engine_options: int,
) -> AsyncIterator[ObjectEngine]:
    """The engine of a data directory: its metadata there too, unless ``meta`` names an etcd
    cluster; its drives there too, unless ``cluster`` takes them from the chunk servers in the
    cluster map (same engine, same code path). ``clean_tmp`` removes what interrupted writes
    left in local drives' tmp directories: only for the first process to open the directory
    (a gateway worker or a maintenance command beside a running service must not, it would
    remove the files others are writing; chunk servers clean their own)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    async with (
        open_metadata(data_dir, meta) as kv,
        open_drives(
            data_dir, drives, kv, cluster=cluster, secret_file=secret_file, rpc_tls=rpc_tls
        ) as placed,
    ):
        by_id, cmap = placed
        hedge = HEDGE_AFTER_S if cluster else None  # remote drives: decode around a slow one
        chunks = ChunkStore(
            by_id,
            cmap,
            scheme_from_spec(scheme, len(by_id)),
            hedge_after_s=hedge,
            fence_key=REBALANCED_KEY if cluster else None,
        )
        engine = ObjectEngine(kv, chunks, **engine_options)
        if clean_tmp and not cluster:
            for drive in by_id.values():
                await drive.clean_tmp()
        if not cluster:
            yield engine
            return
        async with trio.open_nursery() as nursery:
            name = f"{socket.gethostname()}-{os.getpid()}"
            nursery.start_soon(report_settled, kv, chunks.settled_epoch, chunks.maps, name)
            yield engine
            nursery.cancel_scope.cancel()
