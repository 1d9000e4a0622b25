"""Requests to the gateway that has a volume open: a mailbox in the metadata.

A live snapshot must be taken by the process writing the volume: it pauses its writes, flushes,
moves the volume onto a new layer and carries on writing there. That process may be another
worker or another gateway host, so the request goes through the metadata, which every one of
them shares (SQLite here, etcd in a cluster):

    asker:  txn [VR/<name> absent, VO/<name> exists] put VR/<name> = {"state": "pending", ...}
    owner:  polls VR/<name> while the volume is open; does the work; replaces the record with
            {"state": "done", "result": ...} or {"state": "failed", "error": ..., "kind": ...}
            (compare: the request's revision, so an abandoned request is never answered twice)
    asker:  polls until answered, deletes the record, returns the result or raises the error

If the owner closes the volume before answering, the asker takes its request back (compare: the
pending revision) and the caller does the work itself on the now detached volume. At most one
request per volume is outstanding; a second asker waits its turn.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from store import errors
from store.errors import StoreError, Unavailable
from store.meta.api import KV, Compare, Delete, Put
from store.volumes import records as V

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often an asker looks for its answer
OWNER_POLL_S = 0.25  # how often an owner looks for requests
ANSWER_TIMEOUT_S = 60.0


class NotAttached(Exception):
    """Nobody has the volume open: do the work directly."""


async def ask_owner(
    kv: KV, name: str, action: str, args: dict[str, Any], *, timeout_s: float = ANSWER_TIMEOUT_S
) -> Any:
    """Have the gateway holding ``name`` open run ``action``; its result (JSON) or its error.
    Raises ``NotAttached`` when no gateway holds it (or it closed it before answering)."""
    key, owner = V.request_key(name), V.owner_key(name)
    request = {"state": "pending", "id": secrets.token_hex(8), "action": action, "args": args}
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
                await trio.sleep(POLL_S)
                found = await kv.get(key)
                record = json.loads(found.value) if found is not None else {}
                if found is None or record.get("id") != request["id"]:
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
                if await kv.get(owner) is None:  # closed without answering: take it back
                    taken = await kv.txn([Compare.mod_is(key, found.mod_revision)], [Delete(key)])
                    if taken.succeeded:
                        raise NotAttached(name)
    except trio.TooSlowError:
        with trio.CancelScope(shield=True):
            await kv.delete(key)
        raise Unavailable(f"the gateway holding volume {name} did not answer") from None


Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def serve_requests(kv: KV, name: str, handler: Handler) -> None:
    """The owner's side, run while ``name`` is open for writing: answer each request."""
    key = V.request_key(name)
    while True:
        await trio.sleep(OWNER_POLL_S)
        found = await kv.get(key)
        if found is None:
            continue
        record = json.loads(found.value)
        if record.get("state") != "pending":
            continue
        try:
            answer = {"result": await handler(record["action"], record["args"]), "state": "done"}
        except StoreError as e:
            answer = {"state": "failed", "error": str(e), "kind": type(e).__name__}
        except Exception as e:
            log.exception("volume %s: request %s failed", name, record.get("action"))
            answer = {"state": "failed", "error": f"internal error: {e}", "kind": "StoreError"}
        answer["id"] = record["id"]
        await kv.txn(
            [Compare.mod_is(key, found.mod_revision)], [Put(key, json.dumps(answer).encode())]
        )
