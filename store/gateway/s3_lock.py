"""Object lock in the gateway: the bucket configuration, retention and legal hold of versions.

The rules are ``store.s3.objectlock``'s; the engine refuses to remove a locked version whatever
asks (DeleteObject, DeleteObjects, lifecycle), so this module only sets and shows locks. The
configuration is kept in the bucket's settings (``object_lock``); a bucket with it always has
versioning enabled, which can then not be suspended.
"""

from __future__ import annotations

import time
from typing import Any

from store.engine.objects import ObjectEngine
from store.engine.records import Bucket, Version
from store.gateway import s3_messages as m
from store.gateway.http import Request, Response
from store.gateway.s3_access import Authorizer, HandlerGroup
from store.gateway.s3_call import Call
from store.s3 import objectlock
from store.s3.errors import S3Error
from store.s3.objectlock import LockConfiguration, Retention

OPERATIONS: dict[str, str] = {
    "GetObjectLockConfiguration": "get_configuration",
    "PutObjectLockConfiguration": "put_configuration",
    "GetObjectRetention": "get_retention",
    "PutObjectRetention": "put_retention",
    "GetObjectLegalHold": "get_legal_hold",
    "PutObjectLegalHold": "put_legal_hold",
}
SETTING = "object_lock"


def configuration(bucket: Bucket) -> LockConfiguration | None:
    raw = bucket.settings.get(SETTING)
    return objectlock.from_setting(raw) if raw else None


def retention_of(v: Version) -> Retention | None:
    return Retention(v.retention[0], v.retention[1]) if v.retention else None


def new_version_lock(req: Request, bucket: Bucket, day_s: float) -> dict[str, Any]:
    """The lock attributes of a version a request writes (PutObject, CopyObject, multipart):
    its ``x-amz-object-lock-*`` headers, else the bucket's default retention. Lock headers on a
    bucket without object lock are InvalidRequest, as in S3."""
    headers = req.header_map
    retention = objectlock.retention_from_headers(headers)
    hold = objectlock.legal_hold_from_headers(headers)
    config = configuration(bucket)
    if retention is None and hold is None:
        if config is None:
            return {}
        default = objectlock.default_retention(config, time.time(), day_s)
        return {"retention": (default.mode, default.until)} if default else {}
    objectlock.require_configuration(config)
    if retention is not None:
        objectlock.check_new_retention(None, retention, time.time(), bypass_governance=False)
    elif config is not None:
        retention = objectlock.default_retention(config, time.time(), day_s)
    out: dict[str, Any] = {"legal_hold": bool(hold)}
    if retention is not None:
        out["retention"] = (retention.mode, retention.until)
    return out


def lock_headers(bucket: Bucket, v: Version) -> list[tuple[str, str]]:
    """GetObject/HeadObject's lock headers, for versions in a bucket with object lock."""
    if configuration(bucket) is None:
        return []
    return objectlock.lock_headers(retention_of(v), v.legal_hold if v.legal_hold else None)


def needs_integrity_check(req: Request, bucket: Bucket) -> bool:
    """S3 refuses a PutObject that carries no Content-MD5 or checksum when the version will be
    locked: by its lock headers, or by the bucket's default retention."""
    names = (objectlock.MODE_HEADER, objectlock.UNTIL_HEADER, objectlock.LEGAL_HOLD_HEADER)
    config = configuration(bucket)
    defaulted = config is not None and config.default is not None
    if not defaulted and not any(req.header(n) is not None for n in names):
        return False
    checked = req.header("content-md5") is not None or req.header("x-amz-trailer") is not None
    checked = checked or any(n.startswith("x-amz-checksum-") for n in req.header_map)
    return not checked


class LockHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    def __init__(self, engine: ObjectEngine, authz: Authorizer, day_s: float) -> None:
        super().__init__(engine, authz)
        self.day_s = day_s

    async def get_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        config = configuration(bucket)
        if config is None:
            raise S3Error(
                "ObjectLockConfigurationNotFoundError",
                404,
                "Object Lock configuration does not exist for this bucket",
            )
        return m.xml(200, objectlock.render_configuration(config))

    async def put_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        config = objectlock.parse_configuration(await m.read_small(call))
        if bucket.versioning != "Enabled":
            raise S3Error(
                "InvalidBucketState",
                409,
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
            )
        value = objectlock.to_setting(config)
        await self.engine.update_settings(bucket.name, lambda b: {**b.settings, SETTING: value})
        return Response(200)

    async def _locked_version(self, call: Call) -> tuple[Bucket, Version]:
        bucket = await self.engine.get_bucket(call.route.bucket)
        v = await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        objectlock.require_configuration(configuration(bucket))
        return bucket, v

    async def get_retention(self, call: Call) -> Response:
        _, v = await self._locked_version(call)
        retention = retention_of(v)
        if retention is None:
            raise S3Error(
                "NoSuchObjectLockConfiguration",
                404,
                "the specified object does not have an ObjectLock configuration",
            )
        return m.xml(200, objectlock.render_retention(retention), m.version_headers(v))

    async def put_retention(self, call: Call) -> Response:
        bucket, v = await self._locked_version(call)
        new = objectlock.parse_retention(await m.read_small(call))
        bypass = objectlock.bypass_from_headers(call.request.header_map)
        if bypass:
            self.authz.check(call, bucket, operation="BypassGovernanceRetention")

        def change(rec: Version) -> Version:
            objectlock.check_new_retention(retention_of(rec), new, time.time(), bypass)
            return rec.with_(retention=(new.mode, new.until) if new else None)

        done = await self.engine.update_version(bucket.name, call.route.key, v.public_id, change)
        return Response(200, m.version_headers(done))

    async def get_legal_hold(self, call: Call) -> Response:
        _, v = await self._locked_version(call)
        return m.xml(200, objectlock.render_legal_hold(v.legal_hold), m.version_headers(v))

    async def put_legal_hold(self, call: Call) -> Response:
        bucket, v = await self._locked_version(call)
        on = objectlock.parse_legal_hold(await m.read_small(call))
        done = await self.engine.update_version(
            bucket.name, call.route.key, v.public_id, lambda rec: rec.with_(legal_hold=on)
        )
        return Response(200, m.version_headers(done))
