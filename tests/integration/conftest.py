"""A real `store serve` process on a free loopback port, and clients configured for it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ACCESS_KEY = "itestaccesskey"
SECRET_KEY = "itestsecretkey123"


def admin_env() -> dict[str, str]:
    """The environment as it is now (a test's monkeypatched settings too), with the tests'
    root key."""
    return {**os.environ, "STORE_ACCESS_KEY": ACCESS_KEY, "STORE_SECRET_KEY": SECRET_KEY}


ADMIN_ENV = admin_env()  # as the session started: for scripts handed to other processes


@dataclass
class Server:
    endpoint: str
    data: Path
    process: subprocess.Popen[str]
    log: IO[str]
    nbd: str = ""  # nbd://127.0.0.1:PORT (add /VOLUME)
    meta: str = ""  # etcd://...: a gateway on a cluster, its metadata there
    args: list[str] = field(default_factory=list)  # `store serve` options: for another gateway
    ca_bundle: str = ""  # the CA an https endpoint's certificate is checked against


def drive_dirs(server: Server) -> list[Path]:
    """The directories of the drives that hold the server's data: its own, or the cluster's
    chunk servers' (beside its data directory, see tests/cluster/lab.py)."""
    if server.meta:
        return sorted(server.data.parent.glob("node*/d0"))
    return sorted((server.data / "drives").glob("d*"))


def metadata_dirs(server: Server) -> list[Path]:
    """Where the server's metadata is on disk: SQLite's file, or the etcd members' data."""
    if server.meta:
        return sorted(server.data.parent.glob("etcd/etcd-*"))
    return [server.data / "meta.sqlite"]


def admin_args(server: Server) -> list[str]:
    """Where an admin command reaches the server's metadata: its data directory (with the
    etcd cluster, for a cluster gateway)."""
    return ["--data", str(server.data)] + (["--meta", server.meta] if server.meta else [])


def admin_argv(server: Server, *args: str, json_out: bool = True) -> list[str]:
    """A `store` command through the service's admin API, as an operator runs it (its
    credentials in ADMIN_ENV)."""
    argv = [sys.executable, "-m", "store", *args, "--endpoint", server.endpoint]
    argv += ["--json"] if json_out else []
    return argv + (["--ca-bundle", server.ca_bundle] if server.ca_bundle else [])


def run_admin(
    server: Server, *args: str, json_out: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = admin_argv(server, *args, json_out=json_out)
    return subprocess.run(argv, env=admin_env(), capture_output=True, text=True, timeout=120)


def admin_json(server: Server, *args: str) -> Any:
    """The JSON an admin command printed (None if nothing); it must succeed."""
    done = run_admin(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def nbd_round_trip(uri: str, tmp_path: Path, size: int) -> None:
    """``size`` random bytes into the volume at ``uri`` and back out with nbdcopy, equal."""
    source = tmp_path / "in.raw"
    source.write_bytes(os.urandom(size))
    for argv in (["nbdcopy", str(source), uri], ["nbdcopy", uri, str(tmp_path / "out.raw")]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.raw").read_bytes() == source.read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data: Path, extra: list[str], scheme: str = "http", name: str = "server"
) -> Server:
    port = _free_port()
    nbd_port = _free_port()
    args = list(extra)
    if "--nbd" not in extra:
        extra = [*extra, "--nbd", f"127.0.0.1:{nbd_port}"]
    env = admin_env()
    log = (data / f"{name}.log").open("w")  # stderr: the log (stdout, printed once, apart)
    out = (data / f"{name}.out").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "store.cli",
            "serve",
            "--data",
            str(data),
            "--s3",
            f"127.0.0.1:{port}",
            *extra,
        ],
        env=env,
        stdout=out,
        stderr=log,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, (data / f"{name}.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "store serve did not start"
            time.sleep(0.1)
    out.close()  # the child has its own handle
    endpoint, nbd = f"{scheme}://127.0.0.1:{port}", f"nbd://127.0.0.1:{nbd_port}"
    return Server(endpoint, data, process, log, nbd, args=args)


def stop_server(server: Server) -> None:
    server.process.terminate()
    server.process.wait(10)
    server.log.close()


@pytest.fixture(scope="session", params=["embedded", "cluster"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service under test: the embedded single node, then a gateway on a cluster (three
    etcd members, six chunk servers, EC 4+2 across them): the same tests, unchanged."""
    if request.param == "embedded":
        running = start_server(tmp_path_factory.mktemp("serve"), [])
        yield running
        stop_server(running)
        return
    from tests.cluster.lab import running_cluster

    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def make_client(
    endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, **options: Any
) -> Any:
    """A boto3 S3 client for a test server (SigV4, no retries: errors surface as they are)."""
    import boto3
    from botocore.config import Config

    settings: dict[str, Any] = {
        "endpoint_url": endpoint,
        "aws_access_key_id": access_key,
        "aws_secret_access_key": secret_key,
        "region_name": "us-east-1",
        "config": Config(signature_version="s3v4", retries={"max_attempts": 1}),
    }
    return boto3.client("s3", **{**settings, **options})


def add_user(server: Server, name: str) -> dict[str, str]:
    """A new user's access key, made with `store user add` on the server's data directory."""
    import json

    added = subprocess.run(
        [sys.executable, "-m", "store.cli", "user", "add", name, *admin_args(server)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(added.stdout))


@pytest.fixture
def s3(server: Server) -> Any:
    return make_client(server.endpoint)
