"""The administrative operations, one table for both ways of reaching them: the admin API on the
S3 port (``store.gateway.admin``) and the CLI on a data directory (``store --data DIR ...``).

Each operation takes JSON-able keyword arguments and returns a JSON-able result. Long ones
(``JOBS``: scrub, heal, gc, volume import/export/scrub) report progress through a callback
``progress(done, total)``; the admin API runs them as jobs whose state any worker can answer
(``store.admin.jobs``), the CLI runs them inline with a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import trio

from store import __version__
from store.admin.cluster_status import cluster_status as status_of_cluster
from store.admin.rebalance import rebalance
from store.admin.remove import remove_drive
from store.auth import users
from store.cluster_map import change_drive
from store.errors import InvalidArgument
from store.objects import maintenance
from store.objects.engine import ObjectEngine
from store.volumes import transfer
from store.volumes.admin import Volumes
from store.volumes.records import parse_size

Progress = Callable[[int, int], None]
MAP_WAIT_S = 5.0  # a map change waits this long for this gateway to place by it


@dataclass(frozen=True)
class Context:
    engine: ObjectEngine
    volumes: Volumes
    started: float = 0.0


def _no_progress(done: int, total: int) -> None:
    pass


def _text(args: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str) or (default is None and not value):
        raise InvalidArgument(f"{name} must be given as a string")
    return value


def _int(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer")
    return value


def _size(args: Mapping[str, Any]) -> int:
    value = args.get("size")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return parse_size(_text(args, "size"))


# -- users ---------------------------------------------------------------------------------------


async def user_add(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    access, secret = _text(args, "access_key", ""), _text(args, "secret_key", "")
    if bool(access) != bool(secret):
        raise InvalidArgument("access_key and secret_key go together")
    admin = bool(args.get("admin", False))
    key = await users.add_key(ctx.engine.kv, _text(args, "name"), access, secret, admin=admin)
    return {"user": key.user, "access_key": key.access_key, "secret_key": key.secret_key}


async def user_remove(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    access = _text(args, "access_key")
    await users.remove_key(ctx.engine.kv, access)
    return {"removed": access}


async def user_list(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return [
        {"user": k.user, "access_key": k.access_key} for k in await users.list_keys(ctx.engine.kv)
    ]


# -- buckets -------------------------------------------------------------------------------------


async def bucket_info(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    b = await ctx.engine.get_bucket(_text(args, "name"))
    return {
        "name": b.name,
        "owner": b.owner,
        "created": b.created,
        "versioning": b.versioning,
        "compression": b.compression,
        "settings": sorted(b.settings),
    }


async def bucket_set(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    """Bucket settings that have no S3 request: compression ("zstd" or "")."""
    name = _text(args, "name")
    await ctx.engine.update_bucket(name, compression=_text(args, "compression"))
    return await bucket_info(ctx, {"name": name}, progress)


# -- volumes -------------------------------------------------------------------------------------


async def volume_create(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    created = await ctx.volumes.create(
        _text(args, "name"),
        _size(args),
        block_bytes=_int(args, "block_size", 4096),
        replicas=_int(args, "replicas", 2),
        description=_text(args, "description", ""),
    )
    return asdict(created)


async def volume_list(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return [asdict(v) for v in await ctx.volumes.list_volumes()]


async def volume_info(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    name = _text(args, "name")
    found = asdict(await ctx.volumes.get(name))
    found["attached"] = await ctx.volumes.attached(name)
    return found


async def volume_resize(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return asdict(await ctx.volumes.resize(_text(args, "name"), _size(args)))


async def volume_delete(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    name = _text(args, "name")
    await ctx.volumes.delete(name)
    return {"deleted": name}


async def volume_snapshot(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    volume, _, snap = _text(args, "name").partition("@")
    if not snap:
        raise InvalidArgument("name the snapshot as VOLUME@SNAPSHOT")
    return asdict(await ctx.volumes.snapshot(volume, snap, _text(args, "description", "")))


async def volume_clone(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    snapshot, target = _text(args, "name"), _text(args, "target")
    return asdict(await ctx.volumes.clone(snapshot, target, _text(args, "description", "")))


async def volume_import(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    bucket, _, key = _text(args, "source").partition("/")
    imported = await transfer.import_object(
        ctx.volumes,
        ctx.engine,
        bucket,
        key,
        _text(args, "name"),
        block_bytes=_int(args, "block_size", 4096),
        replicas=_int(args, "replicas", 2),
        description=_text(args, "description", ""),
    )
    return asdict(imported)


async def volume_export(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    bucket, _, key = _text(args, "dest").partition("/")
    version = await transfer.export_volume(
        ctx.volumes, ctx.engine, _text(args, "name"), bucket, key
    )
    return {"bucket": bucket, "key": key, "size": version.size, "etag": version.etag}


async def volume_scrub(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    repair = bool(args.get("repair", False))
    named = args.get("name") or ""
    names = [named] if named else [v.name for v in await ctx.volumes.list_volumes()]
    reports = []
    for i, name in enumerate(names):
        reports.append(await ctx.volumes.scrub(name, repair=repair))
        progress(i + 1, len(names))
    return reports


# -- maintenance ---------------------------------------------------------------------------------


async def maintenance_scrub(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    rate = args.get("rate_mb_s") or 0
    report = await maintenance.scrub(
        ctx.engine,
        repair=bool(args.get("repair", False)),
        rate_bytes_s=float(rate) * 1e6 if rate else None,
        progress=progress,
    )
    summary: dict[str, object] = dict(report.as_dict())
    summary["orphan_shards"] = await maintenance.sweep_orphans(ctx.engine, dry_run=True)
    summary["clean"] = report.clean
    return summary


async def maintenance_heal(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return await maintenance_scrub(ctx, {**args, "repair": True}, progress)


async def maintenance_gc(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    removed = await maintenance.collect_garbage(ctx.engine)
    grace = args.get("grace_s", maintenance.ORPHAN_GRACE_S)
    orphans = await maintenance.sweep_orphans(ctx.engine, grace_s=float(grace))
    return {"garbage_chunks_removed": removed, "orphan_shards_removed": orphans}


async def status(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    stats = ctx.engine.stats
    return {
        "version": __version__,
        "uptime_s": round(time.time() - ctx.started, 1) if ctx.started else None,
        "buckets": len(await ctx.engine.list_buckets()),
        "volumes": len(await ctx.volumes.list_volumes()),
        "drives": sorted(ctx.engine.chunks.drives),
        "scheme": str(ctx.engine.chunks.scheme),
        "chunks_awaiting_repair": len(ctx.engine.damaged),
        "requests": {"puts": stats.puts, "gets": stats.gets, "deletes": stats.deletes},
    }


async def cluster_status(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return await status_of_cluster(ctx.engine)


async def cluster_rebalance(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return await rebalance(ctx.engine, progress, volumes=ctx.volumes)


async def cluster_remove(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
    return await remove_drive(ctx.engine, ctx.volumes, _text(args, "drive"))


def _drive_change(state: str | None, weighted: bool = False) -> Operation:
    """An operator's change to a drive in the cluster map; answered once this gateway places
    by the new map (the others follow within their watch's delay)."""

    async def change(ctx: Context, args: Mapping[str, Any], progress: Progress) -> object:
        drive = _text(args, "drive")
        weight = args.get("weight") if weighted else None
        if weighted and (isinstance(weight, bool) or not isinstance(weight, int | float)):
            raise InvalidArgument("weight must be a number")
        result = await change_drive(
            ctx.engine.kv,
            drive,
            weight=float(weight) if weight is not None else None,
            state=state,
            min_drives=ctx.engine.chunks.scheme.width,
        )
        with trio.move_on_after(MAP_WAIT_S):  # the history is pure (no event to wait on)
            while ctx.engine.chunks.cmap.epoch < result["epoch"]:  # noqa: ASYNC110
                await trio.sleep(0.05)
        return result

    return change


Operation = Callable[[Context, Mapping[str, Any], Progress], Awaitable[object]]

OPERATIONS: dict[str, Operation] = {
    "user.add": user_add,
    "user.remove": user_remove,
    "user.list": user_list,
    "bucket.info": bucket_info,
    "bucket.set": bucket_set,
    "volume.create": volume_create,
    "volume.list": volume_list,
    "volume.info": volume_info,
    "volume.resize": volume_resize,
    "volume.delete": volume_delete,
    "volume.snapshot": volume_snapshot,
    "volume.clone": volume_clone,
    "volume.import": volume_import,
    "volume.export": volume_export,
    "volume.scrub": volume_scrub,
    "maintenance.scrub": maintenance_scrub,
    "maintenance.heal": maintenance_heal,
    "maintenance.gc": maintenance_gc,
    "status": status,
    "cluster.status": cluster_status,
    "cluster.set-weight": _drive_change(None, weighted=True),
    "cluster.drain": _drive_change("draining"),
    "cluster.out": _drive_change("out"),
    "cluster.in": _drive_change("up"),
    "cluster.rebalance": cluster_rebalance,
    "cluster.remove": cluster_remove,
}
# Long operations: the admin API runs them as jobs (started, then polled with progress).
JOBS = frozenset(
    {
        "volume.import",
        "volume.export",
        "volume.scrub",
        "maintenance.scrub",
        "maintenance.heal",
        "maintenance.gc",
        "cluster.rebalance",
        "cluster.remove",
    }
)


async def run(
    ctx: Context, name: str, args: Mapping[str, Any], progress: Progress | None = None
) -> object:
    found = OPERATIONS.get(name)
    if found is None:
        raise InvalidArgument(f"unknown admin operation {name!r}")
    return await found(ctx, args, progress or _no_progress)
