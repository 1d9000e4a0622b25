"""Bucket policies: parsing refuses what it cannot honour; evaluation: Deny wins, default deny."""

from __future__ import annotations

import json

import pytest

from store.s3 import policy
from store.s3.errors import S3Error

PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": ["arn:aws:s3:::pub/*"],
        }
    ],
}


def doc(**statement: object) -> bytes:
    return json.dumps({"Statement": [statement]}).encode()


def test_public_read() -> None:
    st = policy.parse(json.dumps(PUBLIC_READ).encode(), "pub")
    assert policy.allows(st, "", "GetObject", "pub", "a/b")
    assert policy.allows(st, "", "HeadObject", "pub", "a/b")
    assert not policy.allows(st, "", "PutObject", "pub", "a/b")
    assert not policy.allows(st, "", "ListObjectsV2", "pub", "")


def test_user_grants_wildcards_and_deny() -> None:
    raw = json.dumps(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["arn:aws:iam::123:user/bob", "carol"]},
                    "Action": "s3:*",
                    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                },
                {
                    "Effect": "Deny",
                    "Principal": {"AWS": "carol"},
                    "Action": "s3:Delete*",
                    "Resource": "arn:aws:s3:::b/keep/*",
                },
            ]
        }
    ).encode()
    st = policy.parse(raw, "b")
    assert policy.allows(st, "bob", "ListObjectsV2", "b", "")
    assert policy.allows(st, "carol", "DeleteObject", "b", "other")
    assert not policy.allows(st, "carol", "DeleteObject", "b", "keep/x")
    assert not policy.allows(st, "", "GetObject", "b", "x")
    assert not policy.allows(st, "dave", "GetObject", "b", "x")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        doc(Effect="Maybe", Principal="*", Action="s3:GetObject", Resource="arn:aws:s3:::b/*"),
        doc(Effect="Allow", Principal="*", Action="s3:GetObject", Resource="arn:aws:s3:::other/*"),
        doc(Effect="Allow", Principal="*", Action="iam:PassRole", Resource="arn:aws:s3:::b/*"),
        doc(
            Effect="Allow",
            Principal="*",
            Action="s3:GetObject",
            Resource="arn:aws:s3:::b/*",
            Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        ),
    ],
)
def test_malformed_or_unsupported(raw: bytes) -> None:
    with pytest.raises(S3Error) as e:
        policy.parse(raw, "b")
    assert e.value.code.code == "MalformedPolicy"
