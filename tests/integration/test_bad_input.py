"""Hostile and broken requests: each gets S3's error or a clean close, nothing is stored or
leaked, and the server stays up."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, Server, drive_dirs


def signed(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    secret: str = SECRET_KEY,
) -> tuple[int, bytes]:
    request = AWSRequest(method, server.endpoint + path, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", "us-east-1").add_auth(request)
    host = server.endpoint.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path, body=body, headers=dict(request.headers.items()))
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def alive(s3: Any) -> None:
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bad{time.monotonic_ns() % 10**9}"
    s3.create_bucket(Bucket=name)
    return name


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key>'
    b"</Object></Delete>"
)


@pytest.mark.parametrize(
    "body", [b"not xml at all", b"<Delete><Object><Key>k</Key>", BOMB], ids=["junk", "cut", "bomb"]
)
def test_malformed_xml(server: Server, s3: Any, bucket: str, body: bytes) -> None:
    status, data = signed(
        server,
        "POST",
        f"/{bucket}?delete",
        body,
        {
            "Content-MD5": __import__("base64")
            .b64encode(__import__("hashlib").md5(body).digest())
            .decode()
        },
    )
    assert status == 400 and b"<Code>MalformedXML</Code>" in data
    alive(s3)


def test_hostile_keys(server: Server, s3: Any, bucket: str) -> None:
    status, data = signed(server, "PUT", f"/{bucket}/a%00b", b"x")
    assert status == 400 and b"InvalidArgument" in data
    status, data = signed(server, "PUT", f"/{bucket}/%FF%FE", b"x")
    assert status == 400 and b"InvalidURI" in data
    status, _ = signed(server, "PUT", f"/{bucket}/..%2F..%2F..%2Fescape", b"x")
    assert status == 200  # a key like any other: keys never become paths
    assert s3.get_object(Bucket=bucket, Key="../../../escape")["Body"].read() == b"x"
    assert not list(server.data.parent.glob("escape*"))
    status, data = signed(server, "PUT", f"/{bucket}/{'k' * 1025}", b"x")
    assert status == 400 and b"KeyTooLongError" in data


def test_wrong_secret_and_skewed_clock(server: Server, s3: Any) -> None:
    status, data = signed(server, "GET", "/", secret="not-the-secret")
    assert status == 403 and b"SignatureDoesNotMatch" in data
    # Signed correctly, but an hour ago (signed here with our own SigV4 functions, which the
    # unit tests check against AWS's examples).
    from store.s3 import sigv4

    host = server.endpoint.removeprefix("http://")
    when = time.gmtime(time.time() - 3600)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", when)
    day = amz_date[:8]
    headers = [
        ("host", host),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
        ("x-amz-date", amz_date),
    ]
    names = [n for n, _ in headers]
    canonical = sigv4.canonical_request(
        sigv4.SignedRequest("GET", "/", "", headers), names, sigv4.EMPTY_SHA256
    )
    scope = f"{day}/us-east-1/s3/aws4_request"
    signature = sigv4.sign(
        sigv4.signing_key(SECRET_KEY, day, "us-east-1", "s3"),
        sigv4.string_to_sign(amz_date, scope, canonical),
    )
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("GET", "/", headers={**dict(headers), "authorization": authorization})
    response = conn.getresponse()
    assert response.status == 403 and b"RequestTimeTooSkewed" in response.read()
    alive(s3)


def test_expired_presigned_url(s3: Any, bucket: str) -> None:
    import urllib.error
    import urllib.request

    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403 and b"expired" in e.value.read()


def test_client_disconnecting_mid_upload_leaves_nothing(
    server: Server, s3: Any, bucket: str
) -> None:
    body = b"z" * (8 << 20)
    request = AWSRequest("PUT", f"{server.endpoint}/{bucket}/partial", data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    host, port = server.endpoint.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"PUT /{bucket}/partial HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    sock.sendall(head.encode() + body[: 5 << 20])
    sock.close()  # gone mid-upload
    time.sleep(0.5)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    drives = drive_dirs(server)
    assert drives, "no drives found: the check below would check nothing"
    assert not [p for d in drives for p in d.glob("tmp/*")], "temporary shard files leaked"
    alive(s3)


def test_slow_and_oversized_clients_do_not_hold_the_server(server: Server, s3: Any) -> None:
    host, port = server.endpoint.removeprefix("http://").split(":")
    big = socket.create_connection((host, int(port)))
    big.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert big.recv(100).startswith(b"HTTP/1.1 431")
    big.close()
    slow = [socket.create_connection((host, int(port))) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # and never finish the head
    alive(s3)  # other clients are served meanwhile
    for sock in slow:
        sock.close()
