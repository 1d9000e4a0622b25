"""Where a cluster's time goes: py-spy on the gateway and one chunk server while fio drives NBD
(or boto3 large PUTs and GETs) through a `store lab` of six chunk servers.

    .venv/bin/python bench/cluster_profile.py randread   # NBD 4 KiB random reads, QD 32
    .venv/bin/python bench/cluster_profile.py randwrite  # NBD 4 KiB random writes, QD 32
    .venv/bin/python bench/cluster_profile.py large      # S3 64 MiB PUTs then GETs, 4 streams

Prints the throughput, then per process the share of busy samples (idle threads and the event
loop's wait left out) spent in the hottest functions, by own time and including callees. The
raw py-spy files stay in --out (default /tmp/cluster-profile).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbd as nbd_bench
import s3 as s3_bench
from benchlib import free_port, wait_port
from cluster import MIB, make_volume

from store.lab.run import Lab, LabConfig

SPY = Path(sys.executable).parent / "py-spy"
IDLE = ("WorkerThread._work", "EpollIOManager.get_events")  # waiting for work, for events


def spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` and its children (a gateway's workers)."""
    argv = [str(SPY), "record", "-s", "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [*argv, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def report(path: Path, top: int = 14) -> None:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue
        busy += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            incl[frame] += int(count)
    print(f"{path.name}: {busy} busy samples")
    for title, counter in (("own", own), ("including callees (store/)", incl)):
        print(f"  {title}:")
        shown = [(k, v) for k, v in counter.most_common(60) if title == "own" or "store/" in k]
        for name, count in shown[:top]:
            print(f"    {count / max(busy, 1):6.1%}  {name[:120]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["randread", "randwrite", "large"])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cluster-profile"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cluster-profile-", dir="/var/tmp"))
    os.environ["STORE_ACCESS_KEY"], os.environ["STORE_SECRET_KEY"] = s3_bench.AK, s3_bench.SK
    s3_port, nbd_port = free_port(), free_port()
    lab = Lab(LabConfig(root / "cluster", 6, f"127.0.0.1:{s3_port}", f"127.0.0.1:{nbd_port}"))
    try:
        lab.start()
        wait_port(s3_port, lab.processes["gateway-1"])
        endpoint = f"http://127.0.0.1:{s3_port}"
        files = [args.out / f"gateway-{args.case}.txt", args.out / f"chunk-{args.case}.txt"]
        if args.case == "large":
            s3_bench.client(endpoint).create_bucket(Bucket="bench")
        else:
            size = 256 * MIB
            make_volume(endpoint, size)
            uri = f"nbd://127.0.0.1:{nbd_port}/bench"
            nbd_bench.fio(uri, "write", "1m", 8, 1, size, 0)
        pids = [lab.processes["gateway-1"].pid, lab.processes["chunk-1"].pid]
        spies = [spy(pid, out, args.seconds - 2) for pid, out in zip(pids, files, strict=True)]
        if args.case == "large":
            put, get = s3_bench.large(endpoint, 64 * MIB, 4, 1)
            print(f"64 MiB x4: PUT {put:.1f} MB/s, GET {get:.1f} MB/s")
        else:
            result = nbd_bench.fio(uri, args.case, "4k", 32, 1, size, args.seconds)
            side = result["read"] if args.case == "randread" else result["write"]
            print(f"NBD 4 KiB {args.case} QD 32: {side['iops']:.0f} IOPS")
        for process in spies:
            process.wait()
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)  # the cluster's data (the profiles are in --out)
    for path in files:
        if path.exists():
            report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
