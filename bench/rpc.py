"""The chunk RPC's own cost: extent calls through a RemoteDrive to a DriveServer over loopback,
client and server in this one process (so the figure is the CPU a call takes on both sides,
with no other process in the way), beside the same calls on the local drive directly.

    .venv/bin/python bench/rpc.py            # 20,000 calls per case
    .venv/bin/python bench/rpc.py --calls N

Cases: 4 KiB extent reads and writes, 1 and 32 calls in flight; 1 MiB reads at 8 in flight.
JSON lines: calls/s and microseconds per call for "rpc" and "local", and their ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio
from benchlib import cpu_model, git_commit

from store.chunk.api import DriveAPI
from store.chunk.drive import Drive
from store.chunk.drive_server import DriveServer
from store.chunk.extentfile import ExtentGeometry
from store.chunk.remote_drive import RemoteDrive
from store.rpc.transport import open_rpc_client, serve_rpc

SECRET = b"a secret for the benchmark only!"
EXTENT = "0123456789abcdef.1"
GEOMETRY = ExtentGeometry(64 << 20, 4096)


async def timed(calls: int, depth: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Seconds for ``calls`` calls of ``one(i)``, ``depth`` in flight."""

    async def worker(first: int) -> None:
        for i in range(first, calls, depth):
            await one(i)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for first in range(depth):
            nursery.start_soon(worker, first)
    return time.perf_counter() - began


async def cases(drive: DriveAPI, calls: int) -> dict[str, float]:
    block = b"x" * 4096
    span = GEOMETRY.extent_bytes // 4096
    out = {}
    for depth in (1, 32):
        seconds = await timed(
            calls, depth, lambda i: drive.extent_read(EXTENT, GEOMETRY, (i * 7 % span) * 4096, 4096)
        )
        out[f"read_4k_qd{depth}"] = seconds
        seconds = await timed(
            calls,
            depth,
            lambda i: drive.extent_write(EXTENT, GEOMETRY, (i * 7 % span) * 4096, block),
        )
        out[f"write_4k_qd{depth}"] = seconds
    big = max(1, calls // 64)
    out["read_1m_qd8"] = await timed(
        big, 8, lambda i: drive.extent_read(EXTENT, GEOMETRY, (i % 64) << 20, 1 << 20)
    ) * (calls / big)
    return out


async def main(calls: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    try:
        local = Drive(root / "d0")
        await local.extent_create(EXTENT, GEOMETRY)
        await local.extent_write(EXTENT, GEOMETRY, 0, b"y" * GEOMETRY.extent_bytes)
        results = {"local": await cases(local, calls)}
        server = DriveServer({"d0": local})
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(
                partial(
                    serve_rpc, listeners, "chunk", SECRET, server.handle, inline=server.handle_now
                )
            )
            port = listeners[0].socket.getsockname()[1]
            async with open_rpc_client(("127.0.0.1", port), "gateway", SECRET) as client:
                results["rpc"] = await cases(RemoteDrive(client, "d0"), calls)
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = {"bench": "rpc", "cpu": cpu_model(), "commit": git_commit(), "calls": calls}
    for case in results["local"]:
        line = dict(base, case=case)
        for side in ("rpc", "local"):
            seconds = results[side][case]
            line[f"{side}_calls_s"] = round(calls / seconds)
            line[f"{side}_us_per_call"] = round(seconds / calls * 1e6, 1)
        line["ratio"] = round(results["local"][case] / results["rpc"][case], 3)
        print(json.dumps(line), flush=True)
        print(
            f"{case:14} rpc {line['rpc_us_per_call']:8.1f} us  local "
            f"{line['local_us_per_call']:8.1f} us  ratio {line['ratio']:.3f}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    trio.run(main, parser.parse_args().calls)
