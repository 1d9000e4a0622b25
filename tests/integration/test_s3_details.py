"""The smaller things clients hit: region and base domains, storage classes, part checksums,
retried completions, GetObjectAttributes' headers; and bad bodies for every configuration
document (nothing changes, the right error comes back)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    Server,
    make_client,
    start_server,
    stop_server,
)
from tests.integration.test_acl import code_of
from tests.integration.test_bad_input import BOMB, signed


@pytest.fixture(scope="module")
def regional(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("regional"),
        ["--region", "eu-central-1", "--domain", "s3.test", "--workers", "1"],
        name="regional",
    )
    yield running
    stop_server(running)


def _raw(
    server: Server, method: str, url: str, region: str, body: bytes = b""
) -> tuple[int, bytes]:
    """Sign for ``url`` (whose host may be a virtual-hosted name) and send to the server."""
    request = AWSRequest(method, url, data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", region).add_auth(request)
    conn = http.client.HTTPConnection(server.endpoint.removeprefix("http://"), timeout=10)
    path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
    headers = {"host": url.split("/")[2], **dict(request.headers.items())}
    conn.request(method, "/" + path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_region_scope_location_and_virtual_hosts(regional: Server) -> None:
    s3 = make_client(regional.endpoint, region_name="eu-central-1")
    s3.create_bucket(
        Bucket="regional", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    assert s3.get_bucket_location(Bucket="regional")["LocationConstraint"] == "eu-central-1"
    with pytest.raises(ClientError) as e:
        s3.create_bucket(
            Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
    assert code_of(e.value) == "InvalidLocationConstraint"
    with pytest.raises(ClientError) as e:  # outside us-east-1, re-creating is an error
        s3.create_bucket(
            Bucket="regional", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
    assert code_of(e.value) == "BucketAlreadyOwnedByYou"
    wrong = make_client(regional.endpoint)  # signs for us-east-1
    with pytest.raises(ClientError) as e:
        wrong.list_buckets()
    assert code_of(e.value) == "AuthorizationHeaderMalformed"
    assert "eu-central-1" in e.value.response["Error"]["Message"]
    url = wrong.generate_presigned_url("list_buckets", ExpiresIn=60)
    conn = http.client.HTTPConnection(regional.endpoint.removeprefix("http://"), timeout=10)
    conn.request("GET", url.split("/", 3)[3] and "/" + url.split("/", 3)[3])
    answer = conn.getresponse()
    assert answer.status == 400 and b"AuthorizationQueryParametersError" in answer.read()
    # virtual-hosted style under the configured base domain
    port = regional.endpoint.rsplit(":", 1)[1]
    status, answer = _raw(
        regional, "PUT", f"http://regional.s3.test:{port}/vh.txt", "eu-central-1", b"vh"
    )
    assert status == 200, answer
    assert s3.get_object(Bucket="regional", Key="vh.txt")["Body"].read() == b"vh"
    status, listing = _raw(regional, "GET", f"http://regional.s3.test:{port}/", "eu-central-1")
    assert status == 200 and b"<Key>vh.txt</Key>" in listing


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"det{time.monotonic_ns() % 10**10}"
    s3.create_bucket(Bucket=name)
    return name


def test_storage_classes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["StorageClass"]) for o in listed] == [("ia", "STANDARD_IA")]
    s3.put_object(Bucket=bucket, Key="std", Body=b"x", StorageClass="STANDARD")
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="std")  # as S3: omitted
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="ia", ObjectAttributes=["StorageClass"]
    )
    assert attributes["StorageClass"] == "STANDARD_IA"
    for refused in ("GLACIER", "DEEP_ARCHIVE", "FANCY"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="cold", Body=b"x", StorageClass=refused)
        assert code_of(e.value) == "InvalidStorageClass"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", StorageClass="ONEZONE_IA")
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["StorageClass"] for u in uploads] == ["ONEZONE_IA"]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"])


def test_part_checksums_and_retried_complete(s3: Any, bucket: str) -> None:
    parts = [b"a" * (5 << 20), b"tail bytes"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")
    done = []
    for number, body in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=up["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="CRC32",
        )
        done.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    assert again["ETag"] == first["ETag"]
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"])
    assert code_of(e.value) == "NoSuchUpload"
    for number, body in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, ChecksumMode="ENABLED")
        assert got["Body"].read() == body
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert got["ChecksumCRC32"] == crc  # the part's own checksum
    whole = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert whole["ChecksumCRC32"].endswith("-2")


def test_object_attributes_headers_are_checked(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for header in ({"x-amz-max-parts": "abc"}, {"x-amz-part-number-marker": "-5"}):
        status, body = signed(
            server,
            "GET",
            f"/{bucket}/k?attributes",
            headers={"x-amz-object-attributes": "ObjectParts", **header},
        )
        assert status == 400 and b"InvalidArgument" in body, body


JUNK = b"<<<not xml"
BIG = b"<a>" + b"x" * (1 << 20) + b"</a>"


def _md5(body: bytes) -> dict[str, str]:
    return {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def _settings(server: Server, bucket: str) -> list[bytes]:
    names = ("acl", "publicAccessBlock", "ownershipControls", "encryption", "versioning", "cors")
    return [signed(server, "GET", f"/{bucket}?{q}")[1].split(b"<RequestId>")[0] for q in names]


@pytest.mark.parametrize(
    ("query", "root"),
    [
        ("acl", "AccessControlPolicy"),
        ("publicAccessBlock", "PublicAccessBlockConfiguration"),
        ("ownershipControls", "OwnershipControls"),
        ("encryption", "ServerSideEncryptionConfiguration"),
        ("cors", "CORSConfiguration"),
        ("tagging", "Tagging"),
        ("versioning", "VersioningConfiguration"),
    ],
)
def test_bad_configuration_bodies_change_nothing(
    server: Server, s3: Any, bucket: str, query: str, root: str
) -> None:
    before = _settings(server, bucket)
    for body, expected in [
        (JUNK, 400),
        (BOMB, 400),
        (BIG, 400),
        (f"<Wrong><{root}/></Wrong>".encode(), 400),
        (f"<{root}><Unknown>1</Unknown></{root}>".encode(), 400),
    ]:
        status, answer = signed(server, "PUT", f"/{bucket}?{query}", body, _md5(body))
        assert status == expected, (query, body[:40], answer)
        assert b"<Error><Code>" in answer
    assert _settings(server, bucket) == before


def test_bad_policies_change_nothing(server: Server, s3: Any, bucket: str, tmp_path: Path) -> None:
    good = {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*"}
        ]
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(good))
    statement = good["Statement"][0]
    bad = [
        b"{not json",
        json.dumps({"Statement": [{**statement, "Condition": {"Nope": {}}}]}).encode(),
        json.dumps({"Statement": [{**statement, "Action": "s3:Fly"}]}).encode(),
        json.dumps({"Statement": [{**statement, "Resource": "arn:aws:s3:::other/*"}]}).encode(),
        b" " * (21 << 10),
    ]  # fmt: skip
    for body in bad:
        status, answer = signed(server, "PUT", f"/{bucket}?policy", body, _md5(body))
        assert status == 400, answer
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == good
