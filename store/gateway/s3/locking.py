"""Object lock in the gateway: what a write and a read need (a new version's lock, the headers).

The rules are ``store.s3.objectlock``'s; the engine refuses to remove a locked version whatever
asks (DeleteObject, DeleteObjects, lifecycle), so this module only sets and shows locks. The
configuration is kept in the bucket's settings (``object_lock``); a bucket with it always has
versioning enabled, which can then not be suspended.
"""

from __future__ import annotations

import time
from typing import Any

from store.gateway.http import Request
from store.objects.records import Bucket, Version
from store.s3 import objectlock
from store.s3.objectlock import LockConfiguration, Retention

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
