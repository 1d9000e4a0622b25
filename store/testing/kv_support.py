"""The registry and helpers of the metadata conformance suite (store/testing/kv_conformance.py
explains the suite): checks register with ``@check`` or ``@shared_check``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from store.errors import InvalidArgument
from store.meta.api import (
    KV,
    RangeResult,
    WatchBatch,
)

Wait = Callable[[float], Awaitable[None]]
Check = Callable[[KV, Wait], Awaitable[None]]
SharedCheck = Callable[[KV, KV, Wait], Awaitable[None]]

CHECKS: list[Check] = []
SHARED_CHECKS: list[SharedCheck] = []
EVENT_TIMEOUT_S = 10.0


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def shared_check(fn: SharedCheck) -> SharedCheck:
    SHARED_CHECKS.append(fn)
    return fn


def keys(result: RangeResult) -> list[bytes]:
    return [kv.key for kv in result.kvs]


async def expect_invalid(call: Awaitable[object]) -> None:
    try:
        await call
    except InvalidArgument:
        return
    raise AssertionError("expected InvalidArgument")


async def next_batch(watch: trio.abc.ReceiveChannel[WatchBatch]) -> WatchBatch:
    with trio.fail_after(EVENT_TIMEOUT_S):
        return await watch.receive()


async def batches_until(
    watch: trio.abc.ReceiveChannel[WatchBatch], revision: int
) -> list[WatchBatch]:
    """Every batch up to and including ``revision``."""
    out: list[WatchBatch] = []
    while not out or out[-1].revision < revision:
        out.append(await next_batch(watch))
    assert out[-1].revision == revision, (out[-1].revision, revision)
    return out


def summary(batch: WatchBatch) -> list[tuple[str, bytes, bytes]]:
    return [(e.type, e.kv.key, e.kv.value) for e in batch.events]


async def granted_ttl(kv: KV, lease: int) -> int:
    info = await kv.lease_time_to_live(lease)
    assert info is not None and info.id == lease
    assert isinstance(info.granted_ttl_s, int) and 0 <= info.remaining_s <= info.granted_ttl_s
    return info.granted_ttl_s
