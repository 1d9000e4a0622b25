"""Fuzz SigV4 verification (``store.s3.sigv4``): the Authorization header and presigned query
parsing, the date formats, the canonical request.

Input: an HTTP/1.1 request head, signed (the seeds are boto3's, with ``ACCESS_KEY`` and
``SECRET_KEY`` at ``NOW``) or not. Properties: ``verify`` returns an ``Auth`` for a known key or
raises the protocol's own error, never one that maps to 500; the same request with its auth
headers dropped and re-signed by ``sigv4.authorization`` verifies (the signer and the verifier
agree on every canonical form); ``canonical_query`` is idempotent on its own output.
"""

from __future__ import annotations

import re
import sys

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error, parse_head

    from store.s3 import sigv4
    from store.s3.errors import S3Error

ACCESS_KEY = "AKIDFUZZEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZKEY"
REGION = "us-east-1"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z, when the seeds were signed
_AUTH_HEADERS = ("authorization", "x-amz-date", "x-amz-content-sha256")
_TOKEN = re.compile(r"[a-z0-9-]+")


def _lookup(access_key: str) -> str | None:
    return SECRET_KEY if access_key == ACCESS_KEY else None


def TestOneInput(data: bytes) -> None:
    method, target, headers, _ = parse_head(data)
    path, _, query = target.partition("?")
    req = sigv4.SignedRequest(method, path, query, headers)
    try:
        auth = sigv4.verify(req, _lookup, now=NOW, region=REGION if data[:1] == b"P" else None)
    except Exception as e:  # the property: what escapes
        check_s3_error(e)
    else:
        assert auth.access_key == ACCESS_KEY
    canonical = sigv4.canonical_query(query)
    assert sigv4.canonical_query(canonical) == canonical, (query, canonical)
    _check_round_trip(method, path, query, headers)


def _check_round_trip(method: str, path: str, query: str, headers: list[tuple[str, str]]) -> None:
    kept = [(n, v) for n, v in headers if _TOKEN.fullmatch(n) and n not in _AUTH_HEADERS]
    if not any(n == "host" for n, _ in kept):
        kept.append(("host", "localhost:9000"))
    signed = sigv4.authorization(
        method,
        path,
        query,
        kept,
        sigv4.UNSIGNED,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        now=NOW,
    )
    req = sigv4.SignedRequest(method, path, query, [*[(n, v.strip()) for n, v in kept], *signed])
    try:
        sigv4.verify(req, _lookup, now=NOW, region=REGION)
    except S3Error as e:
        sigv2 = "Signature=" in query and "AWSAccessKeyId=" in query
        if not (sigv2 and "X-Amz-Signature=" not in query and e.code.code == "InvalidRequest"):
            raise AssertionError(f"a request signed by authorization() fails: {e}") from e


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
