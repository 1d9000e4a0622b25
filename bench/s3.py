"""S3 gateway throughput over loopback, beside moto (a peer) and raw TCP (the limit).

    .venv/bin/python bench/s3.py               # store on tmpfs (EC 4+2, 6 drives) vs moto
    .venv/bin/python bench/s3.py --quick       # small sizes, a smoke run
    .venv/bin/python bench/s3.py --out DIR     # also DIR/s3.jsonl
    .venv/bin/python bench/s3.py --workers 1   # store as a single process

In one run, against `store serve` and `moto_server` (moto keeps objects in memory):
- 64 MiB objects PUT and GET with boto3 (its defaults: signed payload, CRC32), 1 and 4 streams,
  MB/s;
- 4 KiB objects PUT and GET with 16 concurrent clients, ops/s and p50/p99 latency. boto3 tops out
  near 400 requests/s per process here, so these use presigned URLs driven by wrk (16 keep-alive
  connections, one thread, ``--seconds`` per case; ``apt install wrk``). Without wrk, a small
  asynchronous HTTP/1.1 client (Trio + h11) stands in: it costs about a core itself, so on a
  two-core machine it takes a worker's CPU away from the server;
- raw TCP over loopback: one stream sending 256 MiB to a reader that discards it (the limit);
- durable PUT on disk (``--disk DIR``, default /var/tmp; ``--no-disk`` skips):
  a second store with its data on that disk, 16 MiB and 64 MiB objects, 4 streams, beside the
  disk's own durable write bandwidth measured just before and after each case on the same
  directory (``DISK_PROBE_BYTES`` in 4 MiB writes, then one fsync: what ``dd bs=4M
  conv=fsync`` does). EC k+m writes (k+m)/k bytes per byte stored, so the limit is
  disk x k/(k+m); ``fraction`` = PUT / limit (issue 14's bar: >= 0.85);
- with ``--rgw ENDPOINT``, the durable distributed peer beside the store on that disk: Ceph RGW
  (``../shared/peers/ceph/start.sh`` with ``NOSD=6 EC=4+2`` keeps bucket data as the store does,
  EC 4+2 over 6 drives, on the same disk), case by case in turn: 16 and 64 MiB PUT and GET with
  4 streams, and 4 KiB PUT and GET with 16 clients. ``--rgw-keys`` defaults to the peer's
  ``testid`` user.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import trio
from benchlib import cpu_model, free_port, git_commit, save, wait_port

from store.placement.layout import ErasureCoded, default_scheme

MIB = 1 << 20
DISK_PROBE_BYTES = 512 * MIB
DISK_PROBES = 2  # the best counts: the first write to a fresh file often runs far slower
WRK = shutil.which("wrk")
WRK_SCRIPT = Path(__file__).with_name("wrk_presigned.lua")
AK, SK = "benchaccesskey", "benchsecretkey1"
RGW_KEYS = "0555b35654ad1656d804:h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q=="
BIN = Path(sys.executable).parent


def start_store(root: Path, workers: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "STORE_ACCESS_KEY": AK, "STORE_SECRET_KEY": SK}
    proc = subprocess.Popen(
        [str(BIN / "store"), "serve", "--data", str(root), "--s3", f"127.0.0.1:{port}"]
        + ["--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return f"http://127.0.0.1:{port}", proc


def start_moto() -> tuple[str, subprocess.Popen[bytes]] | None:
    exe = BIN / "moto_server"
    if not exe.exists():
        return None
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, proc)
    return f"http://127.0.0.1:{port}", proc


def client(endpoint: str, creds: tuple[str, str] = (AK, SK)) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
        region_name="us-east-1",
        config=Config(
            max_pool_connections=32, signature_version="s3v4", retries={"max_attempts": 1}
        ),
    )


def large(
    endpoint: str,
    size: int,
    streams: int,
    reps: int,
    get: bool = True,
    creds: tuple[str, str] = (AK, SK),
) -> tuple[float, float]:
    s3 = client(endpoint, creds)
    body = os.urandom(size)
    put_best = get_best = 0.0
    for rep in range(reps):
        keys = [f"large-{size}-{rep}-{i}" for i in range(streams)]
        with ThreadPoolExecutor(streams) as pool:
            t = time.perf_counter()
            list(pool.map(lambda k: s3.put_object(Bucket="bench", Key=k, Body=body), keys))
            put_best = max(put_best, streams * size / (time.perf_counter() - t) / 1e6)
            if not get:
                continue
            t = time.perf_counter()
            sizes = list(
                pool.map(lambda k: len(s3.get_object(Bucket="bench", Key=k)["Body"].read()), keys)
            )
            get_best = max(get_best, streams * size / (time.perf_counter() - t) / 1e6)
            assert sizes == [size] * streams
    return put_best, get_best


async def small_ops(
    urls: list[str], method: str, body: bytes, clients: int
) -> tuple[float, list[float]]:
    """Requests/s and latencies of presigned requests over keep-alive connections."""
    parsed = urlsplit(urls[0])
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    pending = iter(urls)
    latencies: list[float] = []

    async def worker() -> None:
        stream: trio.SocketStream | None = None
        conn = h11.Connection(h11.CLIENT)
        try:
            for url in pending:
                if stream is None:  # (re)connect: a server may close after any response
                    stream = await trio.open_tcp_stream(host, port)
                    conn = h11.Connection(h11.CLIENT)
                target = url[url.index("/", len("http://")) :]
                headers = [("host", f"{host}:{port}"), ("content-length", str(len(body)))]
                t = time.perf_counter()
                data = conn.send(h11.Request(method=method, target=target, headers=headers))
                data += conn.send(h11.Data(data=body)) if body else b""
                data += conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                status = 0
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                        continue
                    if isinstance(event, h11.Response):
                        status = event.status_code
                    if isinstance(event, h11.EndOfMessage):
                        break
                latencies.append(time.perf_counter() - t)
                if status >= 300:
                    raise RuntimeError(f"{method} {target[:60]}: HTTP {status}")
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                else:
                    await stream.aclose()
                    stream = None
        finally:
            if stream is not None:
                await stream.aclose()

    t = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(worker)
    return len(urls) / (time.perf_counter() - t), latencies


def small_wrk(
    targets: list[str], endpoint: str, method: str, clients: int, seconds: float
) -> tuple[float, float, float]:
    """ops/s, p50 and p99 (ms) of wrk cycling through presigned targets."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.writelines(t + "\n" for t in targets)
        f.flush()
        out = subprocess.run(
            [WRK, "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT)]
            + [endpoint],
            env={**os.environ, "WRK_TARGETS": f.name, "WRK_METHOD": method},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{method}: some answers were errors:\n{out}")
    fields = {ln.split()[0]: ln.split()[1] for ln in out.splitlines() if ln.strip()}
    return float(fields["Requests/sec:"]), _ms(fields["50%"]), _ms(fields["99%"])


def _ms(text: str) -> float:
    """wrk's latency figures: 812.00us, 1.25ms, 2.01s."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * scale, 2)
    raise ValueError(text)


def small(
    endpoint: str, count: int, clients: int, seconds: float, creds: tuple[str, str] = (AK, SK)
) -> dict[str, Any]:
    s3 = client(endpoint, creds)
    body = os.urandom(4096)

    def presigned(op: str, keys: list[str]) -> list[str]:
        params = [{"Bucket": "bench", "Key": k} for k in keys]
        return [s3.generate_presigned_url(op, Params=p, ExpiresIn=3600) for p in params]

    out: dict[str, Any] = {}
    for name, method, payload in [("put", "PUT", body), ("get", "GET", b"")]:
        if name == "put":
            urls = presigned("put_object", [f"small/{i:06d}" for i in range(count)])
        else:  # the keys written: a slow server may not reach all ``count`` in wrk's seconds
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="small/")
            urls = presigned("get_object", [o["Key"] for p in pages for o in p.get("Contents", [])])
            if not urls:
                raise RuntimeError(f"{endpoint}: no 4 KiB object was written, none to GET")
        if WRK:
            targets = [u[u.index("/", len("http://")) :] for u in urls]
            ops, p50, p99 = small_wrk(targets, endpoint, method, clients, seconds)
            out[name] = {"ops": round(ops), "p50_ms": p50, "p99_ms": p99, "client": "wrk"}
            continue
        ops, lat = trio.run(small_ops, urls, method, payload, clients)
        lat.sort()
        out[name] = {
            "ops": round(ops),
            "p50_ms": round(1000 * statistics.median(lat), 2),
            "p99_ms": round(1000 * lat[int(len(lat) * 0.99) - 1], 2),
            "client": "trio-h11",
        }
    return out


def disk_mbps(directory: Path, size: int) -> float:
    """Durable write MB/s of the disk under ``directory``: 4 MiB writes then one fsync (what
    ``dd bs=4M conv=fsync`` does), after a sync of what was pending; best of DISK_PROBES."""
    block = os.urandom(4 * MIB)
    path = directory / "disk-probe"
    best = 0.0
    for _ in range(DISK_PROBES):
        os.sync()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            t = time.perf_counter()
            for _ in range(size // len(block)):
                os.write(fd, block)
            os.fsync(fd)
            best = max(best, size / (time.perf_counter() - t) / 1e6)
        finally:
            os.close(fd)
            path.unlink()
    return best


def filesystem_of(path: Path) -> str:
    """The file system type under ``path`` (from /proc/mounts: the longest matching mount)."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype = line.split()[:3]
        if str(path.resolve()).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def durable_puts(
    directory: Path, workers: int, sizes: list[int], reps: int
) -> list[dict[str, Any]]:
    """PUT MB/s (4 streams) of a store whose data is on ``directory``'s disk, each case between
    two measurements of the disk itself."""
    root = Path(tempfile.mkdtemp(prefix="s3-bench-disk-", dir=directory))
    endpoint, proc = start_store(root, workers)
    scheme = default_scheme(6)  # what `store serve` picks for its 6 drives ("auto")
    assert isinstance(scheme, ErasureCoded)
    k, m = scheme.k, scheme.m
    fstype = filesystem_of(root)
    out = []
    try:
        create_bench_bucket(client(endpoint))
        for size in sizes:
            before = disk_mbps(root, DISK_PROBE_BYTES)
            put, _ = large(endpoint, size, 4, reps, get=False)
            after = disk_mbps(root, DISK_PROBE_BYTES)
            disk = (before + after) / 2
            limit = disk * k / (k + m)
            out.append(
                {
                    "server": "store",
                    "case": "durable_put",
                    "medium": "disk" if fstype != "tmpfs" else "tmpfs",
                    "filesystem": fstype,
                    "streams": 4,
                    "object_bytes": size,
                    "mbps": round(put, 1),
                    "disk_mbps": [round(before, 1), round(after, 1)],
                    "scheme": f"ec:{k}+{m}",
                    "limit_mbps": round(limit, 1),
                    "fraction": round(put / limit, 3),
                }
            )
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    return out


def create_bench_bucket(s3: Any) -> None:
    """The bucket every case uses; a peer kept from an earlier run may have it already."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="bench")


def beside_rgw(
    directory: Path,
    workers: int,
    rgw: str,
    rgw_keys: tuple[str, str],
    sizes: list[int],
    *,
    reps: int,
    count: int,
    seconds: float,
) -> list[dict[str, Any]]:
    """The store with its data on ``directory``'s disk and Ceph RGW, case by case in turn (the
    machine's load drifts, so neither gets the quieter minutes): large PUT and GET with 4
    streams per size, then 4 KiB PUT and GET."""
    root = Path(tempfile.mkdtemp(prefix="s3-bench-rgw-", dir=directory))
    endpoint, proc = start_store(root, workers)
    servers = [("store", endpoint, (AK, SK)), ("ceph-rgw", rgw, rgw_keys)]
    out: list[dict[str, Any]] = []
    try:
        for _, url, creds in servers:
            create_bench_bucket(client(url, creds))
        for size in sizes:
            for name, url, creds in servers:
                put, get = large(url, size, 4, reps, creds=creds)
                for case, mbps in (("disk_large_put", put), ("disk_large_get", get)):
                    out.append(
                        {"server": name, "case": case, "streams": 4, "object_bytes": size}
                        | {"mbps": round(mbps, 1)}
                    )
        for name, url, creds in servers:
            result = small(url, count, 16, seconds, creds)
            for op, figures in result.items():
                line = {"server": name, "case": f"disk_small_{op}", "clients": 16}
                out.append(line | {"object_bytes": 4096, **figures})
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    return out


async def raw_tcp(size: int) -> float:
    """One loopback TCP stream: a reader that discards, a writer with 1 MiB sends."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    done = trio.Event()

    async def reader(stream: trio.SocketStream) -> None:
        got = 0
        while got < size:
            got += len(await stream.receive_some(MIB))
        done.set()

    chunk = os.urandom(MIB)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, reader, listeners)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        t = time.perf_counter()
        for _ in range(size // MIB):
            await stream.send_all(chunk)
        await done.wait()
        elapsed = time.perf_counter() - t
        nursery.cancel_scope.cancel()
    return size / elapsed / 1e6


def run_tmpfs(
    args: argparse.Namespace, size: int, reps: int, count: int, seconds: float, emit: Any
) -> None:
    """Store (data on tmpfs) beside moto: large PUT/GET and small ops."""
    root = Path(
        tempfile.mkdtemp(prefix="s3-bench-", dir=args.tmpfs if args.tmpfs.is_dir() else None)
    )
    servers = [("store", *start_store(root, args.workers))]
    moto = start_moto()
    if moto is not None:
        servers.append(("moto", *moto))
    try:
        for name, endpoint, _ in servers:
            create_bench_bucket(client(endpoint))
            for streams in (1, 4):
                put, get = large(endpoint, size, streams, reps)
                emit(
                    server=name,
                    case="large_put",
                    streams=streams,
                    object_bytes=size,
                    mbps=round(put, 1),
                )
                emit(
                    server=name,
                    case="large_get",
                    streams=streams,
                    object_bytes=size,
                    mbps=round(get, 1),
                )
            result = small(endpoint, count, 16, seconds)
            for op, figures in result.items():
                emit(server=name, case=f"small_{op}", clients=16, object_bytes=4096, **figures)
    finally:
        for _, _, proc in servers:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tmpfs", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--disk", type=Path, default=Path("/var/tmp"), help="on the disk to test")
    parser.add_argument("--no-disk", action="store_true", help="skip the durable PUT cases")
    parser.add_argument("--disk-only", action="store_true", help="only the durable PUT cases")
    parser.add_argument("--rgw", metavar="ENDPOINT", help="also Ceph RGW, beside the store on disk")
    parser.add_argument("--rgw-keys", default=RGW_KEYS, help="ACCESS:SECRET for --rgw")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="store serve --workers"
    )
    args = parser.parse_args()
    size = (8 if args.quick else 64) * MIB
    reps = 1 if args.quick else 2
    count = 300 if args.quick else 1000
    seconds = 2 if args.quick else 8
    base = {
        "bench": "s3",
        "cpu": cpu_model(),
        "commit": git_commit(),
        "quick": args.quick,
        "store_workers": args.workers,
    }
    lines: list[dict[str, Any]] = []

    def emit(**fields: Any) -> None:
        line = {**base, **fields}
        lines.append(line)
        print(json.dumps(line), flush=True)

    if not args.disk_only:
        emit(server="raw-tcp", case="stream", mbps=round(trio.run(raw_tcp, 4 * size), 1))
        run_tmpfs(args, size, reps, count, seconds, emit)
    if not args.no_disk:
        sizes = [8 * MIB] if args.quick else [16 * MIB, 64 * MIB]
        for line in durable_puts(args.disk, args.workers, sizes, reps):
            emit(**line)
            print(
                f"durable_put {line['object_bytes'] // MIB} MiB x4: {line['mbps']} MB/s, disk "
                f"{line['disk_mbps']} MB/s, limit {line['limit_mbps']}: {line['fraction']:.2f}",
                file=sys.stderr,
            )
    if args.rgw:
        access, secret = args.rgw_keys.split(":", 1)
        sizes = [8 * MIB] if args.quick else [16 * MIB, 64 * MIB]
        rgw = (args.rgw, (access, secret))
        for line in beside_rgw(
            args.disk, args.workers, *rgw, sizes, reps=reps, count=count, seconds=seconds
        ):
            emit(**line)
    by = {(ln["server"], ln["case"], ln.get("streams"), ln.get("object_bytes")): ln for ln in lines}
    for ln in lines:
        key = "mbps" if "mbps" in ln else "ops"
        for name in ("moto", "ceph-rgw"):
            peer = by.get((name, ln["case"], ln.get("streams"), ln.get("object_bytes")))
            if ln["server"] != "store" or not peer or not peer.get(key):
                continue
            print(
                f"{ln['case']:<14} {ln['object_bytes'] // 1024:>6} KiB "
                f"streams={ln.get('streams', '-')!s:<2} store {ln[key]:>9} {name} {peer[key]:>9}"
                f"  ratio {ln[key] / peer[key]:.2f}",
                file=sys.stderr,
            )
    save(args.out, "s3", lines, plot)
    return 0


