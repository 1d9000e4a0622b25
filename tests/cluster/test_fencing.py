"""Fencing, with real processes: a gateway holding a volume is paused (SIGSTOP) until its etcd
lease expires, a second gateway takes the volume over and writes; the first is resumed and the
write its client sends then is refused; the volume holds exactly the second gateway's data."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from store.volumes.admin import LEASE_TTL_S
from tests.cluster.lab import running_cluster
from tests.integration.conftest import admin_json, start_server, stop_server

NBDSH_ENV = {**os.environ, "PATH": "/usr/bin:" + os.environ.get("PATH", "")}


def nbdsh(uri: str, script: str) -> None:
    argv = ["nbdsh", "-u", uri, "-c", script]
    done = subprocess.run(argv, env=NBDSH_ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def wait_for(path: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_paused_owner_is_fenced_off(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster", workers=1) as first:
        data = tmp_path / "second"
        data.mkdir()
        secret = tmp_path / "cluster" / "cluster.secret"
        extra = ["--meta", first.meta, "--cluster", "--secret-file", str(secret)]
        second = start_server(data, [*extra, "--workers", "1"])
        try:
            admin_json(first, "volume", "create", "v", "--size", "16M")
            connected, go, result = tmp_path / "connected", tmp_path / "go", tmp_path / "result"
            script = textwrap.dedent(f"""
                import os, time
                h.pwrite(b"A" * 4096, 0)
                h.flush()
                open({str(connected)!r}, "w").close()
                while not os.path.exists({str(go)!r}):
                    time.sleep(0.1)
                try:
                    h.pwrite(b"Z" * 4096, 0)
                    h.flush()
                    outcome = "accepted"
                except nbd.Error as e:
                    outcome = "refused: " + str(e)
                open({str(result)!r}, "w").write(outcome)
            """)
            client = subprocess.Popen(
                ["nbdsh", "-u", f"{first.nbd}/v", "-c", script], env=NBDSH_ENV
            )
            wait_for(connected, 30)
            first.process.send_signal(signal.SIGSTOP)  # the owner, frozen with the volume open
            try:
                time.sleep(LEASE_TTL_S + 4)  # etcd expires its lease
                takeover = textwrap.dedent("""
                    h.pwrite(b"B" * 4096, 0)
                    h.flush()
                    assert h.pread(4096, 0) == b"B" * 4096
                """)
                nbdsh(f"{second.nbd}/v", takeover)
            finally:
                first.process.send_signal(signal.SIGCONT)
            go.touch()
            wait_for(result, 60)
            client.wait(60)
            assert result.read_text().startswith("refused"), result.read_text()
            check = 'assert h.pread(4096, 0) == b"B" * 4096'
            time.sleep(3)  # the second gateway keeps the volume open 2 s after its client left
            nbdsh(f"{second.nbd}/v", check)
        finally:
            stop_server(second)
