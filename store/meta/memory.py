"""In-memory metadata backend, for tests and throwaway nodes. Nothing survives the process.

Keys live in a dict plus a sorted list (bisect) for ordered scans. Every method runs without
awaiting anything, so under Trio each call is atomic with respect to other tasks. Leases expire
lazily: every call first drops leases whose deadline has passed, so no reader can observe a key
after its lease's expiry.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from store.errors import NotFound
from store.meta.api import (
    Compare,
    Delete,
    Get,
    KeyValue,
    Op,
    Put,
    RangeResult,
    TxnResult,
    check_key,
    check_range,
    check_txn,
    check_value,
    compare_holds,
)


class _Lease:
    __slots__ = ("ttl_s", "deadline", "keys")

    def __init__(self, ttl_s: float, deadline: float) -> None:
        self.ttl_s = ttl_s
        self.deadline = deadline
        self.keys: set[bytes] = set()


class MemoryKV:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []
        self._revision = 1  # etcd starts at 1 too
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(1)

    # -- internals ------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = self._clock()
        expired = [lid for lid, lease in self._leases.items() if lease.deadline <= now]
        if expired:
            self._revision += 1
            for lid in expired:
                for key in self._leases.pop(lid).keys:
                    self._remove(key)

    def _remove(self, key: bytes) -> bool:
        kv = self._data.pop(key, None)
        if kv is None:
            return False
        del self._keys[bisect.bisect_left(self._keys, key)]
        if kv.lease and kv.lease in self._leases:
            self._leases[kv.lease].keys.discard(key)
        return True

    def _keys_in(self, start: bytes, end: bytes | None) -> list[bytes]:
        if end is None:
            return [start] if start in self._data else []
        lo = bisect.bisect_left(self._keys, start)
        hi = len(self._keys) if end == b"\0" else bisect.bisect_left(self._keys, end)
        return self._keys[lo:hi]

    def _range(
        self, start: bytes, end: bytes | None, limit: int, reverse: bool, keys_only: bool
    ) -> RangeResult:
        keys = self._keys_in(start, end)
        if reverse:
            keys = keys[::-1]
        more = bool(limit) and len(keys) > limit
        if limit:
            keys = keys[:limit]
        kvs = [self._data[k] for k in keys]
        if keys_only:
            kvs = [replace(kv, value=b"") for kv in kvs]
        return RangeResult(kvs, more, self._revision)

    def _put(self, op: Put, revision: int) -> None:
        old = self._data.get(op.key)
        if old is None:
            bisect.insort(self._keys, op.key)
            kv = KeyValue(op.key, bytes(op.value), revision, revision, 1, op.lease)
        else:
            if old.lease and old.lease != op.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(op.key)
            kv = KeyValue(
                op.key, bytes(op.value), old.create_revision, revision, old.version + 1, op.lease
            )
        self._data[op.key] = kv
        if op.lease:
            self._leases[op.lease].keys.add(op.key)

    def _apply(self, ops: Sequence[Op]) -> tuple[list[RangeResult | int | None], int]:
        writes = any(isinstance(op, Put | Delete) for op in ops)
        revision = self._revision + 1 if writes else self._revision
        # Leases are checked before anything changes, so a failing op leaves no partial txn.
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise NotFound(f"lease {op.lease} does not exist (expired or revoked)")
        responses: list[RangeResult | int | None] = []
        deleted_any = False
        for op in ops:
            if isinstance(op, Put):
                self._put(op, revision)
                responses.append(None)
            elif isinstance(op, Delete):
                gone = [k for k in self._keys_in(op.key, op.end) if self._remove(k)]
                deleted_any = deleted_any or bool(gone)
                responses.append(len(gone))
            elif isinstance(op, Get):
                responses.append(self._range(op.key, op.end, op.limit, False, False))
        # etcd does not bump the revision for a delete that removed nothing.
        if writes and (any(isinstance(op, Put) for op in ops) or deleted_any):
            self._revision = revision
        return responses, self._revision

    # -- the KV interface -----------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        check_key(key)
        self._expire()
        return self._data.get(key)

    async def range(
        self,
        key: bytes = b"",
        end: bytes | None = None,
        *,
        limit: int = 0,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> RangeResult:
        check_range(key, end)
        self._expire()
        return self._range(key, end, limit, reverse, keys_only)

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        check_key(key)
        check_value(value)
        self._expire()
        _, revision = self._apply([Put(key, value, lease)])
        return revision

    async def delete(self, key: bytes, end: bytes | None = None) -> int:
        check_range(key, end)
        self._expire()
        (count,), _ = self._apply([Delete(key, end)])
        assert isinstance(count, int)
        return count

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn(compare, success, failure)
        self._expire()
        ok = all(compare_holds(c, self._data.get(c.key)) for c in compare)
        responses, revision = self._apply(success if ok else failure)
        return TxnResult(ok, revision, responses)

    async def revision(self) -> int:
        self._expire()
        return self._revision

    async def lease_grant(self, ttl_s: float) -> int:
        if not ttl_s > 0:
            raise ValueError("lease TTL must be positive")
        self._expire()
        lid = next(self._lease_ids)
        self._leases[lid] = _Lease(ttl_s, self._clock() + ttl_s)
        return lid

    async def lease_keepalive(self, lease: int) -> float:
        self._expire()
        held = self._leases.get(lease)
        if held is None:
            raise NotFound(f"lease {lease} does not exist (expired or revoked)")
        held.deadline = self._clock() + held.ttl_s
        return held.ttl_s

    async def lease_revoke(self, lease: int) -> None:
        self._expire()
        held = self._leases.pop(lease, None)
        if held and held.keys:
            self._revision += 1
            for key in list(held.keys):
                self._remove(key)

    async def aclose(self) -> None:
        pass