def plot(plt: Any, lines: list[dict[str, Any]], path: Path) -> None:
    """Store beside moto: MB/s of the large cases, ops/s of the small ones."""
    by = {(ln["server"], ln["case"], ln.get("streams")): ln for ln in lines}
    fig, (big, small_ax) = plt.subplots(1, 2, figsize=(9, 3.5), width_ratios=[2, 1])
    for ax, cases, key, unit in [
        (big, [(c, s) for c in ("large_put", "large_get") for s in (1, 4)], "mbps", "MB/s"),
        (small_ax, [("small_put", None), ("small_get", None)], "ops", "ops/s (4 KiB)"),
    ]:
        labels = [f"{c.split('_')[1].upper()}" + (f" x{s}" if s else "") for c, s in cases]
        for offset, server in [(-0.2, "store"), (0.2, "moto")]:
            values = [by.get((server, c, s), {}).get(key, 0) for c, s in cases]
            ax.bar([i + offset for i in range(len(cases))], values, 0.4, label=server)
        ax.set_xticks(list(range(len(cases))), labels)
        ax.set_ylabel(unit)
        ax.legend()
    raw = by.get(("raw-tcp", "stream", None))
    big.set_title("64 MiB objects, boto3" + (f" (raw TCP: {raw['mbps']:.0f} MB/s)" if raw else ""))
    small_ax.set_title("presigned, 16 connections")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
