"""The metadata KV on etcd v3 (the cluster backend), through its JSON gateway (etcd_http.py).

etcd is the model the KV contract (api.py) was written from, so most calls map one to one:
``range``, ``put``, ``deleterange``, ``txn``, ``compaction``, the lease calls, and ``watch``
(etcd_watch.py). What this module adds is the translation (base64 bytes, string integers,
proto3 JSON leaving out zero values) and the few points where the contract differs:

- Arguments are checked here first (``check_txn`` and friends), so a bad call gets the same
  InvalidArgument as on the embedded backends, and never costs a round trip.
- ``lease_revoke`` of an unknown lease is a no-op (etcd answers NotFound).
- ``watch(prefix, 0)`` starts after the revision current when the watch is opened (read first),
  so a write made after ``watch`` returns is always seen.
- etcd's errors map to the domain's: compacted -> Compacted, a future revision or a request
  etcd refuses -> InvalidArgument, an unknown lease on keep-alive -> NotFound, database space
  exceeded -> NoSpace, no leader / timeouts / unreachable -> Unavailable.

Limits (etcd's defaults, docs/cluster.md): 1.5 MiB per request, 128 ops per txn branch.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

from store.errors import InvalidArgument, NoSpace, NotFound, Unavailable
from store.meta.api import (
    MAX_TXN_OPS,
    MIN_LEASE_TTL_S,
    Compacted,
    Compare,
    Delete,
    Get,
    KeyValue,
    LeaseTTL,
    Op,
    Put,
    RangeResult,
    TxnResult,
    WatchBatch,
    check_key,
    check_lease_ttl,
    check_range,
    check_txn,
    check_value,
    check_watch,
)
from store.meta.etcd_http import Endpoint, EtcdError, EtcdHttp, parse_endpoints
from store.meta.etcd_watch import EtcdWatch

_TARGETS = {
    "value": "VALUE",
    "version": "VERSION",
    "create": "CREATE",
    "mod": "MOD",
    "lease": "LEASE",
}
_OPERAND = {
    "value": "value",
    "version": "version",
    "create": "create_revision",
    "mod": "mod_revision",
    "lease": "lease",
}
_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
# google.rpc.Code values etcd answers with.
_INVALID, _NOT_FOUND, _OUT_OF_RANGE, _EXHAUSTED = 3, 5, 11, 8


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _int(doc: dict[str, Any], name: str) -> int:
    return int(doc.get(name) or 0)


def decode_kv(doc: dict[str, Any]) -> KeyValue:
    return KeyValue(
        unb64(doc.get("key")),
        unb64(doc.get("value")),
        _int(doc, "create_revision"),
        _int(doc, "mod_revision"),
        _int(doc, "version"),
        _int(doc, "lease"),
    )


def _range_body(key: bytes, end: bytes | None) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key or b"\0")}
    if end is not None:
        body["range_end"] = b64(end)
    return body


def _range_request(
    key: bytes, end: bytes | None, limit: int, reverse: bool = False, keys_only: bool = False
) -> dict[str, Any]:
    body = _range_body(key, end)
    if limit:
        body["limit"] = str(limit)
    if reverse:
        body["sort_order"] = "DESCEND"
        body["sort_target"] = "KEY"
    if keys_only:
        body["keys_only"] = True
    return body


def _range_result(doc: dict[str, Any], revision: int) -> RangeResult:
    return RangeResult(
        [decode_kv(kv) for kv in doc.get("kvs", [])], bool(doc.get("more")), revision
    )


def _revision(doc: dict[str, Any]) -> int:
    return _int(doc.get("header", {}), "revision")


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(op.key), "value": b64(bytes(op.value))}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    if isinstance(op, Delete):
        return {"request_delete_range": _range_body(op.key, op.end)}
    if isinstance(op, Get):
        return {"request_range": _range_request(op.key, op.end, op.limit)}
    raise InvalidArgument(f"not a transaction op: {op!r}")


def _compare(cmp: Compare) -> dict[str, Any]:
    operand = cmp.operand
    encoded: str = b64(bytes(operand)) if isinstance(operand, bytes | bytearray) else str(operand)
    return {
        "key": b64(cmp.key),
        "target": _TARGETS[cmp.target],
        "result": _RESULTS[cmp.op],
        _OPERAND[cmp.target]: encoded,
    }


def _domain_error(e: EtcdError) -> Exception:
    text = e.message
    if "compacted" in text:
        return Compacted(0, f"etcd: {text}")
    if e.code in (_INVALID, _OUT_OF_RANGE):
        return InvalidArgument(f"etcd refused the request: {text}")
    if e.code == _NOT_FOUND:
        return NotFound(f"etcd: {text}")
    if e.code == _EXHAUSTED or "space exceeded" in text:
        return NoSpace(f"etcd: {text}")
    return Unavailable(f"etcd: {text}")


class EtcdKV:
    """store.meta.api.KV on an etcd cluster (any member; writes reach the leader)."""

    def __init__(self, endpoints: Sequence[Endpoint], *, timeout_s: float = 5.0) -> None:
        self.http = EtcdHttp(endpoints, timeout_s=timeout_s)
        self.max_txn_ops = MAX_TXN_OPS
        self.min_lease_ttl_s = MIN_LEASE_TTL_S

    async def _call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        try:
            return await self.http.call(path, body, idempotent=idempotent)
        except EtcdError as e:
            raise _domain_error(e) from None

    # -- keys -----------------------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        found = await self.range(key)
        return found.kvs[0] if found.kvs else None

    async def range(
        self,
        key: bytes = b"",
        end: bytes | None = None,
        *,
        limit: int = 0,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> RangeResult:
        check_range(key, end)
        if limit < 0:
            raise InvalidArgument("a range limit is 0 (none) or more")
        doc = await self._call(
            "/v3/kv/range", _range_request(key, end, limit, reverse, keys_only), idempotent=True
        )
        return _range_result(doc, _revision(doc))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        check_key(key)
        check_value(value)
        body: dict[str, Any] = {"key": b64(key), "value": b64(bytes(value))}
        if lease:
            body["lease"] = str(lease)
        return _revision(await self._call("/v3/kv/put", body, idempotent=False))

    async def delete(self, key: bytes, end: bytes | None = None) -> int:
        check_range(key, end)
        doc = await self._call("/v3/kv/deleterange", _range_body(key, end), idempotent=False)
        return _int(doc, "deleted")

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        check_txn(compare, success, failure, self.max_txn_ops)
        body = {
            "compare": [_compare(c) for c in compare],
            "success": [_op(op) for op in success],
            "failure": [_op(op) for op in failure],
        }
        doc = await self._call("/v3/kv/txn", body, idempotent=False)
        revision = _revision(doc)
        succeeded = bool(doc.get("succeeded"))
        branch = success if succeeded else failure
        answers = doc.get("responses", [])
        responses: list[RangeResult | int | None] = []
        for op, answer in zip(branch, answers, strict=True):
            if isinstance(op, Get):
                responses.append(_range_result(answer.get("response_range", {}), revision))
            elif isinstance(op, Delete):
                responses.append(_int(answer.get("response_delete_range", {}), "deleted"))
            else:
                responses.append(None)
        return TxnResult(succeeded, revision, responses)

    async def revision(self) -> int:
        doc = await self._call(
            "/v3/kv/range", {"key": b64(b"\0"), "count_only": True, "limit": "1"}, idempotent=True
        )
        return _revision(doc)

    # -- history --------------------------------------------------------------------------------

    def watch(
        self, prefix: bytes, start_revision: int
    ) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[WatchBatch]]:
        check_watch(prefix, start_revision)
        return self._watch(prefix, start_revision)

    @asynccontextmanager
    async def _watch(
        self, prefix: bytes, start_revision: int
    ) -> AsyncIterator[trio.abc.ReceiveChannel[WatchBatch]]:
        start = start_revision or await self.revision() + 1
        async with trio.open_nursery() as nursery:
            watch = EtcdWatch(self.http, prefix, start)
            nursery.start_soon(watch.run)
            try:
                yield watch
            finally:
                nursery.cancel_scope.cancel()

    async def compact(self, revision: int) -> None:
        if revision > await self.revision():
            raise InvalidArgument(f"cannot compact at future revision {revision}")
        try:
            await self.http.call("/v3/kv/compaction", {"revision": str(revision)}, idempotent=False)
        except EtcdError as e:
            if "compacted" in e.message:
                raise Compacted(await self._compact_revision(revision)) from None
            raise _domain_error(e) from None

    async def _compact_revision(self, hint: int) -> int:
        """The oldest revision still kept (a watch from revision 1 is told it)."""
        return await EtcdWatch.compact_revision(self.http) or hint

    # -- leases ---------------------------------------------------------------------------------

    async def lease_grant(self, ttl_s: int) -> int:
        ttl = check_lease_ttl(ttl_s, self.min_lease_ttl_s)
        doc = await self._call("/v3/lease/grant", {"TTL": str(ttl)}, idempotent=False)
        return _int(doc, "ID")

    async def lease_keepalive(self, lease: int) -> int:
        doc = await self._call("/v3/lease/keepalive", {"ID": str(lease)}, idempotent=True)
        ttl = _int(doc.get("result", doc), "TTL")
        if ttl <= 0:
            raise NotFound(f"lease {lease} does not exist (expired or revoked)")
        return ttl

    async def lease_time_to_live(self, lease: int) -> LeaseTTL | None:
        doc = await self._call("/v3/lease/timetolive", {"ID": str(lease)}, idempotent=True)
        remaining = _int(doc, "TTL")
        if remaining < 0:
            return None
        return LeaseTTL(lease, _int(doc, "grantedTTL"), remaining)

    async def lease_revoke(self, lease: int) -> None:
        with contextlib.suppress(NotFound):  # the contract: revoking an unknown lease is a no-op
            await self._call("/v3/lease/revoke", {"ID": str(lease)}, idempotent=True)

    async def aclose(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def open_etcd_kv(spec: str, *, timeout_s: float = 5.0) -> AsyncIterator[EtcdKV]:
    """An EtcdKV on the endpoints ``spec`` names (``etcd://H:P,H:P``), checked reachable."""
    kv = EtcdKV(parse_endpoints(spec), timeout_s=timeout_s)
    try:
        await kv.revision()
        yield kv
    finally:
        await kv.aclose()
