"""Hostile or malformed S3 requests that must be refused cleanly (or, per RFC 9110, ignored):
ranges, response-* overrides, part numbers, continuation tokens, DeleteObjects integrity, keys
XML cannot carry. Each through a real socket; nothing stored or changed by a refusal."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import Server, make_client, start_server, stop_server
from tests.integration.test_acl import code_of
from tests.integration.test_bad_input import signed

DATA = b"0123456789"


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"hostile{time.monotonic_ns() % 10**9}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=DATA)
    return name


def test_ranges(server: Server, bucket: str) -> None:
    status, body = signed(server, "GET", f"/{bucket}/k", headers={"range": "bytes=5-2"})
    assert (status, body) == (200, DATA)  # an invalid range is ignored (RFC 9110 14.2)
    status, body = signed(server, "GET", f"/{bucket}/k", headers={"range": "bytes=2-4"})
    assert (status, body) == (206, b"234")
    import http.client

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.integration.conftest import ACCESS_KEY, SECRET_KEY

    for method in ("GET", "HEAD"):
        request = AWSRequest(
            method, f"{server.endpoint}/{bucket}/k", headers={"range": "bytes=100-200"}
        )
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
        conn = http.client.HTTPConnection(server.endpoint.removeprefix("http://"), timeout=10)
        conn.request(method, f"/{bucket}/k", headers=dict(request.headers.items()))
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 416 and answer.getheader("content-range") == f"bytes */{len(DATA)}"
        conn.close()


def test_response_overrides(server: Server, s3: Any, bucket: str) -> None:
    status, body = signed(server, "GET", f"/{bucket}/k?response-content-type=text%2Fplain")
    assert status == 200
    for bad in ("%E2%82%AC", "a%0D%0AX-Injected%3A%201", "a%00b"):
        status, body = signed(server, "GET", f"/{bucket}/k?response-content-type={bad}")
        assert status == 400 and b"InvalidArgument" in body, (bad, body)
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    url = f"{server.endpoint}/{bucket}/k?response-content-type=text%2Fhtml"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 400 and b"InvalidRequest" in e.value.read()
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}/k", timeout=10) as ok:
        assert ok.read() == DATA


@pytest.mark.parametrize("number", ["-1", "0", "10001", "x", ""])
def test_part_numbers(server: Server, bucket: str, number: str) -> None:
    status, body = signed(server, "GET", f"/{bucket}/k?partNumber={number}")
    assert status == 400 and b"InvalidArgument" in body


def test_continuation_tokens(server: Server, s3: Any, bucket: str) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"p/{i}", Body=b"x")
    page = s3.list_objects_v2(Bucket=bucket, Prefix="p/", MaxKeys=1)
    token = page["NextContinuationToken"]
    rest = s3.list_objects_v2(Bucket=bucket, Prefix="p/", ContinuationToken=token)
    assert [o["Key"] for o in rest["Contents"]] == ["p/1", "p/2"]
    for bad in ("garbage", "1!!!", token + "x", "AAAA"):
        with pytest.raises(ClientError) as e:
            s3.list_objects_v2(Bucket=bucket, ContinuationToken=bad)
        assert code_of(e.value) == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.list_buckets(ContinuationToken="nope")


def test_delete_objects_needs_an_intact_body(server: Server, s3: Any, bucket: str) -> None:
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    status, answer = signed(server, "POST", f"/{bucket}?delete", body)
    assert status == 400 and b"InvalidRequest" in answer
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, answer = signed(server, "POST", f"/{bucket}?delete", body, {"content-md5": wrong})
    assert status == 400 and b"BadDigest" in answer
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == DATA  # nothing deleted
    right = base64.b64encode(hashlib.md5(body).digest()).decode()
    status, answer = signed(server, "POST", f"/{bucket}?delete", body, {"content-md5": right})
    assert status == 200 and b"<Deleted><Key>k</Key>" in answer
    # boto3 (which sends a CRC32 of the body) works as it always did
    s3.put_object(Bucket=bucket, Key="k2", Body=b"x")
    assert s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k2"}]})["Deleted"]


def test_keys_and_xml(server: Server, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad\x01key", Body=b"x")
    assert code_of(e.value) == "InvalidArgument"
    awkward = "line\r\nbreak\tand tab"
    s3.put_object(Bucket=bucket, Key=awkward, Body=b"x")
    status, listing = signed(server, "GET", f"/{bucket}?list-type=2")
    root = ET.fromstring(listing)  # well-formed XML 1.0
    keys = [e.text for e in root.iter() if e.tag.endswith("Key")]
    assert awkward in keys  # byte for byte: CR and tab survive as character references
    assert s3.get_object(Bucket=bucket, Key=awkward)["Body"].read() == b"x"


def test_documents_that_list_a_lot_are_not_too_large(s3: Any, bucket: str) -> None:
    """The largest legitimate bodies fit: a Complete of 10,000 parts with CRC32 checksums (over
    1 MiB of XML, refused before) and a DeleteObjects of 1,000 keys of 1,000 bytes."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", ChecksumAlgorithm="CRC32")
    parts = [
        {"PartNumber": n, "ETag": f'"{n:032x}"', "ChecksumCRC32": "AAAAAA=="}
        for n in range(1, 10_001)
    ]
    with pytest.raises(ClientError) as e:  # listed, so parsed: the parts were never uploaded
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="big",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
    assert code_of(e.value) == "InvalidPart"
    keys = [{"Key": f"{n:04d}" + "k" * 996} for n in range(1000)]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": False})
    assert len(result["Deleted"]) == 1000 and not result.get("Errors")


def test_the_document_limit_is_configuration(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tags = {"TagSet": [{"Key": f"k{n:03d}" + "k" * 100, "Value": "v" * 200} for n in range(40)]}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tags)  # about 14 KB: within the default
    monkeypatch.setenv("STORE_S3_MAX_XML_BYTES", "8192")
    small = start_server(tmp_path, ["--workers", "1", "--nbd", "off"])
    try:
        client = make_client(small.endpoint)
        client.create_bucket(Bucket="tags")
        with pytest.raises(ClientError) as e:
            client.put_bucket_tagging(Bucket="tags", Tagging=tags)
        assert code_of(e.value) == "MaxMessageLengthExceeded"
        client.put_bucket_tagging(Bucket="tags", Tagging={"TagSet": tags["TagSet"][:5]})
    finally:
        stop_server(small)
