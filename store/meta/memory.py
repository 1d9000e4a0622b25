"""In-memory metadata backend, for tests and throwaway nodes. Nothing survives the process.

Keys live in a dict plus a sorted list (bisect) for ordered scans. Every method runs without
awaiting anything, so under Trio each call is atomic with respect to other tasks. Leases expire
lazily: every call first revokes leases whose deadline has passed (each in its own revision, as
etcd revokes each expired lease with its own request), so no reader can observe a key after its
lease's expiry; open watches make the same check every ``EXPIRY_POLL_S`` so that expiry reaches
them even when nobody else calls.

History. Every revision leaves one ``WatchBatch`` in ``_history``, a deque in revision order with
no gaps (a revision moves only on a change, and every change is an event). Watches are cursors
into it: a watch holds its next revision and nothing else, so a slow watcher costs no memory. The
history is bounded by ``history_events`` events and ``history_bytes`` bytes of keys and values:
past either bound the oldest revisions go (the newest is always kept) and ``_compact_revision``
moves past them; a watch whose cursor falls behind raises Compacted.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

import trio

from store.errors import InvalidArgument, NotFound, Unavailable
from store.meta.api import (
    MAX_TXN_OPS,
    MIN_LEASE_TTL_S,
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    LeaseTTL,
    Op,
    Put,
    RangeResult,
    TxnResult,
    WatchBatch,
    check_key,
    check_lease_ttl,
    check_range,
    check_txn,
    check_value,
    check_watch,
    compare_holds,
    tombstone,
)

HISTORY_EVENTS = 10_000
HISTORY_BYTES = 64 << 20
EXPIRY_POLL_S = 0.05


class _Lease:
    __slots__ = ("ttl_s", "deadline", "keys")

    def __init__(self, ttl_s: int, deadline: float) -> None:
        self.ttl_s = ttl_s
        self.deadline = deadline
        self.keys: set[bytes] = set()


def _event_bytes(event: Event) -> int:
    return len(event.kv.key) + len(event.kv.value)


class MemoryKV:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        history_events: int = HISTORY_EVENTS,
        history_bytes: int = HISTORY_BYTES,
        min_lease_ttl_s: int = MIN_LEASE_TTL_S,
        max_txn_ops: int = MAX_TXN_OPS,
    ) -> None:
        assert history_events >= 1 and history_bytes >= 1
        self._clock = clock
        self._data: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []
        self._revision = 1  # etcd starts at 1 too
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(1)
        self._min_lease_ttl_s = min_lease_ttl_s
        self._max_txn_ops = max_txn_ops
        # Watch history (see the module docstring).
        self._history: collections.deque[WatchBatch] = collections.deque()
        self._history_events = 0
        self._history_bytes = 0
        self._max_history_events = history_events
        self._max_history_bytes = history_bytes
        self._compact_revision = 0  # watches may start at this revision or later
        self._changed = trio.Event()
        self._closed = False

    # -- internals ------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = self._clock()
        expired = [(lease.deadline, lid) for lid, lease in self._leases.items()]
        for _, lid in sorted(e for e in expired if e[0] <= now):
            self._revoke(lid)

    def _revoke(self, lid: int) -> None:
        held = self._leases.pop(lid, None)
        if held is None or not held.keys:
            return
        revision = self._revision + 1
        events = []
        for key in sorted(held.keys):
            self._remove(key)
            events.append(Event("delete", tombstone(key, revision)))
        self._commit(revision, events)

    def _commit(self, revision: int, events: list[Event]) -> None:
        """Make ``revision`` current and record its events (there is at least one)."""
        assert events and revision == self._revision + 1
        self._revision = revision
        self._history.append(WatchBatch(revision, tuple(events)))
        self._history_events += len(events)
        self._history_bytes += sum(_event_bytes(e) for e in events)
        while len(self._history) > 1 and (
            self._history_events > self._max_history_events
            or self._history_bytes > self._max_history_bytes
        ):
            self._drop_oldest()
        self._changed.set()
        self._changed = trio.Event()

    def _drop_oldest(self) -> None:
        gone = self._history.popleft()
        self._history_events -= len(gone.events)
        self._history_bytes -= sum(_event_bytes(e) for e in gone.events)
        self._compact_revision = gone.revision + 1

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

    def _put(self, op: Put, revision: int) -> KeyValue:
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
        return kv

    def _apply(self, ops: Sequence[Op]) -> tuple[list[RangeResult | int | None], int]:
        # Leases are checked before anything changes, so a failing op leaves no partial txn.
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise NotFound(f"lease {op.lease} does not exist (expired or revoked)")
        revision = self._revision + 1  # used only if something changes
        responses: list[RangeResult | int | None] = []
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                events.append(Event("put", self._put(op, revision)))
                responses.append(None)
            elif isinstance(op, Delete):
                gone = [k for k in self._keys_in(op.key, op.end) if self._remove(k)]
                events += [Event("delete", tombstone(k, revision)) for k in gone]
                responses.append(len(gone))
            elif isinstance(op, Get):
                responses.append(self._range(op.key, op.end, op.limit, False, False))
        # etcd moves the revision only when the txn changed something: a delete that removed
        # nothing does not count, a put always does.
        if events:
            self._commit(revision, events)
        # Range results carry the revision the txn ends at, as etcd's do.
        responses = [
            replace(r, revision=self._revision) if isinstance(r, RangeResult) else r
            for r in responses
        ]
        return responses, self._revision

    def _batch_from(self, revision: int, prefix: bytes) -> tuple[WatchBatch | None, int]:
        """The first batch at ``revision`` or later with events under ``prefix`` (filtered to
        them), and the revision to look from next."""
        if self._history:
            first = self._history[0].revision
            for i in range(max(0, revision - first), len(self._history)):
                batch = self._history[i]
                events = tuple(e for e in batch.events if e.kv.key.startswith(prefix))
                if events:
                    return WatchBatch(batch.revision, events), batch.revision + 1
        return None, max(revision, self._revision + 1)

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
        check_txn(compare, success, failure, self._max_txn_ops)
        self._expire()
        ok = all(compare_holds(c, self._data.get(c.key)) for c in compare)
        responses, revision = self._apply(success if ok else failure)
        return TxnResult(ok, revision, responses)

    async def revision(self) -> int:
        self._expire()
        return self._revision

    @asynccontextmanager
    async def watch(
        self, prefix: bytes, start_revision: int
    ) -> AsyncIterator[trio.abc.ReceiveChannel[WatchBatch]]:
        check_watch(prefix, start_revision)
        self._expire()
        stream = _MemoryWatch(self, prefix, start_revision or self._revision + 1)
        try:
            yield stream
        finally:
            stream.closed = True

    async def compact(self, revision: int) -> None:
        self._expire()
        if revision > self._revision:
            raise InvalidArgument(f"cannot compact at future revision {revision}")
        if revision <= self._compact_revision:
            raise Compacted(self._compact_revision)
        while self._history and self._history[0].revision < revision:
            self._drop_oldest()
        self._compact_revision = revision

    async def lease_grant(self, ttl_s: int) -> int:
        ttl = check_lease_ttl(ttl_s, self._min_lease_ttl_s)
        self._expire()
        lid = next(self._lease_ids)
        self._leases[lid] = _Lease(ttl, self._clock() + ttl)
        return lid

    async def lease_keepalive(self, lease: int) -> int:
        self._expire()
        held = self._leases.get(lease)
        if held is None:
            raise NotFound(f"lease {lease} does not exist (expired or revoked)")
        held.deadline = self._clock() + held.ttl_s
        return held.ttl_s

    async def lease_time_to_live(self, lease: int) -> LeaseTTL | None:
        self._expire()
        held = self._leases.get(lease)
        if held is None:
            return None
        return LeaseTTL(lease, held.ttl_s, math.ceil(max(0.0, held.deadline - self._clock())))

    async def lease_revoke(self, lease: int) -> None:
        self._expire()
        self._revoke(lease)

    async def aclose(self) -> None:
        self._closed = True
        self._changed.set()


class _MemoryWatch(trio.abc.ReceiveChannel[WatchBatch]):
    """A cursor into MemoryKV's history (see the module docstring)."""

    def __init__(self, kv: MemoryKV, prefix: bytes, next_revision: int) -> None:
        self._kv = kv
        self._prefix = prefix
        self._next = next_revision
        self.closed = False

    async def receive(self) -> WatchBatch:
        kv = self._kv
        while True:
            await trio.lowlevel.checkpoint()
            if self.closed:
                raise trio.ClosedResourceError("this watch was closed")
            if kv._closed:
                raise Unavailable("metadata store is closed")
            kv._expire()
            if self._next < kv._compact_revision:
                raise Compacted(kv._compact_revision)
            batch, self._next = kv._batch_from(self._next, self._prefix)
            if batch is not None:
                return batch
            changed = kv._changed
            # Wake on the next revision, or soon anyway to let leases expire meanwhile.
            with trio.move_on_after(EXPIRY_POLL_S if kv._leases else math.inf):
                await changed.wait()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()
