"""Streaming a 2 GiB object in and out keeps memory bounded (RSS growth under 256 MiB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import hashlib, json, os, sys, trio
from store.node import open_local_engine

SIZE, PIECE = 2 << 30, 1 << 20

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

async def body(digest):
    block = bytearray(os.urandom(PIECE))
    for i in range(SIZE // PIECE):
        block[:8] = i.to_bytes(8, "little")
        digest.update(block)
        yield bytes(block)

async def main():
    async with open_local_engine(sys.argv[1]) as engine:
        await engine.create_bucket("mem", "me")
        start = rss("VmRSS:")
        sent = hashlib.sha1()
        await engine.put_object("mem", "big", body(sent), size=SIZE)
        got, n = hashlib.sha1(), 0
        async with engine.open_object("mem", "big") as reader:
            async for piece in reader:
                got.update(piece)
                n += len(piece)
        print(json.dumps({"growth": rss("VmHWM:") - start, "same": got.digest() == sent.digest(),
                          "n": n}))

trio.run(main)
"""


@pytest.mark.slow
def test_two_gib_stream_in_and_out(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["same"] and result["n"] == 2 << 30
    assert result["growth"] < 256 << 20, f"RSS grew by {result['growth'] >> 20} MiB"
