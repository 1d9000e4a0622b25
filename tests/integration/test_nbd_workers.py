"""NBD with several worker processes: every worker accepts connections, and each volume is served
by the one worker that owns it (store/nbd/handoff.py), whichever worker the kernel gave the
connection to. Driven by nbdsh (libnbd) and qemu-io over real sockets."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.nbd.handoff import owner_of
from tests.integration.conftest import Server, admin_json, start_server, stop_server
from tests.integration.test_nbd import NBDSH_ENV, run
from tests.integration.test_workers import _children

WORKERS = 2
# Names whose owners are worker 0 and worker 1 alike (owner_of is a pure function).
VOLUMES = [f"vm{i}" for i in range(8)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("nbd-workers"), ["--workers", str(WORKERS)])
    deadline = time.monotonic() + 20
    while len(_children(running.process.pid)) < WORKERS:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    for name in VOLUMES:
        admin_json(running, "volume", "create", name, "--size", "16M")
    yield running
    stop_server(running)


def _port(server: Server) -> int:
    return int(server.nbd.rsplit(":", 1)[1])


def _established_by_process(pids: set[int], port: int) -> dict[int, int]:
    """How many established TCP connections to local ``port`` each process holds a descriptor
    of (from /proc: the sockets' inodes, matched against /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                inodes.add(inode)
    held: dict[int, int] = collections.Counter()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            found = re.fullmatch(r"socket:\[(\d+)\]", target)
            if found and found.group(1) in inodes:
                held[pid] += 1
    return held


def test_volume_names_cover_both_workers() -> None:
    assert {owner_of(name, WORKERS) for name in VOLUMES} == {0, 1}


def test_each_volume_is_served_by_its_owner_whoever_accepted(server: Server) -> None:
    """One connection per volume, all open at once: each is held by one worker process, and the
    counts per process are the counts of volumes per owner (the accepting worker kept no copy
    of a connection it handed on). Repeated, so the kernel spreads accepts over both workers."""
    script = textwrap.dedent(
        f"""
        import sys
        handles = []
        for name in {VOLUMES!r}:
            h = nbd.NBD()
            h.connect_uri("{server.nbd}/" + name)
            h.pwrite(name.encode() * 512, 0)
            h.flush()
            assert h.pread(len(name) * 512, 0) == name.encode() * 512
            handles.append(h)
        print("ready", flush=True)
        sys.stdin.read()
        for h in handles:
            h.shutdown()
        """
    )
    want = sorted(collections.Counter(owner_of(n, WORKERS) for n in VOLUMES).values())
    workers = _children(server.process.pid)
    for _ in range(4):
        client = subprocess.Popen(
            ["nbdsh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=NBDSH_ENV,
        )
        try:
            assert client.stdout is not None and client.stdout.readline() == "ready\n"
            held = _established_by_process(workers, _port(server))
        finally:
            client.communicate("", timeout=60)
        assert client.returncode == 0
        assert sorted(held.values()) == want, held
    metrics = urllib.request.urlopen(server.endpoint + "/metrics").read().decode()
    counts = dict(re.findall(r'nbd_connections_handed_off_total\{result="(\w+)"\} (\S+)', metrics))
    assert float(counts["sent"]) >= 1 and counts["sent"] == counts["received"], counts
    assert "failed" not in counts or float(counts["failed"]) == 0


def test_connections_of_one_volume_share_one_process(server: Server) -> None:
    """MULTI_CONN across connections the kernel gave to different workers: a write on one
    connection, FLUSH on another, read back on a third, each a fresh connection."""
    uri = f"{server.nbd}/{VOLUMES[0]}"
    for i in range(6):
        pattern = f"0x{0x10 + i:02x}"
        run("qemu-io", "-f", "raw", "-c", f"write -P {pattern} {i * 65536} 65536", uri)
        run("qemu-io", "-f", "raw", "-c", "flush", uri)
        run("qemu-io", "-f", "raw", "-c", f"read -P {pattern} {i * 65536} 65536", uri)
    script = f"""
        h1, h2 = nbd.NBD(), nbd.NBD()
        h1.connect_uri("{uri}")
        h2.connect_uri("{uri}")
        assert h1.can_multi_conn() and h2.can_multi_conn()
        h1.pwrite(b"\\xab" * 4096, 1 << 20)
        h2.flush()
        assert h2.pread(4096, 1 << 20) == b"\\xab" * 4096
        """
    for _ in range(4):
        run("nbdsh", "-c", textwrap.dedent(script), env=NBDSH_ENV)
