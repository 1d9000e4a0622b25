"""Several processes on one SQLite metadata file (the gateway's workers): compare-and-swap stays
exact and revisions stay one total order across them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

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
