"""Several processes on one SQLite metadata file (the gateway's workers): compare-and-swap stays
exact, revisions stay one total order across them, and a watch in one process sees every change
the others commit, once each, in order."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from store.meta.api import WatchBatch
from store.meta.sqlite import open_sqlite_kv

INCREMENTS = 150

# Each process increments one counter with compare-and-swap on its mod revision, retrying when
# another process got there first, and records the revisions its own writes landed at.
WORKER = """
import sys, trio
from store.meta.api import Compare, Put
from store.meta.sqlite import open_sqlite_kv

async def main(path, name, count):
    async with open_sqlite_kv(path) as kv:
        done = 0
        with open(name, "w") as log:
            while done < count:
                kv_now = await kv.get(b"counter")
                value = int(kv_now.value) if kv_now else 0
                rev = kv_now.mod_revision if kv_now else 0
                cmp = Compare.mod_is(b"counter", rev) if kv_now else Compare.absent(b"counter")
                result = await kv.txn([cmp], [Put(b"counter", str(value + 1).encode())])
                if result.succeeded:
                    done += 1
                    log.write(f"{result.revision}\\n")

trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def test_processes_share_one_file_with_exact_compare_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite"
    trio.run(_create, path)
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(log), str(INCREMENTS)])
        for log in logs
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    revisions = [int(x) for log in logs for x in log.read_text().split()]
    assert len(revisions) == len(set(revisions)) == 3 * INCREMENTS  # one total order

    async def check() -> None:
        async with open_sqlite_kv(path) as kv:
            found = await kv.get(b"counter")
            assert found is not None and int(found.value) == 3 * INCREMENTS  # no lost update
            assert found.version == 3 * INCREMENTS
            assert await kv.revision() == max(revisions)

    trio.run(check)


async def _create(path: Path) -> None:
    async with open_sqlite_kv(path):
        pass


# Each writer process makes puts, txns (a put and a delete), range deletes and a lease revoke
# under its own prefix, and logs, in order, every revision it made (None for the revoke, which
# does not return one) with the events it expects there.
WRITER = """
import json, sys, trio
from store.meta.api import Delete, Put, prefix_end
from store.meta.sqlite import open_sqlite_kv

async def main(path, name, count):
    mine = {}
    log = []
    async with open_sqlite_kv(path) as kv:
        lease = await kv.lease_grant(600)
        rev = await kv.put(f"{name}/leased".encode(), b"L", lease=lease)
        log.append((rev, [("put", f"{name}/leased", "L")]))
        for i in range(count):
            key, value = f"{name}/k{i % 5}", str(i)
            if i % 7 == 6:
                gone = sorted(mine)
                prefix = f"{name}/k".encode()
                res = await kv.txn([], [Delete(prefix, prefix_end(prefix))])
                assert res.responses == [len(gone)]
                mine.clear()
                if gone:
                    log.append((res.revision, [("delete", k, "") for k in gone]))
            elif i % 3 == 2:
                other = f"{name}/k{(i + 1) % 5}"
                ops = [Put(key.encode(), value.encode()), Delete(other.encode())]
                if other == key:
                    ops = ops[:1]
                res = await kv.txn([], ops)
                events = [("put", key, value)]
                if other != key and other in mine:
                    events.append(("delete", other, ""))
                    del mine[other]
                mine[key] = value
                log.append((res.revision, events))
            else:
                rev = await kv.put(key.encode(), value.encode())
                mine[key] = value
                log.append((rev, [("put", key, value)]))
        await kv.lease_revoke(lease)  # returns no revision: the watcher checks its place
        log.append((None, [("delete", f"{name}/leased", "")]))
        rev = await kv.put(f"{name}/done".encode(), b"")
        log.append((rev, [("put", f"{name}/done", "")]))
    with open(sys.argv[4], "w") as out:
        json.dump(log, out)

trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


async def test_a_watch_follows_writes_of_other_processes(tmp_path: Path) -> None:
    """Two processes write concurrently; this one only watches (so it learns of their commits
    by polling the revision log) and sees exactly the revisions they made, in order."""
    path = tmp_path / "meta.sqlite"
    names = ["p0", "p1"]
    logs = [tmp_path / f"{name}.json" for name in names]
    seen: list[WatchBatch] = []
    async with open_sqlite_kv(path) as kv:
        start = await kv.revision()
        async with kv.watch(b"", start + 1) as watch, trio.open_nursery() as nursery:
            for name, log in zip(names, logs, strict=True):
                cmd = [sys.executable, "-c", WRITER, str(path), name, "120", str(log)]
                nursery.start_soon(partial(trio.run_process, cmd, check=True))
            done: set[bytes] = set()
            with trio.fail_after(120):
                while len(done) < len(names):
                    batch = await watch.receive()
                    seen.append(batch)
                    done |= {e.kv.key for e in batch.events if e.kv.key.endswith(b"/done")}
        end = await kv.revision()
    got = [
        (b.revision, [(e.type, e.kv.key.decode(), e.kv.value.decode()) for e in b.events])
        for b in seen
    ]
    assert [rev for rev, _ in got] == list(range(start + 1, end + 1))  # none skipped
    for name, log in zip(names, logs, strict=True):
        theirs = [(rev, ev) for rev, ev in got if ev[0][1].startswith(f"{name}/")]
        assert all(key.startswith(f"{name}/") for _, ev in theirs for _, key, _ in ev)
        expected = [(rev, [tuple(e) for e in ev]) for rev, ev in json.loads(log.read_text())]
        assert [ev for _, ev in theirs] == [ev for _, ev in expected]  # every change, in order
        assert all(
            want in (None, rev) for (rev, _), (want, _) in zip(theirs, expected, strict=True)
        )
    assert sum(len(json.loads(log.read_text())) for log in logs) == len(got)
