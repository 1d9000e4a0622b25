"""A cluster beside the embedded single node, in one run: one gateway on six chunk servers and a
three-member etcd (``store lab``) against ``store serve`` with its six drives, same disk.

    .venv/bin/python bench/cluster.py            # 64 MiB objects, 8 s per small/NBD case
    .venv/bin/python bench/cluster.py --quick    # 16 MiB objects, 2 s per case
    .venv/bin/python bench/cluster.py --out DIR  # also DIR/cluster.jsonl and DIR/cluster.png

Cases, for both: S3 PUT and GET of large objects (boto3, 1 and 4 streams, MB/s); 4 KiB PUT and
GET (16 clients: ops/s, p50/p99, as bench/s3.py measures them); NBD through fio's nbd engine (4
KiB random read and write at QD 32, 1 MiB sequential read and write at QD 8; a 2-replica volume).
Then, on the cluster only, a chunk server is killed (SIGKILL) while a client reads 1 MiB objects
in a loop: the added latency (p99 and max over the second after the kill, against the second
before) and the requests that failed. JSON lines; the ratios cluster / embedded on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import nbd as nbd_bench
import s3 as s3_bench
from benchlib import cpu_model, free_port, git_commit, save, wait_port

from store.lab.run import Lab, LabConfig

MIB = 1 << 20
BIN = Path(sys.executable).parent


def start_embedded(root: Path) -> tuple[str, str, subprocess.Popen[bytes]]:
    s3_port, nbd_port = free_port(), free_port()
    env = {**os.environ, "STORE_ACCESS_KEY": s3_bench.AK, "STORE_SECRET_KEY": s3_bench.SK}
    proc = subprocess.Popen(
        [str(BIN / "store"), "serve", "--data", str(root), "--s3", f"127.0.0.1:{s3_port}"]
        + ["--nbd", f"127.0.0.1:{nbd_port}", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(s3_port, proc)
    return f"http://127.0.0.1:{s3_port}", f"nbd://127.0.0.1:{nbd_port}", proc


def make_volume(endpoint: str, size: int) -> None:
    env = {**os.environ, "STORE_ACCESS_KEY": s3_bench.AK, "STORE_SECRET_KEY": s3_bench.SK}
    subprocess.run(
        [str(BIN / "store"), "volume", "create", "bench", "--size", str(size)]
        + ["--endpoint", endpoint],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def nbd_cases(uri: str, size: int, seconds: float) -> dict[str, dict[str, Any]]:
    nbd_bench.fio(uri, "write", "1m", 8, 1, size, 0)  # fill: reads then hit data
    out = {}
    for job, rw, bs, depth in nbd_bench.JOBS:
        result = nbd_bench.fio(uri, rw, bs, depth, 1, size, seconds)
        side = result["read"] if "read" in rw else result["write"]
        pct = side["clat_ns"].get("percentile", {})
        out[job] = {
            "iops": round(side["iops"]),
            "mbps": round(side["bw_bytes"] / 1e6, 1),
            "p99_us": round(pct.get("99.000000", 0) / 1e3, 1),
        }
    return out


def kill_during_reads(endpoint: str, lab: Lab) -> dict[str, Any]:
    """GETs of 1 MiB objects in a loop; a chunk server SIGKILLed after 2 s."""
    s3 = s3_bench.client(endpoint)
    body = os.urandom(MIB)
    keys = [f"kill/{i}" for i in range(32)]
    for key in keys:
        s3.put_object(Bucket="bench", Key=key, Body=body)
    samples: list[tuple[float, float, bool]] = []  # (start, seconds, ok)
    stop = threading.Event()

    def reader() -> None:
        i = 0
        while not stop.is_set():
            t = time.monotonic()
            try:
                ok = len(s3.get_object(Bucket="bench", Key=keys[i % 32])["Body"].read()) == MIB
            except Exception:  # noqa: BLE001 - counted as a failure
                ok = False
            samples.append((t, time.monotonic() - t, ok))
            i += 1

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(2)
    killed_at = time.monotonic()
    lab.processes["chunk-1"].send_signal(signal.SIGKILL)
    time.sleep(3)
    stop.set()
    thread.join()

    def stats(lo: float, hi: float) -> tuple[float, float, int]:
        window = sorted(d for t, d, _ in samples if lo <= t < hi)
        failed = sum(1 for t, _, ok in samples if lo <= t < hi and not ok)
        if not window:
            return 0.0, 0.0, failed
        return window[int(0.99 * (len(window) - 1))], window[-1], failed

    before = stats(killed_at - 1, killed_at)
    after = stats(killed_at, killed_at + 1)
    return {
        "p99_before_ms": round(before[0] * 1e3, 1),
        "p99_after_ms": round(after[0] * 1e3, 1),
        "max_after_ms": round(after[1] * 1e3, 1),
        "added_p99_ms": round((after[0] - before[0]) * 1e3, 1),
        "failed": after[2] + stats(killed_at + 1, killed_at + 10)[2],
        "requests": len(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="on the disk to test")
    args = parser.parse_args()
    size = (16 if args.quick else 64) * MIB
    seconds = 2 if args.quick else 8
    volume_bytes = (256 if args.quick else 1024) * MIB
    base = {"bench": "cluster", "cpu": cpu_model(), "commit": git_commit(), "quick": args.quick}
    lines: list[dict[str, Any]] = []

    def emit(**fields: Any) -> None:
        line = {**base, **fields}
        lines.append(line)
        print(json.dumps(line), flush=True)

    root = Path(tempfile.mkdtemp(prefix="cluster-bench-", dir=args.dir))
    os.environ["STORE_ACCESS_KEY"], os.environ["STORE_SECRET_KEY"] = s3_bench.AK, s3_bench.SK
    s3_port, nbd_port = free_port(), free_port()
    lab = Lab(LabConfig(root / "cluster", 6, f"127.0.0.1:{s3_port}", f"127.0.0.1:{nbd_port}"))
    embedded = None
    try:
        lab.start()
        wait_port(s3_port, lab.processes["gateway-1"])
        cluster = (f"http://127.0.0.1:{s3_port}", f"nbd://127.0.0.1:{nbd_port}")
        s3_end, nbd_end, embedded = start_embedded(root / "embedded")
        for name, (endpoint, nbd_uri) in [("embedded", (s3_end, nbd_end)), ("cluster", cluster)]:
            s3_bench.client(endpoint).create_bucket(Bucket="bench")
            for streams in (1, 4):
                put, get = s3_bench.large(endpoint, size, streams, 1)
                emit(setup=name, case="large_put", streams=streams, mbps=round(put, 1))
                emit(setup=name, case="large_get", streams=streams, mbps=round(get, 1))
            for op, figures in s3_bench.small(endpoint, 300, 16, seconds).items():
                emit(setup=name, case=f"small_{op}", **figures)
            make_volume(endpoint, volume_bytes)
            for job, figures in nbd_cases(f"{nbd_uri}/bench", volume_bytes, seconds).items():
                emit(setup=name, case=f"nbd_{job}", **figures)
        emit(setup="cluster", case="chunk_server_killed", **kill_during_reads(cluster[0], lab))
    finally:
        if embedded is not None:
            embedded.terminate()
            embedded.wait(10)
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)  # both setups' data: gigabytes per run
    by = {(ln["setup"], ln["case"], ln.get("streams")): ln for ln in lines}
    for ln in lines:
        peer = by.get(("embedded", ln["case"], ln.get("streams")))
        if ln["setup"] == "cluster" and peer:
            key = next(k for k in ("mbps", "ops", "iops") if k in ln)
            if key == "mbps" and "iops" in ln:
                key = "iops" if ln["case"].endswith("4k") else "mbps"
            ratio = ln[key] / peer[key] if peer[key] else 0.0
            print(
                f"{ln['case']:<20} streams={ln.get('streams', '-')!s:<2} cluster {ln[key]:>9} "
                f"embedded {peer[key]:>9}  ratio {ratio:.2f}",
                file=sys.stderr,
            )
    save(args.out, "cluster", lines, plot)
    return 0


def plot(plt: Any, lines: list[dict[str, Any]], path: Path) -> None:
    """Cluster / embedded ratios per case."""
    by = {(ln["setup"], ln["case"], ln.get("streams")): ln for ln in lines}
    labels, ratios = [], []
    for ln in lines:
        peer = by.get(("embedded", ln["case"], ln.get("streams")))
        if ln["setup"] != "cluster" or not peer:
            continue
        key = (
            "iops"
            if ln["case"].endswith("4k")
            else next(k for k in ("mbps", "ops", "iops") if k in ln)
        )
        labels.append(f"{ln['case']}" + (f" x{ln['streams']}" if ln.get("streams") else ""))
        ratios.append(ln[key] / peer[key] if peer[key] else 0.0)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.barh(labels, ratios)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("cluster / embedded (same run)")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
