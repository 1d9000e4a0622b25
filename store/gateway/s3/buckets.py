"""Bucket handlers: list, create, head, delete; location, versioning, tagging, CORS, policy."""

from __future__ import annotations

from typing import Any

from store.auth import users
from store.errors import BucketAlreadyExists, InvalidArgument, PermissionDenied, StoreError
from store.gateway.http import Response
from store.gateway.s3 import listings as s3_listings
from store.gateway.s3 import locking as s3_lock
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.engine import ObjectEngine
from store.objects.records import Bucket
from store.s3 import access, acl, cors, objectlock, policy, xml
from store.s3.errors import S3Error

OPERATIONS: dict[str, str] = {
    "ListBuckets": "list_buckets",
    "CreateBucket": "create_bucket",
    "HeadBucket": "head_bucket",
    "DeleteBucket": "delete_bucket",
    "GetBucketLocation": "get_bucket_location",
    "GetBucketVersioning": "get_bucket_versioning",
    "PutBucketVersioning": "put_bucket_versioning",
    "GetBucketTagging": "get_bucket_tagging",
    "PutBucketTagging": "put_bucket_tagging",
    "DeleteBucketTagging": "put_bucket_tagging",
    "GetBucketCors": "get_bucket_cors",
    "PutBucketCors": "put_bucket_cors",
    "DeleteBucketCors": "delete_bucket_cors",
    "PreflightRequest": "preflight",
    "GetBucketPolicy": "get_bucket_policy",
    "PutBucketPolicy": "put_bucket_policy",
    "DeleteBucketPolicy": "delete_bucket_policy",
}


class BucketHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def list_buckets(self, call: Call) -> Response:
        """ListBuckets, paginated (max-buckets, continuation-token: the last name listed) and
        filtered by prefix and region as AWS's ListBuckets is."""
        q = call.route.query
        owner = None if call.user == users.ROOT_USER else call.user
        limit = s3_listings.int_param(q, "max-buckets", 10000)
        if not 1 <= limit <= 10000:
            raise InvalidArgument("max-buckets must be between 1 and 10000")
        after = (
            s3_listings.decode_token(q["continuation-token"]) if "continuation-token" in q else ""
        )
        prefix = q.get("prefix", "")
        region = q.get("bucket-region")
        buckets = [
            b
            for b in await self.engine.list_buckets(owner)
            if b.name > after and b.name.startswith(prefix)
        ]
        if region is not None and region != self.config.region:
            buckets = []
        page = buckets[:limit]
        token = s3_listings.encode_token(page[-1].name) if len(buckets) > limit else ""
        body = xml.list_buckets(
            call.user,
            [(b.name, b.created) for b in page],
            region=self.config.region,
            prefix=q.get("prefix"),
            continuation_token=token,
        )
        return m.xml(200, body)

    async def create_bucket(self, call: Call) -> Response:
        if not call.user:
            raise PermissionDenied("anonymous requests may not create buckets")
        req = call.request
        ownership = req.header("x-amz-object-ownership") or self.config.object_ownership
        if ownership not in access.OWNERSHIPS:
            raise InvalidArgument(f"invalid x-amz-object-ownership {ownership!r}")
        exists = {k.user for k in await users.list_keys(self.engine.kv)} | {users.ROOT_USER}
        grants = acl.from_headers(
            req.header_map, call.user, call.user, for_bucket=True, user_exists=exists.__contains__
        )
        if grants is not None and ownership == access.BUCKET_OWNER_ENFORCED:
            if grants != acl.private(call.user):
                raise S3Error(
                    "InvalidBucketAclWithObjectOwnership",
                    400,
                    "bucket ACLs are not supported with BucketOwnerEnforced",
                )
            grants = None
        lock = (req.header("x-amz-bucket-object-lock-enabled") or "").strip().lower() == "true"
        location = xml.parse_create_bucket(await self.read_document(call))
        if location and location != self.config.region:
            raise S3Error(
                "InvalidLocationConstraint",
                400,
                "the specified location constraint is not valid for this server",
            )
        settings: dict[str, Any] = {"ownership": ownership}
        if grants is not None:
            settings["acl"] = acl.to_json(grants)
        if lock:  # object lock needs versioning, which can then never be suspended
            settings[s3_lock.SETTING] = objectlock.to_setting(objectlock.LockConfiguration())
        try:
            await self.engine.create_bucket(
                call.route.bucket,
                call.user,
                settings=settings,
                versioning="Enabled" if lock else "",
            )
        except BucketAlreadyExists as e:
            if e.owner != call.user:
                raise
            if self.config.region != "us-east-1":
                raise S3Error("BucketAlreadyOwnedByYou", 409, "you already own this bucket") from e
            # us-east-1's legacy rule: creating a bucket you own succeeds and resets its ACL
            reset = acl.to_json(grants) if grants is not None else None
            await self.engine.update_settings(
                call.route.bucket,
                lambda b: (
                    {**{k: v for k, v in b.settings.items() if k != "acl"}}
                    | ({"acl": reset} if reset is not None else {})
                ),
            )
        return Response(200, [("location", "/" + call.route.bucket)])

    async def head_bucket(self, call: Call) -> Response:
        await self._bucket(call)
        return Response(200, [("x-amz-bucket-region", self.config.region)])

    async def delete_bucket(self, call: Call) -> Response:
        await self._bucket(call)
        await self.engine.delete_bucket(call.route.bucket)
        return Response(204)

    async def get_bucket_location(self, call: Call) -> Response:
        await self._bucket(call)
        region = "" if self.config.region == "us-east-1" else self.config.region
        return m.xml(200, xml.document("LocationConstraint", [xml.escaped(region)]))

    async def get_bucket_versioning(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        fields = [xml.field("Status", bucket.versioning)] if bucket.versioning else []
        return m.xml(200, xml.document("VersioningConfiguration", fields))

    async def put_bucket_versioning(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        status = xml.parse_versioning(await self.read_document(call))
        if status != "Enabled" and s3_lock.configuration(bucket) is not None:
            raise S3Error(
                "InvalidBucketState",
                409,
                "an Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed",
            )
        await self.engine.update_bucket(call.route.bucket, versioning=status)
        return Response(200)

    async def get_bucket_tagging(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        tags = bucket.settings.get("tags")
        if not tags:
            raise S3Error("NoSuchTagSet", 404, "there is no tag set on this bucket")
        return m.xml(200, m.tagging_document(dict(sorted(tags.items()))))

    async def put_bucket_tagging(self, call: Call) -> Response:
        """PutBucketTagging, and DeleteBucketTagging (no tag set)."""
        bucket = await self._bucket(call)
        put = call.route.operation == "PutBucketTagging"
        tags = (
            xml.parse_tagging(await self.read_document(call), xml.BUCKET_TAG_LIMIT) if put else {}
        )

        def change(b: Bucket) -> dict[str, Any]:
            settings = {k: v for k, v in b.settings.items() if k != "tags"}
            return {**settings, "tags": tags} if tags else settings

        await self.engine.update_settings(bucket.name, change)
        return Response(204)

    async def get_bucket_cors(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        raw = bucket.settings.get("cors")
        if not raw:
            raise S3Error("NoSuchCORSConfiguration", 404, "the CORS configuration does not exist")
        return m.xml(200, raw.encode())

    async def put_bucket_cors(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        rendered = cors.render(cors.parse(await self.read_document(call))).decode()
        await self.put_setting(bucket.name, "cors", rendered)
        return Response(200)

    async def delete_bucket_cors(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        await self.engine.update_settings(bucket.name, lambda b: _without(b, "cors"))
        return Response(204)

    async def preflight(self, call: Call) -> Response:
        """OPTIONS: unauthenticated, answered from the bucket's CORS rules."""
        req = call.request
        origin = req.header("origin")
        method = req.header("access-control-request-method")
        if not origin or not method:
            raise S3Error(
                "BadRequest", 400, "a preflight needs Origin and Access-Control-Request-Method"
            )
        requested = [
            h.strip()
            for h in (req.header("access-control-request-headers") or "").split(",")
            if h.strip()
        ]
        bucket = await self.engine.get_bucket(call.route.bucket)
        raw = bucket.settings.get("cors")
        if not raw:
            raise S3Error("CORSResponse", 403, "CORS is not enabled for this bucket")
        rule = cors.find(cors.parse(raw.encode()), origin, method, requested)
        if rule is None:
            raise S3Error("CORSResponse", 403, "this CORS request is not allowed")
        return Response(
            200,
            cors.headers(rule, origin, preflight=True, method=method, request_headers=requested),
        )

    async def get_bucket_policy(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        raw = bucket.settings.get("policy")
        if not raw:
            raise S3Error("NoSuchBucketPolicy", 404, "the bucket policy does not exist")
        return Response(200, [("content-type", "application/json")], raw.encode())

    async def put_bucket_policy(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        raw = await m.read_small(call, policy.MAX_POLICY_BYTES)
        statements = policy.parse(raw, bucket.name)  # MalformedPolicy before anything is stored
        access.check_new_policy(self.authz.controls(bucket).block, statements)
        text = raw.decode()
        await self.put_setting(bucket.name, "policy", text)
        return Response(204)

    async def delete_bucket_policy(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        await self.engine.update_settings(bucket.name, lambda b: _without(b, "policy"))
        return Response(204)


def _without(bucket: Bucket, name: str) -> dict[str, Any]:
    return {k: v for k, v in bucket.settings.items() if k != name}


async def cors_headers(engine: ObjectEngine, call: Call) -> list[tuple[str, str]]:
    """The CORS headers of an actual (not preflight) request that carries Origin."""
    origin = call.request.header("origin")
    if not origin or not call.route.bucket or call.route.operation == "PreflightRequest":
        return []
    try:
        bucket = await engine.get_bucket(call.route.bucket)
    except StoreError:
        return []
    raw = bucket.settings.get("cors")
    if not raw:
        return []
    # the method a CORS rule is matched on: the one the request names (as a preflight would),
    # else its own
    method = call.request.header("access-control-request-method") or call.request.method
    rule = cors.find(cors.parse(raw.encode()), origin, method, [])
    return cors.headers(rule, origin, preflight=False) if rule else []
