"""The SQLite backend's revision log, and the watches that follow it.

Layout (in ``meta.sqlite3``, beside the tables described in ``store.meta.sqlite``):

    log(rev INTEGER, key BLOB, value BLOB NULL, create_rev, version, lease)   index log_rev(rev)
    state('compact_revision') -> the oldest revision a watch may start from

Invariants. Every change writes one ``log`` row per event in the same SQLite transaction as the
change itself and its revision bump: a put stores the key's new record (its mod revision is
``rev``), a delete stores the key with a NULL value (create_rev, version and lease 0, etcd's
tombstone). Rows of one revision are in ``rowid`` order, the order of the writes (a range delete:
its keys in byte order). Revisions are dense, each one a change, so the log holds every event of
every revision from ``compact_revision`` to the current one and nothing else. Hence any reader,
in this process or another sharing the file, whose snapshot shows revision R also sees every log
row up to R and none past it.

A watch is a cursor: ``(next revision, prefix)``. Each read takes one snapshot, raises Compacted
if ``next`` is older than ``compact_revision``, and reads ``rev >= next`` in ``(rev, rowid)``
order, at most ``WATCH_FETCH_ROWS`` rows (a revision larger than that is read whole, a revision
cut short by the limit is left for the next read), so it sees every committed change exactly
once, in order, and buffers no more than one read. Watches wake at once for commits made through
their own handle and poll every ``watch_poll_s`` for those of other processes.

Retention. After each commit batch, once the log holds ``log_retention_revisions`` revisions plus
an eighth more, the rows older than the last ``log_retention_revisions`` revisions are deleted and
``compact_revision`` moves up to the oldest one kept; ``compact(rev)`` does the same on demand. A
file from before the log starts with ``compact_revision`` just past its current revision.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any, Protocol

import trio

from store.errors import InvalidArgument, Unavailable
from store.meta.api import Compacted, Event, KeyValue, WatchBatch, prefix_end, tombstone


class LogSource(Protocol):
    """What a watch reads through: the store's reader connection and its wake-up event
    (``SqliteKV``; a Protocol so this module does not import the store that uses it)."""

    _reader: sqlite3.Connection
    _changed: trio.Event
    _closed: bool
    watch_poll_s: float


WATCH_FETCH_ROWS = 1000  # log rows one watch reads at a time (a bigger revision is read whole)

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL, key BLOB NOT NULL, value BLOB, create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL, lease INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_rev ON log(rev);
-- A file from before the log has no history: watches start after its current revision.
INSERT OR IGNORE INTO state
    SELECT 'compact_revision', CASE WHEN value > 1 THEN value + 1 ELSE 0 END
    FROM state WHERE name = 'revision';
"""

_INSERT = "INSERT INTO log (rev, key, value, create_rev, version, lease) VALUES (?,?,?,?,?,?)"


def where(key: bytes, end: bytes | None, column: str = "kv.key") -> tuple[str, list[Any]]:
    """SQL for keys in [key, end) (end None: just ``key``; b"\\0": every key from ``key``)."""
    if end is None:
        return f"{column} = ?", [key]
    if end == b"\0":
        return f"{column} >= ?", [key]
    return f"{column} >= ? AND {column} < ?", [key, end]


def state(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()[0])


