"""A flood of hostile connections does not stop real clients: with hundreds of S3 connections
held open (idle, or with half-sent request heads) and NBD connections stuck in the handshake,
boto3 and nbdcopy still do real work, and get back what they wrote. Past ``http.max_connections``
new connections are answered 503 SlowDown, and hostile ones are cut by the head timeout, giving
their places back.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, make_client, start_server, stop_server
from tests.integration.test_nbd import store

MIB = 1 << 20
HOSTILE_S3 = 600
HOSTILE_NBD = 60


@pytest.fixture(autouse=True)
def open_files() -> Iterator[None]:
    """Room for the hostile sockets in this process (and the servers it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def s3_address(server: Server) -> str:
    return server.endpoint.removeprefix("http://")


def hold_hostile(server: Server, count: int) -> list[socket.socket]:
    """``count`` S3 connections: every other one idle, the rest with an unfinished request head."""
    held = []
    for i in range(count):
        sock = connect(s3_address(server))
        if i % 2:
            sock.sendall(b"PUT /squat/key HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n")
        held.append(sock)
    return held


def is_closed(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture
def flood_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, ["--workers", "1"])
    yield running
    stop_server(running)


def test_real_clients_are_served_through_a_flood(flood_server: Server, tmp_path: Path) -> None:
    hostile = hold_hostile(flood_server, HOSTILE_S3)
    nbd_address = flood_server.nbd.removeprefix("nbd://")
    hostile += [connect(nbd_address) for _ in range(HOSTILE_NBD)]  # greeted, never answer
    try:
        s3 = make_client(flood_server.endpoint)
        s3.create_bucket(Bucket="real")
        body = os.urandom(8 * MIB)
        s3.put_object(Bucket="real", Key="k", Body=body)
        assert s3.get_object(Bucket="real", Key="k")["Body"].read() == body

        store(flood_server, "volume", "create", "disk", "--size", "64M")
        image = tmp_path / "in.raw"
        image.write_bytes(os.urandom(32 * MIB) + bytes(32 * MIB))
        uri = f"{flood_server.nbd}/disk"
        for argv in (["nbdcopy", str(image), uri], ["nbdcopy", uri, str(tmp_path / "out.raw")]):
            subprocess.run(argv, check=True, capture_output=True, timeout=120)
        assert (tmp_path / "out.raw").read_bytes() == image.read_bytes()
        # The half-sent heads wrote nothing: no bucket was created.
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["real"]
    finally:
        for sock in hostile:
            sock.close()
    assert flood_server.process.poll() is None
    assert "Traceback" not in (flood_server.data / "server.log").read_text()


@pytest.fixture
def small_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("STORE_HTTP_MAX_CONNECTIONS", "16")
    monkeypatch.setenv("STORE_HTTP_HEAD_TIMEOUT_S", "2")
    running = start_server(tmp_path, ["--workers", "1", "--nbd", "off"])
    yield running
    stop_server(running)


def test_past_max_connections_new_ones_get_slowdown(small_server: Server) -> None:
    idle = [connect(s3_address(small_server)) for _ in range(16)]
    try:
        time.sleep(0.5)  # the server has accepted them all
        extra = connect(s3_address(small_server))
        extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(10)
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"<Code>SlowDown</Code>" in answer
        assert b"connection: close" in answer.lower()
    finally:
        for sock in idle:
            sock.close()
    # Their places are given back: a real client gets in.
    deadline = time.monotonic() + 10
    while True:
        try:
            make_client(small_server.endpoint).list_buckets()
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_hostile_heads_are_cut_and_give_their_places_back(small_server: Server) -> None:
    hostile = [connect(s3_address(small_server)) for _ in range(16)]
    for sock in hostile:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    try:
        assert all(is_closed(sock, within_s=10) for sock in hostile)
        make_client(small_server.endpoint).list_buckets()
    finally:
        for sock in hostile:
            sock.close()


def greeting(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    try:
        return sock.recv(8)
    except ConnectionResetError:
        return b""


def test_past_nbd_max_connections_new_ones_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_NBD_MAX_CONNECTIONS", "4")
    server = start_server(tmp_path, ["--workers", "1"])
    try:
        address = server.nbd.removeprefix("nbd://")
        held = [connect(address) for _ in range(4)]
        assert all(greeting(sock) == b"NBDMAGIC" for sock in held)
        extra = connect(address)
        assert greeting(extra) == b""  # closed unanswered
        extra.close()
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while True:  # their places are given back
            sock = connect(address)
            got = greeting(sock)
            sock.close()
            if got == b"NBDMAGIC":
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop_server(server)
