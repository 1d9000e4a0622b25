"""Object lock handlers: the bucket configuration, retention and legal hold of versions (the
rules: ``store.s3.objectlock``; the engine refuses removing a locked version)."""

from __future__ import annotations

import time

from store.gateway.http import Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.gateway.s3.locking import SETTING, configuration, retention_of
from store.objects.records import Bucket, Version
from store.s3 import objectlock
from store.s3.errors import S3Error

OPERATIONS: dict[str, str] = {
    "GetObjectLockConfiguration": "get_configuration",
    "PutObjectLockConfiguration": "put_configuration",
    "GetObjectRetention": "get_retention",
    "PutObjectRetention": "put_retention",
    "GetObjectLegalHold": "get_legal_hold",
    "PutObjectLegalHold": "put_legal_hold",
}


class LockHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

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
        config = objectlock.parse_configuration(await self.read_document(call))
        if bucket.versioning != "Enabled":
            raise S3Error(
                "InvalidBucketState",
                409,
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
            )
        value = objectlock.to_setting(config)
        await self.put_setting(bucket.name, SETTING, value)
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
        new = objectlock.parse_retention(await self.read_document(call))
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
        on = objectlock.parse_legal_hold(await self.read_document(call))
        done = await self.engine.update_version(
            bucket.name, call.route.key, v.public_id, lambda rec: rec.with_(legal_hold=on)
        )
        return Response(200, m.version_headers(done))