def set_state(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("UPDATE state SET value = ? WHERE name = ?", (value, name))


def log_put(
    conn: sqlite3.Connection,
    revision: int,
    key: bytes,
    value: bytes,
    create_revision: int,
    version: int,
    lease: int,
) -> None:
    conn.execute(_INSERT, (revision, key, value, create_revision, version, lease))


def log_deletes(conn: sqlite3.Connection, revision: int, keys: list[bytes]) -> None:
    conn.executemany(_INSERT, [(revision, k, None, 0, 0, 0) for k in keys])


def retain_log(conn: sqlite3.Connection, keep: int) -> None:
    """Drop log rows older than the last ``keep`` revisions, an eighth of them at a time."""
    floor = state(conn, "revision") - keep + 1
    if floor - state(conn, "compact_revision") >= max(1, keep // 8):
        conn.execute("DELETE FROM log WHERE rev < ?", (floor,))
        set_state(conn, "compact_revision", floor)


def compact_log(conn: sqlite3.Connection, revision: int) -> None:
    """KV.compact: etcd's ErrFutureRev and ErrCompacted become InvalidArgument and Compacted."""
    if revision > state(conn, "revision"):
        raise InvalidArgument(f"cannot compact at future revision {revision}")
    compacted = state(conn, "compact_revision")
    if revision <= compacted:
        raise Compacted(compacted)
    conn.execute("DELETE FROM log WHERE rev < ?", (revision,))
    set_state(conn, "compact_revision", revision)


class LogWatch(trio.abc.ReceiveChannel[WatchBatch]):
    """A cursor over the revision log (see the module docstring)."""

    def __init__(self, kv: LogSource, prefix: bytes, next_revision: int) -> None:
        self._kv = kv
        self._next = next_revision
        self._pending: collections.deque[WatchBatch] = collections.deque()
        self.closed = False
        self._where = ""
        self._args: list[Any] = []
        if prefix:
            sql, self._args = where(prefix, prefix_end(prefix), "key")
            self._where = f" AND {sql}"

    async def receive(self) -> WatchBatch:
        kv = self._kv
        while True:
            await trio.lowlevel.checkpoint()
            if self.closed:
                raise trio.ClosedResourceError("this watch was closed")
            if self._pending:
                return self._pending.popleft()
            if kv._closed:
                raise Unavailable("metadata store is closed")
            changed = kv._changed
            self._fetch(kv._reader)
            if not self._pending:
                # Commits through this handle wake us at once; other processes' commits are
                # found by the next poll.
                with trio.move_on_after(kv.watch_poll_s):
                    await changed.wait()

    def _fetch(self, conn: sqlite3.Connection) -> None:
        """Read the next log rows in one snapshot; never split a revision."""
        cols = "rowid, rev, key, value, create_rev, version, lease"
        conn.execute("BEGIN")
        try:
            current = state(conn, "revision")
            compacted = state(conn, "compact_revision")
            if self._next < compacted:
                raise Compacted(compacted)
            if self._next > current:
                return
            rows = conn.execute(
                f"SELECT {cols} FROM log WHERE rev >= ?{self._where} ORDER BY rev, rowid LIMIT ?",
                [self._next, *self._args, WATCH_FETCH_ROWS],
            ).fetchall()
            upto = current
            if len(rows) == WATCH_FETCH_ROWS:
                upto = rows[-1][1]
                if rows[0][1] == upto:  # one revision larger than a fetch: read all of it
                    rows += conn.execute(
                        f"SELECT {cols} FROM log WHERE rev = ? AND rowid > ?{self._where}"
                        " ORDER BY rowid",
                        [upto, rows[-1][0], *self._args],
                    ).fetchall()
                else:  # the last revision may be cut short: leave it for the next fetch
                    upto -= 1
                    rows = [r for r in rows if r[1] <= upto]
        finally:
            conn.execute("COMMIT")
        self._next = upto + 1
        self._pending.extend(_batches(rows))

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def _batches(rows: list[tuple[Any, ...]]) -> list[WatchBatch]:
    """Group log rows (in (rev, rowid) order) into one batch per revision."""
    out: list[WatchBatch] = []
    events: list[Event] = []
    for _, rev, key, value, create, version, lease in rows:
        if events and events[-1].kv.mod_revision != rev:
            out.append(WatchBatch(events[-1].kv.mod_revision, tuple(events)))
            events = []
        if value is None:
            events.append(Event("delete", tombstone(bytes(key), rev)))
        else:
            events.append(
                Event("put", KeyValue(bytes(key), bytes(value), create, rev, version, lease))
            )
    if events:
        out.append(WatchBatch(events[-1].kv.mod_revision, tuple(events)))
    return out
