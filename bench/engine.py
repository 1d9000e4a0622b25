"""Object engine throughput, in-process, beside the limits measured in the same run.

    .venv/bin/python bench/engine.py                 # tmpfs (/dev/shm) and disk (bench/out)
    .venv/bin/python bench/engine.py --quick         # small sizes, a smoke run
    .venv/bin/python bench/engine.py --out DIR       # also DIR/engine.jsonl and DIR/engine.png

EC 4+2 over 6 drive directories, SQLite metadata, on each medium:

- PUT and GET of one large object (256 MiB), one stream, in MB/s. PUT is bounded by MD5 on one
  core (the ETag must be computed over every byte, in order): ``md5`` is hashlib's throughput
  here, and the bar is PUT >= 0.7x md5. GET is bounded by reading the same bytes from plain
  files: ``file_read`` reads them with readinto into a reused buffer, the bar is GET >= 0.5x.
- 4 KiB objects PUT and GET with 16 concurrent tasks, in ops/s (bars: 2,000 and 10,000 on disk).

Every line is JSON with the CPU, the commit and the medium; a table goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from benchlib import cpu_model, git_commit, save

from store.node import open_local_engine

MIB = 1 << 20
PIECE = MIB


def md5_mbps(size: int) -> float:
    buf = os.urandom(size)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        hashlib.md5(buf, usedforsecurity=False).digest()
        best = max(best, size / (time.perf_counter() - t) / 1e6)
    return best


def file_read_mbps(root: Path, size: int) -> float:
    """Read ``size`` bytes back from plain files (written and synced first) with readinto."""
    path = root / "plain.bin"
    with open(path, "wb") as f:
        for _ in range(size // PIECE):
            f.write(os.urandom(PIECE))
        f.flush()
        os.fsync(f.fileno())
    buf = bytearray(PIECE)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        best = max(best, size / (time.perf_counter() - t) / 1e6)
    path.unlink()
    return best


async def large(engine: Any, size: int, reps: int) -> tuple[float, float]:
    data = os.urandom(PIECE)

    async def body() -> Any:
        for _ in range(size // PIECE):
            yield data

    put = get = 0.0
    for i in range(reps):
        t = time.perf_counter()
        await engine.put_object("bench", f"large{i}", body(), size=size)
        put = max(put, size / (time.perf_counter() - t) / 1e6)
        t = time.perf_counter()
        n = 0
        async with engine.open_object("bench", f"large{i}") as reader:
            async for piece in reader:
                n += len(piece)
        assert n == size
        get = max(get, size / (time.perf_counter() - t) / 1e6)
    return put, get


async def small(engine: Any, count: int, tasks: int) -> tuple[float, float]:
    payload = os.urandom(4096)

    async def run(op: str) -> float:
        next_index = iter(range(count))

        async def worker() -> None:
            for i in next_index:
                if op == "put":
                    await engine.put_object("bench", f"small/{i:08d}", payload)
                else:
                    await engine.get_object("bench", f"small/{i:08d}")

        t = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        return count / (time.perf_counter() - t)

    return await run("put"), await run("get")


async def medium(name: str, root: Path, args: argparse.Namespace, emit: Any) -> None:
    data = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=root))
    try:
        size = args.size_mib * MIB
        limit_md5 = md5_mbps(size)
        limit_read = file_read_mbps(data, size)
        async with open_local_engine(data / "node", drives=6) as engine:
            await engine.create_bucket("bench", "bench")
            put, get = await large(engine, size, args.reps)
            emit(
                medium=name,
                case="large_put",
                object_bytes=size,
                mbps=round(put, 1),
                limit="md5",
                limit_mbps=round(limit_md5, 1),
                ratio=round(put / limit_md5, 3),
                bar=0.7,
            )
            emit(
                medium=name,
                case="large_get",
                object_bytes=size,
                mbps=round(get, 1),
                limit="file_read",
                limit_mbps=round(limit_read, 1),
                ratio=round(get / limit_read, 3),
                bar=0.5,
            )
            puts, gets = await small(engine, args.small_count, 16)
            emit(
                medium=name,
                case="small_put",
                object_bytes=4096,
                tasks=16,
                ops=round(puts),
                bar=2000,
            )
            emit(
                medium=name,
                case="small_get",
                object_bytes=4096,
                tasks=16,
                ops=round(gets),
                bar=10000,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, help="write engine.jsonl (and engine.png) here")
    parser.add_argument("--disk", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--tmpfs", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    args.size_mib = 16 if args.quick else 256
    args.reps = 1 if args.quick else 3
    args.small_count = 300 if args.quick else 4000
    base = {
        "bench": "engine",
        "cpu": cpu_model(),
        "commit": git_commit(),
        "quick": args.quick,
        "scheme": "ec:4+2",
        "drives": 6,
    }
    lines: list[dict[str, Any]] = []

    def emit(**fields: Any) -> None:
        line = {**base, **fields}
        lines.append(line)
        print(json.dumps(line), flush=True)

    media = [("disk", args.disk)]
    if args.tmpfs.is_dir():
        media.insert(0, ("tmpfs", args.tmpfs))
    for name, root in media:
        root.mkdir(parents=True, exist_ok=True)
        trio.run(medium, name, root, args, emit)
    if not args.json_only:
        for ln in lines:
            value = f"{ln['mbps']:>8.1f} MB/s" if "mbps" in ln else f"{ln['ops']:>8} ops/s"
            extra = (
                f"limit {ln['limit']} {ln['limit_mbps']:.1f} MB/s  ratio {ln['ratio']:.2f} "
                f"(bar {ln['bar']})"
                if "limit" in ln
                else f"(bar {ln['bar']})"
            )
            print(f"{ln['medium']:>6} {ln['case']:<10} {value}  {extra}", file=sys.stderr)
    save(args.out, "engine", lines, plot)
    return 0


def plot(plt: Any, lines: list[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels, ours, limits = [], [], []
    for ln in lines:
        if "limit" in ln:
            labels.append(f"{ln['medium']}\n{ln['case']}")
            ours.append(ln["mbps"])
            limits.append(ln["limit_mbps"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], ours, 0.4, label="engine")
    ax.bar([i + 0.2 for i in x], limits, 0.4, label="limit (md5 / plain file read)")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("MB/s")
    ax.set_title("Object engine, EC 4+2 over 6 drives, 256 MiB object")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
