"""The endpoint table, walked whole: every endpoint is reachable, and nothing falls through.

A request that names a sub-resource can only reach an endpoint of that sub-resource, or be
refused; in particular it can never reach one of the data operations below (which write or return
object data, create or delete buckets, or list).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.gateway.s3 import IMPLEMENTED as OPERATIONS
from store.s3 import endpoints
from store.s3.endpoints import BUCKET, ENDPOINTS, OBJECT, SERVICE, SUBRESOURCES, Endpoint
from store.s3.errors import S3Error
from store.s3.router import route

DATA_OPERATIONS = {
    "PutObject", "CopyObject", "GetObject", "HeadObject", "DeleteObject", "CreateBucket",
    "DeleteBucket", "HeadBucket", "ListObjects", "ListObjectsV2", "ListBuckets", "PostObject",
    "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "DeleteObjects",
}  # fmt: skip
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS")
UNIMPLEMENTED = sorted({e.operation for e in ENDPOINTS} - set(OPERATIONS))
UNIMPLEMENTED_SUBRESOURCES = {e.subresource for e in ENDPOINTS if e.operation in UNIMPLEMENTED}


def _request(e: Endpoint) -> tuple[str, dict[str, str]]:
    """A target and headers that name endpoint ``e``."""
    path = {SERVICE: "/", BUCKET: "/bkt", OBJECT: "/bkt/some/key"}[e.target]
    query: dict[str, str] = {}
    if e.subresource:
        query[e.subresource] = "u1" if e.subresource == "uploadId" else ""
    if e.when == endpoints.V2:
        query["list-type"] = "2"
    if e.when == endpoints.WITH_ID:
        query["id"] = "conf1"
    if e.operation in ("UploadPart", "UploadPartCopy"):
        query["partNumber"] = "3"
    headers = {"x-amz-copy-source": "/src/k"} if e.when == endpoints.COPY else {}
    target = path + ("?" + "&".join(f"{k}={v}" if v else k for k, v in query.items()))
    return (target if query else path), headers


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: f"{e.method}-{e.operation}")
def test_every_endpoint_is_reachable_both_styles(e: Endpoint) -> None:
    target, headers = _request(e)
    assert route(e.method, target, "127.0.0.1", headers).operation == e.operation
    if e.target != SERVICE:
        vhost = target.replace("/bkt", "", 1) or "/"
        if vhost.startswith("?"):
            vhost = "/" + vhost
        r = route(e.method, vhost, "bkt.s3.example", headers, ["s3.example"])
        assert (r.operation, r.bucket) == (e.operation, "bkt")


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: f"{e.method}-{e.operation}")
def test_every_parameter_is_accepted_and_a_foreign_one_refused(e: Endpoint) -> None:
    target, headers = _request(e)
    sep = "&" if "?" in target else "?"
    for p in e.params:
        assert route(e.method, f"{target}{sep}{p}=1", "h", headers).operation == e.operation
    foreign = next(p for p in sorted(endpoints.PARAMETERS) if p not in e.params)
    with pytest.raises(S3Error) as err:
        route(e.method, f"{target}{sep}{foreign}=1", "h", headers)
    assert (err.value.code.code, err.value.code.status) == ("InvalidArgument", 400)
    unknown = f"{target}{sep}not-an-s3-parameter=1"
    if e.mutates:  # a write never guesses at a parameter it does not know
        with pytest.raises(S3Error) as err:
            route(e.method, unknown, "h", headers)
        assert (err.value.code.code, err.value.code.status) == ("NotImplemented", 501)
    else:  # a read ignores it, as S3 does
        assert route(e.method, unknown, "h", headers).operation == e.operation
    # presigned-URL parameters and the SDKs' operation hint go with any operation
    presigned = f"{target}{sep}X-Amz-Expires=60&x-id={e.operation}"
    assert route(e.method, presigned, "h", headers).operation == e.operation
    with pytest.raises(S3Error):
        route(e.method, f"{target}{sep}x-id=SomethingElse", "h", headers)


def test_operations_and_table_agree() -> None:
    names = {e.operation for e in ENDPOINTS}
    assert set(OPERATIONS) <= names, set(OPERATIONS) - names
    # the sub-resources the AWS API reference defines, each in the table
    aws = """acl accelerate analytics attributes cors delete encryption intelligent-tiering
        inventory legal-hold lifecycle location logging metrics notification object-lock
        ownershipControls policy policyStatus publicAccessBlock replication requestPayment
        restore retention select tagging torrent uploadId uploads versioning versions website"""
    for sub in aws.split():
        assert sub in SUBRESOURCES, sub
    keys = [(e.target, e.method, e.subresource, e.when) for e in ENDPOINTS]
    assert len(keys) == len(set(keys)), "two endpoints answer the same request"


@pytest.mark.parametrize("sub", sorted(SUBRESOURCES))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ["/", "/bkt", "/bkt/k"])
def test_a_subresource_reaches_only_its_own_endpoints(sub: str, method: str, path: str) -> None:
    for headers in ({}, {"x-amz-copy-source": "/a/b"}):
        try:
            r = route(method, f"{path}?{sub}", "h", headers)
        except S3Error as e:
            assert e.code.status in (400, 405, 501)
            continue
        owners = {e.operation for e in ENDPOINTS if e.subresource == sub}
        assert r.operation in owners


@given(
    method=st.sampled_from(METHODS),
    path=st.sampled_from(["/", "/bkt", "/bkt/k", "/bkt/a/b/"]),
    sub=st.sampled_from(sorted(SUBRESOURCES)),
    extra=st.dictionaries(
        st.sampled_from(sorted(endpoints.PARAMETERS | SUBRESOURCES | {"x-id", "foo"})),
        st.text(max_size=8),
        max_size=4,
    ),
    copy=st.booleans(),
)
def test_no_subresource_request_reaches_a_data_operation(
    method: str, path: str, sub: str, extra: dict[str, str], copy: bool
) -> None:
    query = {sub: "", **extra}
    target = path + "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    headers = {"x-amz-copy-source": "/a/b"} if copy else {}
    try:
        r = route(method, target, "h", headers)
    except S3Error as e:
        assert e.code.status in (400, 405, 501)
        return
    chosen = [e for e in ENDPOINTS if e.operation == r.operation and e.subresource]
    assert any(e.subresource in query for e in chosen), (target, r.operation)
    if sub in UNIMPLEMENTED_SUBRESOURCES:
        assert r.operation not in DATA_OPERATIONS


def test_two_subresources_are_refused() -> None:
    for target in ("/bkt/k?acl&tagging", "/bkt?versioning&policy", "/bkt/k?uploads&uploadId=x"):
        with pytest.raises(S3Error) as e:
            route("PUT", target)
        assert e.value.code.code == "InvalidRequest"


def test_misplaced_subresources_are_refused() -> None:
    for method, target, status in [
        ("PUT", "/bkt/k?versioning", 501),
        ("DELETE", "/bkt?uploads", 405),
        ("POST", "/bkt?acl", 405),
        ("PUT", "/bkt/k?restore", 405),
        ("GET", "/?acl", 501),
    ]:
        with pytest.raises(S3Error) as e:
            route(method, target)
        assert e.value.code.status == status, (method, target)


def test_list_type_and_configuration_ids() -> None:
    with pytest.raises(S3Error):
        route("GET", "/bkt?list-type=1")
    assert route("GET", "/bkt?metrics").operation == "ListBucketMetricsConfigurations"
    assert route("GET", "/bkt?metrics&id=a").operation == "GetBucketMetricsConfiguration"
    with pytest.raises(S3Error):
        route("GET", "/bkt?inventory&id=")


@pytest.mark.parametrize("operation", UNIMPLEMENTED)
def test_unimplemented_endpoints_are_known(operation: str) -> None:
    """Each endpoint the gateway lacks still routes (so the gateway answers 501 for it, after
    authentication), and is never one of the data operations."""
    assert operation not in DATA_OPERATIONS
