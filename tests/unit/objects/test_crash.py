"""SIGKILL a writer at random moments, many times: every object stays absent, old or new, whole."""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest
import trio

from store.errors import NoSuchKey
from store.node import open_local_engine
from store.objects import chunk_refs as CR
from store.objects import maintenance
from store.testing.crash_worker import BUCKET, KEYS, content

ROUNDS = 12


def replay(journal: Path) -> dict[str, set[tuple[int, int] | None]]:
    """Per key, the states it may be in: the last acknowledged one, plus the target of an
    operation that began and was not acknowledged. (seed, size) or None for absent.

    An operation the kill interrupted may or may not have happened; the check after each round
    records what it found (``state`` lines), which is where the next round starts from."""
    acked: dict[str, tuple[int, int] | None] = dict.fromkeys(KEYS)
    pending: tuple[str, tuple[int, int] | None] | None = None
    for line in journal.read_text().splitlines():
        words = line.split()
        if words[0] == "state":
            key = words[1]
            acked[key] = None if words[2] == "none" else (int(words[2]), int(words[3]))
            pending = None
        elif words[0] == "begin":
            op, key, seed, size = words[1], words[2], int(words[3]), int(words[4])
            pending = (key, (seed, size) if op == "put" else None)
        elif words[0] == "done":
            assert pending is not None
            acked[pending[0]] = pending[1]
            pending = None
    allowed = {key: {state} for key, state in acked.items()}
    if pending is not None:
        allowed[pending[0]].add(pending[1])
    return allowed


@pytest.mark.slow
async def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    data, journal = tmp_path / "data", tmp_path / "journal"
    rng = random.Random(1234)
    for round_ in range(ROUNDS):
        worker = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "store.testing.crash_worker",
                str(data),
                str(journal),
                str(rng.getrandbits(32)),
            ],
        )
        deadline = time.monotonic() + 30
        while "ready" not in (journal.read_text() if journal.exists() else ""):
            assert time.monotonic() < deadline and worker.poll() is None
            await trio.sleep(0.05)
        await trio.sleep(rng.uniform(0.05, 1.5))
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        allowed = replay(journal)
        observed: list[str] = []
        async with open_local_engine(data) as engine:
            for key in KEYS:
                try:
                    version, body = await engine.get_object(BUCKET, key)
                except NoSuchKey:
                    assert None in allowed[key], f"round {round_}: {key} lost"
                    observed.append(f"state {key} none")
                    continue
                found = {s for s in allowed[key] if s is not None and content(*s) == body}
                assert found, f"round {round_}: {key} holds {len(body)} bytes nobody wrote"
                seed, size = next(iter(found))
                observed.append(f"state {key} {seed} {size}")
            assert (await maintenance.scrub(engine)).clean
            await maintenance.collect_garbage(engine)
            await maintenance.sweep_orphans(engine, grace_s=-10)
            page = await engine.kv.range(b"R/", b"R0")
            referenced = {r.chunk_id for kv in page.kvs for r in CR.refs_from_value(kv.value)}
            on_disk = {p.name.partition(".")[0] for p in data.glob("drives/d*/shards/*/*")}
            assert on_disk <= referenced, "orphan shards survived garbage collection"
            assert not list(data.glob("drives/d*/tmp/*"))
        text = journal.read_text().replace("ready\n", "")
        journal.write_text(text + "".join(line + "\n" for line in observed))
