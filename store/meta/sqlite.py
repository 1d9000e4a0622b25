"""SQLite metadata backend: the embedded default. One file, WAL mode, durable group commit.

Layout (``meta.sqlite3`` in the data directory):

    kv(key BLOB PRIMARY KEY, value, create_rev, mod_rev, version, lease)   WITHOUT ROWID
    leases(id INTEGER PRIMARY KEY, ttl_s, deadline)   ttl_s: whole seconds; deadline: wall clock
    state(name PRIMARY KEY, value)      'revision' -> current revision,
                                        'compact_revision' -> where watches may start
    log(rev, key, value, create_rev, version, lease)   the revision log (see sqlite_log)

BLOB keys compare with memcmp, so ``ORDER BY key`` is the byte order the KV interface promises.

The revision log (``log`` and ``state.compact_revision``, described in ``store.meta.sqlite_log``)
is written in the same SQLite transaction as every change, so a watch in any process sharing the
file sees every committed change exactly once, in order.

Writes go through one committer task: callers queue a job and wait; the committer takes every job
waiting (up to ``MAX_BATCH``), runs them in one SQLite transaction in a worker thread (each job in
its own SAVEPOINT, so one failing job does not undo the others) and commits once: many concurrent
writers share one fsync (``synchronous=FULL`` in WAL mode syncs the log on every commit). A job's
caller is answered only after that commit returns, so an acknowledged write is durable.
Several processes may share the file (the gateway's workers, a `store user` command): their
committers take turns through an flock on ``meta.sqlite.lock``, held for one batch.

Reads run inline on a separate connection: WAL readers see the last commit and never block the
writer. Lease deadlines are wall-clock so several processes sharing the file agree on them; reads
hide keys whose lease has passed its deadline. Expired leases are revoked (each in its own
revision, a delete event per key, as etcd's leader revokes them) at the start of every commit
batch, and an idle committer checks for them every ``watch_poll_s``, so their delete events reach
watchers even when nothing else is written.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from store.errors import NotFound, StoreError, Unavailable
from store.meta.api import (
    MAX_TXN_OPS,
    MIN_LEASE_TTL_S,
    Compare,
    Delete,
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
)
from store.meta.sqlite_log import (
    LOG_SCHEMA,
    LogWatch,
    compact_log,
    log_deletes,
    log_put,
    retain_log,
    set_state,
    state,
    where,
)

MAX_BATCH = 512
BUSY_TIMEOUT_MS = 10_000
LOG_RETENTION_REVISIONS = 10_000
WATCH_POLL_S = 0.05

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, ttl_s REAL NOT NULL, deadline REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_deadline ON leases(deadline);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES ('revision', 1);
"""
    + LOG_SCHEMA
)

_LIVE = "(kv.lease = 0 OR EXISTS (SELECT 1 FROM leases l WHERE l.id = kv.lease AND l.deadline > ?))"
_COLUMNS = "kv.key, kv.value, kv.create_rev, kv.mod_rev, kv.version, kv.lease"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _row(row: tuple[Any, ...]) -> KeyValue:
    return KeyValue(bytes(row[0]), bytes(row[1]), row[2], row[3], row[4], row[5])


