"""Fuzz bucket policy documents (``store.s3.policy``, with ``store.s3.conditions`` and
``store.s3.variables`` behind it).

Input: a PutBucketPolicy body (JSON) for the bucket ``BUCKET``. Properties: ``parse`` returns
statements or raises the protocol's own MalformedPolicy, never an error that maps to 500; what
parses can be evaluated for a few requests (anonymous and signed, with and without request
context) without raising, and ``is_public`` answers.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error

    from store.s3 import policy

BUCKET = "photos"
CONTEXTS = (
    {},
    {
        "aws:username": "alice",
        "aws:SourceIp": "192.0.2.7",
        "aws:SecureTransport": "true",
        "aws:CurrentTime": "2023-11-14T22:13:20Z",
        "aws:EpochTime": "1700000000",
        "s3:prefix": "home/alice/",
        "s3:max-keys": "100",
        "s3:ExistingObjectTag/team": "blue",
        "aws:Referer": "https://example.com/page",
    },
)
REQUESTS = (
    ("", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/home/alice/a.txt"),
    ("alice", "s3:PutObject", f"arn:aws:s3:::{BUCKET}/home/alice/b.txt"),
    ("bob", "s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    ("alice", "s3:DeleteObjectVersion", f"arn:aws:s3:::{BUCKET}/x"),
)


def TestOneInput(data: bytes) -> None:
    try:
        statements = policy.parse(data, BUCKET)
    except Exception as e:  # the property: what escapes
        check_s3_error(e)
        return
    policy.is_public(statements)
    for context in CONTEXTS:
        for user, action, resource in REQUESTS:
            verdict = policy.evaluate(statements, user, action, resource, context)
            assert verdict in (None, policy.ALLOW, policy.DENY), verdict
    policy.allows(statements, "alice", "GetObject", BUCKET, "k")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
