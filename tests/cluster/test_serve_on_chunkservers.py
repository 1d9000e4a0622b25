"""A gateway on six chunk servers: `store serve --meta etcd://... --cluster`, its data erasure
coded (4+2) across chunk-server processes registered in a real etcd, driven by boto3 and nbdcopy.
Kill one chunk server: reads and writes go on. Kill a second (m = 2 lost): reads still succeed
from the four left, writes fail with 503 and leave nothing behind; bring them back: writes
succeed again and everything reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from store.lab.etcd import EtcdCluster, free_ports
from tests.cluster.load import Load
from tests.integration.conftest import (
    Server,
    admin_json,
    make_client,
    nbd_round_trip,
    run_admin,
    start_server,
    stop_server,
)

SERVERS = 6


@dataclass
class Chunks:
    """The chunk-server processes, started (again) and killed by index."""

    argvs: list[list[str]]
    logs: list[Path]
    processes: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    starts: dict[int, int] = field(default_factory=dict)

    def start(self, i: int) -> None:
        self.starts[i] = self.starts.get(i, 0) + 1
        log = self.logs[i]
        with log.open("a") as out:
            self.processes[i] = subprocess.Popen(
                self.argvs[i], stdout=out, stderr=subprocess.STDOUT, text=True
            )
        deadline = time.monotonic() + 30
        while log.read_text().count("Chunk server:") < self.starts[i]:
            assert self.processes[i].poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        self.processes[i].send_signal(signal.SIGKILL)
        self.processes[i].wait()

    def stop(self, i: int) -> None:
        self.processes[i].send_signal(signal.SIGTERM)
        self.processes[i].wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)


@pytest.fixture
def chunks(tmp_path: Path, etcd: EtcdCluster) -> Iterator[Chunks]:
    secret = tmp_path / "cluster.secret"
    ports = free_ports(SERVERS)
    argvs, logs = [], []
    for i, port in enumerate(ports):
        argv = [sys.executable, "-m", "store", "chunkserver", "--listen", f"127.0.0.1:{port}"]
        argv += ["--drive", str(tmp_path / f"node{i}" / "d0"), "--secret-file", str(secret)]
        argv += ["--meta", etcd.endpoints, "--host", f"node{i}"]
        argvs.append(argv)
        logs.append(tmp_path / f"chunk{i}.log")
    group = Chunks(argvs, logs)
    try:
        for i in range(SERVERS):
            group.start(i)
        yield group
    finally:
        group.stop_all()


def gateway_args(tmp_path: Path, etcd: EtcdCluster) -> tuple[Path, list[str]]:
    """A gateway's data directory and `store serve` options on the chunk servers."""
    data = tmp_path / "gateway"
    data.mkdir(exist_ok=True)
    secret = str(tmp_path / "cluster.secret")
    return data, ["--meta", etcd.endpoints, "--cluster", "--secret-file", secret, "--workers", "1"]


@pytest.fixture
def gateway(tmp_path: Path, etcd: EtcdCluster, chunks: Chunks) -> Iterator[Server]:
    server = start_server(*gateway_args(tmp_path, etcd))
    try:
        yield server
    finally:
        stop_server(server)


def cluster_status(server: Server) -> dict:
    """`store cluster status --json` through the admin API (exit 1: some drive is not up)."""
    done = run_admin(server, "cluster", "status")
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


