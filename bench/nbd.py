"""NBD throughput with fio's nbd engine: store beside nbdkit (file plugin) and qemu-nbd (raw file).

    .venv/bin/python bench/nbd.py                 # 1 GiB, 8 s per job, on the disk under /var/tmp
    .venv/bin/python bench/nbd.py --quick         # 256 MiB, 2 s per job
    .venv/bin/python bench/nbd.py --out DIR       # also DIR/nbd.jsonl and DIR/nbd.png

In one run, on the same disk: a store volume (2 replicas), nbdkit's file plugin and qemu-nbd on
a raw file, each filled first; then for 1 and 2 connections (fio jobs): 4 KiB random read and
write at queue depth 32 (IOPS, p50/p99 completion latency) and 1 MiB sequential read and write
at queue depth 8 (MB/s). Also each server's CPU time per I/O (its processes' user + system time
over the job, divided by the I/Os): the steadiest figure on a shared machine. Needs fio, nbdkit
and qemu-nbd (``make test`` installs them).

With ``--ceph-nbd URI``, also the durable distributed peer: a Ceph RBD image exported over NBD
(``../shared/peers/ceph/start.sh`` serves ``rbd/nbd`` through qemu-nbd at
``nbd://127.0.0.1:10810/rbd``; start it with ``RBD_REPLICAS=2`` to keep two copies as the store
volume does). Its CPU per I/O counts every Ceph process on the machine (mon, mgr, OSDs, radosgw,
qemu-nbd), since the OSDs do the work; their idle load counts too.

Then every core (``--no-volumes`` skips): two volumes, one fio job on each at the same time (4 KiB
random read and write, QD 32), against ``store serve --workers 1`` and ``--workers N`` (one per
CPU; the volumes' names are picked so that different workers own them): the sum of both jobs'
IOPS and the ratio of N workers to one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib import cpu_model, free_port, git_commit, save, wait_port

from store.nbd.handoff import owner_of

MIB = 1 << 20
BIN = Path(sys.executable).parent
JOBS = [  # name, fio rw, block size, queue depth
    ("randread_4k", "randread", "4k", 32),
    ("randwrite_4k", "randwrite", "4k", 32),
    ("seqread_1m", "read", "1m", 8),
    ("seqwrite_1m", "write", "1m", 8),
]


CEPH_PROCESSES = {"ceph-mon", "ceph-mgr", "ceph-osd", "qemu-nbd", "radosgw"}


def tree_cpu_s(pid: int | None) -> float:
    """User + system seconds of a process and its children (live ones); with no pid, of every
    Ceph process (a peer not started here)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            head, tail = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if pid is None:
            mine = head.split("(", 1)[1] in CEPH_PROCESSES and int(entry) != os.getpid()
        else:
            mine = int(entry) == pid or int(fields[1]) == pid
        if mine:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def start_store(
    root: Path, size: int, volumes: tuple[str, ...] = ("bench",), workers: int = 1
) -> tuple[str, subprocess.Popen[bytes]]:
    """A store serving ``volumes`` from its own data directory under ``root``; the URI of the
    first (the others: same server, their name)."""
    data = Path(tempfile.mkdtemp(prefix=f"store-{workers}-", dir=root))
    for name in volumes:
        argv = [str(BIN / "store"), "volume", "create", name, "--size", str(size)]
        subprocess.run([*argv, "--data", str(data)], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "store"), "serve", "--data", str(data), "--s3", f"127.0.0.1:{free_port()}"]
        + ["--nbd", f"127.0.0.1:{port}", "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return f"nbd://127.0.0.1:{port}/{volumes[0]}", proc


def spread_names(workers: int) -> tuple[str, str]:
    """Two volume names that different workers own (the same worker when there is one)."""
    first = "bench-0"
    for i in range(1, 1000):
        if workers == 1 or owner_of(f"bench-{i}", workers) != owner_of(first, workers):
            return first, f"bench-{i}"
    raise AssertionError("no second name")


def every_core(root: Path, size: int, seconds: float, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Two volumes at once, one fio job each, on one worker and on one worker per CPU."""
    lines = []
    cpus = len(os.sched_getaffinity(0))
    for workers in sorted({1, cpus}):
        names = spread_names(cpus)
        uri, proc = start_store(root, size, names, workers)
        uris = [uri.rsplit("/", 1)[0] + "/" + name for name in names]
        with stopping(proc):
            for u in uris:
                fio(u, "write", "1m", 8, 1, size, 0)
            for job, rw, bs, depth in JOBS[:2]:
                cpu0 = tree_cpu_s(proc.pid)
                results = fio_together([(u, rw, bs, depth, 1, size, seconds) for u in uris])
                cpu = tree_cpu_s(proc.pid) - cpu0
                sides = [r["read"] if "read" in rw else r["write"] for r in results]
                ios = sum(side["total_ios"] for side in sides) or 1
                line = {
                    **base,
                    "server": "store",
                    "job": f"two_volumes_{job}",
                    "workers": workers,
                    "connections": 2,
                    "iops": round(sum(side["iops"] for side in sides)),
                    "per_volume_iops": [round(side["iops"]) for side in sides],
                    "server_cpu_us_per_io": round(1e6 * cpu / ios, 1),
                }
                record(lines, line)
    return lines


def start_nbdkit(root: Path, size: int) -> tuple[str, subprocess.Popen[bytes]]:
    return _serve_file(
        root / "nbdkit.raw",
        size,
        lambda port, path: ["nbdkit", "-f", "-p", port, "--exit-with-parent", "file", path],
        "",
    )


def start_qemu_nbd(root: Path, size: int) -> tuple[str, subprocess.Popen[bytes]]:
    return _serve_file(
        root / "qemu.raw",
        size,
        lambda port, path: (
            ["qemu-nbd", "-f", "raw", "-x", "bench", "-p", port]
            + ["-b", "127.0.0.1", "-t", "-e", "4", path]
        ),
        "bench",
    )


def _serve_file(
    path: Path, size: int, argv: Callable[[str, str], list[str]], export: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """A peer server exporting a sparse raw file of ``size`` bytes."""
    with open(path, "wb") as f:
        f.truncate(size)
    port = free_port()
    proc = subprocess.Popen(
        argv(str(port), str(path)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, proc)
    return f"nbd://127.0.0.1:{port}/{export}", proc


def fio(uri: str, rw: str, bs: str, depth: int, jobs: int, size: int, seconds: float) -> Any:
    argv = ["fio", "--name=bench", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}"]
    argv += [f"--iodepth={depth}", f"--numjobs={jobs}", f"--size={size}", "--group_reporting"]
    argv += ["--output-format=json", "--randrepeat=0"]
    if seconds:
        argv += ["--time_based", f"--runtime={seconds}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{") :])["jobs"][0]


def record(lines: list[dict[str, Any]], line: dict[str, Any]) -> None:
    lines.append(line)
    print(json.dumps(line), flush=True)


@contextlib.contextmanager
def stopping(proc: subprocess.Popen[bytes] | None) -> Iterator[None]:
    try:
        yield
    finally:
        if proc is not None:  # a peer this script did not start keeps running
            proc.terminate()
            proc.wait(30)


def fio_together(jobs: list[tuple[Any, ...]]) -> list[Any]:
    """Several fio runs at the same time (one per volume), each as ``fio`` runs one."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: fio(*job), jobs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="on the disk to test")
    parser.add_argument("--no-volumes", action="store_true", help="skip the two-volume cases")
    parser.add_argument("--volumes-only", action="store_true", help="only the two-volume cases")
    parser.add_argument("--ceph-nbd", metavar="URI", help="also a Ceph RBD image over NBD")
    args = parser.parse_args()
    size = (256 if args.quick else 1024) * MIB
    seconds = 2 if args.quick else 8
    base = {"bench": "nbd", "cpu": cpu_model(), "commit": git_commit(), "quick": args.quick}
    lines: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="nbd-bench-", dir=args.dir))
    servers: list[tuple[str, Callable[[Path, int], tuple[str, subprocess.Popen[bytes] | None]]]]
    servers = [("store", start_store), ("nbdkit", start_nbdkit), ("qemu-nbd", start_qemu_nbd)]
    if args.ceph_nbd:
        servers.append(("ceph-rbd", lambda root, size: (args.ceph_nbd, None)))
    try:
        for name, start in [] if args.volumes_only else servers:
            uri, proc = start(root, size)
            with stopping(proc):
                fio(uri, "write", "1m", 8, 1, size, 0)  # fill: reads then hit data, not holes
                for connections in (1, 2):
                    for job, rw, bs, depth in JOBS:
                        pid = proc.pid if proc else None
                        cpu0 = tree_cpu_s(pid)
                        result = fio(uri, rw, bs, depth, connections, size, seconds)
                        cpu = tree_cpu_s(pid) - cpu0
                        side = result["read"] if "read" in rw else result["write"]
                        ios = side["total_ios"] or 1
                        pct = side["clat_ns"].get("percentile", {})
                        line = {
                            **base,
                            "server": name,
                            "job": job,
                            "connections": connections,
                            "iops": round(side["iops"]),
                            "mbps": round(side["bw_bytes"] / 1e6, 1),
                            "p50_us": round(pct.get("50.000000", 0) / 1e3, 1),
                            "p99_us": round(pct.get("99.000000", 0) / 1e3, 1),
                            "server_cpu_us_per_io": round(1e6 * cpu / ios, 1),
                        }
                        record(lines, line)
        if not args.no_volumes:
            lines += every_core(root, size, seconds, base)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    one = {ln["job"]: ln for ln in lines if ln.get("workers") == 1}
    for ln in lines:
        if ln.get("workers", 1) > 1 and ln["job"] in one:
            print(
                f"{ln['job']:<26} {ln['workers']} workers {ln['iops']:>8} IOPS, 1 worker "
                f"{one[ln['job']]['iops']:>8}: x{ln['iops'] / max(one[ln['job']]['iops'], 1):.2f}",
                file=sys.stderr,
            )
    by = {(ln["server"], ln["job"], ln["connections"]): ln for ln in lines if "workers" not in ln}
    for ln in lines:
        for name in ("nbdkit", "ceph-rbd"):
            peer = by.get((name, ln["job"], ln["connections"]))
            if ln["server"] != "store" or not peer:
                continue
            key = "iops" if "4k" in ln["job"] else "mbps"
            print(
                f"{ln['job']:<13} x{ln['connections']} store {ln[key]:>9} {name} {peer[key]:>9}"
                f"  ratio {ln[key] / max(peer[key], 1e-9):.2f}  cpu/io {ln['server_cpu_us_per_io']}"
                f" vs {peer['server_cpu_us_per_io']} us",
                file=sys.stderr,
            )
    save(args.out, "nbd", lines, plot)
    return 0


def plot(plt: Any, lines: list[dict[str, Any]], path: Path) -> None:
    """Ratios to nbdkit per job and connection count, one bar per server."""
    by = {(ln["server"], ln["job"], ln["connections"]): ln for ln in lines}
    cases = [(job, c) for job, *_ in JOBS for c in (1, 2)]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    servers = [s for s in ("store", "nbdkit", "qemu-nbd", "ceph-rbd") if (s, *cases[0]) in by]
    if not servers:  # --volumes-only: no per-server jobs to plot
        return
    width = 0.75 / len(servers)
    for i, server in enumerate(servers):
        offset = (i - (len(servers) - 1) / 2) * width
        values = []
        for job, c in cases:
            key = "iops" if "4k" in job else "mbps"
            peer = by.get(("nbdkit", job, c), {}).get(key) or 1
            values.append(by.get((server, job, c), {}).get(key, 0) / peer)
        ax.bar([i + offset for i in range(len(cases))], values, width, label=server)
    ax.set_xticks(range(len(cases)), [f"{j}\nx{c}" for j, c in cases], fontsize=8)
    ax.set_ylabel("ratio to nbdkit (IOPS or MB/s)")
    ax.set_title("NBD with fio, loopback, same disk")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
