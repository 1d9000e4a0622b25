"""A process that writes, overwrites and deletes objects forever, journaling what it does, for
crash tests: the test kills it with SIGKILL at random moments and checks the store afterwards.

Journal lines (each fsynced before the next step):
    begin <op> <key> <seed> <size>     about to put (content from seed) or delete
    done                               the operation above was acknowledged

Usage: python -m store.testing.crash_worker DATA_DIR JOURNAL SEED
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

import trio

from store.errors import AlreadyExists
from store.node import open_local_engine

BUCKET = "crash"
KEYS = [f"k{i}" for i in range(6)]
SIZES = [0, 100, 5_000, 70_000, 700_000, 3_000_000]


def content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def work(data: Path, journal: Path, seed: int) -> None:
    rng = random.Random(seed)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def log(line: str) -> None:
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)

    async with open_local_engine(data, min_part_bytes=1) as engine:
        with contextlib.suppress(AlreadyExists):
            await engine.create_bucket(BUCKET, "crash")
        log("ready")
        while True:
            key = rng.choice(KEYS)
            if rng.random() < 0.25:
                log(f"begin delete {key} 0 0")
                await engine.delete_object(BUCKET, key)
            else:
                s, size = rng.getrandbits(32), rng.choice(SIZES)
                log(f"begin put {key} {s} {size}")
                await engine.put_object(BUCKET, key, content(s, size))
            log("done")


if __name__ == "__main__":
    trio.run(work, Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
