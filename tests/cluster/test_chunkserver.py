"""`store chunkserver` as a real process: the drive conformance suite through the chunk RPC
(one drive per check), its registration in a real etcd and its expiry after SIGKILL, a client
without the cluster secret refused while the server goes on, and the secret file's mode."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from store.chunk.remote_drive import RemoteDrive
from store.cluster_map import ClusterState, read_cluster
from store.errors import Unavailable
from store.lab.etcd import EtcdCluster, free_ports
from store.meta.etcd import open_etcd_kv
from store.rpc.transport import open_rpc_client
from store.testing.drive_conformance import DRIVE_CHECKS

HOST = "node-a"


@dataclass
class ChunkServer:
    process: subprocess.Popen[str]
    port: int
    secret: bytes
    log: Path
    metrics_port: int


@pytest.fixture
def chunkserver(tmp_path: Path, etcd: EtcdCluster) -> Iterator[ChunkServer]:
    port, metrics_port = free_ports(2)
    drives = [str(tmp_path / f"d{i}") for i in range(len(DRIVE_CHECKS))]
    argv = [sys.executable, "-m", "store", "chunkserver", "--listen", f"127.0.0.1:{port}"]
    argv += [a for d in drives for a in ("--drive", d)]
    argv += ["--secret-file", str(tmp_path / "cluster.secret"), "--meta", etcd.endpoints]
    argv += ["--host", HOST, "--rack", "r1", "--lease-ttl", "2"]
    argv += ["--metrics", f"127.0.0.1:{metrics_port}"]
    log = tmp_path / "chunkserver.log"
    process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while "Chunk server:" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    secret = (tmp_path / "cluster.secret").read_text().strip().encode()
    try:
        yield ChunkServer(process, port, secret, log, metrics_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


async def registered(endpoints: str) -> ClusterState:
    async with open_etcd_kv(endpoints) as kv:
        return await read_cluster(kv)


async def test_the_drive_suite_through_a_chunk_server(chunkserver: ChunkServer) -> None:
    address = ("127.0.0.1", chunkserver.port)
    async with open_rpc_client(address, "gateway-1", chunkserver.secret) as client:
        for i, check in enumerate(DRIVE_CHECKS):
            await check(RemoteDrive(client, f"{HOST}.d{i}"))
    url = f"http://127.0.0.1:{chunkserver.metrics_port}/metrics"
    text = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(url, timeout=5).read())
    metrics = text.decode()
    assert (
        f'store_chunkserver_calls_total{{drive="{HOST}.d0",method="CREATE",outcome="ok"}}'
        in metrics
    )
    assert 'outcome="notfound"' in metrics  # the checks' reads of missing shards
    assert "store_chunkserver_bytes_received_total" in metrics


def test_registration_and_its_expiry(chunkserver: ChunkServer, etcd: EtcdCluster) -> None:
    found = trio.run(registered, etcd.endpoints)
    ids = sorted(f"{HOST}.d{i}" for i in range(len(DRIVE_CHECKS)))
    assert sorted(found.drives) == sorted(found.alive) == ids
    first = found.drives[f"{HOST}.d0"]
    assert first.address == found.alive[first.drive_id] == f"127.0.0.1:{chunkserver.port}"
    assert (first.host, first.rack, first.state) == (HOST, "r1", "up")
    assert found.epoch == 1 and found.history is not None
    assert sorted(d.drive_id for d in found.history.current.drives) == ids
    chunkserver.process.send_signal(signal.SIGKILL)  # no clean exit: only the lease tells
    chunkserver.process.wait()
    deadline = time.monotonic() + 15
    while (after := trio.run(registered, etcd.endpoints)).alive:
        assert time.monotonic() < deadline, "the liveness key outlived its lease"
        time.sleep(0.5)
    # The drives stay in the map (a dead server moves no data): placement is unchanged.
    assert after.drives == found.drives and after.epoch == 1


def test_a_node_without_the_secret_is_refused_and_logged(
    chunkserver: ChunkServer, tmp_path: Path
) -> None:
    async def main() -> None:
        address = ("127.0.0.1", chunkserver.port)
        async with open_rpc_client(address, "intruder", b"not the cluster's secret at all") as bad:
            with pytest.raises(Unavailable):
                await RemoteDrive(bad, f"{HOST}.d0").stat()
        async with open_rpc_client(address, "gateway-1", chunkserver.secret) as good:
            assert (await RemoteDrive(good, f"{HOST}.d0").stat()).total_bytes > 0

    trio.run(main)
    text = chunkserver.log.read_text()
    assert "refused a connection" in text and "intruder" in text
    mode = stat.S_IMODE(os.stat(tmp_path / "cluster.secret").st_mode)
    assert mode == 0o600
    assert chunkserver.secret.decode() not in text  # never logged


def test_mutual_tls_between_gateway_and_chunk_server(tmp_path: Path, etcd: EtcdCluster) -> None:
    """`store chunkserver --tls-*` and `store serve --rpc-tls-*`: objects round-trip; a gateway
    without a certificate gets 503s from the same chunk server, which logs the refusal."""
    import trustme

    from tests.integration.conftest import make_client, start_server, stop_server

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    for name, identity in [("server", "127.0.0.1"), ("gateway", "gateway-1")]:
        pem = str(tmp_path / f"{name}.pem")
        ca.issue_cert(identity).private_key_and_cert_chain_pem.write_to_path(pem)
    ca_pem, secret = str(tmp_path / "ca.pem"), str(tmp_path / "cluster.secret")
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "store", "chunkserver", "--listen", f"127.0.0.1:{port}"]
    argv += ["--drive", str(tmp_path / "d0"), "--secret-file", secret, "--meta", etcd.endpoints]
    argv += ["--host", HOST, "--tls-cert", str(tmp_path / "server.pem")]
    argv += ["--tls-key", str(tmp_path / "server.pem"), "--tls-ca", ca_pem]
    log = tmp_path / "chunkserver.log"
    process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    servers = []
    try:
        deadline = time.monotonic() + 30
        while "Chunk server:" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        base = ["--meta", etcd.endpoints, "--cluster", "--secret-file", secret, "--workers", "1"]
        tls = ["--rpc-tls-cert", str(tmp_path / "gateway.pem")]
        tls += ["--rpc-tls-key", str(tmp_path / "gateway.pem"), "--rpc-tls-ca", ca_pem]
        for name, extra in [("tls", tls), ("plain", [])]:
            (tmp_path / name).mkdir()
            servers.append(start_server(tmp_path / name, [*base, *extra]))
        good, plain = (make_client(s.endpoint) for s in servers)
        good.create_bucket(Bucket="bkt")
        body = os.urandom(1 << 20)
        good.put_object(Bucket="bkt", Key="k", Body=body)
        assert good.get_object(Bucket="bkt", Key="k")["Body"].read() == body
        with pytest.raises(Exception, match="ServiceUnavailable|503"):
            plain.get_object(Bucket="bkt", Key="k")
        assert "refused a connection" in log.read_text()
    finally:
        for server in servers:
            stop_server(server)
        process.send_signal(signal.SIGTERM)
        process.wait(10)
