"""Server-side encryption through boto3 and the aws CLI: SSE-C and SSE-S3 round trips, ranges,
copies and multipart; wrong and missing keys refused; bucket default encryption; SSE-KMS refused;
and no plaintext on any drive."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import Server, drive_dirs, metadata_dirs
from tests.integration.test_acl import code_of
from tests.integration.test_clients import BIN, aws_env, run

KEY = os.urandom(32)
OTHER = os.urandom(32)
MARKER = b"PLAINTEXT-MARKER-7f3a9c"  # never to be found on a drive


def sse_c(key: bytes = KEY, prefix: str = "SSECustomer") -> dict[str, str]:
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}  # type: ignore[dict-item]


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"sse{time.monotonic_ns() % 10**10}"
    s3.create_bucket(Bucket=name)
    return name


def drives_contain(server: Server, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere the service keeps bytes: its drives' files and its
    metadata's (SQLite's file, or every etcd member's data directory for a cluster)."""
    places = drive_dirs(server) + metadata_dirs(server)
    assert places, "nowhere to look"
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        if any(needle in f.read_bytes() for f in files):
            return True
    return False


def test_sse_c_round_trip_ranges_and_key_checks(server: Server, s3: Any, bucket: str) -> None:
    data = MARKER * 40_000 + os.urandom(12345)  # ~1 MiB: several segments and stripes
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **sse_c())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["ETag"].strip('"') != hashlib.md5(data).hexdigest()  # not the plaintext's MD5
    got = s3.get_object(Bucket=bucket, Key="c", **sse_c())
    assert got["Body"].read() == data and got["SSECustomerAlgorithm"] == "AES256"
    for first, last in [(0, 0), (65535, 65536), (100_000, 500_000), (len(data) - 7, len(data) - 1)]:
        ranged = s3.get_object(Bucket=bucket, Key="c", Range=f"bytes={first}-{last}", **sse_c())
        assert ranged["Body"].read() == data[first : last + 1]
    assert s3.head_object(Bucket=bucket, Key="c", **sse_c())["ContentLength"] == len(data)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert code_of(e.value) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **sse_c(OTHER))
    assert code_of(e.value) == "AccessDenied"
    # a key whose MD5 does not match, and a key of the wrong size
    with pytest.raises(ClientError) as e:
        s3.put_object(
            Bucket=bucket,
            Key="bad",
            Body=b"x",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=base64.b64encode(KEY).decode(),
            SSECustomerKeyMD5=base64.b64encode(hashlib.md5(OTHER).digest()).decode(),
        )
    assert code_of(e.value) == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", **sse_c(b"short"))
    # SSE-C headers on an object stored in the clear (which the drives show: the grep works)
    control = b"CONTROL-MARKER-" + os.urandom(8).hex().encode()
    s3.put_object(Bucket=bucket, Key="plain", Body=control * 10_000)
    assert drives_contain(server, control)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **sse_c())
    assert code_of(e.value) == "InvalidRequest"
    assert not drives_contain(server, MARKER)


def test_sse_s3_default_encryption_and_kms(server: Server, s3: Any, bucket: str) -> None:
    data = MARKER * 5000
    put = s3.put_object(Bucket=bucket, Key="s", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()  # SSE-S3 keeps the MD5
    got = s3.get_object(Bucket=bucket, Key="s")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="s")["ServerSideEncryption"] == "AES256"
    small = s3.put_object(Bucket=bucket, Key="tiny", Body=MARKER, ServerSideEncryption="AES256")
    assert small["ServerSideEncryption"] == "AES256"  # inline in the metadata, sealed too
    assert s3.get_object(Bucket=bucket, Key="tiny")["Body"].read() == MARKER
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code_of(e.value) == "ServerSideEncryptionConfigurationNotFoundError"
    rules = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=rules)
    got_rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got_rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    put = s3.put_object(Bucket=bucket, Key="by-default", Body=MARKER * 3)
    assert put["ServerSideEncryption"] == "AES256"
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="after", Body=b"x")
    for bad in ({"ServerSideEncryption": "aws:kms"}, {"ServerSideEncryption": "aws:kms:dsse"}):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="kms", Body=b"x", **bad)
        assert code_of(e.value) == "NotImplemented"
    kms = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=kms)
    assert code_of(e.value) == "NotImplemented"
    with pytest.raises(ClientError) as e:
        s3.put_object(
            Bucket=bucket, Key="both", Body=b"x", ServerSideEncryption="AES256", **sse_c()
        )
    assert code_of(e.value) == "InvalidArgument"
    assert not drives_contain(server, MARKER)
    assert not drives_contain(server, current_master_key(server))  # in etcd too: wrapped


