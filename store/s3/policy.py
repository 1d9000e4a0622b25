"""Bucket policies: the IAM policy language as S3 bucket policies use it (sans-IO).

A policy is a JSON document of statements. Each has ``Effect`` Allow/Deny and:

- exactly one of ``Principal``/``NotPrincipal``: ``"*"``, ``{"AWS": ...}`` with ``*``, user
  names or user ARNs ``arn:aws:iam::<account>:user/NAME``, ``{"CanonicalUser": NAME}``; service
  principals are valid and match no request here;
- exactly one of ``Action``/``NotAction``: ``s3:`` actions with ``*``/``?`` wildcards, each
  matching some S3 action;
- exactly one of ``Resource``/``NotResource``: this bucket's ARN or its objects', with
  wildcards and policy variables such as ``${aws:username}``;
- an optional ``Condition`` block (``store.s3.conditions``: every operator AWS defines,
  ``IfExists``, ``ForAnyValue``/``ForAllValues``).

``evaluate`` answers DENY when a matching statement denies (which wins), ALLOW when one allows,
else None (no opinion: other rules decide).

``is_public`` is S3 Block Public Access's rule: a policy is public when an Allow statement grants
to everyone (``*`` or a NotPrincipal) without a Condition that pins a fixed source or principal.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from store.s3 import conditions, variables
from store.s3.errors import S3Error

MAX_POLICY_BYTES = 20 << 10
ALLOW, DENY = "Allow", "Deny"

# The IAM action each S3 operation needs, and the one it needs when it names a version.
ACTIONS: dict[str, str] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketCors": "s3:GetBucketCORS",
    "PutBucketCors": "s3:PutBucketCORS",
    "DeleteBucketCors": "s3:PutBucketCORS",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetObjectAttributes": "s3:GetObjectAttributes",
    "GetObjectTorrent": "s3:GetObjectTorrent",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "GetObjectAcl": "s3:GetObjectAcl",
    "PutObjectAcl": "s3:PutObjectAcl",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
    "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "GetObjectRetention": "s3:GetObjectRetention",
    "PutObjectRetention": "s3:PutObjectRetention",
    "GetObjectLegalHold": "s3:GetObjectLegalHold",
    "PutObjectLegalHold": "s3:PutObjectLegalHold",
    "RestoreObject": "s3:RestoreObject",
    # not operations, but permissions an operation may also need
    "BypassGovernanceRetention": "s3:BypassGovernanceRetention",
}
VERSION_ACTIONS: dict[str, str] = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
    "s3:GetObjectTorrent": "s3:GetObjectVersionTorrent",
}
# Actions a policy may name that no single operation maps to.
EXTRA_ACTIONS = (
    "s3:BypassGovernanceRetention",
    "s3:GetObjectVersionForReplication",
    "s3:ListBucketVersions",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:PutBucketLogging",
    "s3:GetBucketLogging",
    "s3:PutBucketWebsite",
    "s3:GetBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:PutBucketNotification",
    "s3:GetBucketNotification",
    "s3:PutReplicationConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:PutAccelerateConfiguration",
    "s3:GetAccelerateConfiguration",
    "s3:PutBucketRequestPayment",
    "s3:GetBucketRequestPayment",
    "s3:PutMetricsConfiguration",
    "s3:GetMetricsConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:GetInventoryConfiguration",
    "s3:PutAnalyticsConfiguration",
    "s3:GetAnalyticsConfiguration",
    "s3:PutIntelligentTieringConfiguration",
    "s3:GetIntelligentTieringConfiguration",
)
KNOWN_ACTIONS = frozenset([*ACTIONS.values(), *VERSION_ACTIONS.values(), *EXTRA_ACTIONS])
# Keys whose positive match pins a request to fixed principals or sources ("not public").
_PINNING_KEYS = (
    "aws:SourceIp",
    "aws:SourceVpc",
    "aws:SourceVpce",
    "aws:SourceArn",
    "aws:SourceAccount",
    "aws:SourceOwner",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalOrgID",
    "aws:userid",
    "aws:username",
)
_STATEMENT_FIELDS = frozenset(
    {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
     "NotResource", "Condition"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    principals: tuple[str, ...]  # "*" or user names (services: "service:NAME")
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_principal: bool = False
    not_action: bool = False
    not_resource: bool = False
    condition: conditions.Condition | None = None


def action_of(operation: str, version_id: str | None = None) -> str | None:
    """The IAM action of an operation.

    >>> action_of("GetObject"), action_of("GetObject", "3f2e"), action_of("HeadObject", "null")
    ('s3:GetObject', 's3:GetObjectVersion', 's3:GetObjectVersion')
    """
    action = ACTIONS.get(operation)
    if action is not None and version_id is not None:
        return VERSION_ACTIONS.get(action, action)
    return action


def resource_arn(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedPolicy", 400, message)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _malformed(f"{what} must be a string or a list of strings")
    return tuple(items)


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if (
        not isinstance(value, dict)
        or not value
        or not set(value)
        <= {
            "AWS",
            "CanonicalUser",
            "Service",
            "Federated",
        }
    ):
        raise _malformed('Principal must be "*" or a map of AWS/CanonicalUser/Service principals')
    out: list[str] = []
    for kind, items in value.items():
        for item in _strings(items, f"Principal.{kind}"):
            if kind in ("Service", "Federated"):
                out.append(f"service:{item}")  # matches no request here
            elif item == "*":
                out.append("*")
            elif item.startswith("arn:aws:iam::"):
                _, sep, name = item.partition(":user/")
                if not sep or not name:
                    raise _malformed(f"invalid principal in policy: {item}")
                out.append(name)
            else:
                out.append(item)
    return tuple(out)


def _actions(value: Any) -> tuple[str, ...]:
    actions = _strings(value, "Action")
    for a in actions:
        if a == "*":
            continue
        if not a.lower().startswith("s3:"):
            raise _malformed(f"policy has invalid action: {a}")
        if not any(fnmatch.fnmatchcase(k.lower(), a.lower()) for k in KNOWN_ACTIONS):
            raise _malformed(f"policy has invalid action: {a}")
    return actions


def _resources(value: Any, bucket: str) -> tuple[str, ...]:
    resources = _strings(value, "Resource")
    for resource in resources:
        rest = resource.removeprefix("arn:aws:s3:::")
        bucket_part = rest.partition("/")[0]
        if rest == resource or not fnmatch.fnmatchcase(bucket, bucket_part):
            raise _malformed(f"policy has invalid resource: {resource} is not in bucket {bucket}")
    return resources


def _one_of(st: Mapping[str, Any], name: str) -> tuple[Any, bool]:
    """(value, negated) of the one of ``name``/``Not<name>`` a statement must have."""
    plain, negated = st.get(name), st.get("Not" + name)
    if (plain is None) == (negated is None):
        raise _malformed(f"a statement needs exactly one of {name} and Not{name}")
    return (plain, False) if plain is not None else (negated, True)


def parse(raw: bytes, bucket: str) -> list[Statement]:
    """Validate a policy document; every resource must be in ``bucket``."""
    if len(raw) > MAX_POLICY_BYTES:
        raise _malformed("the policy is larger than 20 KB")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than json's stack
        raise _malformed("the policy is not valid JSON") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise _malformed("the policy has no Statement")
    if not set(doc) <= {"Version", "Id", "Statement"}:
        raise _malformed(
            f"unknown policy fields: {sorted(set(doc) - {'Version', 'Id', 'Statement'})}"
        )
    if doc.get("Version", "2012-10-17") not in ("2012-10-17", "2008-10-17"):
        raise _malformed("Version must be 2012-10-17 or 2008-10-17")
    statements = doc["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise _malformed("Statement must be a non-empty list")
    out = []
    for st in statements:
        if not isinstance(st, dict):
            raise _malformed("a statement must be an object")
        unknown = set(st) - _STATEMENT_FIELDS
        if unknown:
            raise _malformed(f"unknown statement fields: {sorted(unknown)}")
        effect = st.get("Effect")
        if effect not in (ALLOW, DENY):
            raise _malformed("Effect must be Allow or Deny")
        principal, not_principal = _one_of(st, "Principal")
        action, not_action = _one_of(st, "Action")
        resource, not_resource = _one_of(st, "Resource")
        condition = conditions.parse_condition(st["Condition"]) if "Condition" in st else None
        out.append(
            Statement(
                effect == ALLOW,
                _principals(principal),
                _actions(action),
                _resources(resource, bucket),
                not_principal,
                not_action,
                not_resource,
                condition,
            )
        )
    return out


def _principal_matches(st: Statement, user: str) -> bool:
    found = any(p == "*" or (user and p == user) for p in st.principals)
    return found != st.not_principal


def _action_matches(st: Statement, action: str) -> bool:
    low = action.lower()
    found = any(a == "*" or fnmatch.fnmatchcase(low, a.lower()) for a in st.actions)
    return found != st.not_action


def _resource_matches(st: Statement, resource: str, context: variables.Context) -> bool:
    found = False
    for pattern in st.resources:
        # IAM's wildcards (* and ?), with policy variables substituted as literal text.
        try:
            if variables.like(pattern, resource, context):
                found = True
                break
        except variables.MissingVariable:
            continue
    return found != st.not_resource


def evaluate(
    statements: Sequence[Statement],
    user: str,
    action: str,
    resource: str,
    context: variables.Context,
) -> str | None:
    """DENY, ALLOW or None for ``user`` ("" for anonymous) doing ``action`` on ``resource``."""
    verdict = None
    for st in statements:
        if not (_principal_matches(st, user) and _action_matches(st, action)):
            continue
        if not _resource_matches(st, resource, context):
            continue
        if st.condition is not None and not st.condition.matches(context):
            continue
        if not st.allow:
            return DENY
        verdict = ALLOW
    return verdict


def is_public(statements: Sequence[Statement]) -> bool:
    """Does some Allow grant to everyone, unpinned by a Condition? (Block Public Access.)"""
    for st in statements:
        if not st.allow or not (st.not_principal or "*" in st.principals):
            continue
        pinned = st.condition is not None and any(
            conditions.fixed_values_only(st.condition, key) for key in _PINNING_KEYS
        )
        if not pinned:
            return True
    return False


def allows(statements: list[Statement], user: str, operation: str, bucket: str, key: str) -> bool:
    """Does the policy alone let ``user`` perform ``operation``? (A request without context.)"""
    action = action_of(operation)
    if action is None:
        return False
    return evaluate(statements, user, action, resource_arn(bucket, key), {}) == ALLOW
