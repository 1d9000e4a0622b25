"""Bucket lifecycle rules, applied in the background (the rules themselves: store.s3.lifecycle).

Each pass visits every bucket that has rules, in bounded batches of keys (``batch``), and for
each key reads its versions (newest first) and applies what is due:

- Expiration of the current version: removed (unversioned buckets) or hidden under a new delete
  marker (versioned ones); ExpiredObjectDeleteMarker removes a delete marker left alone.
- NoncurrentVersionExpiration: a noncurrent version (or delete marker) is removed once it has
  been noncurrent for NoncurrentDays, keeping the NewerNoncurrentVersions newest.
- AbortIncompleteMultipartUpload: uploads begun DaysAfterInitiation ago are aborted.

Every removal goes through the engine's own delete, which refuses a version under object lock:
such versions are skipped and counted, never removed. A cursor per bucket (``LC/<bucket>``,
the last key done) is saved after every batch, so a restart resumes where the last pass stopped;
the actions are functions of the versions and the clock, so a key visited twice is harmless.
"""

from __future__ import annotations

import json
import logging
import time

from store.errors import Locked, NoSuchUpload, StoreError
from store.meta.api import prefix_end
from store.objects import keyspace as K
from store.objects.engine import ObjectEngine
from store.objects.records import Bucket, Version
from store.s3 import lifecycle, lifecycle_due
from store.s3.lifecycle import Rule

log = logging.getLogger(__name__)

CURSOR_PREFIX = b"LC/"
SETTING = "lifecycle"
BATCH_KEYS = 500
MAX_VERSIONS_PER_KEY = 10_000


def rules_of(bucket: Bucket) -> list[Rule]:
    raw = bucket.settings.get(SETTING)
    return lifecycle.from_setting(raw) if raw else []


def _cursor_key(bucket: str) -> bytes:
    return CURSOR_PREFIX + bucket.encode()


class LifecycleRunner:
    def __init__(self, engine: ObjectEngine, *, day_s: float = lifecycle.DAY_S) -> None:
        self.engine = engine
        self.kv = engine.kv
        self.day_s = day_s
        self.stats = engine.stats  # lifecycle_* counters (exported as metrics)

    async def run_pass(self, *, batch: int = BATCH_KEYS, now: float | None = None) -> bool:
        """One batch for every bucket with rules; True while some bucket has more to visit."""
        more = False
        for bucket in await self.engine.list_buckets():
            rules = [r for r in rules_of(bucket) if r.enabled]
            if rules:
                more |= await self._bucket_batch(bucket, rules, batch, now)
        return more

    async def _bucket_batch(
        self, bucket: Bucket, rules: list[Rule], batch: int, now: float | None
    ) -> bool:
        saved = await self.kv.get(_cursor_key(bucket.name))
        after = json.loads(saved.value)["after"] if saved else ""
        if after == "":
            await self._abort_uploads(bucket, rules, now)
        base = K.current_prefix(bucket.name)
        start = base + after.encode() + b"\0" if after else base
        page = await self.kv.range(start, prefix_end(base), limit=batch, keys_only=True)
        for item in page.kvs:
            key = item.key[len(base) :].decode()
            try:
                await self._key(bucket, rules, key, time.time() if now is None else now)
            except StoreError as e:  # one key's trouble must not stop the others
                log.warning("lifecycle: %s/%s: %s", bucket.name, key, e)
        last = page.kvs[-1].key[len(base) :].decode() if page.more and page.kvs else ""
        await self.kv.put(_cursor_key(bucket.name), json.dumps({"after": last}).encode())
        return bool(last)

    async def _versions(self, bucket: str, key: str) -> list[Version]:
        prefix = K.versions_of(bucket, key)
        page = await self.kv.range(prefix, prefix_end(prefix), limit=MAX_VERSIONS_PER_KEY)
        return [Version.decode(bucket, key, kv.value) for kv in page.kvs]

    async def _remove(self, bucket: str, key: str, version_id: str) -> bool:
        try:
            await self.engine.delete_object(bucket, key, version_id)
        except Locked:
            self.stats.lifecycle_locked_skipped += 1
            return False
        return True

    async def _key(self, bucket: Bucket, rules: list[Rule], key: str, now: float) -> None:
        versions = await self._versions(bucket.name, key)
        if not versions:
            return
        current = versions[0]
        if not current.delete_marker:
            due = lifecycle_due.expiration_due(
                rules, key, current.size, current.tags, current.mtime, now, self.day_s
            )
            if due is not None:
                if bucket.versioning == "":
                    if await self._remove(bucket.name, key, current.public_id):
                        self.stats.lifecycle_expired += 1
                    return
                await self.engine.delete_object(bucket.name, key)  # a delete marker
                self.stats.lifecycle_expired += 1
                versions = await self._versions(bucket.name, key)
        elif lifecycle_due.delete_marker_expired(
            rules, key, len(versions) == 1, mtime=current.mtime, now=now, day_s=self.day_s
        ):
            if await self._remove(bucket.name, key, current.public_id):
                self.stats.lifecycle_markers_removed += 1
            return
        for i, v in enumerate(versions[1:], 1):
            due = lifecycle_due.noncurrent_due(
                rules, key, v.size, v.tags, versions[i - 1].mtime, i - 1, now, self.day_s
            )
            if due is not None and await self._remove(bucket.name, key, v.public_id):
                self.stats.lifecycle_noncurrent_expired += 1

    async def _abort_uploads(self, bucket: Bucket, rules: list[Rule], now: float | None) -> None:
        if not any(r.abort_days is not None for r in rules):
            return
        when = time.time() if now is None else now
        marker = ("", "")
        while True:
            page = await self.engine.list_uploads(
                bucket.name, key_marker=marker[0], upload_marker=marker[1], max_uploads=1000
            )
            for upload in page.uploads:
                if lifecycle_due.abort_due(rules, upload.key, upload.initiated, when, self.day_s):
                    try:
                        await self.engine.multipart.abort(bucket.name, upload.key, upload.upload_id)
                        self.stats.lifecycle_uploads_aborted += 1
                    except NoSuchUpload:
                        pass  # completed or aborted meanwhile
            if not page.truncated:
                return
            marker = (page.next_key_marker, page.next_upload_marker)