def test_objects_and_a_volume_on_chunk_servers(
    gateway: Server, chunks: Chunks, tmp_path: Path
) -> None:
    s3 = make_client(gateway.endpoint)
    s3.create_bucket(Bucket="bkt")
    big = os.urandom(9 << 20)
    s3.put_object(Bucket="bkt", Key="big", Body=big)
    s3.put_object(Bucket="bkt", Key="small", Body=b"tiny")
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == big
    shard_files = list(tmp_path.glob("node*/d0/shards/*/*"))
    assert len({p.parts[-5] for p in shard_files}) == SERVERS  # every server holds shards
    assert not (gateway.data / "drives").exists()  # and the gateway none

    chunks.kill(0)
    status = cluster_status(gateway)
    states = {d["drive"]: d["status"] for d in status["drives"]}
    assert states == {f"node{i}.d0": "down" if i == 0 else "up" for i in range(SERVERS)}
    assert status["hosts"] == SERVERS and status["scheme"] == "ec:4+2"
    s3.put_object(Bucket="bkt", Key="one-down", Body=big[: 3 << 20])
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == big

    chunks.kill(1)  # m = 2 servers lost
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == big
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="bkt", Key="two-down", Body=big[: 3 << 20])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert keys == ["big", "one-down", "small"]  # nothing partial became visible

    chunks.start(0)
    chunks.start(1)
    s3.put_object(Bucket="bkt", Key="back", Body=b"all six again")
    assert s3.get_object(Bucket="bkt", Key="one-down")["Body"].read() == big[: 3 << 20]

    admin_json(gateway, "volume", "create", "v", "--size", "8M")
    nbd_round_trip(f"{gateway.nbd}/v", tmp_path, 8 << 20)


def test_a_paused_chunk_server_is_routed_around_then_rejoins(
    gateway: Server, chunks: Chunks, tmp_path: Path
) -> None:
    """SIGSTOP, nastier than a crash: its connections stay open and silent. Reads decode
    around it at once (hedged reads); writes complete from the others within one call deadline
    (then the server is suspect and skipped at once); after SIGCONT it is tried again and
    takes shards again."""
    s3 = make_client(gateway.endpoint)
    s3.create_bucket(Bucket="bkt")
    body = os.urandom(5 << 20)
    s3.put_object(Bucket="bkt", Key="before", Body=body)
    # Pause the server holding the object's first data shard: a read needs it or a hedge.
    (first,) = tmp_path.glob("node*/d0/shards/*/*.0")
    held = int(first.parts[-5].removeprefix("node"))
    paused = chunks.processes[held]
    paused.send_signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        assert s3.get_object(Bucket="bkt", Key="before")["Body"].read() == body
        read = time.monotonic() - began
        assert read < 2.5, f"{read:.1f} s to read"  # hedged: decoded around it, no deadline
        s3.put_object(Bucket="bkt", Key="during", Body=body)
        first = time.monotonic() - began
        assert first < 15, f"{first:.1f} s with a paused chunk server"  # one 5 s deadline
        began = time.monotonic()
        for i in range(3):  # the paused server is suspect now: no waiting at all
            s3.put_object(Bucket="bkt", Key=f"during-{i}", Body=body)
        assert time.monotonic() - began < 5
    finally:
        paused.send_signal(signal.SIGCONT)
    paused_dir = tmp_path / f"node{held}" / "d0" / "shards"
    before = len(list(paused_dir.glob("*/*")))
    time.sleep(11)  # the suspect period (10 s) runs out
    for i in range(4):
        s3.put_object(Bucket="bkt", Key=f"after-{i}", Body=body)
    assert len(list(paused_dir.glob("*/*"))) > before  # it takes shards again
    for key in ["before", "during", "after-3"]:
        assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body


