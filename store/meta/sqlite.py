"""SQLite metadata backend: the embedded default. One file, WAL mode, durable group commit.

Layout (``meta.sqlite3`` in the data directory):

    kv(key BLOB PRIMARY KEY, value, create_rev, mod_rev, version, lease)   WITHOUT ROWID
    leases(id INTEGER PRIMARY KEY, ttl_s REAL, deadline REAL)   deadline: wall-clock seconds
    state(name PRIMARY KEY, value)                               'revision' -> current revision

BLOB keys compare with memcmp, so ``ORDER BY key`` is the byte order the KV interface promises.

Writes go through one committer task: callers queue a job and wait; the committer takes every job
waiting (up to ``MAX_BATCH``), runs them in one SQLite transaction in a worker thread (each job in
its own SAVEPOINT, so one failing job does not undo the others) and commits once: many concurrent
writers share one fsync (``synchronous=FULL`` in WAL mode syncs the log on every commit). A job's
caller is answered only after that commit returns, so an acknowledged write is durable.
Several processes may share the file (the gateway's workers, a `store user` command): their
committers take turns through an flock on ``meta.sqlite.lock``, held for one batch.

Reads run inline on a separate connection: WAL readers see the last commit and never block the
writer. Lease deadlines are wall-clock so several processes sharing the file agree on them; reads
hide keys whose lease has passed its deadline, and the next write deletes them.
"""

from __future__ import annotations

import fcntl
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

