"""Over TLS botocore streams uploads as aws-chunked bodies with checksum trailers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.conftest import Server, make_client, start_server, stop_server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    data = root / "data"
    data.mkdir()
    server = start_server(
        data,
        ["--tls-cert", str(root / "server.pem"), "--tls-key", str(root / "server.pem")],
        scheme="https",
    )
    yield server, root / "ca.pem"
    stop_server(server)


def client(server: Server, ca: Path) -> Any:
    return make_client(server.endpoint, verify=str(ca))


def test_trailer_checksums_over_tls(tls: tuple[Server, Path], tmp_path: Path) -> None:
    server, ca = tls
    s3 = client(server, ca)
    s3.create_bucket(Bucket="tls")
    sent: list[str] = []
    s3.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(request.headers.get("x-amz-content-sha256", "")),
    )
    put = s3.put_object(Bucket="tls", Key="small", Body=b"over tls")  # CRC32 in a trailer
    assert sent == [b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"] or sent == [
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    ]
    assert "ChecksumCRC32" in put
    got = s3.get_object(Bucket="tls", Key="small", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"over tls" and got["ChecksumCRC32"] == put["ChecksumCRC32"]
    data = os.urandom(20 << 20)
    (tmp_path / "in").write_bytes(data)
    s3.upload_file(str(tmp_path / "in"), "tls", "big")
    s3.download_file("tls", "big", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data
    log = (server.data / "server.log").read_text()
    assert "PUT /tls/small" in log


def test_plain_http_to_the_tls_port_gets_no_answer_and_server_lives(
    tls: tuple[Server, Path],
) -> None:
    import urllib.error
    import urllib.request

    server, ca = tls
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(server.endpoint.replace("https", "http") + "/", timeout=5)
    assert client(server, ca).list_buckets()["Buckets"] is not None


def test_crc64nvme_as_aws_cli_v2_sends_it(tls: tuple[Server, Path], tmp_path: Path) -> None:
    """The aws CLI v2 defaults to CRC64NVME: single PUTs with the checksum in a trailer, and
    multipart uploads with a FULL_OBJECT checksum combined from the parts'."""
    from boto3.s3.transfer import TransferConfig

    server, ca = tls
    s3 = client(server, ca)
    s3.create_bucket(Bucket="nvme")
    put = s3.put_object(Bucket="nvme", Key="one", Body=b"123456789", ChecksumAlgorithm="CRC64NVME")
    assert put["ChecksumCRC64NVME"] == "rosUhgp5mIg="  # CRC-64/NVME of "123456789"
    data = os.urandom(12 << 20)
    (tmp_path / "in").write_bytes(data)
    s3.upload_file(
        str(tmp_path / "in"),
        "nvme",
        "multi",
        ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"},
        Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20),
    )
    head = s3.head_object(Bucket="nvme", Key="multi", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
    import base64

    from awscrt import checksums as crt

    whole = base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    assert head["ChecksumCRC64NVME"] == whole
    assert s3.get_object(Bucket="nvme", Key="multi")["Body"].read() == data
