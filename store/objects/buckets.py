"""Buckets: create, look up, list, change settings, delete (a part of ``ObjectEngine``).

A bucket is one record, ``B/<bucket>``; every change is a compare-and-swap on its revision, so
concurrent setting changes never lose each other, and object writes (which compare it too) never
land in a bucket being deleted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from store.errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Conflict,
    InvalidArgument,
    NoSuchBucket,
)
from store.meta.api import KV, Compare, KeyValue, Put, prefix_end
from store.objects import keyspace as K
from store.objects.records import Bucket

if TYPE_CHECKING:  # typing only: the mixin's host provides it
    from store.objects.multipart import Multipart

TXN_RETRIES = 60


async def _backoff(attempt: int) -> None:
    """Spread the retries of writers racing for one bucket record (jitter, growing)."""
    if attempt:
        await trio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))


class BucketMethods:
    """The bucket half of ``ObjectEngine`` (a mixin: its host has ``kv`` and ``multipart``)."""

    kv: KV
    multipart: Multipart

    async def create_bucket(
        self,
        name: str,
        owner: str,
        *,
        versioning: str = "",
        compression: str = "",
        settings: dict[str, Any] | None = None,
    ) -> Bucket:
        K.check_bucket_name(name)
        if versioning not in ("", "Enabled", "Suspended"):
            raise InvalidArgument("versioning must be Enabled or Suspended")
        if compression not in ("", "zstd"):
            raise InvalidArgument(f"unknown compression {compression!r}")
        bucket = Bucket(name, owner, time.time(), versioning, compression, dict(settings or {}))
        key = K.bucket_key(name)
        result = await self.kv.txn([Compare.absent(key)], [Put(key, bucket.encode())], [])
        if not result.succeeded:
            existing = await self.bucket_record(name)
            raise BucketAlreadyExists(f"bucket {name} exists", owner=existing[0].owner)
        return bucket

    async def bucket_record(self, name: str) -> tuple[Bucket, KeyValue]:
        K.check_bucket_lookup(name)
        kv = await self.kv.get(K.bucket_key(name))
        if kv is None:
            raise NoSuchBucket(f"no bucket {name!r}")
        bucket = Bucket.decode(kv.value)
        if bucket.deleting:
            raise NoSuchBucket(f"bucket {name!r} is being deleted")
        return bucket, kv

    async def get_bucket(self, name: str) -> Bucket:
        return (await self.bucket_record(name))[0]

    async def list_buckets(self, owner: str | None = None) -> list[Bucket]:
        out = []
        start, end = b"B/", prefix_end(b"B/")
        while True:
            page = await self.kv.range(start, end, limit=1000)
            for kv in page.kvs:
                bucket = Bucket.decode(kv.value)
                if not bucket.deleting and (owner is None or bucket.owner == owner):
                    out.append(bucket)
            if not page.more:
                return out
            start = page.kvs[-1].key + b"\0"

    async def update_bucket(self, name: str, **changes: Any) -> Bucket:
        """Change bucket settings (versioning, compression, settings) atomically."""
        if "versioning" in changes and changes["versioning"] not in ("Enabled", "Suspended"):
            raise InvalidArgument("versioning must be Enabled or Suspended")
        if changes.get("compression", "") not in ("", "zstd"):
            raise InvalidArgument(f"unknown compression {changes['compression']!r}")
        for attempt in range(TXN_RETRIES):
            await _backoff(attempt)
            bucket, kv = await self.bucket_record(name)
            new = Bucket(**{**_fields(bucket), **changes})
            ok = await self.kv.txn(
                [Compare.mod_is(kv.key, kv.mod_revision)], [Put(kv.key, new.encode())], []
            )
            if ok.succeeded:
                return new
        raise Conflict(f"bucket {name} is changing too fast")

    async def update_settings(
        self, name: str, change: Callable[[Bucket], dict[str, Any]]
    ) -> Bucket:
        """Replace a bucket's gateway-owned settings with ``change(bucket)``, computed from the
        record as committed (so concurrent changes of other settings are never lost); ``change``
        may raise to refuse."""
        for attempt in range(TXN_RETRIES):
            await _backoff(attempt)
            bucket, kv = await self.bucket_record(name)
            new = Bucket(**{**_fields(bucket), "settings": change(bucket)})
            ok = await self.kv.txn(
                [Compare.mod_is(kv.key, kv.mod_revision)], [Put(kv.key, new.encode())], []
            )
            if ok.succeeded:
                return new
        raise Conflict(f"bucket {name} is changing too fast")

    async def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (no objects, versions or delete markers). Uploads in progress
        are aborted. The bucket is first marked as being deleted, which makes every concurrent
        write fail its compare, so nothing can land in it between the check and the delete."""
        bucket, kv = await self.bucket_record(name)
        if await self._has_any(K.versions_prefix(name)):
            raise BucketNotEmpty(f"bucket {name} is not empty")
        marked = Bucket(**{**_fields(bucket), "deleting": True})
        ok = await self.kv.txn(
            [Compare.mod_is(kv.key, kv.mod_revision)], [Put(kv.key, marked.encode())], []
        )
        if not ok.succeeded:
            raise Conflict(f"bucket {name} changed while being deleted")
        if await self._has_any(K.versions_prefix(name)):
            await self.kv.put(kv.key, bucket.encode())  # undo the mark
            raise BucketNotEmpty(f"bucket {name} is not empty")
        await self.multipart.abort_all(name)
        await self.kv.delete(kv.key)

    async def _has_any(self, prefix: bytes) -> bool:
        page = await self.kv.range(prefix, prefix_end(prefix), limit=1, keys_only=True)
        return bool(page.kvs)


def _fields(bucket: Bucket) -> dict[str, Any]:
    return {name: getattr(bucket, name) for name in Bucket.__dataclass_fields__}
