"""The S3 gateway: HTTP requests -> route -> SigV4 -> engine -> HTTP responses.

Every request gets a request id (``x-amz-request-id``) and one access-log line. Errors are
mapped once (``store.s3.errors.code_for``) to S3's error document; anything that is not a store or
protocol error is logged with its traceback and answered 500 InternalError.

Request bodies stream into the engine: the aws-chunked framing is decoded (and every chunk
signature verified) on the way, a signed payload's SHA-256 is checked before the engine commits,
and a checksum sent as a trailer is handed to the engine to verify before the commit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from store.codec import checksums
from store.engine import users
from store.engine.master_keys import MasterKeys
from store.engine.multipart import CompletedPart
from store.engine.objects import ObjectEngine
from store.engine.records import Bucket, Version
from store.engine.sealing import Sealing
from store.errors import BucketAlreadyExists, InvalidArgument, PermissionDenied, StoreError
from store.gateway import (
    metrics,
    s3_acl,
    s3_copy,
    s3_lifecycle,
    s3_listings,
    s3_lock,
    s3_sse,
)
from store.gateway import s3_messages as m
from store.gateway.http import BadRequest, Request, Response
from store.gateway.s3_access import Authorizer
from store.gateway.s3_call import Call, GatewayConfig
from store.s3 import access, acl, cors, objectlock, policy, postform, sigv4, xml
from store.s3.errors import ErrorCode, S3Error, code_for, error_document
from store.s3.router import route

log = logging.getLogger(__name__)
access_log = logging.getLogger("store.access")


# The operations of the endpoint table (store.s3.endpoints) this gateway implements, and the
# method serving each; every other endpoint is answered NotImplemented.
OPERATIONS: dict[str, str] = {
    "ListBuckets": "list_buckets",
    "CreateBucket": "create_bucket",
    "HeadBucket": "head_bucket",
    "DeleteBucket": "delete_bucket",
    "GetBucketLocation": "get_bucket_location",
    "GetBucketVersioning": "get_bucket_versioning",
    "GetBucketTagging": "get_bucket_tagging",
    "PutBucketTagging": "put_bucket_tagging",
    "DeleteBucketTagging": "put_bucket_tagging",
    "GetObjectAttributes": "get_object_attributes",
    "GetBucketCors": "get_bucket_cors",
    "PutBucketCors": "put_bucket_cors",
    "DeleteBucketCors": "delete_bucket_cors",
    "PreflightRequest": "preflight",
    "GetBucketPolicy": "get_bucket_policy",
    "PutBucketPolicy": "put_bucket_policy",
    "DeleteBucketPolicy": "delete_bucket_policy",
    "PutBucketVersioning": "put_bucket_versioning",
    "ListObjects": "list_objects",
    "ListObjectsV2": "list_objects",
    "ListObjectVersions": "list_versions",
    "ListMultipartUploads": "list_uploads",
    "ListParts": "list_parts",
    "PutObject": "put_object",
    "GetObject": "get_object",
    "HeadObject": "get_object",
    "DeleteObject": "delete_object",
    "DeleteObjects": "delete_objects",
    "CopyObject": "copy_object",
    "UploadPartCopy": "upload_part_copy",
    "GetObjectTagging": "get_object_tagging",
    "PutObjectTagging": "put_object_tagging",
    "DeleteObjectTagging": "put_object_tagging",
    "PostObject": "post_object",
    "CreateMultipartUpload": "create_multipart",
    "UploadPart": "upload_part",
    "CompleteMultipartUpload": "complete_multipart",
    "AbortMultipartUpload": "abort_multipart",
}
IMPLEMENTED: frozenset[str] = (
    frozenset(OPERATIONS)
    | frozenset(s3_acl.OPERATIONS)
    | frozenset(s3_lock.OPERATIONS)
    | frozenset(s3_lifecycle.OPERATIONS)
    | frozenset(s3_sse.OPERATIONS)
)


class S3Gateway:
    def __init__(
        self,
        engine: ObjectEngine,
        config: GatewayConfig | None = None,
        master_keys: MasterKeys | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or GatewayConfig()
        self.keys = master_keys or MasterKeys()
        self.metrics = metrics.GatewayMetrics(engine)
        self.authz = Authorizer(engine)
        self._ops: dict[str, Callable[[Call], Awaitable[Response]]] = {
            op: getattr(self, name) for op, name in OPERATIONS.items()
        }
        self._ops.update(s3_acl.AclHandlers(engine, self.authz).handlers())
        self._ops.update(s3_lock.LockHandlers(engine, self.authz, self.config.day_s).handlers())
        self._ops.update(s3_lifecycle.LifecycleHandlers(engine, self.authz).handlers())
        self._ops.update(s3_sse.EncryptionHandlers(engine, self.authz).handlers())

    # -- the request pipeline -------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if _is_scrape(request):
            return Response(200, [("content-type", metrics.CONTENT_TYPE)], self.metrics.render())
        self.metrics.inflight.inc()
        try:
            return await self._handle(request)
        finally:
            self.metrics.inflight.dec()

    async def _handle(self, request: Request) -> Response:
        request_id = secrets.token_hex(8).upper()
        started = time.monotonic()
        call: Call | None = None
        try:
            headers = request.header_map
            r = route(
                request.method,
                request.target,
                headers.get("host", ""),
                headers,
                self.config.base_domains,
            )
            call = Call(request, r, request_id)
            await self._authenticate(call)
            handler = self._ops.get(r.operation)
            if handler is None:
                raise S3Error("NotImplemented", 501, f"{r.operation} is not implemented")
            response = await handler(call)
        except (StoreError, S3Error, Exception) as e:
            response = self._error(e, request, call, request_id)
        if call is not None and request.header("origin"):
            response.headers += await self._cors_headers(call)
        response.headers.append(("x-amz-request-id", request_id))
        response.headers.append(("server", "store"))
        elapsed = time.monotonic() - started
        access_log.info(
            "%s %s %s %s %d %.1fms %s",
            request.peer,
            call.user if call else "-",
            request.method,
            request.target[:200],
            response.status,
            1000 * elapsed,
            request_id,
        )
        sent = (
            response.length
            if response.length is not None
            else (len(response.body) if isinstance(response.body, bytes) else 0)
        )
        operation = call.route.operation if call else "Unknown"
        self.metrics.observe(operation, response.status, elapsed, request.body_bytes, sent)
        return response

    def _error(
        self, error: BaseException, request: Request, call: Call | None, request_id: str
    ) -> Response:
        code = code_for(error)
        if code.status == 500 and not isinstance(error, S3Error | StoreError):
            log.exception("request %s failed", request_id, exc_info=error)
            message = "we encountered an internal error; please try again"
        else:
            message = str(error)
        extra: dict[str, str] = {}
        headers: list[tuple[str, str]] = [("content-type", "application/xml")]
        if call is not None:
            if call.route.bucket:
                extra["BucketName"] = call.route.bucket
            if call.route.key:
                extra["Key"] = call.route.key
        if getattr(error, "delete_marker", False):
            headers.append(("x-amz-delete-marker", "true"))
            if getattr(error, "version_id", ""):
                headers.append(("x-amz-version-id", error.version_id))  # type: ignore[attr-defined]
        path = request.target.partition("?")[0]
        body = error_document(code, message, request_id=request_id, resource=path, extra=extra)
        if request.method == "HEAD" or code.status == 304:
            return Response(
                code.status,
                headers[1:] if code.status == 304 else headers,
                b"",
                length=None if code.status != 304 else 0,
            )
        return Response(code.status, headers, body)

    async def _authenticate(self, call: Call) -> None:
        req = call.request
        signed = sigv4.SignedRequest(
            req.method, call.route.raw_path, call.route.raw_query, req.headers
        )
        if call.route.operation == "PreflightRequest" or (
            sigv4.is_anonymous(signed) and call.route.bucket
        ):
            return  # anonymous: only what a bucket policy grants to "*" (checked per bucket)
        access_key = m.access_key_of(req, call.route.raw_query)
        found = await users.lookup(self.engine.kv, access_key) if access_key else None
        call.auth = sigv4.verify(
            signed, lambda ak: found.secret_key if found else None, region=self.config.region
        )
        assert found is not None
        call.user = found.user
        call.admin = found.user == users.ROOT_USER

    async def _listed(
        self, call: Call, fn: Callable[[ObjectEngine, Call], Awaitable[bytes]]
    ) -> Response:
        await self._bucket(call)
        return m.xml(200, await fn(self.engine, call))

    async def list_objects(self, call: Call) -> Response:
        return await self._listed(call, s3_listings.list_objects)

    async def list_versions(self, call: Call) -> Response:
        return await self._listed(call, s3_listings.list_versions)

    async def list_uploads(self, call: Call) -> Response:
        return await self._listed(call, s3_listings.list_uploads)

    async def list_parts(self, call: Call) -> Response:
        return await self._listed(call, s3_listings.list_parts)

    async def _bucket(self, call: Call, **kw: Any) -> Bucket:
        """The request's bucket, if the caller may do this operation on it (s3_access)."""
        return await self.authz.bucket(call, **kw)

    async def get_bucket_tagging(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        tags = bucket.settings.get("tags")
        if not tags:
            raise S3Error("NoSuchTagSet", 404, "there is no tag set on this bucket")
        return m.xml(200, _tagging(tags))

    async def put_bucket_tagging(self, call: Call) -> Response:
        """PutBucketTagging, and DeleteBucketTagging (no tag set)."""
        bucket = await self._bucket(call)
        put = call.route.operation == "PutBucketTagging"
        tags = xml.parse_tagging(await m.read_small(call), xml.BUCKET_TAG_LIMIT) if put else {}

        def change(b: Bucket) -> dict[str, Any]:
            settings = {k: v for k, v in b.settings.items() if k != "tags"}
            return {**settings, "tags": tags} if tags else settings

        await self.engine.update_settings(bucket.name, change)
        return Response(204)

    async def get_object_attributes(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        req, q = call.request, call.route.query
        wanted = {a.strip() for a in (req.header("x-amz-object-attributes") or "").split(",")}
        wanted.discard("")
        if not wanted:
            raise InvalidArgument("x-amz-object-attributes must name at least one attribute")
        v = await self.authz.object(call, bucket, version_id=q.get("versionId"))
        s3_sse.read_key(req.header_map, v.encryption, self.keys)  # SSE-C: the key is required
        out = []
        if "ETag" in wanted:
            out.append(xml.field("ETag", v.etag))
        if "Checksum" in wanted and v.checksum:
            out.append(
                xml.element(
                    "Checksum",
                    [
                        xml.field("Checksum" + v.checksum.algorithm, v.checksum.value),
                        xml.field("ChecksumType", v.checksum.type),
                    ],
                )
            )
        marker = _header_int(req.header("x-amz-part-number-marker"), 0, "part-number-marker")
        limit = min(_header_int(req.header("x-amz-max-parts"), 1000, "max-parts"), 1000)
        if "ObjectParts" in wanted and v.parts:
            numbered = list(enumerate(v.parts, 1))[marker : marker + limit]
            parts = []
            for number, part in numbered:
                children = [xml.field("PartNumber", number), xml.field("Size", part.size)]
                if part.checksum and v.checksum:
                    children.append(xml.field("Checksum" + v.checksum.algorithm, part.checksum))
                parts.append(xml.element("Part", children))
            last = numbered[-1][0] if numbered else marker
            out.append(
                xml.element(
                    "ObjectParts",
                    [
                        xml.field("PartsCount", len(v.parts)),
                        xml.field("PartNumberMarker", marker),
                        xml.field("NextPartNumberMarker", last),
                        xml.field("MaxParts", limit),
                        xml.field("IsTruncated", last < len(v.parts)),
                        *parts,
                    ],
                )
            )
        if "StorageClass" in wanted:
            out.append(xml.field("StorageClass", v.storage_class or "STANDARD"))
        if "ObjectSize" in wanted:
            out.append(xml.field("ObjectSize", v.size))
        headers = [("last-modified", m.http_date(v.mtime)), *m.version_headers(v)]
        return m.xml(200, xml.document("GetObjectAttributesResponse", out), headers)

    async def get_bucket_cors(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        raw = bucket.settings.get("cors")
        if not raw:
            raise S3Error("NoSuchCORSConfiguration", 404, "the CORS configuration does not exist")
        return m.xml(200, raw.encode())

    async def put_bucket_cors(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        rendered = cors.render(cors.parse(await m.read_small(call))).decode()
        await self.engine.update_settings(bucket.name, lambda b: {**b.settings, "cors": rendered})
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

    async def _cors_headers(self, call: Call) -> list[tuple[str, str]]:
        origin = call.request.header("origin")
        if not origin or not call.route.bucket or call.route.operation == "PreflightRequest":
            return []
        try:
            bucket = await self.engine.get_bucket(call.route.bucket)
        except StoreError:
            return []
        raw = bucket.settings.get("cors")
        if not raw:
            return []
        rule = cors.find(cors.parse(raw.encode()), origin, call.request.method, [])
        return cors.headers(rule, origin, preflight=False) if rule else []

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
        await self.engine.update_settings(bucket.name, lambda b: {**b.settings, "policy": text})
        return Response(204)

    async def delete_bucket_policy(self, call: Call) -> Response:
        bucket = await self._bucket(call)
        await self.engine.update_settings(bucket.name, lambda b: _without(b, "policy"))
        return Response(204)

    # -- service and buckets --------------------------------------------------------------------

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
        ownership = req.header("x-amz-object-ownership") or self.config.default_object_ownership
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
        location = xml.parse_create_bucket(await m.read_small(call))
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
            if e.owner == call.user:
                raise S3Error("BucketAlreadyOwnedByYou", 409, "you already own this bucket") from e
            raise
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
        status = xml.parse_versioning(await m.read_small(call))
        if status != "Enabled" and s3_lock.configuration(bucket) is not None:
            raise S3Error(
                "InvalidBucketState",
                409,
                "an Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed",
            )
        await self.engine.update_bucket(call.route.bucket, versioning=status)
        return Response(200)

    # -- objects --------------------------------------------------------------------------------

    async def _new_version(self, call: Call) -> tuple[Bucket, str, dict[str, Any], Sealing | None]:
        """For a request that writes an object: its bucket (authorized), the new version's
        owner, its attributes from the request (ACL, storage class, object lock), and how it is
        encrypted."""
        bucket = await self._bucket(call)
        owner = self.authz.new_object_owner(call, bucket)
        attributes: dict[str, Any] = {
            "acl": await self.authz.new_object_acl(call, bucket, owner),
            "storage_class": m.storage_class(call.request),
            **s3_lock.new_version_lock(call.request, bucket, self.config.day_s),
        }
        sealing = s3_sse.write_sealing(call.request.header_map, bucket, self.keys)
        return bucket, owner, attributes, sealing

    async def put_object(self, call: Call) -> Response:
        bucket, owner, attributes, sealing = await self._new_version(call)
        req = call.request
        if s3_lock.needs_integrity_check(req, bucket):
            raise S3Error(
                "InvalidRequest",
                400,
                "Content-MD5 or an x-amz-checksum- header is required for a PutObject with "
                "object lock parameters",
            )
        body, size, state = m.body_of(call, engine_checks_sha256=True)
        algorithm, expected = m.checksum_request(req)
        version = await self.engine.put_object(
            call.route.bucket,
            call.route.key,
            body,
            size=size,
            owner=owner,
            attributes=attributes,
            content_type=req.header("content-type") or "",
            metadata=m.user_metadata(req),
            headers=m.stored_headers(req),
            tags=m.parse_tagging_header(req.header("x-amz-tagging")),
            content_md5=m.content_md5(req),
            checksum_algorithm=algorithm,
            expected_checksum=expected
            if expected is not None
            else state.trailer_checksum(algorithm),
            if_match=req.header("if-match"),
            if_none_match=req.header("if-none-match"),
            payload_sha256=state.payload_sha256,
            sealing=sealing,
        )
        headers = [("etag", f'"{version.etag}"')]
        headers += m.version_headers(version)
        headers += s3_lifecycle.expiration_headers(bucket, version, self.config.day_s)
        headers += s3_sse.response_headers(req, version.encryption)
        if version.checksum:
            headers.append(
                (checksums.header_name(version.checksum.algorithm), version.checksum.value)
            )
        return Response(200, headers)

    async def get_object(self, call: Call) -> Response:
        """GetObject and HeadObject. Conditions are checked on the record before any data is
        read; a GET reads its first window before answering, so a read error is a clean S3
        error rather than a cut-off body."""
        req, q = call.request, call.route.query
        bucket = await self.engine.get_bucket(call.route.bucket)
        byte_range = m.parse_range(req.header("range"))
        part = q.get("partNumber")
        v = await self.authz.object(call, bucket, version_id=q.get("versionId"))
        data_key = s3_sse.read_key(req.header_map, v.encryption, self.keys)
        m.check_read_conditions(req, v)
        reader = self.engine.open_object(
            call.route.bucket,
            call.route.key,
            byte_range=byte_range,
            part_number=int(part) if part and part.isdigit() else None,
            version=v,
            deferred=True,
            data_key=data_key,
        )
        head = call.route.operation == "HeadObject"
        if head:
            reader.version = v
            reader.offset, reader.length = reader._resolve(v)
        else:
            await reader.__aenter__()
        headers = m.object_headers(v, q) + s3_lock.lock_headers(bucket, v)
        headers += s3_lifecycle.expiration_headers(bucket, v, self.config.day_s)
        headers += s3_sse.response_headers(req, v.encryption)
        status = 200
        if byte_range is not None:
            status = 206
            last = reader.offset + reader.length - 1
            headers.append(("content-range", f"bytes {reader.offset}-{last}/{v.size}"))
        if part:
            headers.append(("x-amz-mp-parts-count", str(len(v.parts) or 1)))
        if req.header("x-amz-checksum-mode") == "ENABLED" and v.checksum and byte_range is None:
            headers += _checksum_headers(v, int(part) if part and part.isdigit() else None)
        return Response(status, headers, b"" if head else reader, length=reader.length)

    async def copy_object(self, call: Call) -> Response:
        _, owner, attributes, sealing = await self._new_version(call)
        headers, body = await s3_copy.copy_object(
            self.engine,
            call,
            self._reader_of(call),
            owner=owner,
            attributes=attributes,
            source_key=self._source_key(call),
            sealing=sealing,
        )
        return m.xml(200, body, headers)

    async def upload_part_copy(self, call: Call) -> Response:
        await self._bucket(call)
        headers, body = await s3_copy.upload_part_copy(
            self.engine,
            call,
            self._reader_of(call),
            source_key=self._source_key(call),
            part_key=s3_sse.upload_key(call.request, self.keys),
        )
        return m.xml(200, body, headers)

    def _source_key(self, call: Call) -> Callable[[Version], bytes | None]:
        """The data key of a copy source, from the x-amz-copy-source-...-customer-* headers."""
        headers = call.request.header_map
        return lambda v: s3_sse.read_key(headers, v.encryption, self.keys, copy=True)

    def _reader_of(self, call: Call) -> Callable[[str, str, str | None], Awaitable[object]]:
        """A check that the caller may read a copy source (same rules as any GetObject)."""

        async def check(bucket: str, key: str, version_id: str | None) -> object:
            found = await self.engine.get_bucket(bucket)
            source = await self.engine.head_object(bucket, key, version_id)
            self.authz.check(
                call, found, operation="GetObject", key=key, version_id=version_id, obj=source
            )
            return found

        return check

    async def get_object_tagging(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        v = await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        return m.xml(200, _tagging(v.tags), m.version_headers(v))

    async def put_object_tagging(self, call: Call) -> Response:
        """PutObjectTagging, and DeleteObjectTagging (an empty tag set)."""
        bucket = await self.engine.get_bucket(call.route.bucket)
        await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        put = call.route.operation == "PutObjectTagging"
        tags = xml.parse_tagging(await m.read_small(call)) if put else {}
        v = await self.engine.set_object_tags(
            call.route.bucket, call.route.key, tags, call.route.query.get("versionId")
        )
        return Response(200 if put else 204, m.version_headers(v))

    async def post_object(self, call: Call) -> Response:
        """Browser upload: a multipart form whose policy is signed (see store/s3/postform.py)."""
        req = call.request
        form = postform.FormReader(postform.boundary_of(req.header("content-type")))
        pieces = aiter(req)
        async for piece in pieces:
            form.feed(piece)
            if form.file_started or form.done:
                break
        if not form.file_started:
            raise InvalidArgument("POST requires exactly one file upload per request")
        fields = form.fields
        access_key = fields.get("x-amz-credential", "").partition("/")[0]
        found = await users.lookup(self.engine.kv, access_key) if access_key else None
        sigv4.verify_post_policy(
            fields, lambda ak: found.secret_key if found else None, self.config.region
        )
        assert found is not None
        call.user = found.user
        call.admin = found.user == users.ROOT_USER
        key = fields.get("key", "").replace("${filename}", form.filename)
        bucket = await self.authz.bucket(call, key=key)
        policy_doc = postform.decode_policy(fields.get("policy", ""))
        postform.check_policy(policy_doc, fields, call.route.bucket, time.time())
        owner = self.authz.new_object_owner(call, bucket)
        acl_fields = {"x-amz-acl": fields["acl"]} if "acl" in fields else {}
        attributes = {
            "acl": await self.authz.new_object_acl(call, bucket, owner, acl_fields),
            "storage_class": m.storage_class_value(fields.get("x-amz-storage-class")),
        }
        sealing = s3_sse.write_sealing(fields, bucket, self.keys)
        low, high = policy_doc.length_range or (0, None)

        async def file_data() -> AsyncIterator[bytes]:
            total = 0
            chunks = form.take_file_data()
            while True:
                for chunk in chunks:
                    total += len(chunk)
                    if high is not None and total > high:
                        raise S3Error(
                            "EntityTooLarge",
                            400,
                            "your proposed upload exceeds the maximum allowed size",
                        )
                    yield chunk
                if form.done:
                    break
                piece = await anext(pieces, None)
                if piece is None:
                    raise S3Error("IncompleteBody", 400, "the form ended before the file did")
                form.feed(piece)
                chunks = form.take_file_data()
            if total < low:
                raise S3Error(
                    "EntityTooSmall",
                    400,
                    "your proposed upload is smaller than the minimum allowed size",
                )

        version = await self.engine.put_object(
            call.route.bucket,
            key,
            file_data(),
            owner=owner,
            attributes=attributes,
            sealing=sealing,
            content_type=fields.get("content-type") or form.file_content_type,
            metadata={
                n[len("x-amz-meta-") :]: v for n, v in fields.items() if n.startswith("x-amz-meta-")
            },
            tags=m.parse_tagging_header(fields.get("tagging")) if "tagging" in fields else None,
        )
        headers = [("etag", f'"{version.etag}"'), *m.version_headers(version)]
        location = f"/{call.route.bucket}/{quote(key)}"
        redirect = fields.get("success_action_redirect")
        if redirect:
            sep = "&" if "?" in redirect else "?"
            target = (
                f"{redirect}{sep}bucket={quote(call.route.bucket)}&key={quote(key)}"
                f"&etag={quote(chr(34) + version.etag + chr(34))}"
            )
            return Response(303, [("location", target), *headers])
        status = int(fields.get("success_action_status", "204") or 204)
        if status == 201:
            body = xml.document(
                "PostResponse",
                [
                    xml.field("Location", location),
                    xml.field("Bucket", call.route.bucket),
                    xml.field("Key", key),
                    xml.field("ETag", f'"{version.etag}"'),
                ],
            )
            return m.xml(201, body, [("location", location), *headers])
        return Response(200 if status == 200 else 204, [("location", location), *headers])

    async def delete_object(self, call: Call) -> Response:
        version_id = call.route.query.get("versionId")
        bucket = await self._bucket(call, version_id=version_id)
        result = await self.engine.delete_object(
            call.route.bucket,
            call.route.key,
            version_id,
            owner=call.user,
            bypass_governance=self._bypass_governance(call, bucket),
        )
        headers = []
        if result.delete_marker:
            headers.append(("x-amz-delete-marker", "true"))
        if result.version_id != "null" or call.route.query.get("versionId"):
            headers.append(("x-amz-version-id", result.version_id))
        return Response(204, headers)

    async def delete_objects(self, call: Call) -> Response:
        """Each key is authorized as its own DeleteObject; refused ones are reported as
        AccessDenied errors in the result, as S3 does."""
        bucket = await self.engine.get_bucket(call.route.bucket)
        objects, quiet = xml.parse_delete(await m.read_small(call))
        bypass = self._bypass_governance(call, bucket)
        out = []
        for key, version_id in objects:
            try:
                self.authz.check(
                    call, bucket, operation="DeleteObject", key=key, version_id=version_id
                )
                result = await self.engine.delete_object(
                    call.route.bucket, key, version_id, owner=call.user, bypass_governance=bypass
                )
            except (StoreError, S3Error) as e:
                code = code_for(e)
                out.append(
                    xml.element(
                        "Error",
                        [
                            xml.field("Key", key),
                            xml.field("Code", code.code),
                            xml.field("Message", str(e)),
                        ],
                    )
                )
                continue
            if quiet:
                continue
            children = [xml.field("Key", key)]
            if version_id:
                children.append(xml.field("VersionId", version_id))
            if result.delete_marker:
                children += [
                    xml.field("DeleteMarker", True),
                    xml.field("DeleteMarkerVersionId", result.version_id),
                ]
            out.append(xml.element("Deleted", children))
        return m.xml(200, xml.document("DeleteResult", out))

    def _bypass_governance(self, call: Call, bucket: Bucket) -> bool:
        """x-amz-bypass-governance-retention, for a caller holding s3:BypassGovernanceRetention
        (AccessDenied for one who asks without it)."""
        value = call.request.header("x-amz-bypass-governance-retention")
        if value is None or value.strip().lower() != "true":
            return False
        self.authz.check(call, bucket, operation="BypassGovernanceRetention")
        return True

    # -- multipart ------------------------------------------------------------------------------

    async def create_multipart(self, call: Call) -> Response:
        bucket, owner, attributes, sealing = await self._new_version(call)
        if sealing is not None:  # every part is sealed under this envelope's key
            attributes["encryption"] = {"env": sealing.envelope.to_json()}
        req = call.request
        algorithm = req.header("x-amz-checksum-algorithm") or ""
        upload = await self.engine.multipart.create(
            call.route.bucket,
            call.route.key,
            owner=owner,
            attributes=attributes,
            content_type=req.header("content-type") or "",
            metadata=m.user_metadata(req),
            headers=m.stored_headers(req),
            checksum_algorithm=algorithm,
            checksum_type=req.header("x-amz-checksum-type") or "",
        )
        body = xml.document(
            "InitiateMultipartUploadResult",
            [
                xml.field("Bucket", call.route.bucket),
                xml.field("Key", call.route.key),
                xml.field("UploadId", upload.upload_id),
            ],
        )
        headers = s3_lifecycle.abort_headers(bucket, upload, self.config.day_s)
        headers += s3_sse.response_headers(req, upload.encryption)
        if upload.checksum_algorithm:
            headers += [
                ("x-amz-checksum-algorithm", upload.checksum_algorithm),
                ("x-amz-checksum-type", upload.checksum_type),
            ]
        return m.xml(200, body, headers)

    async def upload_part(self, call: Call) -> Response:
        await self._bucket(call)
        q, req = call.route.query, call.request
        try:
            number = int(q.get("partNumber", ""))
        except ValueError:
            raise InvalidArgument("partNumber must be an integer") from None
        body, size, state = m.body_of(call, engine_checks_sha256=True)
        algorithm, expected = m.checksum_request(req)
        part = await self.engine.multipart.upload_part(
            call.route.bucket,
            call.route.key,
            q.get("uploadId", ""),
            number,
            body,
            size=size,
            content_md5=m.content_md5(req),
            checksum_algorithm=algorithm,
            expected_checksum=expected
            if expected is not None
            else state.trailer_checksum(algorithm),
            payload_sha256=state.payload_sha256,
            data_key=s3_sse.upload_key(req, self.keys),
        )
        headers = [("etag", f'"{part.etag}"')]
        if part.nonce:
            headers += s3_sse.part_response_headers(req)
        if part.checksum:
            alg, _, value = part.checksum.partition(":")
            headers.append((checksums.header_name(alg), value))
        return Response(200, headers)

    async def complete_multipart(self, call: Call) -> Response:
        await self._bucket(call)
        entries = xml.parse_complete_multipart(await m.read_small(call))
        req = call.request
        expected = None
        for algorithm in checksums.ALGORITHMS:
            value = req.header(checksums.header_name(algorithm))
            if value:
                expected = value
        listed = [
            CompletedPart(e.number, e.etag, next(iter(e.checksums.values()), "")) for e in entries
        ]
        version = await self.engine.multipart.complete(
            call.route.bucket,
            call.route.key,
            call.route.query.get("uploadId", ""),
            listed,
            expected_checksum=expected,
            checksum_type=req.header("x-amz-checksum-type") or "",
            if_match=req.header("if-match"),
            if_none_match=req.header("if-none-match"),
        )
        children = [
            xml.field("Location", f"/{call.route.bucket}/{call.route.key}"),
            xml.field("Bucket", call.route.bucket),
            xml.field("Key", call.route.key),
            xml.field("ETag", f'"{version.etag}"'),
        ]
        if version.checksum:
            children.append(
                xml.field("Checksum" + version.checksum.algorithm, version.checksum.value)
            )
            children.append(xml.field("ChecksumType", version.checksum.type))
        headers = m.version_headers(version) + s3_sse.response_headers(req, version.encryption)
        return m.xml(200, xml.document("CompleteMultipartUploadResult", children), headers)

    async def abort_multipart(self, call: Call) -> Response:
        await self._bucket(call)
        await self.engine.multipart.abort(
            call.route.bucket, call.route.key, call.route.query.get("uploadId", "")
        )
        return Response(204)


def _checksum_headers(v: Version, part_number: int | None) -> list[tuple[str, str]]:
    """A version's checksum headers (x-amz-checksum-mode); for ?partNumber= of a multipart
    object, the part's own checksum, as S3 answers."""
    assert v.checksum is not None
    name = checksums.header_name(v.checksum.algorithm)
    if part_number is not None and v.parts:
        value = v.parts[part_number - 1].checksum
        return [(name, value), ("x-amz-checksum-type", v.checksum.type)] if value else []
    return [(name, v.checksum.value), ("x-amz-checksum-type", v.checksum.type)]


def _header_int(value: str | None, default: int, name: str) -> int:
    """A non-negative integer header (InvalidArgument otherwise)."""
    if value is None:
        return default
    if not value.strip().isdigit():
        raise InvalidArgument(f"x-amz-{name} must be a non-negative integer")
    return int(value)


def _without(bucket: Bucket, name: str) -> dict[str, Any]:
    return {k: v for k, v in bucket.settings.items() if k != name}


def _tagging(tags: dict[str, str]) -> bytes:
    items = [
        xml.element("Tag", [xml.field("Key", k), xml.field("Value", v)]) for k, v in tags.items()
    ]
    return xml.document("Tagging", [xml.element("TagSet", items)])


def _is_scrape(request: Request) -> bool:
    """Prometheus scrapes GET /metrics without credentials; a signed request for /metrics is
    S3 (a bucket may be called "metrics")."""
    return (
        request.method == "GET"
        and request.target == "/metrics"
        and request.header("authorization") is None
    )


def bad_request_response(request: Request | None, error: BadRequest) -> Response:
    """Answers to requests the HTTP layer refuses before routing (malformed, too large)."""
    code = {431: "RequestHeaderSectionTooLarge", 414: "RequestURITooLong"}.get(
        error.status, "BadRequest"
    )
    body = error_document(
        ErrorCode(code, error.status), str(error), request_id=secrets.token_hex(8).upper()
    )
    return Response(error.status, [("content-type", "application/xml")], body)
