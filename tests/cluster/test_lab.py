"""`store lab`: etcd, chunk servers on 127.0.0.2.. and a gateway, started as one foreground
command, used through S3, and all stopped by one SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from store.lab.etcd import free_ports
from tests.integration.conftest import ADMIN_ENV, make_client


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def test_a_lab_serves_s3_and_stops_whole(tmp_path: Path) -> None:
    s3_port, nbd_port = free_ports(2)
    env = ADMIN_ENV  # the lab's root key, as the tests sign with it
    out = tmp_path / "lab.out"
    argv = [sys.executable, "-m", "store", "lab", "--hosts", "4", "--data", str(tmp_path / "lab")]
    argv += ["--s3", f"127.0.0.1:{s3_port}", "--nbd", f"127.0.0.1:{nbd_port}"]
    lab = subprocess.Popen(argv, stdout=out.open("w"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while "S3 endpoint:" not in out.read_text():
            assert lab.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        pids = {p.stem: int(p.read_text()) for p in (tmp_path / "lab" / "lab").glob("*.pid")}
        expected = {"etcd-1", "etcd-2", "etcd-3", "gateway-1"} | {
            f"chunk-{i}" for i in (1, 2, 3, 4)
        }
        assert set(pids) == expected
        assert all(alive(pid) for pid in pids.values())
        s3 = make_client(f"http://127.0.0.1:{s3_port}")
        s3.create_bucket(Bucket="lab")
        body = os.urandom(5 << 20)
        s3.put_object(Bucket="lab", Key="k", Body=body)
        assert s3.get_object(Bucket="lab", Key="k")["Body"].read() == body
        shards = list((tmp_path / "lab" / "lab").glob("chunk-*/d0/shards/*/*"))
        assert len({p.parts[-5] for p in shards}) == 4  # spread over the four hosts
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.wait(60)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, "a lab process outlived the lab"
        time.sleep(0.2)
    assert not list((tmp_path / "lab" / "lab").glob("*.pid"))
