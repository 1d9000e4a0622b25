"""Bucket lifecycle configuration handlers, and the x-amz-expiration / x-amz-abort-* headers.

The rules are ``store.s3.lifecycle``'s; the background runner that applies them is
``store.objects.lifecycle``. The configuration lives in the bucket's settings (``lifecycle``).
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from store.gateway.http import Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.lifecycle import SETTING, rules_of
from store.objects.records import Bucket, Upload, Version
from store.s3 import lifecycle, lifecycle_due
from store.s3.errors import S3Error

OPERATIONS: dict[str, str] = {
    "GetBucketLifecycleConfiguration": "get_configuration",
    "PutBucketLifecycleConfiguration": "put_configuration",
    "DeleteBucketLifecycle": "delete_configuration",
}


def expiration_headers(bucket: Bucket, v: Version, day_s: float) -> list[tuple[str, str]]:
    """x-amz-expiration of a current version a rule will expire (PUT, GET, HEAD answers)."""
    rules = rules_of(bucket)
    if not rules or v.delete_marker:
        return []
    value = lifecycle_due.expiration_header(rules, v.key, v.size, v.tags, v.mtime, day_s)
    return [("x-amz-expiration", value)] if value else []


def abort_headers(bucket: Bucket, upload: Upload, day_s: float) -> list[tuple[str, str]]:
    """x-amz-abort-date and -rule-id of an upload a rule will abort."""
    rules = rules_of(bucket)
    return lifecycle_due.abort_headers(rules, upload.key, upload.initiated, day_s) if rules else []


class LifecycleHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def get_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        rules = rules_of(bucket)
        if not rules:
            raise S3Error(
                "NoSuchLifecycleConfiguration", 404, "the lifecycle configuration does not exist"
            )
        return m.xml(200, lifecycle.render(rules))

    async def put_configuration(self, call: Call) -> Response:
        bucket = await self.authz.bucket(call)
        rules = lifecycle.parse(await self.read_document(call))
        # S3 names a rule that has no ID (the ID is what x-amz-expiration reports)
        rules = [r if r.rule_id else replace(r, rule_id=secrets.token_hex(12)) for r in rules]
        value = lifecycle.to_setting(rules)
        await self.put_setting(bucket.name, SETTING, value)
        return Response(200)

    async def delete_configuration(self, call: Call) -> Response:
        return await self.drop_setting(call, SETTING)