def nbdcopy(source: str, destination: str) -> None:
    done = subprocess.run(["nbdcopy", source, destination], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def cluster_command(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_admin(server, "cluster", *args, json_out=False)


@pytest.mark.slow
def test_the_map_outlives_its_servers_and_follows_the_operator(
    tmp_path: Path, etcd: EtcdCluster, chunks: Chunks
) -> None:
    """A drive whose server is down stays in the map: a gateway started meanwhile places and
    reads as before. A new server's drive and an operator's drain make new epochs that the
    running gateway follows: new data avoids the drained drive, old data still reads; then
    `store cluster rebalance` moves everything off it."""
    data, extra = gateway_args(tmp_path, etcd)
    gateway = start_server(data, extra)
    s3 = make_client(gateway.endpoint)
    s3.create_bucket(Bucket="bkt")
    bodies = {f"k{i}": os.urandom(2 << 20) for i in range(4)}
    for key, body in bodies.items():
        s3.put_object(Bucket="bkt", Key=key, Body=body)
    admin_json(gateway, "volume", "create", "vol", "--size", "32M")
    disk = tmp_path / "vol.raw"
    disk.write_bytes(os.urandom(32 << 20))
    nbdcopy(str(disk), f"{gateway.nbd}/vol")  # 8 extents, on every drive
    epoch = cluster_status(gateway)["epoch"]  # one per server that brought a new drive
    assert epoch == SERVERS
    chunks.kill(0)
    stop_server(gateway)
    time.sleep(11)  # its lease (10 s) runs out: only the map remembers node0
    gateway = start_server(data, extra, name="again")
    try:
        s3 = make_client(gateway.endpoint)
        for key, body in bodies.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body
        status = cluster_status(gateway)
        assert status["epoch"] == epoch and len(status["drives"]) == SERVERS
        assert {d["drive"] for d in status["drives"] if d["status"] != "up"} == {"node0.d0"}
        assert status["degraded_pgs"] == status["pgs"]  # 6 shards on 6 drives: every PG
        chunks.start(0)

        refused = cluster_command(gateway, "drain", "node1.d0")
        assert refused.returncode != 0 and "add a drive first" in refused.stdout + refused.stderr
        port = free_ports(1)[0]
        argv = [a.replace("node5", "node6") for a in chunks.argvs[5]]
        argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
        chunks.argvs.append(argv)
        chunks.logs.append(tmp_path / "chunk6.log")
        chunks.start(6)
        deadline = time.monotonic() + 10
        while (status := cluster_status(gateway))["epoch"] != epoch + 1:  # the gateway follows
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert len(status["drives"]) == SERVERS + 1

        drained = cluster_command(gateway, "drain", "node1.d0")
        assert drained.returncode == 0, drained.stderr
        deadline = time.monotonic() + 5  # the gateway reports every half second
        while True:
            status = cluster_status(gateway)
            if [g["settled_epoch"] for g in status["gateways"]] == [epoch + 2]:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert 0 < status["misplaced_pgs"] <= status["pgs"]
        assert "state draining" in drained.stdout and f"epoch {epoch + 2}" in drained.stdout
        node1 = tmp_path / "node1" / "d0" / "shards"
        before = len(list(node1.glob("*/*")))
        for i in range(6):
            s3.put_object(Bucket="bkt", Key=f"new-{i}", Body=os.urandom(1 << 20))
        assert len(list(node1.glob("*/*"))) == before  # nothing new lands on it
        assert list((tmp_path / "node6" / "d0" / "shards").glob("*/*"))  # the new one takes some
        for key, body in bodies.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body
        rows = {d["drive"]: d for d in cluster_status(gateway)["drives"]}
        assert rows["node1.d0"]["state"] == "draining" and rows["node1.d0"]["status"] == "up"

        moved = cluster_command(gateway, "rebalance", "--json")
        assert moved.returncode == 0, moved.stderr
        summary = json.loads(moved.stdout)
        assert summary["pgs_failed"] == [] and summary["shards_copied"] > 0
        assert not list(node1.glob("*/*"))  # the drained drive is empty
        assert cluster_status(gateway)["misplaced_pgs"] == 0
        for key, body in bodies.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body
        for i in range(6):
            s3.get_object(Bucket="bkt", Key=f"new-{i}")["Body"].read()

        # Retiring it for good: stop its server, weight 0 (out of the newest map), rebalance
        # (what the weight change moved: the draws it took part in), remove.
        refused = cluster_command(gateway, "remove", "node1.d0")
        assert refused.returncode != 0 and "server is running" in refused.stdout + refused.stderr
        chunks.stop(1)
        refused = cluster_command(gateway, "remove", "node1.d0")
        assert refused.returncode != 0
        assert "set-weight node1.d0 0" in refused.stdout + refused.stderr
        assert cluster_command(gateway, "set-weight", "node1.d0", "0").returncode == 0
        moved = cluster_command(gateway, "rebalance", "--json")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        summary = json.loads(moved.stdout)
        assert summary["pgs_failed"] == [] and summary["volumes_failed"] == []
        assert summary["extents_moved"] > 0  # the volume's, off node1 and after the reweight
        assert not list((tmp_path / "node1" / "d0" / "extents").rglob("*.ext"))
        removed = cluster_command(gateway, "remove", "node1.d0", "--json")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert json.loads(removed.stdout)["maps_pruned"] == list(range(2, epoch + 3))
        status = cluster_status(gateway)
        assert "node1.d0" not in {d["drive"] for d in status["drives"]}
        assert status["up"] == SERVERS and status["misplaced_pgs"] == 0
        for key, body in bodies.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == body
        s3.put_object(Bucket="bkt", Key="after-remove", Body=b"r" * (1 << 20))
        nbdcopy(f"{gateway.nbd}/vol", str(tmp_path / "back.raw"))
        assert (tmp_path / "back.raw").read_bytes() == disk.read_bytes()
    finally:
        stop_server(gateway)


@pytest.mark.slow
def test_chunk_servers_die_under_s3_and_nbd_load(
    gateway: Server, chunks: Chunks, tmp_path: Path
) -> None:
    """m = 2 chunk servers SIGKILLed while S3 clients write and read and fio writes a volume
    with three replicas: no read fails, no acknowledged write is lost (object writes may be
    refused with 503 while fewer than k + 1 servers are up), fio's verify passes; both back:
    writes succeed again and everything reads."""
    admin_json(gateway, "volume", "create", "loaded", "--size", "32M", "--replicas", "3")
    s3 = make_client(gateway.endpoint)
    s3.create_bucket(Bucket="load")
    fio = subprocess.Popen(
        [
            "fio", "--name=loaded", "--ioengine=nbd", f"--uri={gateway.nbd}/loaded",
            "--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=32M", "--verify=crc32c",
            "--do_verify=1", "--verify_fatal=1", "--output-format=json",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    with Load(gateway.endpoint).running() as load:
        time.sleep(2)
        chunks.kill(2)
        time.sleep(2)
        chunks.kill(4)
        mark = len(load.outcomes)
        time.sleep(4)
        assert set(load.since(mark, "put")) <= {"ok", "ServiceUnavailable"}
        assert load.since(mark, "get") and set(load.since(mark, "get")) == {"ok"}
        # The whole volume reads while they are down (each extent has a replica left).
        read = subprocess.run(
            ["nbdcopy", f"{gateway.nbd}/loaded", "null:"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert read.returncode == 0, read.stderr
        chunks.start(2)
        chunks.start(4)
        time.sleep(11)  # the suspect period after their missed calls runs out
        mark = len(load.outcomes)
        deadline = time.monotonic() + 20
        while load.since(mark, "put").count("ok") < 5:
            assert time.monotonic() < deadline, load.since(mark)
            time.sleep(0.5)
    out, err = fio.communicate(timeout=300)
    assert fio.returncode == 0, err
    job = json.loads(out[out.index("{") :])["jobs"][0]
    assert job["error"] == 0 and job["read"]["io_bytes"] == 32 << 20  # all verified
    assert set(load.since(0, "get")) == {"ok"}
    assert set(load.since(0, "put")) <= {"ok", "ServiceUnavailable"}
    load.check_all_written()


def test_two_gateways_serve_the_same_buckets_and_keys(
    gateway: Server, tmp_path: Path, etcd: EtcdCluster
) -> None:
    """A second gateway with a data directory of its own (another host, in effect) serves what
    the first wrote, SSE-S3 objects included: the master keys are the cluster's, kept in etcd
    wrapped by the cluster secret, not each gateway's file."""
    _, extra = gateway_args(tmp_path, etcd)
    other_data = tmp_path / "gateway-2"
    other_data.mkdir()
    other = start_server(other_data, extra, name="second")
    try:
        a, b = make_client(gateway.endpoint), make_client(other.endpoint)
        a.create_bucket(Bucket="shared")
        body = os.urandom(3 << 20)
        a.put_object(Bucket="shared", Key="sealed", Body=body, ServerSideEncryption="AES256")
        got = b.get_object(Bucket="shared", Key="sealed")
        assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == body
        b.put_object(Bucket="shared", Key="back", Body=b"from two", ServerSideEncryption="AES256")
        assert a.get_object(Bucket="shared", Key="back")["Body"].read() == b"from two"
        assert not (gateway.data / "sse-keys.json").exists()
        assert not (other_data / "sse-keys.json").exists()
    finally:
        stop_server(other)
