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
            Condition={"IpAddressish": {"aws:SourceIp": "10.0.0.0/8"}},
        ),
        doc(Effect="Allow", Principal="*", Action="s3:NoSuchThing", Resource="arn:aws:s3:::b/*"),
        doc(Effect="Allow", Principal="*", NotPrincipal="*", Action="s3:GetObject",
            Resource="arn:aws:s3:::b/*"),
        doc(Effect="Allow", Principal="*", Resource="arn:aws:s3:::b/*"),
        doc(Effect="Allow", Principal="*", Action="s3:GetObject", Resource="arn:aws:s3:::b/*",
            Extra="x"),
        doc(Effect="Allow", Principal={"Nobody": "x"}, Action="s3:GetObject",
            Resource="arn:aws:s3:::b/*"),
    ],
)  # fmt: skip
def test_malformed_or_unsupported(raw: bytes) -> None:
    with pytest.raises(S3Error) as e:
        policy.parse(raw, "b")
    assert e.value.code.code == "MalformedPolicy"


def _eval(statement: dict[str, object], user: str, action: str, resource: str,
          context: dict[str, object] | None = None) -> str | None:  # fmt: skip
    st = policy.parse(doc(**statement), "b")
    return policy.evaluate(st, user, action, resource, context or {})  # type: ignore[arg-type]


def test_conditions_not_elements_and_variables() -> None:
    home = dict(
        Effect="Allow",
        Principal="*",
        Action="s3:GetObject",
        Resource="arn:aws:s3:::b/home/${aws:username}/*",
    )
    assert _eval(home, "ann", "s3:GetObject", "arn:aws:s3:::b/home/ann/x", {"aws:username": "ann"})
    assert not _eval(home, "bob", "s3:GetObject", "arn:aws:s3:::b/home/ann/x",
                     {"aws:username": "bob"})  # fmt: skip
    assert not _eval(home, "", "s3:GetObject", "arn:aws:s3:::b/home/ann/x")  # no variable
    ip = dict(
        Effect="Deny",
        Principal="*",
        NotAction=["s3:GetObject"],
        Resource="arn:aws:s3:::b/*",
        Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    )
    assert _eval(ip, "x", "s3:PutObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "1.2.3.4"}) == "Deny"
    assert _eval(ip, "x", "s3:PutObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "10.1.2.3"}) is None
    assert _eval(ip, "x", "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "1.2.3.4"}) is None
    everyone_but = dict(
        Effect="Deny",
        NotPrincipal={"AWS": "arn:aws:iam::1:user/admin"},
        Action="s3:*",
        NotResource="arn:aws:s3:::b/public/*",
    )
    assert _eval(everyone_but, "ann", "s3:GetObject", "arn:aws:s3:::b/k") == "Deny"
    assert _eval(everyone_but, "", "s3:GetObject", "arn:aws:s3:::b/k") == "Deny"
    assert _eval(everyone_but, "admin", "s3:GetObject", "arn:aws:s3:::b/k") is None
    assert _eval(everyone_but, "ann", "s3:GetObject", "arn:aws:s3:::b/public/k") is None


def test_version_actions_and_public_status() -> None:
    assert policy.action_of("DeleteObject", "v1") == "s3:DeleteObjectVersion"
    assert policy.action_of("GetObjectTagging", "v1") == "s3:GetObjectVersionTagging"
    public = policy.parse(json.dumps(PUBLIC_READ).encode(), "pub")
    assert policy.is_public(public)
    condition = {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    pinned = policy.parse(doc(Effect="Allow", Principal="*", Action="s3:GetObject",
                              Resource="arn:aws:s3:::b/*", Condition=condition), "b")  # fmt: skip
    assert not policy.is_public(pinned)
    to_user = policy.parse(doc(Effect="Allow", Principal={"AWS": "bob"}, Action="s3:GetObject",
                               Resource="arn:aws:s3:::b/*"), "b")  # fmt: skip
    assert not policy.is_public(to_user)
