"""Who may access what: ACLs, ownership controls, public access block, policy status.

Handlers for Get/PutBucketAcl, Get/PutObjectAcl, Get/Put/DeleteBucketOwnershipControls,
Get/Put/DeletePublicAccessBlock and GetBucketPolicyStatus. The settings live in the bucket
record (see ``s3_access``); an object's ACL in its version record.
"""

from __future__ import annotations

from collections.abc import Callable

from store.auth import users
from store.gateway.http import Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.records import Bucket, Version
from store.s3 import access, acl, policy, xml
from store.s3.errors import S3Error

OPERATIONS: dict[str, str] = {
    "GetBucketAcl": "get_bucket_acl",
    "PutBucketAcl": "put_bucket_acl",
    "GetObjectAcl": "get_object_acl",
    "PutObjectAcl": "put_object_acl",
    "GetBucketOwnershipControls": "get_ownership",
    "PutBucketOwnershipControls": "put_ownership",
    "DeleteBucketOwnershipControls": "delete_ownership",
    "GetPublicAccessBlock": "get_public_access_block",
    "PutPublicAccessBlock": "put_public_access_block",
    "DeletePublicAccessBlock": "delete_public_access_block",
    "GetBucketPolicyStatus": "get_policy_status",
}


class AclHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def _known_users(self) -> Callable[[str], bool]:
        known = {k.user for k in await users.list_keys(self.engine.kv)} | {users.ROOT_USER}
        return known.__contains__

    async def _requested_grants(
        self, call: Call, owner: str, bucket: Bucket, *, for_bucket: bool
    ) -> tuple[acl.Grant, ...]:
        """The ACL a Put*Acl request sets: from its headers or its AccessControlPolicy body
        (one or the other, as S3 requires)."""
        exists = await self._known_users()
        from_headers = acl.from_headers(
            call.request.header_map,
            owner,
            bucket.owner,
            for_bucket=for_bucket,
            user_exists=exists,
        )
        body = await self.read_document(call)
        if from_headers is not None:
            if body.strip():
                raise S3Error(
                    "UnexpectedContent",
                    400,
                    "this request does not support content with ACL headers",
                )
            return from_headers
        if not body.strip():
            raise S3Error(
                "MissingSecurityHeader", 400, "your request was missing a required header"
            )
        owner_id, grants = acl.parse_policy(body, exists)
        if owner_id and owner_id != owner:
            raise S3Error("AccessDenied", 403, "the ACL may not change the owner")
        return grants

    # -- buckets ---------------------------------------------------------------------------------

    async def get_bucket_acl(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        grants = acl.from_json(bucket.settings.get("acl"), bucket.owner)
        return m.xml(200, acl.render_policy(bucket.owner, grants))

    async def put_bucket_acl(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        grants = await self._requested_grants(call, bucket.owner, bucket, for_bucket=True)
        access.check_new_acl(self.authz.controls(bucket), grants, explicit=True)
        await self.put_setting(bucket.name, "acl", acl.to_json(grants))
        return Response(200)

    # -- objects ---------------------------------------------------------------------------------

    async def get_object_acl(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        v = await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        body = acl.render_policy(v.owner, acl.from_json(v.acl, v.owner))
        return m.xml(200, body, m.version_headers(v))

    async def put_object_acl(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        version_id = call.route.query.get("versionId")
        v = await self.authz.object(call, bucket, version_id=version_id)
        grants = await self._requested_grants(call, v.owner, bucket, for_bucket=False)
        access.check_new_acl(self.authz.controls(bucket), grants, explicit=True)
        stored = tuple((g.kind, g.grantee, g.permission) for g in grants)

        def change(rec: Version) -> Version:
            return rec.with_(acl=stored)

        new = await self.engine.update_version(bucket.name, call.route.key, v.public_id, change)
        return Response(200, m.version_headers(new))

    # -- ownership controls ----------------------------------------------------------------------

    async def get_ownership(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        value = bucket.settings.get("ownership")
        if value is None:
            raise S3Error(
                "OwnershipControlsNotFoundError",
                404,
                "the bucket ownership controls were not found",
            )
        return m.xml(200, access.render_ownership(value))

    async def put_ownership(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        value = access.parse_ownership(await self.read_document(call))
        if value == access.BUCKET_OWNER_ENFORCED:
            grants = acl.from_json(bucket.settings.get("acl"), bucket.owner)
            if grants != acl.private(bucket.owner):
                raise S3Error(
                    "InvalidBucketAclWithObjectOwnership",
                    400,
                    "bucket ACLs other than the owner's full control cannot be used with "
                    "BucketOwnerEnforced",
                )
        await self.put_setting(bucket.name, "ownership", value)
        return Response(200)

    async def delete_ownership(self, call: Call) -> Response:
        return await self.drop_setting(call, "ownership")

    # -- public access block ---------------------------------------------------------------------

    async def get_public_access_block(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        raw = bucket.settings.get("pab")
        if raw is None:
            raise S3Error(
                "NoSuchPublicAccessBlockConfiguration",
                404,
                "the public access block configuration was not found",
            )
        return m.xml(
            200, access.render_public_access_block(access.PublicAccessBlock.from_json(raw))
        )

    async def put_public_access_block(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        block = access.parse_public_access_block(await self.read_document(call))
        await self.put_setting(bucket.name, "pab", block.to_json())
        return Response(200)

    async def delete_public_access_block(self, call: Call) -> Response:
        return await self.drop_setting(call, "pab")

    async def get_policy_status(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        controls = self.authz.controls(bucket)
        # Public: a public policy, or a public bucket ACL that counts (not ignored, ACLs on)
        public = policy.is_public(controls.statements) or (
            controls.acls_enabled
            and not controls.block.ignore_public_acls
            and acl.is_public(controls.grants)
        )
        body = xml.document("PolicyStatus", [xml.field("IsPublic", public)])
        return m.xml(200, body)