def _select(
    conn: sqlite3.Connection,
    key: bytes,
    end: bytes | None,
    limit: int,
    reverse: bool,
    keys_only: bool,
    now: float,
) -> tuple[list[KeyValue], bool]:
    sql_range, args = where(key, end)
    cols = _COLUMNS.replace("kv.value", "x''") if keys_only else _COLUMNS
    order = "DESC" if reverse else "ASC"
    sql = f"SELECT {cols} FROM kv WHERE {sql_range} AND {_LIVE} ORDER BY kv.key {order}"
    if limit:
        sql += f" LIMIT {int(limit) + 1}"
    rows = conn.execute(sql, [*args, now]).fetchall()
    more = bool(limit) and len(rows) > limit
    return [_row(r) for r in rows[: limit or None]], more


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class SqliteKV:
    """Use through ``open_sqlite_kv(path)``, which runs the committer task."""

    def __init__(
        self,
        path: Path,
        send: trio.MemorySendChannel[_Job],
        *,
        clock: Callable[[], float] = time.time,
        log_retention_revisions: int = LOG_RETENTION_REVISIONS,
        watch_poll_s: float = WATCH_POLL_S,
        min_lease_ttl_s: int = MIN_LEASE_TTL_S,
        max_txn_ops: int = MAX_TXN_OPS,
    ) -> None:
        assert log_retention_revisions >= 1 and watch_poll_s > 0
        self.path = path
        self._send = send
        self._reader = _connect(str(path))
        self._clock = clock
        self.log_retention_revisions = log_retention_revisions
        self.watch_poll_s = watch_poll_s
        self._min_lease_ttl_s = min_lease_ttl_s
        self._max_txn_ops = max_txn_ops
        self._changed = trio.Event()
        self._closed = False

    # -- writes: run in the committer's transaction ---------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        job = _Job(fn)
        try:
            await self._send.send(job)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Unavailable("metadata store is closed") from None
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        return state(conn, "revision")

    def _expire(self, conn: sqlite3.Connection) -> None:
        # Runs before every commit batch: it must cost nothing when no lease has expired.
        now = self._clock()
        expired = conn.execute(
            "SELECT id FROM leases WHERE deadline <= ? ORDER BY deadline, id", (now,)
        ).fetchall()
        for (lid,) in expired:
            self._revoke(conn, lid)

    @staticmethod
    def _revoke(conn: sqlite3.Connection, lease: int) -> None:
        """Delete a lease and its keys: one revision if it had any (etcd's LeaseRevoke)."""
        # `lease != 0` lets the planner use the partial index instead of scanning every key.
        held = "lease != 0 AND lease = ?"
        keys = [
            bytes(r[0])
            for r in conn.execute(f"SELECT key FROM kv WHERE {held} ORDER BY key", (lease,))
        ]
        conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        if keys:
            revision = SqliteKV._revision(conn) + 1
            conn.execute(f"DELETE FROM kv WHERE {held}", (lease,))
            log_deletes(conn, revision, keys)
            set_state(conn, "revision", revision)

    def _retain(self, conn: sqlite3.Connection) -> None:
        retain_log(conn, self.log_retention_revisions)

    def _expiry_due(self, conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "SELECT 1 FROM leases WHERE deadline <= ? LIMIT 1", (self._clock(),)
        ).fetchone()
        return found is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @staticmethod
    def _current(conn: sqlite3.Connection, key: bytes) -> KeyValue | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM kv WHERE kv.key = ?", (key,)).fetchone()
        return _row(row) if row else None

    def _apply(self, conn: sqlite3.Connection, ops: Sequence[Op]) -> tuple[list[Any], int]:
        for op in ops:
            if isinstance(op, Put) and op.lease:
                live = conn.execute("SELECT 1 FROM leases WHERE id = ?", (op.lease,)).fetchone()
                if not live:
                    raise NotFound(f"lease {op.lease} does not exist (expired or revoked)")
        revision = self._revision(conn) + 1  # used only if something changes
        changed = False
        responses: list[Any] = []
        for op in ops:
            if isinstance(op, Put):
                old = self._current(conn, op.key)
                create, version = (
                    (revision, 1) if old is None else (old.create_revision, old.version + 1)
                )
                value = bytes(op.value)
                conn.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                    (op.key, value, create, revision, version, op.lease),
                )
                log_put(conn, revision, op.key, value, create, version, op.lease)
                changed = True
                responses.append(None)
            elif isinstance(op, Delete):
                sql_range, args = where(op.key, op.end)
                found = conn.execute(f"SELECT key FROM kv WHERE {sql_range} ORDER BY key", args)
                keys = [bytes(r[0]) for r in found]
                if keys:
                    conn.execute(f"DELETE FROM kv WHERE {sql_range}", args)
                    log_deletes(conn, revision, keys)
                    changed = True
                responses.append(len(keys))
            elif isinstance(op, Get):
                kvs, more = _select(conn, op.key, op.end, op.limit, False, False, self._clock())
                responses.append((kvs, more))
        # etcd moves the revision only when the txn changed something: a delete that removed
        # nothing does not count, a put always does.
        if changed:
            set_state(conn, "revision", revision)
        else:
            revision -= 1
        # Range results carry the revision the txn ends at, as etcd's do.
        return [
            RangeResult(r[0], r[1], revision) if isinstance(r, tuple) else r for r in responses
        ], revision

    # -- the KV interface -----------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        check_key(key)
        kvs, _ = _select(self._reader, key, None, 0, False, False, self._clock())
        return kvs[0] if kvs else None

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
        # One read transaction, so the revision matches the rows.
        self._reader.execute("BEGIN")
        try:
            kvs, more = _select(self._reader, key, end, limit, reverse, keys_only, self._clock())
            revision = self._revision(self._reader)
        finally:
            self._reader.execute("COMMIT")
        return RangeResult(kvs, more, revision)

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        check_key(key)
        check_value(value)
        _, revision = await self._write(lambda c: self._apply(c, [Put(key, value, lease)]))
        return int(revision)

    async def delete(self, key: bytes, end: bytes | None = None) -> int:
        check_range(key, end)
        (count,), _ = await self._write(lambda c: self._apply(c, [Delete(key, end)]))
        return int(count)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn(compare, success, failure, self._max_txn_ops)

        def run(conn: sqlite3.Connection) -> TxnResult:
            ok = all(compare_holds(c, self._current(conn, c.key)) for c in compare)
            responses, revision = self._apply(conn, success if ok else failure)
            return TxnResult(ok, revision, responses)

        result: TxnResult = await self._write(run)
        return result

    async def revision(self) -> int:
        return self._revision(self._reader)

    @asynccontextmanager
    async def watch(
        self, prefix: bytes, start_revision: int
    ) -> AsyncIterator[trio.abc.ReceiveChannel[WatchBatch]]:
        check_watch(prefix, start_revision)
        if self._closed:
            raise Unavailable("metadata store is closed")
        start = start_revision or self._revision(self._reader) + 1
        stream = LogWatch(self, prefix, start)
        try:
            yield stream
        finally:
            stream.closed = True

    async def compact(self, revision: int) -> None:
        await self._write(lambda conn: compact_log(conn, revision))

    async def lease_grant(self, ttl_s: int) -> int:
        ttl = check_lease_ttl(ttl_s, self._min_lease_ttl_s)

        def grant(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO leases (ttl_s, deadline) VALUES (?, ?)", (ttl, self._clock() + ttl)
            )
            return int(cur.lastrowid or 0)

        return int(await self._write(grant))

    async def lease_keepalive(self, lease: int) -> int:
        def renew(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT ttl_s FROM leases WHERE id = ?", (lease,)).fetchone()
            if row is None:
                raise NotFound(f"lease {lease} does not exist (expired or revoked)")
            ttl = math.ceil(row[0])  # a file from before whole-second TTLs may hold a fraction
            conn.execute(
                "UPDATE leases SET deadline = ? WHERE id = ?", (self._clock() + ttl, lease)
            )
            return ttl

        return int(await self._write(renew))

    async def lease_time_to_live(self, lease: int) -> LeaseTTL | None:
        now = self._clock()
        row = self._reader.execute(
            "SELECT ttl_s, deadline FROM leases WHERE id = ? AND deadline > ?", (lease, now)
        ).fetchone()
        if row is None:
            return None
        return LeaseTTL(lease, math.ceil(row[0]), math.ceil(row[1] - now))

    async def lease_revoke(self, lease: int) -> None:
        await self._write(lambda conn: self._revoke(conn, lease))

    async def aclose(self) -> None:
        self._closed = True
        self._notify()
        self._send.close()
        self._reader.close()


def _commit_batch(conn: sqlite3.Connection, batch: list[_Job], lock_fd: int, kv: SqliteKV) -> None:
    """Run every job of the batch in one transaction; each job in its own savepoint."""
    # Processes sharing the file (gateway workers, `store user`) take turns on this lock rather
    # than through SQLite's busy handler, which polls with sleeps of up to 100 ms: a blocked
    # flock wakes the moment the holder lets go.
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        _commit_locked(conn, batch, kv)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


def _commit_locked(conn: sqlite3.Connection, batch: list[_Job], kv: SqliteKV) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        kv._expire(conn)
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except (StoreError, ValueError, sqlite3.Error) as e:
                conn.execute("ROLLBACK TO job")
                job.error = e
            conn.execute("RELEASE job")
        kv._retain(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


async def _committer(
    kv: SqliteKV,
    conn: sqlite3.Connection,
    lock_fd: int,
    receive: trio.MemoryReceiveChannel[_Job],
) -> None:
    limiter = trio.CapacityLimiter(1)
    async with receive:
        while True:
            batch: list[_Job] = []
            with trio.move_on_after(kv.watch_poll_s):
                try:
                    batch.append(await receive.receive())
                except trio.EndOfChannel:
                    return
            # Idle: commit an empty batch only to revoke leases that expired meanwhile.
            if not batch and (kv._closed or not kv._expiry_due(conn)):
                continue
            while batch and len(batch) < MAX_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await trio.to_thread.run_sync(
                    _commit_batch, conn, batch, lock_fd, kv, limiter=limiter
                )
            except sqlite3.Error as e:
                for job in batch:
                    job.error = Unavailable(f"metadata commit failed: {e}")
            for job in batch:
                job.done.set()
            kv._notify()


@asynccontextmanager
async def open_sqlite_kv(
    path: Path | str,
    *,
    clock: Callable[[], float] = time.time,
    log_retention_revisions: int = LOG_RETENTION_REVISIONS,
    watch_poll_s: float = WATCH_POLL_S,
    min_lease_ttl_s: int = MIN_LEASE_TTL_S,
    max_txn_ops: int = MAX_TXN_OPS,
) -> AsyncIterator[SqliteKV]:
    """Open (creating if needed) the metadata file and run its committer until exit.

    ``clock`` gives lease deadlines (wall-clock seconds: every process sharing the file must use
    the same clock); the other options are described in the module docstring.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _connect(str(path))
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # Several processes may open a new file at once: the schema is created under the lock.
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        writer.executescript(SCHEMA)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
    send, receive = trio.open_memory_channel[_Job](MAX_BATCH)
    kv = SqliteKV(
        path,
        send,
        clock=clock,
        log_retention_revisions=log_retention_revisions,
        watch_poll_s=watch_poll_s,
        min_lease_ttl_s=min_lease_ttl_s,
        max_txn_ops=max_txn_ops,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_committer, kv, writer, lock_fd, receive)
            try:
                yield kv
            finally:
                await kv.aclose()
    finally:
        writer.close()
        os.close(lock_fd)
