# ruff: noqa: E501  (a decision table: one case a line reads best)
"""The one authorization decision, as a table: (who, what, bucket controls, object) -> verdict."""

from __future__ import annotations

import json

import pytest

from store.s3 import access, acl, policy
from store.s3.access import (
    AccessRequest,
    BucketControls,
    ObjectControls,
    PublicAccessBlock,
)
from store.s3.errors import S3Error

ANN, BOB = "ann", "bob"  # ann owns the bucket


def _policy(*statements: dict[str, object]) -> tuple[policy.Statement, ...]:
    return tuple(policy.parse(json.dumps({"Statement": list(statements)}).encode(), "bkt"))


PUBLIC_GET = _policy(
    {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bkt/*",
    }
)
DENY_DELETE = _policy(
    {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:Delete*",
        "Resource": "arn:aws:s3:::bkt/protected/*",
    },
    {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*"},
    {"Effect": "Deny", "Principal": "*", "Action": "s3:PutBucketPolicy", "Resource": "arn:aws:s3:::bkt"},
)  # fmt: skip
FROM_OFFICE = _policy(
    {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bkt/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}, "Bool": {"aws:SecureTransport": "true"}},
    }
)  # fmt: skip
TAGGED = _policy(
    {
        "Effect": "Allow",
        "Principal": {"AWS": BOB},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bkt/*",
        "Condition": {"StringEquals": {"s3:ExistingObjectTag/share": "yes"}},
    }
)


def bucket(
    canned: str = "private",
    statements: tuple[policy.Statement, ...] = (),
    ownership: str = access.OBJECT_WRITER,
    block: PublicAccessBlock | None = None,
) -> BucketControls:
    grants = acl.canned(canned, ANN, ANN, for_bucket=True)
    return BucketControls(ANN, grants, statements, ownership, block or PublicAccessBlock())


def obj(
    owner: str = ANN, canned: str = "private", tags: dict[str, str] | None = None
) -> ObjectControls:
    return ObjectControls(owner, acl.canned(canned, owner, ANN, for_bucket=False), tags or {})


IGNORE = PublicAccessBlock(ignore_public_acls=True)
RESTRICT = PublicAccessBlock(restrict_public_buckets=True)
OFFICE = {"aws:SourceIp": "10.1.2.3", "aws:SecureTransport": "true"}

CASES = [
    # who, operation, key, bucket, object, context, admin, allowed
    ("owner lists", ANN, "ListObjects", "", bucket(), None, {}, False, True),
    ("stranger lists", BOB, "ListObjects", "", bucket(), None, {}, False, False),
    ("anonymous lists", "", "ListObjects", "", bucket(), None, {}, False, False),
    ("root lists", "root", "ListObjects", "", bucket(), None, {}, True, True),
    ("public-read lists", "", "ListObjects", "", bucket("public-read"), None, {}, False, True),
    ("public-read no write", "", "PutObject", "k", bucket("public-read"), None, {}, False, False),
    ("public-read-write writes", "", "PutObject", "k", bucket("public-read-write"), None, {}, False, True),
    ("authenticated-read: user", BOB, "ListObjects", "", bucket("authenticated-read"), None, {}, False, True),
    ("authenticated-read: anon", "", "ListObjects", "", bucket("authenticated-read"), None, {}, False, False),
    ("ignore public acls", "", "ListObjects", "", bucket("public-read", block=IGNORE), None, {}, False, False),
    ("enforced: acls off", "", "ListObjects", "", bucket("public-read", ownership=access.BUCKET_OWNER_ENFORCED), None, {}, False, False),
    ("object acl public-read", "", "GetObject", "k", bucket(), obj(canned="public-read"), {}, False, True),
    ("object acl private", "", "GetObject", "k", bucket(), obj(), {}, False, False),
    ("bucket read is not object read", "", "GetObject", "k", bucket("public-read"), obj(), {}, False, False),
    ("object owner reads own", BOB, "GetObject", "k", bucket(), obj(BOB), {}, False, True),
    ("bucket owner, foreign object", ANN, "GetObject", "k", bucket(), obj(BOB), {}, False, False),
    ("bucket-owner-read", ANN, "GetObject", "k", bucket(), obj(BOB, "bucket-owner-read"), {}, False, True),
    ("enforced: bucket owner owns all", ANN, "GetObject", "k", bucket(ownership=access.BUCKET_OWNER_ENFORCED), obj(BOB), {}, False, True),
    ("bucket owner deletes foreign", ANN, "DeleteObject", "k", bucket(), obj(BOB), {}, False, True),
    ("policy public get", "", "GetObject", "k", bucket(statements=PUBLIC_GET), obj(), {}, False, True),
    ("policy: not for foreign objects", "", "GetObject", "k", bucket(statements=PUBLIC_GET), obj(BOB), {}, False, False),
    ("policy: restrict public buckets", "", "GetObject", "k", bucket(statements=PUBLIC_GET, block=RESTRICT), obj(), {}, False, False),
    ("policy: only get", "", "PutObject", "k", bucket(statements=PUBLIC_GET), None, {}, False, False),
    ("explicit deny beats owner", ANN, "DeleteObject", "protected/x", bucket(statements=DENY_DELETE), None, {}, False, False),
    ("explicit deny beats root", "root", "DeleteObject", "protected/x", bucket(statements=DENY_DELETE), None, {}, True, False),
    ("deny is per key", BOB, "DeleteObject", "other/x", bucket(statements=DENY_DELETE), None, {}, False, True),
    ("no lock-out from the policy", ANN, "PutBucketPolicy", "", bucket(statements=DENY_DELETE), None, {}, False, True),
    ("policy ops: others denied", BOB, "PutBucketPolicy", "", bucket(statements=DENY_DELETE), None, {}, False, False),
    ("condition holds", "", "GetObject", "k", bucket(statements=FROM_OFFICE), obj(), OFFICE, False, True),
    ("condition fails: ip", "", "GetObject", "k", bucket(statements=FROM_OFFICE), obj(), {**OFFICE, "aws:SourceIp": "8.8.8.8"}, False, False),
    ("condition fails: plain http", "", "GetObject", "k", bucket(statements=FROM_OFFICE), obj(), {**OFFICE, "aws:SecureTransport": "false"}, False, False),
    ("pinned policy is not public", "", "GetObject", "k", bucket(statements=FROM_OFFICE, block=RESTRICT), obj(), OFFICE, False, True),
    ("existing tag allows", BOB, "GetObject", "k", bucket(statements=TAGGED), obj(tags={"share": "yes"}), {}, False, True),
    ("existing tag missing", BOB, "GetObject", "k", bucket(statements=TAGGED), obj(tags={"share": "no"}), {}, False, False),
    ("anonymous acl write-acp", "", "PutBucketAcl", "", bucket("public-read-write"), None, {}, False, False),
    ("settings are the owner's", BOB, "PutBucketCors", "", bucket("public-read-write"), None, {}, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("who", "operation", "key", "controls", "target", "ctx", "admin", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    who: str,
    operation: str,
    key: str,
    controls: BucketControls,
    target: ObjectControls | None,
    ctx: dict[str, str],
    admin: bool,
    expected: bool,
) -> None:
    request = AccessRequest(who, operation, "bkt", key, None, admin, ctx)
    assert access.decide(request, controls, target) is expected


def test_version_actions_are_denied_too() -> None:
    request = AccessRequest(BOB, "DeleteObject", "bkt", "protected/x", "0123", False, {})
    assert not access.decide(request, bucket(statements=DENY_DELETE))
    request = AccessRequest(BOB, "DeleteObject", "bkt", "open/x", "0123", False, {})
    assert access.decide(request, bucket(statements=DENY_DELETE))


def test_new_acls_and_policies_checked_against_controls() -> None:
    public = acl.canned("public-read", ANN, ANN, for_bucket=False)
    access.check_new_acl(bucket(), public, explicit=True)
    with pytest.raises(S3Error) as e:
        access.check_new_acl(bucket(block=PublicAccessBlock(block_public_acls=True)), public, explicit=True)  # fmt: skip
    assert e.value.code.code == "AccessDenied"
    enforced = bucket(ownership=access.BUCKET_OWNER_ENFORCED)
    with pytest.raises(S3Error) as e:
        access.check_new_acl(enforced, public, explicit=True)
    assert e.value.code.code == "AccessControlListNotSupported"
    access.check_new_acl(enforced, acl.private(ANN), explicit=True)
    with pytest.raises(S3Error):
        access.check_new_policy(PublicAccessBlock(block_public_policy=True), PUBLIC_GET)
    access.check_new_policy(PublicAccessBlock(block_public_policy=True), FROM_OFFICE)


def test_configuration_documents() -> None:
    body = access.render_public_access_block(PublicAccessBlock(True, False, True, False))
    assert access.parse_public_access_block(body) == PublicAccessBlock(True, False, True, False)
    assert access.parse_ownership(access.render_ownership("BucketOwnerPreferred")) == (
        "BucketOwnerPreferred"
    )
    for bad in (
        b"<OwnershipControls><Rule><ObjectOwnership>Mine</ObjectOwnership></Rule></OwnershipControls>",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>maybe</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><Other>true</Other></PublicAccessBlockConfiguration>",
    ):  # fmt: skip
        with pytest.raises(S3Error) as e:
            (access.parse_ownership if b"Ownership" in bad else access.parse_public_access_block)(
                bad
            )
        assert e.value.code.code == "MalformedXML"
