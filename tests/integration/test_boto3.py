"""boto3 with its current defaults against `store serve` over a real socket."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import Server, add_user, admin_args, make_client


def code_of(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_credentials_file_is_private(server: Server) -> None:
    mode = stat.S_IMODE((server.data / "credentials.json").stat().st_mode)
    assert mode == 0o600
    assert "itestsecretkey123" not in (server.data / "server.log").read_text()
    assert "itestsecretkey123" in (server.data / "server.out").read_text()  # printed once


def test_bucket_lifecycle(s3: Any) -> None:
    s3.create_bucket(Bucket="life")
    assert "life" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="life")
    # us-east-1's legacy rule (AWS's documented exception): re-creating a bucket you own is 200
    # and resets its ACL; elsewhere BucketAlreadyOwnedByYou (test_s3_details)
    s3.put_bucket_acl(Bucket="life", ACL="public-read")
    s3.create_bucket(Bucket="life")
    assert len(s3.get_bucket_acl(Bucket="life")["Grants"]) == 1
    s3.put_object(Bucket="life", Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="life")
    assert code_of(e.value) == "BucketNotEmpty"
    s3.delete_object(Bucket="life", Key="k")
    s3.delete_bucket(Bucket="life")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="life")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_objects_ranges_metadata_and_listing(s3: Any) -> None:
    s3.create_bucket(Bucket="objs")
    key = "dir/ünï cödé+plus & space.txt"
    s3.put_object(
        Bucket="objs",
        Key=key,
        Body=b"hello world",
        Metadata={"color": "blue"},
        ContentType="text/plain",
    )
    got = s3.get_object(Bucket="objs", Key=key)
    assert got["Body"].read() == b"hello world"
    assert got["ETag"] == f'"{hashlib.md5(b"hello world").hexdigest()}"'
    assert got["Metadata"] == {"color": "blue"} and got["ContentType"] == "text/plain"
    part = s3.get_object(Bucket="objs", Key=key, Range="bytes=6-")
    assert part["Body"].read() == b"world" and part["ContentRange"] == "bytes 6-10/11"
    for i in range(5):
        s3.put_object(Bucket="objs", Key=f"many/{i}", Body=b"")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="objs", PaginationConfig={"PageSize": 2}
    )
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys == sorted([key] + [f"many/{i}" for i in range(5)], key=lambda k: k.encode())
    top = s3.list_objects_v2(Bucket="objs", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/", "many/"]
    v1 = s3.list_objects(Bucket="objs", Prefix="many/", MaxKeys=2)
    assert [o["Key"] for o in v1["Contents"]] == ["many/0", "many/1"] and v1["IsTruncated"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="objs", Key="missing")
    assert code_of(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="objs", Key=key, Range="bytes=100-")
    assert code_of(e.value) == "InvalidRange"


def test_upload_and_download_file_multipart(s3: Any, tmp_path: Any) -> None:
    s3.create_bucket(Bucket="files")
    data = os.urandom(40 << 20)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), "files", "big.bin")
    head = s3.head_object(Bucket="files", Key="big.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-5"')
    target = tmp_path / "out.bin"
    s3.download_file("files", "big.bin", str(target))
    assert target.read_bytes() == data


def test_conditional_and_checksummed_writes(s3: Any) -> None:
    s3.create_bucket(Bucket="cond")
    s3.put_object(Bucket="cond", Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="cond", Key="k", Body=b"two", IfNoneMatch="*")
    assert code_of(e.value) == "PreconditionFailed"
    put = s3.put_object(Bucket="cond", Key="c", Body=b"data", ChecksumAlgorithm="SHA256")
    expected = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    assert put["ChecksumSHA256"] == expected
    got = s3.get_object(Bucket="cond", Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"data" and got["ChecksumSHA256"] == expected
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="cond", Key="bad", Body=b"data", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
    assert code_of(e.value) == "BadDigest"


def test_presigned_urls_and_bad_signatures(s3: Any, server: Server) -> None:
    s3.create_bucket(Bucket="pre")
    s3.put_object(Bucket="pre", Key="k", Body=b"shared")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "pre", "Key": "k"}, ExpiresIn=60
    )
    assert urllib.request.urlopen(url).read() == b"shared"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    assert e.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.endpoint + "/pre/k")
    assert e.value.code == 403 and b"AccessDenied" in e.value.read()


def test_wrong_secret_is_refused(server: Server) -> None:
    bad = make_client(server.endpoint, secret_key="wrong-secret")
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert code_of(e.value) == "SignatureDoesNotMatch"


def test_delete_objects_batch(s3: Any) -> None:
    s3.create_bucket(Bucket="batch")
    for i in range(3):
        s3.put_object(Bucket="batch", Key=f"k{i}", Body=io.BytesIO(b"x"))
    result = s3.delete_objects(
        Bucket="batch", Delete={"Objects": [{"Key": f"k{i}"} for i in range(3)]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["k0", "k1", "k2"]
    assert s3.list_objects_v2(Bucket="batch")["KeyCount"] == 0


def test_versions_uploads_and_parts_listings(s3: Any) -> None:
    s3.create_bucket(Bucket="vers")
    s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="vers")["Status"] == "Enabled"
    v1 = s3.put_object(Bucket="vers", Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket="vers", Key="k", Body=b"two")["VersionId"]
    marker = s3.delete_object(Bucket="vers", Key="k")
    assert marker["DeleteMarker"]
    listed = s3.list_object_versions(Bucket="vers")
    assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]
    assert [m["IsLatest"] for m in listed["DeleteMarkers"]] == [True]
    assert s3.get_object(Bucket="vers", Key="k", VersionId=v1)["Body"].read() == b"one"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="vers", Key="k")
    assert code_of(e.value) == "NoSuchKey"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    paged = s3.get_paginator("list_object_versions").paginate(
        Bucket="vers", PaginationConfig={"PageSize": 1}
    )
    assert sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in paged) == 3

    up = s3.create_multipart_upload(Bucket="vers", Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket="vers", Key="mp", UploadId=up, PartNumber=1, Body=b"p1")["ETag"]
    uploads = s3.list_multipart_uploads(Bucket="vers")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp", up)]
    parts = s3.list_parts(Bucket="vers", Key="mp", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, etag, 2)]
    s3.abort_multipart_upload(Bucket="vers", Key="mp", UploadId=up)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket="vers", Key="mp", UploadId=up)
    assert code_of(e.value) == "NoSuchUpload"


def test_copy_and_tagging(s3: Any) -> None:
    s3.create_bucket(Bucket="copy")
    s3.put_object(
        Bucket="copy",
        Key="src",
        Body=b"0123456789",
        Metadata={"a": "1"},
        Tagging="team=blue&env=dev",
    )
    assert s3.get_object_tagging(Bucket="copy", Key="src")["TagSet"] == [  # sorted by key
        {"Key": "env", "Value": "dev"},
        {"Key": "team", "Value": "blue"},
    ]
    s3.copy_object(Bucket="copy", Key="dst", CopySource={"Bucket": "copy", "Key": "src"})
    got = s3.get_object(Bucket="copy", Key="dst")
    assert got["Body"].read() == b"0123456789" and got["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket="copy",
        Key="dst",
        CopySource="copy/src",
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
    )
    assert s3.head_object(Bucket="copy", Key="dst")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="copy", Key="src", CopySource="copy/src")
    assert code_of(e.value) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="copy", Key="x", CopySource="copy/src", CopySourceIfMatch='"nope"')
    assert code_of(e.value) == "PreconditionFailed"
    s3.put_object_tagging(
        Bucket="copy", Key="src", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
    )
    assert s3.get_object_tagging(Bucket="copy", Key="src")["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.delete_object_tagging(Bucket="copy", Key="src")
    assert s3.get_object_tagging(Bucket="copy", Key="src")["TagSet"] == []

    up = s3.create_multipart_upload(Bucket="copy", Key="parts")["UploadId"]
    big = os.urandom(6 << 20)
    s3.put_object(Bucket="copy", Key="big", Body=big)
    p1 = s3.upload_part_copy(
        Bucket="copy",
        Key="parts",
        UploadId=up,
        PartNumber=1,
        CopySource="copy/big",
        CopySourceRange=f"bytes=0-{(5 << 20) - 1}",
    )
    p2 = s3.upload_part_copy(
        Bucket="copy",
        Key="parts",
        UploadId=up,
        PartNumber=2,
        CopySource="copy/big",
        CopySourceRange=f"bytes={5 << 20}-{len(big) - 1}",
    )
    s3.complete_multipart_upload(
        Bucket="copy",
        Key="parts",
        UploadId=up,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
            ]
        },
    )
    assert s3.get_object(Bucket="copy", Key="parts")["Body"].read() == big


def test_payload_not_matching_its_signed_sha256_is_refused(s3: Any, server: Server) -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.integration.conftest import ACCESS_KEY, SECRET_KEY

    s3.create_bucket(Bucket="sha")
    url = f"{server.endpoint}/sha/k"
    request = AWSRequest("PUT", url, data=b"xyz")  # signed for b"xyz", sent with b"abc"
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        url, data=b"abc", method="PUT", headers=dict(request.headers.items())
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(prepared)
    assert e.value.code == 400 and b"XAmzContentSHA256Mismatch" in e.value.read()
    assert s3.list_objects_v2(Bucket="sha")["KeyCount"] == 0


def test_metrics_endpoint(s3: Any, server: Server) -> None:
    s3.create_bucket(Bucket="metrics")  # a bucket may be called that: signed requests are S3
    s3.put_object(Bucket="metrics", Key="k", Body=b"12345")
    assert s3.get_object(Bucket="metrics", Key="k")["Body"].read() == b"12345"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]] == ["k"]
    text = urllib.request.urlopen(server.endpoint + "/metrics").read().decode()
    assert 's3_requests_total{operation="PutObject",status="200"}' in text
    assert "s3_request_seconds_bucket" in text and "s3_bytes_in_total" in text
    assert "store_degraded_reads_total" in text and "s3_requests_in_flight" in text


def test_users_see_only_their_own_buckets(s3: Any, server: Server) -> None:
    import subprocess
    import sys

    bob_key = add_user(server, "bob")
    bob = make_client(server.endpoint, bob_key["access_key"], bob_key["secret_key"])
    s3.create_bucket(Bucket="roots")
    bob.create_bucket(Bucket="bobs")
    assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == ["bobs"]
    with pytest.raises(ClientError) as e:
        bob.put_object(Bucket="roots", Key="k", Body=b"x")
    assert code_of(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        bob.create_bucket(Bucket="roots")
    assert code_of(e.value) == "BucketAlreadyExists"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "store.cli",
            "user",
            "remove",
            "--access-key",
            bob_key["access_key"],
            *admin_args(server),
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ClientError) as e:
        bob.list_buckets()
    assert code_of(e.value) == "InvalidAccessKeyId"


def test_sigterm_drains_requests_in_progress(tmp_path: Any) -> None:
    import signal
    import socket
    import time

    from tests.integration.conftest import start_server

    server = start_server(tmp_path, [])
    from tests.integration.conftest import ACCESS_KEY, SECRET_KEY

    make_client(server.endpoint).create_bucket(Bucket="drain")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b"0123456789" * 1000
    signed = AWSRequest("PUT", f"{server.endpoint}/drain/k", data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
    host, port = server.endpoint.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        "PUT /drain/k HTTP/1.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items())
        + f"Host: {host}:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:5000])  # the request is in progress...
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)  # ...when the server is told to stop
    time.sleep(0.3)
    sock.sendall(body[5000:])
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower()
    sock.close()
    assert server.process.wait(10) == 0
    server.log.close()
    assert "drained" in (tmp_path / "server.log").read_text()


def test_bucket_policy_public_read(s3: Any, server: Server) -> None:
    import json

    s3.create_bucket(Bucket="public")
    s3.put_object(Bucket="public", Key="page.html", Body=b"<h1>hi</h1>")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.endpoint}/public/page.html")
    assert e.value.code == 403
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket="public")
    assert code_of(err.value) == "NoSuchBucketPolicy"
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::public/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket="public", Policy=json.dumps(doc))
    assert json.loads(s3.get_bucket_policy(Bucket="public")["Policy"]) == doc
    assert urllib.request.urlopen(f"{server.endpoint}/public/page.html").read() == b"<h1>hi</h1>"
    with pytest.raises(urllib.error.HTTPError) as e:  # read, not list, not write
        urllib.request.urlopen(f"{server.endpoint}/public")
    assert e.value.code == 403
    put = urllib.request.Request(f"{server.endpoint}/public/x", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(put)
    assert e.value.code == 403
    with pytest.raises(ClientError) as err:
        s3.put_bucket_policy(Bucket="public", Policy='{"Statement": "nope"}')
    assert code_of(err.value) == "MalformedPolicy"
    s3.delete_bucket_policy(Bucket="public")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.endpoint}/public/page.html")
    assert e.value.code == 403


def test_bucket_cors_and_preflight(s3: Any, server: Server) -> None:
    s3.create_bucket(Bucket="cors")
    s3.put_object(Bucket="cors", Key="k", Body=b"x")

    def options(origin: str, method: str, headers: str = "") -> tuple[int, dict[str, str]]:
        request = urllib.request.Request(
            f"{server.endpoint}/cors/k",
            method="OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                **({"Access-Control-Request-Headers": headers} if headers else {}),
            },
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, {}

    assert options("https://app.example", "GET")[0] == 403  # no CORS configuration yet
    s3.put_bucket_cors(
        Bucket="cors",
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": ["https://*.example"],
                    "AllowedMethods": ["GET", "PUT"],
                    "AllowedHeaders": ["content-type", "x-amz-*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )
    rules = s3.get_bucket_cors(Bucket="cors")["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["https://*.example"]
    status, headers = options("https://app.example", "PUT", "Content-Type, X-Amz-Date")
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert "PUT" in headers["access-control-allow-methods"]
    assert headers["access-control-max-age"] == "600"
    assert options("https://evil.test", "GET")[0] == 403
    assert options("https://app.example", "DELETE")[0] == 403
    got = s3.get_object(Bucket="cors", Key="k")  # no Origin: no CORS headers
    assert "access-control-allow-origin" not in got["ResponseMetadata"]["HTTPHeaders"]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "cors", "Key": "k"})
    request = urllib.request.Request(url, headers={"Origin": "https://app.example"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert response.headers["Access-Control-Expose-Headers"] == "ETag"
    s3.delete_bucket_cors(Bucket="cors")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket="cors")
    assert code_of(err.value) == "NoSuchCORSConfiguration"


def test_object_attributes_and_bucket_tagging(s3: Any) -> None:
    s3.create_bucket(Bucket="attrs")
    up = s3.create_multipart_upload(Bucket="attrs", Key="mp", ChecksumAlgorithm="SHA256")
    parts = []
    for number, body in enumerate([os.urandom(5 << 20), b"tail"], 1):
        r = s3.upload_part(
            Bucket="attrs",
            Key="mp",
            UploadId=up["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]}
        )
    s3.complete_multipart_upload(
        Bucket="attrs", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    got = s3.get_object_attributes(
        Bucket="attrs",
        Key="mp",
        ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"],
    )
    assert got["ObjectSize"] == (5 << 20) + 4 and got["ETag"].endswith("-2")
    assert got["Checksum"]["ChecksumSHA256"].endswith("-2")
    assert got["ObjectParts"]["TotalPartsCount"] == 2
    assert [p["Size"] for p in got["ObjectParts"]["Parts"]] == [5 << 20, 4]

    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="attrs")
    assert code_of(err.value) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket="attrs", Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    assert s3.get_bucket_tagging(Bucket="attrs")["TagSet"] == [{"Key": "team", "Value": "a"}]
    s3.delete_bucket_tagging(Bucket="attrs")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="attrs")
    assert code_of(err.value) == "NoSuchTagSet"


def _form(fields: dict[str, str], file_data: bytes, filename: str = "up.txt") -> tuple[bytes, str]:
    boundary = "----storeboundary7MA4YWxk"
    out = b""
    for name, value in fields.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    out += file_data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_browser_post_uploads(s3: Any, server: Server) -> None:
    s3.create_bucket(Bucket="post")
    post = s3.generate_presigned_post(
        "post",
        "uploads/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"success_action_status": "201"},
            ["content-length-range", 1, 1 << 20],
        ],
        ExpiresIn=300,
    )

    def send(fields: dict[str, str], data: bytes) -> tuple[int, bytes]:
        body, content_type = _form(fields, data)
        request = urllib.request.Request(
            post["url"], data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    payload = os.urandom(300_000)
    status, body = send(post["fields"], payload)
    assert status == 201 and b"<Key>uploads/up.txt</Key>" in body
    assert s3.get_object(Bucket="post", Key="uploads/up.txt")["Body"].read() == payload
    status, body = send({**post["fields"], "key": "elsewhere/x"}, b"x")
    assert status == 403 and b"AccessDenied" in body
    status, body = send(post["fields"], os.urandom(2 << 20))  # over content-length-range
    assert status == 400 and b"EntityTooLarge" in body
    status, body = send({**post["fields"], "x-amz-signature": "0" * 64}, b"x")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    status, body = send({**post["fields"], "x-amz-meta-extra": "1"}, b"x")
    assert status == 403 and b"extra input field" in body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="post")["Contents"]] == ["uploads/up.txt"]
