"""Requests without valid credentials write nothing: neither unsigned nor badly signed requests,
on any write path S3 has, move the metadata's revision (no bucket squatted, no upload started, no
record of the attempt), and each gets its S3 error."""

from __future__ import annotations

import http.client
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Server, make_client, start_server, stop_server

XML = b'<?xml version="1.0"?>'
WRITES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("PUT", "/squat", {}, b""),
    ("PUT", "/private/k", {}, b"data"),
    ("PUT", "/private/k", {"x-amz-copy-source": "/private/k"}, b""),
    ("POST", "/private/k?uploads", {}, b""),
    ("PUT", "/private/k?partNumber=1&uploadId=x", {}, b"data"),
    ("POST", "/private?delete", {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, XML + b"<Delete/>"),
    ("DELETE", "/private/k", {}, b""),
    ("DELETE", "/private", {}, b""),
    ("PUT", "/private?acl", {"x-amz-acl": "public-read-write"}, b""),
    ("PUT", "/private/k?acl", {"x-amz-acl": "public-read"}, b""),
    ("PUT", "/private?policy", {}, b'{"Statement": []}'),
    ("PUT", "/private?tagging", {}, XML + b"<Tagging><TagSet/></Tagging>"),
    ("PUT", "/private?versioning", {}, XML + b"<VersioningConfiguration/>"),
    ("PUT", "/private?lifecycle", {}, XML + b"<LifecycleConfiguration/>"),
    ("PUT", "/private?cors", {}, XML + b"<CORSConfiguration/>"),
    ("PUT", "/private?encryption", {}, XML + b"<ServerSideEncryptionConfiguration/>"),
    ("PUT", "/private?publicAccessBlock", {}, XML + b"<PublicAccessBlockConfiguration/>"),
    (
        "POST",
        "/private",
        {"content-type": "multipart/form-data; boundary=b"},
        b'--b\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nx\r\n--b--\r\n',
    ),
    (
        "PUT",
        "/private/k",
        {
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIANOBODY/20260101/"
            "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + "0" * 64
        },
        b"data",
    ),
    (
        "PUT",
        "/private/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIANOBODY%2F20260101"
        "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64,
        {},
        b"data",
    ),
]


def revision(data: Path) -> int:
    with sqlite3.connect(f"file:{data / 'meta.sqlite'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT value FROM state WHERE name = 'revision'").fetchone()[0])


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, ["--workers", "1", "--nbd", "off"])
    yield running
    stop_server(running)


def send(server: Server, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
    host, _, port = server.endpoint.removeprefix("http://").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_requests_without_credentials_write_nothing(quiet_server: Server) -> None:
    s3 = make_client(quiet_server.endpoint)
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="k", Body=b"kept")
    time.sleep(1)  # the service's own start-up writes are done
    before = revision(quiet_server.data)
    for method, target, headers, body in WRITES:
        status, answer = send(quiet_server, method, target, headers, body)
        assert status in (400, 403, 405, 411, 412), (method, target, status, answer)
        assert b"<Code>" in answer, (method, target, answer)
    assert revision(quiet_server.data) == before
    assert s3.get_object(Bucket="private", Key="k")["Body"].read() == b"kept"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["private"]
    assert "Traceback" not in (quiet_server.data / "server.log").read_text()
    s3.put_object(Bucket="private", Key="k2", Body=b"x")  # the probe sees a real write
    assert revision(quiet_server.data) > before
