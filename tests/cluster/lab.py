"""A cluster for the integration suites: three etcd members, six `store chunkserver` processes
(one drive each, six hosts) and a gateway (`store serve --meta ... --cluster`), as `Server`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.lab.etcd import EtcdCluster, free_ports
from tests.integration.conftest import Server, start_server, stop_server

CHUNK_SERVERS = 6


@contextmanager
def running_cluster(root: Path, *, workers: int = 2) -> Iterator[Server]:
    etcd = EtcdCluster(root / "etcd", log_path=root / "etcd.log")
    etcd.start()
    secret = root / "cluster.secret"
    chunks: list[subprocess.Popen[str]] = []
    try:
        for i, port in enumerate(free_ports(CHUNK_SERVERS)):
            log = root / f"chunk{i}.log"
            argv = [sys.executable, "-m", "store", "chunkserver", "--listen", f"127.0.0.1:{port}"]
            argv += ["--drive", str(root / f"node{i}" / "d0"), "--secret-file", str(secret)]
            argv += ["--meta", etcd.endpoints, "--host", f"node{i}"]
            with log.open("w") as out:
                chunks.append(
                    subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
                )
            deadline = time.monotonic() + 30
            while "Chunk server:" not in log.read_text():
                assert chunks[-1].poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        data = root / "gateway"
        data.mkdir()
        extra = ["--meta", etcd.endpoints, "--cluster", "--secret-file", str(secret)]
        server = start_server(data, [*extra, "--workers", str(workers)])
        server.meta = etcd.endpoints
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        for process in chunks:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in chunks:
            process.wait(10)
        etcd.stop(graceful=False)
