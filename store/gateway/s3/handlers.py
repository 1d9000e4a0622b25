"""What every group of S3 handlers shares: the services, authorization of the request's bucket,
and the write-side helpers (a new version's owner and attributes, copy sources, bypass)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from store.auth.master_keys import MasterKeys
from store.config import S3Config
from store.gateway.http import Response
from store.gateway.s3 import encryption as s3_sse
from store.gateway.s3 import locking as s3_lock
from store.gateway.s3 import messages as m
from store.gateway.s3.access import Authorizer
from store.gateway.s3.call import Call
from store.objects.engine import ObjectEngine
from store.objects.records import Bucket, Version
from store.objects.sealing import Sealing


@dataclass(frozen=True)
class Services:
    engine: ObjectEngine
    authz: Authorizer
    config: S3Config
    keys: MasterKeys


class HandlerGroup:
    """The handlers of one area of the API: the subclass names them in ``OPERATIONS``
    (operation -> method name)."""

    OPERATIONS: dict[str, str] = {}

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.authz = services.authz
        self.config = services.config
        self.keys = services.keys

    async def read_document(self, call: Call, *, listing: bool = False) -> bytes:
        """A request's XML document, within s3.max_xml_bytes (``listing``: a document that
        lists parts or keys, within s3.max_list_xml_bytes)."""
        limit = self.config.max_list_xml_bytes if listing else self.config.max_xml_bytes
        return await m.read_small(call, limit)

    def handlers(self) -> dict[str, Callable[[Call], Awaitable[Response]]]:
        return {op: getattr(self, name) for op, name in self.OPERATIONS.items()}

    async def _bucket(self, call: Call, **kw: Any) -> Bucket:
        """The request's bucket, if the caller may do this operation on it (s3_access)."""
        return await self.authz.bucket(call, **kw)

    async def put_setting(self, bucket: str, name: str, value: Any) -> None:
        """The bucket's setting ``name`` set to ``value`` (the others as they are then)."""
        await self.engine.update_settings(bucket, lambda b: {**b.settings, name: value})

    async def drop_setting(self, call: Call, name: str) -> Response:
        """Delete<Configuration>: the bucket's setting ``name`` removed (204)."""
        bucket = await self.authz.bucket(call)
        await self.engine.update_settings(
            bucket.name, lambda b: {k: v for k, v in b.settings.items() if k != name}
        )
        return Response(204)

    async def new_version(self, call: Call) -> tuple[Bucket, str, dict[str, Any], Sealing | None]:
        """For a request that writes an object: its bucket (authorized), the new version's
        owner, its attributes from the request (ACL, storage class, object lock), and how it is
        encrypted."""
        bucket = await self._bucket(call)
        owner = self.authz.new_object_owner(call, bucket)
        attributes: dict[str, Any] = {
            "acl": await self.authz.new_object_acl(call, bucket, owner),
            "storage_class": m.storage_class(call.request),
            **s3_lock.new_version_lock(call.request, bucket, self.config.lifecycle_day_seconds),
        }
        sealing = s3_sse.write_sealing(call.request.header_map, bucket, self.keys)
        return bucket, owner, attributes, sealing

    def source_key(self, call: Call) -> Callable[[Version], bytes | None]:
        """The data key of a copy source, from the x-amz-copy-source-...-customer-* headers."""
        headers = call.request.header_map
        return lambda v: s3_sse.read_key(headers, v.encryption, self.keys, copy=True)

    def reader_of(self, call: Call) -> Callable[[str, str, str | None], Awaitable[object]]:
        """A check that the caller may read a copy source (same rules as any GetObject)."""

        async def check(bucket: str, key: str, version_id: str | None) -> object:
            found = await self.engine.get_bucket(bucket)
            source = await self.engine.head_object(bucket, key, version_id)
            self.authz.check(
                call, found, operation="GetObject", key=key, version_id=version_id, obj=source
            )
            return found

        return check

    def bypass_governance(self, call: Call, bucket: Bucket) -> bool:
        """x-amz-bypass-governance-retention, for a caller holding s3:BypassGovernanceRetention
        (AccessDenied for one who asks without it)."""
        value = call.request.header("x-amz-bypass-governance-retention")
        if value is None or value.strip().lower() != "true":
            return False
        self.authz.check(call, bucket, operation="BypassGovernanceRetention")
        return True
