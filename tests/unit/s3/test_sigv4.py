"""SigV4 against the worked examples of AWS's documentation, and against botocore's signer."""

from __future__ import annotations

import hashlib

import pytest

from store.s3 import sigv4
from store.s3.errors import S3Error
from store.s3.sigv4 import SignedRequest

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = 1369353600.0  # 2013-05-24T00:00:00Z, the examples' date


def lookup(access_key: str) -> str | None:
    return SK if access_key == AK else None


def example_get(signature: str) -> SignedRequest:
    """AWS docs, "Example: GET Object" (Authorization header)."""
    return SignedRequest(
        "GET",
        "/test.txt",
        "",
        [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            (
                "authorization",
                f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                f"Signature={signature}",
            ),
        ],
    )


GOOD = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_aws_example_get_object() -> None:
    auth = sigv4.verify(example_get(GOOD), lookup, now=NOW)
    assert auth.access_key == AK and auth.payload == sigv4.EMPTY_SHA256


def test_wrong_secret_signature_or_key() -> None:
    with pytest.raises(S3Error) as e:
        sigv4.verify(example_get(GOOD[:-1] + "0"), lookup, now=NOW)
    assert e.value.code.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as e:
        sigv4.verify(example_get(GOOD), lambda ak: "other", now=NOW)
    assert e.value.code.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as e:
        sigv4.verify(example_get(GOOD), lambda ak: None, now=NOW)
    assert e.value.code.code == "InvalidAccessKeyId"


def test_clock_skew() -> None:
    with pytest.raises(S3Error) as e:
        sigv4.verify(example_get(GOOD), lookup, now=NOW + 16 * 60)
    assert e.value.code.code == "RequestTimeTooSkewed"


def test_aws_example_presigned_url() -> None:
    """AWS docs, "Example: A presigned URL" (GET /test.txt, expires in 86400 s)."""
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={AK}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    req = SignedRequest("GET", "/test.txt", query, [("host", "examplebucket.s3.amazonaws.com")])
    assert sigv4.verify(req, lookup, now=NOW + 3600).presigned
    with pytest.raises(S3Error) as e:
        sigv4.verify(req, lookup, now=NOW + 86401)
    assert e.value.code.code == "AccessDenied"


def test_other_schemes_are_refused_clearly() -> None:
    for header in ("AWS AKID:sig", "AWS4-ECDSA-P256-SHA256 Credential=x"):
        req = SignedRequest("GET", "/", "", [("host", "h"), ("authorization", header)])
        with pytest.raises(S3Error) as e:
            sigv4.verify(req, lookup, now=NOW)
        assert e.value.code.code == "InvalidRequest"
    anonymous = SignedRequest("GET", "/", "", [("host", "h")])
    with pytest.raises(S3Error) as e:
        sigv4.verify(anonymous, lookup, now=NOW)
    assert e.value.code.code == "AccessDenied"


def test_matches_botocore_signer_with_awkward_keys_and_query() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "http://127.0.0.1:9000/bkt/a%20b/%E6%97%A5%2B~x.txt?prefix=a%2Fb&max-keys=3&uploads"
    request = AWSRequest("PUT", url, data=b"hello", headers={"Content-Type": "text/plain"})
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(request)
    path, _, query = request.url.partition("//")[2].partition("/")[2].partition("?")
    headers = [
        (k.lower(), v if isinstance(v, str) else v.decode()) for k, v in request.headers.items()
    ]
    headers.append(("host", "127.0.0.1:9000"))
    req = SignedRequest("PUT", "/" + path, query, headers)
    auth = sigv4.verify(req, lookup)
    assert auth.payload == hashlib.sha256(b"hello").hexdigest()


def test_aws_example_streaming_put_chunk_signatures() -> None:
    """AWS docs, "Example calculations" for STREAMING-AWS4-HMAC-SHA256-PAYLOAD: the seed
    signature, then 64 KiB of 'a', 1 KiB of 'a' and the final empty chunk."""
    names = (
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class"
    )
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    req = SignedRequest(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
            ("x-amz-content-sha256", sigv4.STREAMING_SIGNED),
            (
                "authorization",
                f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
                f"SignedHeaders={names},Signature={seed}",
            ),
        ],
    )
    auth = sigv4.verify(req, lookup, now=NOW)
    chain = sigv4.ChunkSigner(auth)
    chain.verify_chunk(
        b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    )
    chain.verify_chunk(
        b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    )
    chain.verify_chunk(b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
    with pytest.raises(S3Error):  # a replayed or reordered chunk breaks the chain
        chain.verify_chunk(b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
