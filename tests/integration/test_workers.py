"""`store serve --workers N`: a supervisor and N worker processes on one data directory."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import Server, make_client, start_server, stop_server


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _anonymous_get(endpoint: str) -> int:
    """One request on a fresh connection: an anonymous ListBuckets, refused with 403."""
    try:
        urllib.request.urlopen(endpoint + "/", timeout=10)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def _wait_for(predicate: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def workers(tmp_path: Path) -> Server:
    server = start_server(tmp_path, ["--workers", "2"])
    yield server  # type: ignore[misc]
    if server.process.poll() is None:
        stop_server(server)


def test_both_workers_serve_one_store(workers: Server) -> None:
    s3 = make_client(workers.endpoint)
    s3.create_bucket(Bucket="shared")
    _wait_for(lambda: len(_children(workers.process.pid)) == 2)
    # Fresh connections spread over both workers; each sees what the other wrote.
    for i in range(20):
        make_client(workers.endpoint).put_object(Bucket="shared", Key=f"k{i}", Body=b"%d" % i)
        body = make_client(workers.endpoint).get_object(Bucket="shared", Key=f"k{i}")["Body"]
        assert body.read() == b"%d" % i
    assert [_anonymous_get(workers.endpoint) for _ in range(40)] == [403] * 40
    log = (workers.data / "server.log").read_text()
    assert "store.access[w0]" in log and "store.access[w1]" in log
    # A scrape answered by either worker counts the requests of both.
    for _ in range(4):
        text = urllib.request.urlopen(workers.endpoint + "/metrics").read().decode()
        found = re.search(r's3_requests_total\{operation="ListBuckets",status="403"\} (\S+)', text)
        assert found and float(found.group(1)) == 40.0


def test_a_killed_worker_is_replaced_and_no_connection_is_refused(workers: Server) -> None:
    s3 = make_client(workers.endpoint)
    s3.create_bucket(Bucket="kill")
    s3.put_object(Bucket="kill", Key="k", Body=b"kept")
    _wait_for(lambda: len(_children(workers.process.pid)) == 2)
    before = _children(workers.process.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # Connections the kernel steers to the dead worker's socket wait for its successor.
    for _ in range(20):
        assert (
            make_client(workers.endpoint).get_object(Bucket="kill", Key="k")["Body"].read()
            == b"kept"
        )
    _wait_for(lambda: len(_children(workers.process.pid) - before) == 1)
    assert "exited with status -9; restarting" in (workers.data / "server.log").read_text()


def test_workers_exit_when_the_supervisor_is_killed(workers: Server) -> None:
    _wait_for(lambda: len(_children(workers.process.pid)) == 2)
    pids = _children(workers.process.pid)
    workers.process.send_signal(signal.SIGKILL)
    workers.process.wait(10)
    _wait_for(lambda: not any(_alive(p) for p in pids))
    workers.log.close()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
