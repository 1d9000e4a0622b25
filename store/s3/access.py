"""The one authorization decision: bucket policy, ACLs, object ownership, public access block.

Users are separate principals, like separate AWS accounts: each has every right on what it owns
(its buckets, and its objects), and reaches what others own only where a bucket policy or an ACL
grants it. The root user is the operator's and may do anything a policy does not explicitly deny.
The order, as AWS evaluates a request:

1. An explicit Deny in the bucket policy wins over everything, for every principal, except that
   the bucket owner and root can always manage the policy itself (no lock-out).
2. Root, and the owner of what the request acts on, are allowed: the bucket owner for bucket
   operations and for writing objects into its bucket; the object owner for its object (with
   ``BucketOwnerEnforced`` the bucket owner owns every object).
3. An Allow in the bucket policy (Conditions evaluated against the request), not counted when the
   policy is public and ``RestrictPublicBuckets`` is set (then only owners benefit), and for an
   existing object only when the bucket owner owns it (a policy grants what its owner owns).
4. An ACL grant of the permission the operation needs (``PERMISSION_OF``): the bucket's ACL for
   bucket operations and object writes, the object's for object reads and its ACL. ACLs count for
   nothing with ``BucketOwnerEnforced``; public grants count for nothing with ``IgnorePublicAcls``.
5. Otherwise: denied.

Pure: the gateway gathers the bucket's and the object's controls and the request's condition
keys, and asks ``decide``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from store.s3 import acl, policy, xml
from store.s3.acl import Grant
from store.s3.errors import S3Error

OBJECT_WRITER, BUCKET_OWNER_PREFERRED, BUCKET_OWNER_ENFORCED = (
    "ObjectWriter",
    "BucketOwnerPreferred",
    "BucketOwnerEnforced",
)
OWNERSHIPS = (OBJECT_WRITER, BUCKET_OWNER_PREFERRED, BUCKET_OWNER_ENFORCED)
BLOCK_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

# The ACL permission each operation needs, and whose ACL ("bucket" or "object") holds it.
PERMISSION_OF: dict[str, tuple[str, str]] = {
    "ListObjects": (acl.READ, "bucket"),
    "ListObjectsV2": (acl.READ, "bucket"),
    "ListObjectVersions": (acl.READ, "bucket"),
    "ListMultipartUploads": (acl.READ, "bucket"),
    "HeadBucket": (acl.READ, "bucket"),
    "GetBucketAcl": (acl.READ_ACP, "bucket"),
    "PutBucketAcl": (acl.WRITE_ACP, "bucket"),
    "PutObject": (acl.WRITE, "bucket"),
    "CopyObject": (acl.WRITE, "bucket"),
    "PostObject": (acl.WRITE, "bucket"),
    "DeleteObject": (acl.WRITE, "bucket"),
    "CreateMultipartUpload": (acl.WRITE, "bucket"),
    "UploadPart": (acl.WRITE, "bucket"),
    "UploadPartCopy": (acl.WRITE, "bucket"),
    "CompleteMultipartUpload": (acl.WRITE, "bucket"),
    "AbortMultipartUpload": (acl.WRITE, "bucket"),
    "ListParts": (acl.WRITE, "bucket"),
    "GetObject": (acl.READ, "object"),
    "HeadObject": (acl.READ, "object"),
    "GetObjectAttributes": (acl.READ, "object"),
    "GetObjectTorrent": (acl.READ, "object"),
    "GetObjectAcl": (acl.READ_ACP, "object"),
    "PutObjectAcl": (acl.WRITE_ACP, "object"),
}
# Operations on an object's own data or settings (the object owner's); the rest of the object
# operations write into the bucket (the bucket owner's).
OBJECT_OPERATIONS = frozenset(
    {
        "GetObject",
        "HeadObject",
        "GetObjectAttributes",
        "GetObjectTorrent",
        "GetObjectAcl",
        "PutObjectAcl",
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "GetObjectRetention",
        "PutObjectRetention",
        "GetObjectLegalHold",
        "PutObjectLegalHold",
        "RestoreObject",
        "SelectObjectContent",
    }
)
POLICY_OPERATIONS = frozenset({"GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"})


@dataclass(frozen=True, slots=True)
class PublicAccessBlock:
    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    def to_json(self) -> list[bool]:
        return [
            self.block_public_acls,
            self.ignore_public_acls,
            self.block_public_policy,
            self.restrict_public_buckets,
        ]

    @classmethod
    def from_json(cls, items: Sequence[bool] | None) -> PublicAccessBlock:
        return cls(*items) if items else cls()


@dataclass(frozen=True, slots=True)
class BucketControls:
    owner: str
    grants: tuple[Grant, ...]
    statements: tuple[policy.Statement, ...] = ()
    ownership: str = OBJECT_WRITER
    block: PublicAccessBlock = field(default_factory=PublicAccessBlock)

    @property
    def acls_enabled(self) -> bool:
        return self.ownership != BUCKET_OWNER_ENFORCED


@dataclass(frozen=True, slots=True)
class ObjectControls:
    owner: str
    grants: tuple[Grant, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    principal: str  # a user name; "" for an anonymous request
    operation: str
    bucket: str
    key: str = ""
    version_id: str | None = None
    admin: bool = False  # the root user
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


def decide(
    request: AccessRequest, bucket: BucketControls, obj: ObjectControls | None = None
) -> bool:
    """May ``request`` go ahead? (The rules are the module's docstring.)

    >>> b = BucketControls("ann", acl.canned("public-read", "ann", "ann", for_bucket=True))
    >>> decide(AccessRequest("", "ListObjects", "bkt"), b)
    True
    >>> decide(AccessRequest("", "PutObject", "bkt", "k"), b)
    False
    """
    p = request.principal
    action = policy.action_of(request.operation, request.version_id)
    verdict = None
    if bucket.statements and action is not None:
        verdict = policy.evaluate(
            bucket.statements,
            p,
            action,
            policy.resource_arn(request.bucket, request.key),
            {**request.context, **_object_context(obj)},
        )
    owner_of_bucket = request.admin or (p != "" and p == bucket.owner)
    if verdict == policy.DENY and not (owner_of_bucket and request.operation in POLICY_OPERATIONS):
        return False
    if request.admin:
        return True
    object_owner = None
    if obj is not None:
        object_owner = bucket.owner if not bucket.acls_enabled else obj.owner
    if p:
        if request.operation in OBJECT_OPERATIONS and obj is not None:
            if p == object_owner:
                return True
        elif p == bucket.owner:
            return True
    if verdict == policy.ALLOW:
        public = policy.is_public(bucket.statements)
        restricted = public and bucket.block.restrict_public_buckets
        foreign_object = (
            obj is not None
            and request.operation in OBJECT_OPERATIONS
            and object_owner != bucket.owner
        )
        if not restricted and not foreign_object:
            return True
    needed = PERMISSION_OF.get(request.operation)
    if needed is None or not bucket.acls_enabled:
        return False
    permission, holder = needed
    if holder == "object":
        if obj is None:
            return False
        grants = obj.grants
    else:
        grants = bucket.grants
    return acl.permits(grants, p, permission, ignore_public=bucket.block.ignore_public_acls)


def _object_context(obj: ObjectControls | None) -> dict[str, str]:
    if obj is None:
        return {}
    return {f"s3:ExistingObjectTag/{k}": v for k, v in obj.tags.items()}


# -- setting ACLs and policies: what the public access block and ownership controls refuse ----


def check_new_acl(bucket: BucketControls, grants: Sequence[Grant], *, explicit: bool) -> None:
    """Refuse an ACL a request sets (PutBucketAcl/PutObjectAcl, or ACL headers on a write)."""
    if not bucket.acls_enabled and explicit:
        owner_only = all(
            g.kind == "user" and g.grantee == bucket.owner and g.permission == acl.FULL_CONTROL
            for g in grants
        )
        if not owner_only:
            raise S3Error("AccessControlListNotSupported", 400, "the bucket does not allow ACLs")
    if bucket.block.block_public_acls and acl.is_public(grants):
        raise S3Error("AccessDenied", 403, "public ACLs are blocked by the public access block")


def check_new_policy(block: PublicAccessBlock, statements: Sequence[policy.Statement]) -> None:
    if block.block_public_policy and policy.is_public(statements):
        raise S3Error("AccessDenied", 403, "public policies are blocked by the public access block")


# -- configuration documents -------------------------------------------------------------------


def parse_ownership(body: bytes) -> str:
    root = xml.parse(body, "OwnershipControls")
    rules = root.findall("Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML", 400, "OwnershipControls needs exactly one Rule")
    value = xml.text(rules[0], "ObjectOwnership")
    if value not in OWNERSHIPS:
        raise S3Error(
            "MalformedXML", 400, f"ObjectOwnership must be one of {', '.join(OWNERSHIPS)}"
        )
    return value


def render_ownership(value: str) -> bytes:
    rule = xml.element("Rule", [xml.field("ObjectOwnership", value)])
    return xml.document("OwnershipControls", [rule])


def parse_public_access_block(body: bytes) -> PublicAccessBlock:
    root = xml.parse(body, "PublicAccessBlockConfiguration")
    values = []
    for child in root:
        if child.tag not in BLOCK_FIELDS:
            raise S3Error("MalformedXML", 400, f"unexpected <{child.tag}>")
    for name in BLOCK_FIELDS:
        text = xml.text(root, name, "false").strip().lower()
        if text not in ("true", "false"):
            raise S3Error("MalformedXML", 400, f"{name} must be true or false")
        values.append(text == "true")
    return PublicAccessBlock(*values)


def render_public_access_block(block: PublicAccessBlock) -> bytes:
    fields = [xml.field(n, v) for n, v in zip(BLOCK_FIELDS, block.to_json(), strict=True)]
    return xml.document("PublicAccessBlockConfiguration", fields)
