"""Authorization in the gateway: gathers what ``store.s3.access.decide`` needs, and asks it.

The bucket's controls live in its record's settings (``acl``: grants, ``policy``: the JSON
document, ``ownership``, ``pab``: the public access block); an object's in its version record
(owner, ``acl``, tags). The condition keys of a request (``aws:SourceIp``, ``s3:prefix``...) are
built once per request. A refusal is AccessDenied; a missing object is reported as missing only
to a caller who may list the bucket (as S3 does: others learn nothing from a 404).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from store.auth import users
from store.errors import NoSuchKey, NoSuchVersion, PermissionDenied
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.objects.engine import ObjectEngine
from store.objects.records import Bucket, Version
from store.s3 import access, acl, policy
from store.s3.access import AccessRequest, BucketControls, ObjectControls, PublicAccessBlock

ACCOUNT_ID = "000000000000"  # one namespace of users: what user ARNs name as their account
_POLICY_CACHE_MAX = 256

# Request headers a policy can test as s3:<name>.
_HEADER_KEYS = (
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-storage-class",
    "x-amz-content-sha256",
    "x-amz-object-ownership",
)
_LOCK_HEADERS = {
    "x-amz-object-lock-mode": "s3:object-lock-mode",
    "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold": "s3:object-lock-legal-hold",
}


class Authorizer:
    def __init__(self, engine: ObjectEngine) -> None:
        self.engine = engine
        self._policies: dict[tuple[str, str], tuple[policy.Statement, ...]] = {}

    # -- controls --------------------------------------------------------------------------------

    def statements(self, bucket: Bucket) -> tuple[policy.Statement, ...]:
        raw = bucket.settings.get("policy")
        if not raw:
            return ()
        key = (bucket.name, raw)
        found = self._policies.get(key)
        if found is None:
            found = tuple(policy.parse(raw.encode(), bucket.name))
            if len(self._policies) >= _POLICY_CACHE_MAX:
                self._policies.clear()
            self._policies[key] = found
        return found

    def controls(self, bucket: Bucket) -> BucketControls:
        return BucketControls(
            owner=bucket.owner,
            grants=acl.from_json(bucket.settings.get("acl"), bucket.owner),
            statements=self.statements(bucket),
            ownership=bucket.settings.get("ownership", access.OBJECT_WRITER),
            block=PublicAccessBlock.from_json(bucket.settings.get("pab")),
        )

    @staticmethod
    def object_controls(version: Version) -> ObjectControls:
        return ObjectControls(
            version.owner, acl.from_json(version.acl, version.owner), version.tags
        )

    # -- decisions -------------------------------------------------------------------------------

    def allowed(
        self,
        call: Call,
        bucket: Bucket,
        *,
        operation: str | None = None,
        key: str | None = None,
        version_id: str | None = None,
        obj: Version | None = None,
    ) -> bool:
        op = operation or call.route.operation
        expected = call.request.header("x-amz-expected-bucket-owner")
        if expected is not None and bucket.owner != expected:
            return False  # the caller's guard against a bucket someone else owns
        request = AccessRequest(
            principal=call.user,
            operation=op,
            bucket=bucket.name,
            key=call.route.key if key is None else key,
            version_id=version_id,
            admin=call.admin,
            context=context(call, version_id),
        )
        obj_controls = self.object_controls(obj) if obj is not None else None
        return access.decide(request, self.controls(bucket), obj_controls)

    def check(self, call: Call, bucket: Bucket, **kw: Any) -> None:
        if not self.allowed(call, bucket, **kw):
            raise PermissionDenied("access denied")

    async def bucket(self, call: Call, *, name: str | None = None, **kw: Any) -> Bucket:
        """The request's bucket (or ``name``), if the caller may do the operation on it."""
        found = await self.engine.get_bucket(name or call.route.bucket)
        self.check(call, found, **kw)
        return found

    async def object(
        self, call: Call, bucket: Bucket, *, version_id: str | None = None, **kw: Any
    ) -> Version:
        """The addressed version, if the caller may do the operation on it. A missing object is
        NoSuchKey to callers who may list the bucket, AccessDenied to others."""
        try:
            version = await self.engine.head_object(bucket.name, call.route.key, version_id)
        except (NoSuchKey, NoSuchVersion):
            if not self.allowed(call, bucket, operation="ListObjects", key=""):
                raise PermissionDenied("access denied") from None
            raise
        self.check(call, bucket, version_id=version_id, obj=version, **kw)
        return version

    # -- new objects -----------------------------------------------------------------------------

    def new_object_owner(self, call: Call, bucket: Bucket) -> str:
        """Who owns an object this request writes: the writer, or the bucket owner under
        BucketOwnerEnforced (and under BucketOwnerPreferred with bucket-owner-full-control)."""
        ownership = bucket.settings.get("ownership", access.OBJECT_WRITER)
        if ownership == access.BUCKET_OWNER_ENFORCED:
            return bucket.owner
        canned = call.request.header("x-amz-acl")
        if ownership == access.BUCKET_OWNER_PREFERRED and canned == "bucket-owner-full-control":
            return bucket.owner
        return call.user

    async def new_object_acl(
        self, call: Call, bucket: Bucket, owner: str, headers: Mapping[str, str] | None = None
    ) -> tuple[tuple[str, str, str], ...] | None:
        """The grants a write asks for (x-amz-acl / x-amz-grant-*), checked against ownership
        controls and the public access block; None for the default (private) ACL."""
        given = call.request.header_map if headers is None else headers
        if "x-amz-acl" not in given and not any(h in given for h in acl.GRANT_HEADERS):
            return None
        known = {u.user for u in await users.list_keys(self.engine.kv)} | {users.ROOT_USER}
        grants = acl.from_headers(
            given, owner, bucket.owner, for_bucket=False, user_exists=known.__contains__
        )
        if grants is None:
            return None
        access.check_new_acl(self.controls(bucket), grants, explicit=True)
        if bucket.settings.get("ownership") == access.BUCKET_OWNER_ENFORCED:
            return None  # only the owner's full control is allowed: the default
        return tuple((g.kind, g.grantee, g.permission) for g in grants)