MAX_BATCH = 512
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, ttl_s REAL NOT NULL, deadline REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES ('revision', 1);
"""

_LIVE = "(kv.lease = 0 OR EXISTS (SELECT 1 FROM leases l WHERE l.id = kv.lease AND l.deadline > ?))"
_COLUMNS = "kv.key, kv.value, kv.create_rev, kv.mod_rev, kv.version, kv.lease"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _where(key: bytes, end: bytes | None) -> tuple[str, list[Any]]:
    if end is None:
        return "kv.key = ?", [key]
    if end == b"\0":
        return "kv.key >= ?", [key]
    return "kv.key >= ? AND kv.key < ?", [key, end]


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
    where, args = _where(key, end)
    cols = _COLUMNS.replace("kv.value", "x''") if keys_only else _COLUMNS
    order = "DESC" if reverse else "ASC"
    sql = f"SELECT {cols} FROM kv WHERE {where} AND {_LIVE} ORDER BY kv.key {order}"
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

    def __init__(self, path: Path, send: trio.MemorySendChannel[_Job]) -> None:
        self.path = path
        self._send = send
        self._reader = _connect(str(path))

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
        return int(conn.execute("SELECT value FROM state WHERE name = 'revision'").fetchone()[0])

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE state SET value = value + 1 WHERE name = 'revision'")
        return SqliteKV._revision(conn)

    @staticmethod
    def _expire(conn: sqlite3.Connection) -> None:
        # Runs before every commit batch: it must cost nothing when no lease has expired, and
        # `lease != 0` lets the planner use the partial index instead of scanning every key.
        now = time.time()
        if (
            conn.execute("SELECT 1 FROM leases WHERE deadline <= ? LIMIT 1", (now,)).fetchone()
            is None
        ):
            return
        gone = conn.execute(
            "DELETE FROM kv WHERE lease != 0 AND lease IN"
            " (SELECT id FROM leases WHERE deadline <= ?)",
            (now,),
        ).rowcount
        conn.execute("DELETE FROM leases WHERE deadline <= ?", (now,))
        if gone:
            SqliteKV._bump(conn)

    @staticmethod
    def _current(conn: sqlite3.Connection, key: bytes) -> KeyValue | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM kv WHERE kv.key = ?", (key,)).fetchone()
        return _row(row) if row else None

    @staticmethod
    def _apply(conn: sqlite3.Connection, ops: Sequence[Op]) -> tuple[list[Any], int]:
        for op in ops:
            if isinstance(op, Put) and op.lease:
                live = conn.execute("SELECT 1 FROM leases WHERE id = ?", (op.lease,)).fetchone()
                if not live:
                    raise NotFound(f"lease {op.lease} does not exist (expired or revoked)")
        revision = SqliteKV._revision(conn)
        changed = False
        responses: list[Any] = []
        for op in ops:
            if isinstance(op, Put):
                old = SqliteKV._current(conn, op.key)
                create, version = (
                    (revision + 1, 1) if old is None else (old.create_revision, old.version + 1)
                )
                conn.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                    (op.key, bytes(op.value), create, revision + 1, version, op.lease),
                )
                changed = True
                responses.append(None)
            elif isinstance(op, Delete):
                where, args = _where(op.key, op.end)
                count = conn.execute(f"DELETE FROM kv WHERE {where}", args).rowcount
                changed = changed or count > 0
                responses.append(count)
            elif isinstance(op, Get):
                kvs, more = _select(conn, op.key, op.end, op.limit, False, False, time.time())
                responses.append((kvs, more))
        if changed:
            revision = SqliteKV._bump(conn)
        # Range results carry the revision the txn ends at, as etcd's do.
        return [
            RangeResult(r[0], r[1], revision) if isinstance(r, tuple) else r for r in responses
        ], revision

    # -- the KV interface -----------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        check_key(key)
        kvs, _ = _select(self._reader, key, None, 0, False, False, time.time())
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
            kvs, more = _select(self._reader, key, end, limit, reverse, keys_only, time.time())
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
        check_txn(compare, success, failure)

        def run(conn: sqlite3.Connection) -> TxnResult:
            ok = all(compare_holds(c, self._current(conn, c.key)) for c in compare)
            responses, revision = self._apply(conn, success if ok else failure)
            return TxnResult(ok, revision, responses)

        result: TxnResult = await self._write(run)
        return result

    async def revision(self) -> int:
        return self._revision(self._reader)

    async def lease_grant(self, ttl_s: float) -> int:
        if not ttl_s > 0:
            raise ValueError("lease TTL must be positive")

        def grant(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO leases (ttl_s, deadline) VALUES (?, ?)", (ttl_s, time.time() + ttl_s)
            )
            return int(cur.lastrowid or 0)

        return int(await self._write(grant))

    async def lease_keepalive(self, lease: int) -> float:
        def renew(conn: sqlite3.Connection) -> float:
            row = conn.execute("SELECT ttl_s FROM leases WHERE id = ?", (lease,)).fetchone()
            if row is None:
                raise NotFound(f"lease {lease} does not exist (expired or revoked)")
            deadline = time.time() + row[0]
            conn.execute("UPDATE leases SET deadline = ? WHERE id = ?", (deadline, lease))
            return float(row[0])

        return float(await self._write(renew))

    async def lease_revoke(self, lease: int) -> None:
        def revoke(conn: sqlite3.Connection) -> None:
            gone = conn.execute("DELETE FROM kv WHERE lease = ?", (lease,)).rowcount
            conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
            if gone:
                self._bump(conn)

        await self._write(revoke)

    async def aclose(self) -> None:
        self._send.close()
        self._reader.close()


def _commit_batch(conn: sqlite3.Connection, batch: list[_Job], lock_fd: int) -> None:
    """Run every job of the batch in one transaction; each job in its own savepoint."""
    # Processes sharing the file (gateway workers, `store user`) take turns on this lock rather
    # than through SQLite's busy handler, which polls with sleeps of up to 100 ms: a blocked
    # flock wakes the moment the holder lets go.
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        _commit_locked(conn, batch)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


def _commit_locked(conn: sqlite3.Connection, batch: list[_Job]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        SqliteKV._expire(conn)
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn)
            except (StoreError, ValueError, sqlite3.Error) as e:
                conn.execute("ROLLBACK TO job")
                job.error = e
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


async def _committer(
    conn: sqlite3.Connection, lock_fd: int, receive: trio.MemoryReceiveChannel[_Job]
) -> None:
    limiter = trio.CapacityLimiter(1)
    async with receive:
        async for first in receive:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await trio.to_thread.run_sync(_commit_batch, conn, batch, lock_fd, limiter=limiter)
            except sqlite3.Error as e:
                for job in batch:
                    job.error = Unavailable(f"metadata commit failed: {e}")
            for job in batch:
                job.done.set()


@asynccontextmanager
async def open_sqlite_kv(path: Path | str) -> AsyncIterator[SqliteKV]:
    """Open (creating if needed) the metadata file and run its committer until exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _connect(str(path))
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    writer.executescript(SCHEMA)
    send, receive = trio.open_memory_channel[_Job](MAX_BATCH)
    kv = SqliteKV(path, send)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_committer, writer, lock_fd, receive)
            try:
                yield kv
            finally:
                await kv.aclose()
    finally:
        writer.close()
        os.close(lock_fd)
