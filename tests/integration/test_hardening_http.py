"""Hostile HTTP framing against a real `store serve`: request smuggling (Content-Length with
Transfer-Encoding), HTTP versions it does not speak, and broken or cut-short request bodies
(HTTP chunked and aws-chunked). Each gets a 400/505 with S3's error document and a closed
connection, one log line and no traceback, nothing stored, and the server stays up. The limits
the review found holding (431, 414, 100-continue) are checked again here."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, Server


class _FixedPayload(S3SigV4Auth):
    """SigV4 with a given x-amz-content-sha256 (UNSIGNED-PAYLOAD, STREAMING-*)."""

    def __init__(self, payload: str) -> None:
        super().__init__(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1")
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


def address(server: Server) -> tuple[str, int]:
    host, port = server.endpoint.removeprefix("http://").split(":")
    return host, int(port)


def signed_head(
    server: Server, method: str, path: str, payload: str, headers: dict[str, str]
) -> bytes:
    """A request head signed by botocore, its body to be written by hand."""
    host, port = address(server)
    request = AWSRequest(method, server.endpoint + path, headers=headers)
    _FixedPayload(payload).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(server: Server, data: bytes, half_close: bool = False, wait_s: float = 10) -> bytes:
    """Send ``data`` and read until the server closes the connection (failing after wait_s)."""
    sock = socket.create_connection(address(server), timeout=wait_s)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        deadline = time.monotonic() + wait_s
        while chunk := sock.recv(65536):
            out += chunk
            assert time.monotonic() < deadline, "the server kept the connection open"
        return out
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open after {out!r}") from None
    finally:
        sock.close()


def statuses(answer: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"(?:^|\r\n|>)HTTP/1\.1 (\d{3}) ", answer)]


def error_code(answer: bytes) -> str:
    found = re.search(rb"<Code>([^<]+)</Code>", answer)
    assert found, answer
    return found[1].decode()


def closes(answer: bytes) -> bool:
    head = answer.partition(b"\r\n\r\n")[0].lower()
    return b"\r\nconnection: close" in head


class LogWatch:
    """The server log lines written since the watch started."""

    def __init__(self, server: Server) -> None:
        self.path = server.data / "server.log"
        self.start = self.path.stat().st_size

    def lines(self) -> list[str]:
        time.sleep(0.2)  # the worker's line reaches the file
        with self.path.open() as f:
            f.seek(self.start)
            return f.read().splitlines()


def assert_one_clean_line(watch: LogWatch) -> None:
    lines = watch.lines()
    assert not [line for line in lines if "Traceback" in line or "failed" in line], lines
    assert len([line for line in lines if "store.access" in line]) == 1, lines


def alive(s3: Any) -> None:
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"hard{time.monotonic_ns() % 10**9}"
    s3.create_bucket(Bucket=name)
    return name


def nothing_stored(s3: Any, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# -- request heads refused ----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["cl-te", "te-cl"])
def test_content_length_with_transfer_encoding_is_refused_and_closed(
    server: Server, s3: Any, bucket: str, order: str
) -> None:
    framing = ["Content-Length: 5", "Transfer-Encoding: chunked"]
    if order == "te-cl":
        framing.reverse()
    smuggled = f"GET /{bucket} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    wire = (
        (
            f"PUT /{bucket}/smuggled HTTP/1.1\r\nHost: x\r\n" + "\r\n".join(framing) + "\r\n\r\n"
        ).encode()
        + b"0\r\n\r\n"
        + smuggled
    )
    watch = LogWatch(server)
    answer = exchange(server, wire)
    assert statuses(answer) == [400], answer  # the pipelined GET is never served
    assert error_code(answer) == "BadRequest" and closes(answer)
    assert not [line for line in watch.lines() if "Traceback" in line]
    nothing_stored(s3, bucket)
    alive(s3)


@pytest.mark.parametrize("version", [b"9.9", b"2.0", b"0.9"])
def test_http_versions_other_than_1_0_and_1_1_get_505(
    server: Server, s3: Any, version: bytes
) -> None:
    answer = exchange(
        server, b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    )
    assert statuses(answer) == [505], answer
    assert b"<Error><Code>" in answer and closes(answer)
    alive(s3)


def test_http_1_0_is_still_served(server: Server) -> None:
    answer = exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(answer) == [403] and error_code(answer) == "AccessDenied"  # anonymous


# -- broken request bodies -----------------------------------------------------------------------

CHUNKED = {"Transfer-Encoding": "chunked"}
BROKEN_FRAMING = {
    "hex": b"ZZ\r\nabc\r\n0\r\n\r\n",
    "negative": b"-3\r\nabc\r\n0\r\n\r\n",
    "missing-crlf": b"3\r\nabcXX0\r\n\r\n",
}
CUT_SHORT = b"5\r\nab"  # and the client half-closes


@pytest.mark.parametrize("name", [*BROKEN_FRAMING, "cut-short"])
def test_broken_http_chunked_body(server: Server, s3: Any, bucket: str, name: str) -> None:
    head = signed_head(server, "PUT", f"/{bucket}/k", "UNSIGNED-PAYLOAD", CHUNKED)
    body = BROKEN_FRAMING.get(name, CUT_SHORT)
    watch = LogWatch(server)
    answer = exchange(
        server, head + body + b"GET / HTTP/1.1\r\n\r\n", half_close=name == "cut-short"
    )
    assert statuses(answer) == [400], answer
    assert error_code(answer) == "IncompleteBody" and closes(answer)
    assert_one_clean_line(watch)
    nothing_stored(s3, bucket)
    alive(s3)


STREAMING_MODES = {
    "unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "signed": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
}
SIG = ";chunk-signature=" + "0" * 64


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        (mode, name)
        for mode in STREAMING_MODES
        for name in [*BROKEN_FRAMING, "cut-short", "ends-early"]
        if (mode, name) != ("signed", "ends-early")  # its one chunk fails its signature first
    ],
)
def test_broken_aws_chunked_body(
    server: Server, s3: Any, bucket: str, mode: str, name: str
) -> None:
    sig = SIG if mode == "signed" else ""
    body = {
        "hex": f"ZZ{sig}\r\nabc\r\n0{sig}\r\n\r\n",
        "negative": f"-3{sig}\r\nabc\r\n0{sig}\r\n\r\n",
        "missing-crlf": f"3{sig}\r\nabcXX0{sig}\r\n\r\n",
        "cut-short": f"3{sig}\r\nab",  # the Content-Length promises more; the client half-closes
        "ends-early": f"3{sig}\r\nabc\r\n",  # Content-Length ends before the final chunk
    }[name].encode()
    declared = len(body) + (100 if name == "cut-short" else 0)
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": "3",
        "Content-Length": str(declared),
        # The HTTP framing (Content-Length) holds, so the connection could serve another
        # request; this client is done.
        "Connection": "close",
    }
    if mode == "unsigned-trailer":
        headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    head = signed_head(server, "PUT", f"/{bucket}/k", STREAMING_MODES[mode], headers)
    watch = LogWatch(server)
    answer = exchange(server, head + body, half_close=name == "cut-short")
    assert statuses(answer) == [400], answer
    assert error_code(answer) == "IncompleteBody", answer
    assert_one_clean_line(watch)
    nothing_stored(s3, bucket)
    alive(s3)


def test_a_broken_body_without_credentials_closes_quietly(
    server: Server, s3: Any, bucket: str
) -> None:
    # Refused before the body is read (403); draining the body then fails on its framing: the
    # connection closes, with no traceback and the pipelined request unserved.
    wire = f"PUT /{bucket}/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    watch = LogWatch(server)
    answer = exchange(server, wire + b"ZZ\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(answer) == [403], answer
    assert_one_clean_line(watch)
    nothing_stored(s3, bucket)
    alive(s3)


# -- what held -------------------------------------------------------------------------------


def test_held_limits_still_answer(server: Server, s3: Any) -> None:
    huge = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert statuses(huge) == [431] and closes(huge)
    long_uri = exchange(
        server, b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statuses(long_uri)[:1] == [414]
    alive(s3)


def test_100_continue_then_a_good_body_then_keep_alive(
    server: Server, s3: Any, bucket: str
) -> None:
    body = b"hello, world"
    head = signed_head(
        server,
        "PUT",
        f"/{bucket}/continued",
        "UNSIGNED-PAYLOAD",
        {"Content-Length": str(len(body)), "Expect": "100-continue"},
    )
    sock = socket.create_connection(address(server), timeout=10)
    try:
        sock.sendall(head)
        assert sock.recv(1000).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert statuses(answer) == [200] and not closes(answer)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection serves again
        again = sock.recv(65536)
        assert statuses(again) == [403]
    finally:
        sock.close()
    assert s3.get_object(Bucket=bucket, Key="continued")["Body"].read() == body
