"""Routing: every operation from (method, target, host, headers), both addressing styles."""

from __future__ import annotations

import pytest

from store.s3.errors import S3Error
from store.s3.router import route

CASES = [
    ("GET", "/", {}, "ListBuckets", "", ""),
    ("PUT", "/bkt", {}, "CreateBucket", "bkt", ""),
    ("PUT", "/bkt/", {}, "CreateBucket", "bkt", ""),
    ("HEAD", "/bkt", {}, "HeadBucket", "bkt", ""),
    ("DELETE", "/bkt", {}, "DeleteBucket", "bkt", ""),
    ("GET", "/bkt", {}, "ListObjects", "bkt", ""),
    ("GET", "/bkt?list-type=2&prefix=a", {}, "ListObjectsV2", "bkt", ""),
    ("GET", "/bkt?versions", {}, "ListObjectVersions", "bkt", ""),
    ("GET", "/bkt?uploads", {}, "ListMultipartUploads", "bkt", ""),
    ("GET", "/bkt?location", {}, "GetBucketLocation", "bkt", ""),
    ("GET", "/bkt?versioning", {}, "GetBucketVersioning", "bkt", ""),
    ("PUT", "/bkt?versioning", {}, "PutBucketVersioning", "bkt", ""),
    ("PUT", "/bkt?cors", {}, "PutBucketCors", "bkt", ""),
    ("DELETE", "/bkt?policy", {}, "DeleteBucketPolicy", "bkt", ""),
    ("GET", "/bkt?tagging", {}, "GetBucketTagging", "bkt", ""),
    ("POST", "/bkt?delete", {}, "DeleteObjects", "bkt", ""),
    ("POST", "/bkt", {}, "PostObject", "bkt", ""),
    ("OPTIONS", "/bkt/k", {}, "PreflightRequest", "bkt", "k"),
    ("PUT", "/bkt/a/b.txt", {}, "PutObject", "bkt", "a/b.txt"),
    ("PUT", "/bkt/dst", {"x-amz-copy-source": "/bkt/src"}, "CopyObject", "bkt", "dst"),
    ("GET", "/bkt/k", {}, "GetObject", "bkt", "k"),
    ("HEAD", "/bkt/k", {}, "HeadObject", "bkt", "k"),
    ("DELETE", "/bkt/k", {}, "DeleteObject", "bkt", "k"),
    ("POST", "/bkt/k?uploads", {}, "CreateMultipartUpload", "bkt", "k"),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", {}, "UploadPart", "bkt", "k"),
    (
        "PUT",
        "/bkt/k?partNumber=1&uploadId=u",
        {"x-amz-copy-source": "/a/b"},
        "UploadPartCopy",
        "bkt",
        "k",
    ),
    ("POST", "/bkt/k?uploadId=u", {}, "CompleteMultipartUpload", "bkt", "k"),
    ("DELETE", "/bkt/k?uploadId=u", {}, "AbortMultipartUpload", "bkt", "k"),
    ("GET", "/bkt/k?uploadId=u", {}, "ListParts", "bkt", "k"),
    ("PUT", "/bkt/k?tagging", {}, "PutObjectTagging", "bkt", "k"),
    ("GET", "/bkt/k?attributes", {}, "GetObjectAttributes", "bkt", "k"),
]


@pytest.mark.parametrize(("method", "target", "headers", "op", "bucket", "key"), CASES)
def test_path_style(
    method: str, target: str, headers: dict[str, str], op: str, bucket: str, key: str
) -> None:
    r = route(method, target, "127.0.0.1:9000", headers, ["s3.local"])
    assert (r.operation, r.bucket, r.key) == (op, bucket, key)


def test_virtual_hosted_style_and_ip_fallback() -> None:
    r = route("GET", "/a%20b/c%2Bd+e", "bkt.s3.local:9000", {}, ["s3.local"])
    assert (r.operation, r.bucket, r.key) == ("GetObject", "bkt", "a b/c+d+e")
    assert route("GET", "/", "bkt.s3.local", {}, ["s3.local"]).operation == "ListObjects"
    assert route("GET", "/", "s3.local", {}, ["s3.local"]).operation == "ListBuckets"
    r = route("GET", "/bkt/k", "[::1]:9000", {}, ["s3.local"])
    assert (r.bucket, r.key) == ("bkt", "k")


def test_keys_are_kept_exactly() -> None:
    assert route("GET", "/bkt/a//b/").key == "a//b/"
    assert route("GET", "/bkt/%E6%97%A5%E6%9C%AC").key == "日本"
    assert route("GET", "/bkt/..%2F..%2Fetc").key == "../../etc"  # a key, never a path


def test_bad_targets() -> None:
    for target, code in [
        ("/bkt/%FF", "InvalidURI"),
        ("bkt", "InvalidURI"),
        ("/" + "a" * 9000, "RequestURITooLong"),
    ]:
        with pytest.raises(S3Error) as e:
            route("GET", target)
        assert e.value.code.code == code
    with pytest.raises(S3Error) as e:
        route("PATCH", "/bkt/k")
    assert e.value.code.status == 405
