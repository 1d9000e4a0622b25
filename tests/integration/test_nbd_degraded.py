"""A drive that fills up under a volume: writes go on (degraded), the full drive's replicas are
recorded stale and never read, `store volume scrub` reports them, and `--repair` rewrites them
once the drive has room again. The fault is real: the drive is a small tmpfs mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_nbd import run

MIB = 1 << 20

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs drive needs root")


@pytest.fixture
def small_drive(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def degraded_server(tmp_path: Path, small_drive: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    data.mkdir()
    drives = [data / "d0", data / "d1", small_drive]
    args = ["--workers", "1", *(a for d in drives for a in ("--drive", str(d)))]
    server = start_server(data, args)
    yield server
    stop_server(server)


def volume_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`store volume ...` on the server's data directory and its three drives."""
    drives = [server.data / "d0", server.data / "d1", server.data.parent / "small"]
    return subprocess.run(
        [sys.executable, "-m", "store", "volume", *args, "--data", str(server.data)]
        + [a for d in drives for a in ("--drive", str(d))],
        capture_output=True,
        text=True,
        timeout=300,
    )


def scrub(server: Server, *args: str) -> tuple[int, list[dict]]:
    done = volume_cli(server, "scrub", *args)
    return done.returncode, json.loads(done.stdout)


def test_writes_go_on_when_a_drive_is_full(degraded_server: Server, tmp_path: Path) -> None:
    server = degraded_server
    assert volume_cli(server, "create", "vm", "--size", "48M").returncode == 0
    image = os.urandom(40 * MIB) + bytes(8 * MIB)
    (tmp_path / "in").write_bytes(image)
    uri = f"{server.nbd}/vm"
    run("nbdcopy", "--flush", str(tmp_path / "in"), uri)  # 40 MiB: the 6 MiB drive fills up
    run("nbdcopy", uri, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == image
    log = (server.data / "server.log").read_text()
    assert "writing degraded" in log and "No space left on device" in log

    code, [report] = scrub(server, "vm")  # while attached, or just after: either way
    assert code == 1 and report["stale"] and not report["corrupt"]

    subprocess.run(["mount", "-o", "remount,size=64m", str(tmp_path / "small")], check=True)
    code, [report] = scrub(server, "vm", "--repair")
    assert code == 0 and report["repaired"] >= len(report["stale"]) and report["clean"]
    code, [report] = scrub(server, "vm")
    assert code == 0 and not report["stale"] and report["clean"]
    run("nbdcopy", uri, str(tmp_path / "again"))
    assert (tmp_path / "again").read_bytes() == image
