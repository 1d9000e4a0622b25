"""A watch on etcd (``POST /v3/watch``), as the KV contract's ``ReceiveChannel[WatchBatch]``.

etcd streams watch responses as JSON lines; one response may carry the events of several
revisions (catching up from history), never part of one, so events are regrouped here into one
WatchBatch per revision. The stream is followed by a task (``run``) that survives its member:
when the connection breaks it reconnects, on the next endpoint, at the revision after the last
one delivered, so nothing is skipped or repeated. A watch etcd cancels because its revisions were
compacted raises Compacted from ``receive`` (then the caller re-reads and watches again); once the
client is closed, ``receive`` raises Unavailable. The channel between the task and the reader is
bounded: a slow reader stops the task reading, and TCP pushes back on etcd, which keeps the
watcher's place in its history rather than buffering for it.

Not yet: a member that is paused (not dead) leaves the stream silent rather than broken; etcd's
progress notifications (every 10 minutes by default) are the only sign, so a watch on a paused
member notices late.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import trio

from store.errors import Unavailable
from store.meta.api import Compacted, Event, KeyValue, WatchBatch, prefix_end, tombstone
from store.meta.etcd_http import EtcdHttp

log = logging.getLogger(__name__)

BUFFERED_BATCHES = 64
RETRY_MAX_S = 2.0


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _int(doc: dict[str, Any], name: str) -> int:
    return int(doc.get(name) or 0)


def _event(doc: dict[str, Any]) -> Event:
    raw = doc.get("kv", {})
    key = base64.b64decode(raw.get("key") or "")
    if doc.get("type") == "DELETE":
        return Event("delete", tombstone(key, _int(raw, "mod_revision")))
    kv = KeyValue(
        key,
        base64.b64decode(raw.get("value") or ""),
        _int(raw, "create_revision"),
        _int(raw, "mod_revision"),
        _int(raw, "version"),
        _int(raw, "lease"),
    )
    return Event("put", kv)


def batches(events: list[dict[str, Any]]) -> list[WatchBatch]:
    """The events of one watch response, one batch per revision, in order."""
    out: list[WatchBatch] = []
    pending: list[Event] = []
    for raw in events:
        event = _event(raw)
        if pending and pending[0].kv.mod_revision != event.kv.mod_revision:
            out.append(WatchBatch(pending[0].kv.mod_revision, tuple(pending)))
            pending = []
        pending.append(event)
    if pending:
        out.append(WatchBatch(pending[0].kv.mod_revision, tuple(pending)))
    return out


class EtcdWatch(trio.abc.ReceiveChannel[WatchBatch]):
    def __init__(self, http: EtcdHttp, prefix: bytes, start_revision: int) -> None:
        self._http = http
        self._prefix = prefix
        self._next = start_revision
        self._send, self._recv = trio.open_memory_channel[WatchBatch | Exception](BUFFERED_BATCHES)
        self._failure: Exception | None = None

    def _create_request(self) -> dict[str, Any]:
        key = self._prefix or b"\0"
        end = prefix_end(self._prefix)
        request = {"key": _b64(key), "range_end": _b64(end), "start_revision": str(self._next)}
        return {"create_request": request}

    async def run(self) -> None:
        """Follow the watch until cancelled (the context manager around it exits)."""
        wait = 0.05
        while True:
            if self._http.closed:
                await self._send.send(Unavailable("metadata store is closed"))
                return
            try:
                async with self._http.stream("/v3/watch", self._create_request()) as messages:
                    while True:
                        message = await messages.next()
                        if "error" in message:
                            raise Unavailable(f"etcd watch failed: {message['error']}")
                        result = message.get("result", {})
                        if result.get("canceled"):
                            compacted = _int(result, "compact_revision")
                            if compacted:
                                await self._send.send(Compacted(compacted))
                                return
                            reason = result.get("cancel_reason", "no reason given")
                            raise Unavailable(f"etcd cancelled a watch: {reason}")
                        for batch in batches(result.get("events", [])):
                            await self._send.send(batch)
                            self._next = batch.revision + 1
                        wait = 0.05
            except Unavailable as e:
                log.info(
                    "etcd watch on %r interrupted (%s); resuming at %d", self._prefix, e, self._next
                )
                await trio.sleep(wait)
                wait = min(RETRY_MAX_S, wait * 2)

    async def receive(self) -> WatchBatch:
        if self._failure is not None:
            raise self._failure
        try:
            item = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("this watch was closed") from None
        if isinstance(item, Exception):
            self._failure = item
            raise item
        return item

    async def aclose(self) -> None:
        await self._recv.aclose()

    @staticmethod
    async def compact_revision(http: EtcdHttp) -> int:
        """The oldest revision etcd still keeps (0 if it cannot tell in time)."""
        request = {"create_request": {"key": _b64(b"\0"), "start_revision": "1"}}
        with trio.move_on_after(http.timeout_s):
            async with http.stream("/v3/watch", request) as messages:
                for _ in range(2):
                    result = (await messages.next()).get("result", {})
                    if result.get("canceled"):
                        return _int(result, "compact_revision")
        return 0