def current_master_key(server: Server) -> bytes:
    """The SSE-S3 master key new objects are wrapped by: the data directory's file (mode 0600),
    or on a cluster the one in etcd, opened with the cluster secret."""
    keyfile = server.data / "sse-keys.json"
    if not server.meta:
        assert keyfile.stat().st_mode & 0o777 == 0o600
        doc = json.loads(keyfile.read_text())
        return base64.b64decode(doc["keys"][doc["current"]])
    import trio

    from store.auth.master_keys import ensure_shared_master_keys
    from store.cluster_drives import load_secret
    from store.meta.etcd import open_etcd_kv

    assert not keyfile.exists()  # the cluster's keys, not a file of the gateway's

    async def shared() -> bytes:
        secret = load_secret(server.data.parent / "cluster.secret")
        async with open_etcd_kv(server.meta) as kv:
            keys = await ensure_shared_master_keys(kv, secret, server.data, env={})
        return keys.keys[keys.current]

    return trio.run(shared)


def test_copies_between_keys_and_modes(s3: Any, bucket: str) -> None:
    data = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, **sse_c())
    with pytest.raises(ClientError):  # the source key is needed
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        **sse_c(KEY, "CopySourceSSECustomer"),
        **sse_c(OTHER),
    )
    assert s3.get_object(Bucket=bucket, Key="dst", **sse_c(OTHER))["Body"].read() == data
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="dst", **sse_c())
    s3.copy_object(
        Bucket=bucket,
        Key="managed",
        CopySource={"Bucket": bucket, "Key": "dst"},
        ServerSideEncryption="AES256",
        **sse_c(OTHER, "CopySourceSSECustomer"),
    )
    got = s3.get_object(Bucket=bucket, Key="managed")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    s3.copy_object(Bucket=bucket, Key="clear", CopySource={"Bucket": bucket, "Key": "managed"})
    clear = s3.get_object(Bucket=bucket, Key="clear")
    assert clear["Body"].read() == data and "ServerSideEncryption" not in clear


def test_multipart_encrypted(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 << 20), os.urandom(123_457)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c())
    assert upload["SSECustomerAlgorithm"] == "AES256"
    uid = upload["UploadId"]
    with pytest.raises(ClientError):  # every part needs the key
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts[0])
    with pytest.raises(ClientError) as e:  # and the same key
        s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts[0], **sse_c(OTHER)
        )
    assert code_of(e.value) == "AccessDenied"
    done = []
    for number, body in zip((2, 7), parts, strict=True):  # not contiguous on purpose
        r = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number, Body=body, **sse_c()
        )
        done.append({"PartNumber": number, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done}
    )
    whole = b"".join(parts)
    assert s3.get_object(Bucket=bucket, Key="mp", **sse_c())["Body"].read() == whole
    edge = (5 << 20) - 10
    ranged = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={edge}-{edge + 99}", **sse_c())
    assert ranged["Body"].read() == whole[edge : edge + 100]
    part2 = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse_c())["Body"].read()
    assert part2 == parts[1]
    # SSE-S3 multipart with a part copied from an SSE-C object
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp2", ServerSideEncryption="AES256")
    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="mp2",
        UploadId=up["UploadId"],
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "mp"},
        CopySourceRange="bytes=0-5242879",
        **sse_c(KEY, "CopySourceSSECustomer"),
    )
    last = s3.upload_part(
        Bucket=bucket, Key="mp2", UploadId=up["UploadId"], PartNumber=2, Body=b"tail"
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp2",
        UploadId=up["UploadId"],
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": last["ETag"]},
            ]
        },
    )
    got = s3.get_object(Bucket=bucket, Key="mp2")
    assert got["Body"].read() == parts[0] + b"tail" and got["ServerSideEncryption"] == "AES256"


def test_aws_cli_sse_c_and_ranged_download(server: Server, bucket: str, tmp_path: Path) -> None:
    env = aws_env(server, tmp_path)
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(KEY)
    src = tmp_path / "f.bin"
    data = MARKER * 100_000
    src.write_bytes(data)
    aws = [str(BIN / "aws"), "--endpoint-url", server.endpoint, "s3"]
    target = f"s3://{bucket}/cli.bin"
    run(
        [*aws, "cp", str(src), target, "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"],
        env,
    )
    back = tmp_path / "back.bin"
    run(
        [*aws, "cp", target, str(back), "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"],
        env,
    )
    assert back.read_bytes() == data
    api = [str(BIN / "aws"), "--endpoint-url", server.endpoint, "s3api"]
    part = tmp_path / "part.bin"
    run([*api, "get-object", "--bucket", bucket, "--key", "cli.bin", "--range", "bytes=10-99",
         "--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{key_file}",
         str(part)], env)  # fmt: skip
    assert part.read_bytes() == data[10:100]
    assert not drives_contain(server, MARKER)
