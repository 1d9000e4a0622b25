"""Bucket policies, the subset users need: public read and grants to other users (sans-IO).

A policy is the usual JSON document. Supported: ``Effect`` Allow/Deny; ``Principal`` ``"*"``,
``{"AWS": "*"}``, or users as names or ARNs (``arn:aws:iam::<anything>:user/NAME``);
``Action`` ``s3:*`` or S3 action names (wildcards allowed, as ``s3:Get*``); ``Resource`` bucket
and object ARNs with ``*``/``?`` wildcards. ``Condition`` blocks are refused (not evaluated
silently). A Deny that matches wins over any Allow; without a matching Allow, access is denied.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from store.s3.errors import S3Error

MAX_POLICY_BYTES = 20 << 10

# The IAM action each S3 operation needs.
ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetObjectTagging": "s3:GetObjectTagging",
    "GetObjectAttributes": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "PutObjectTagging": "s3:PutObjectTagging",
    "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
}


@dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    principals: tuple[str, ...]  # "*" or user names
    actions: tuple[str, ...]
    resources: tuple[str, ...]


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
    if not isinstance(value, dict) or set(value) != {"AWS"}:
        raise _malformed('Principal must be "*" or {"AWS": ...}')
    out = []
    for item in _strings(value["AWS"], "Principal.AWS"):
        if item == "*":
            out.append("*")
        elif item.startswith("arn:aws:iam::"):
            _, _, name = item.partition(":user/")
            if not name:
                raise _malformed(f"unsupported principal {item}")
            out.append(name)
        else:
            out.append(item)
    return tuple(out)


def parse(raw: bytes, bucket: str) -> list[Statement]:
    """Validate a policy document; every resource must be in ``bucket``."""
    if len(raw) > MAX_POLICY_BYTES:
        raise _malformed("the policy is larger than 20 KB")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _malformed("the policy is not valid JSON") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise _malformed("the policy has no Statement")
    statements = doc["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise _malformed("Statement must be a non-empty list")
    out = []
    for st in statements:
        if not isinstance(st, dict):
            raise _malformed("a statement must be an object")
        if "Condition" in st or "NotAction" in st or "NotResource" in st or "NotPrincipal" in st:
            raise _malformed("Condition, NotAction, NotResource and NotPrincipal are not supported")
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise _malformed("Effect must be Allow or Deny")
        actions = _strings(st.get("Action"), "Action")
        if not all(a == "*" or a.startswith("s3:") for a in actions):
            raise _malformed("only s3: actions are supported")
        resources = _strings(st.get("Resource"), "Resource")
        for resource in resources:
            if resource != f"arn:aws:s3:::{bucket}" and not resource.startswith(
                f"arn:aws:s3:::{bucket}/"
            ):
                raise _malformed(f"resource {resource} is not in bucket {bucket}")
        out.append(
            Statement(effect == "Allow", _principals(st.get("Principal")), actions, resources)
        )
    return out


def allows(statements: list[Statement], user: str, operation: str, bucket: str, key: str) -> bool:
    """Does the policy let ``user`` ("" for anonymous) perform ``operation``?"""
    action = ACTIONS.get(operation)
    if action is None:
        return False
    resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    allowed = False
    for st in statements:
        if not any(p == "*" or (user and p == user) for p in st.principals):
            continue
        if not any(a == "*" or fnmatch.fnmatchcase(action, a) for a in st.actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in st.resources):
            continue
        if not st.allow:
            return False
        allowed = True
    return allowed