def context(call: Call, version_id: str | None = None) -> dict[str, str | Sequence[str]]:
    """The request's condition keys (IAM's global keys and S3's), for policy Conditions."""
    req, q = call.request, call.route.query
    now = time.time()
    ctx: dict[str, str | Sequence[str]] = {
        "aws:SourceIp": req.peer.rsplit(":", 1)[0].strip("[]"),
        "aws:SecureTransport": "true" if req.secure else "false",
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "aws:EpochTime": str(int(now)),
        "aws:PrincipalType": "User" if call.user else "Anonymous",
        "s3:signatureversion": "AWS4-HMAC-SHA256",
        "s3:authType": (
            "REST-QUERY-STRING" if call.auth is not None and call.auth.presigned else "REST-HEADER"
        ),
    }
    if call.user:
        ctx["aws:username"] = call.user
        ctx["aws:userid"] = call.user
        ctx["aws:PrincipalArn"] = f"arn:aws:iam::{ACCOUNT_ID}:user/{call.user}"
        ctx["aws:PrincipalAccount"] = ACCOUNT_ID
    for name, key in (("user-agent", "aws:UserAgent"), ("referer", "aws:Referer")):
        value = req.header(name)
        if value is not None:
            ctx[key] = value
    for name in ("prefix", "delimiter", "max-keys"):
        if name in q:
            ctx[f"s3:{name}"] = q[name]
    if version_id is not None:
        ctx["s3:VersionId"] = version_id
    for name in _HEADER_KEYS:
        value = req.header(name)
        if value is not None:
            ctx[f"s3:{name}"] = value
    for header, key in _LOCK_HEADERS.items():
        value = req.header(header)
        if value is not None:
            ctx[key] = value
    tagging = req.header("x-amz-tagging")
    if tagging:
        tags = m.parse_tagging_header(tagging) or {}
        for k, v in tags.items():
            ctx[f"s3:RequestObjectTag/{k}"] = v
        ctx["s3:RequestObjectTagKeys"] = list(tags)
    return ctx
