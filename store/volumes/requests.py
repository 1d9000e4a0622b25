"""Requests to the gateway that has a volume open: a mailbox in the metadata.

A live snapshot must be taken by the process writing the volume: it pauses its writes, flushes,
moves the volume onto a new layer and carries on writing there. That process may be another
worker or another gateway host, so the request goes through the metadata, which every one of
them shares (SQLite here, etcd in a cluster):

    asker:  txn [VR/<name> absent, VO/<name> exists] put VR/<name> = {"state": "pending", ...}
    owner:  watches VR/<name> while the volume is open; does the work; replaces the record with
            {"state": "done", "result": ...} or {"state": "failed", "error": ..., "kind": ...}
            (compare: the request's revision, so an abandoned request is never answered twice)
    asker:  watches until answered, deletes the record, returns the result or raises the error

Both sides read the key, then watch it from the revision after that read (``_changes``), so no
change can slip between the two; a compacted history (``Compacted``) just means reading again.

If the owner closes the volume before answering, the asker takes its request back (compare: the
pending revision) and the caller does the work itself on the now detached volume. At most one
request per volume is outstanding; a second asker waits its turn.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from store import errors
from store.errors import StoreError, Unavailable
from store.meta.api import KV, Compacted, Compare, Delete, KeyValue, Put
from store.volumes import records as V

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often an asker waiting its turn tries again
OWNER_CHECK_S = 1.0  # how often an asker checks the owner still holds the volume
ANSWER_TIMEOUT_S = 60.0


async def _read(kv: KV, key: bytes) -> tuple[KeyValue | None, int]:
    """The key and the revision of the read (a watch from the next one misses nothing)."""
    read = await kv.range(key, key + b"\0", limit=1)
    return (read.kvs[0] if read.kvs else None), read.revision


async def _wait_for_change(kv: KV, key: bytes, revision: int, timeout_s: float = math.inf) -> None:
    """Until ``key`` changes after ``revision``, or ``timeout_s``; a compacted history (the
    change may be gone from it) counts as a change: the caller reads again either way."""
    with trio.move_on_after(timeout_s):
        try:
            async with kv.watch(key, revision + 1) as events:
                async for batch in events:
                    if any(event.kv.key == key for event in batch.events):
                        return
        except Compacted:
            return


class NotAttached(Exception):
    """Nobody has the volume open: do the work directly."""


async def ask_owner(
    kv: KV, name: str, action: str, args: dict[str, Any], *, timeout_s: float = ANSWER_TIMEOUT_S
) -> Any:
    """Have the gateway holding ``name`` open run ``action``; its result (JSON) or its error.
    Raises ``NotAttached`` when no gateway holds it (or it closed it before answering)."""
    key, owner = V.request_key(name), V.owner_key(name)
    request_id = secrets.token_hex(8)
    request = {"state": "pending", "id": request_id, "action": action, "args": args}
    with trio.fail_after(ANSWER_TIMEOUT_S):
        while True:  # one outstanding request per volume: wait for the one before ours
            posted = await kv.txn(
                [Compare.absent(key), Compare.exists(owner)],
                [Put(key, json.dumps(request).encode())],
            )
            if posted.succeeded:
                break
            if await kv.get(owner) is None:
                raise NotAttached(name)
            await trio.sleep(POLL_S)
    try:
        with trio.fail_after(timeout_s):
            while True:
                found, revision = await _read(kv, key)
                result = await _settle(kv, name, key, request_id, found)
                if result is not _PENDING:
                    return result
                # woken by the answer, or after a while to see whether the owner is still there
                await _wait_for_change(kv, key, revision, OWNER_CHECK_S)
    except trio.TooSlowError:
        with trio.CancelScope(shield=True):
            await kv.delete(key)
        raise Unavailable(f"the gateway holding volume {name} did not answer") from None


_PENDING = object()


async def _settle(kv: KV, name: str, key: bytes, request_id: str, found: KeyValue | None) -> Any:
    """The result of an answered request, raise its error, or _PENDING."""
    record = json.loads(found.value) if found is not None else {}
    if found is None or record.get("id") != request_id:
        raise Unavailable(f"the request to the gateway holding {name} was lost")
    if record["state"] == "done":
        await kv.delete(key)
        return record["result"]
    if record["state"] == "failed":
        await kv.delete(key)
        kind = getattr(errors, record.get("kind", ""), StoreError)
        if not (isinstance(kind, type) and issubclass(kind, StoreError)):
            kind = StoreError
        raise kind(record["error"])
    if await kv.get(V.owner_key(name)) is None:  # closed without answering
        taken = await kv.txn([Compare.mod_is(key, found.mod_revision)], [Delete(key)])
        if taken.succeeded:
            raise NotAttached(name)
    return _PENDING


Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def serve_requests(kv: KV, name: str, handler: Handler) -> None:
    """The owner's side, run while ``name`` is open for writing: answer each request."""
    key = V.request_key(name)
    while True:
        found, revision = await _read(kv, key)
        if found is not None:
            await _answer(kv, name, key, found, handler)
        await _wait_for_change(kv, key, revision)


async def _answer(kv: KV, name: str, key: bytes, found: KeyValue, handler: Handler) -> None:
    """Run a pending request and record its answer (compare: the request's revision)."""
    record = json.loads(found.value)
    if record.get("state") != "pending":
        return
    try:
        answer = {"result": await handler(record["action"], record["args"]), "state": "done"}
    except StoreError as e:
        answer = {"state": "failed", "error": str(e), "kind": type(e).__name__}
    except Exception as e:
        log.exception("volume %s: request %s failed", name, record.get("action"))
        answer = {"state": "failed", "error": f"internal error: {e}", "kind": "StoreError"}
    answer["id"] = record["id"]
    await kv.txn([Compare.mod_is(key, found.mod_revision)], [Put(key, json.dumps(answer).encode())])
