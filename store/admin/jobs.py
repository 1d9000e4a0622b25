"""Long admin operations as jobs: started by one request, followed by others.

A job runs in the nursery of the process that started it; its state is a record in the metadata
(``J/<id>``: operation, state running|done|failed, progress done/total, result or error, times),
written at the start, at most every ``UPDATE_S`` while it runs, and at the end, so any worker
(or gateway) answers a status request. A job whose process died stays "running" with an old
``updated`` time: ``status`` reports it as lost once it is ``LOST_AFTER_S`` stale. Records older
than ``KEEP_S`` are dropped when new jobs start.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import trio

from store.admin import operations
from store.errors import InvalidArgument, NotFound, StoreError
from store.meta.api import KV, prefix_end

log = logging.getLogger(__name__)

PREFIX = b"J/"
UPDATE_S = 0.5
LOST_AFTER_S = 30.0
KEEP_S = 24 * 3600.0


def _key(job_id: str) -> bytes:
    return PREFIX + job_id.encode()


class Jobs:
    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self._nursery: trio.Nursery | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery jobs run in, until cancelled (a drain cancels running jobs)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def start(
        self, ctx: operations.Context, name: str, args: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self._nursery is None:
            raise StoreError("jobs are not being served in this process")
        if name not in operations.OPERATIONS:
            raise InvalidArgument(f"unknown admin operation {name!r}")
        await self._expire()
        job_id = secrets.token_hex(8)
        record = {
            "job": job_id,
            "operation": name,
            "state": "running",
            "done": 0,
            "total": 0,
            "started": time.time(),
            "updated": time.time(),
        }
        await self._save(record)
        self._nursery.start_soon(self._run, ctx, name, dict(args), record)
        return record

    async def _run(
        self, ctx: operations.Context, name: str, args: dict[str, Any], record: dict[str, Any]
    ) -> None:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            record["done"], record["total"] = done, total

        async def report() -> None:
            while True:
                await trio.sleep(UPDATE_S)
                if time.monotonic() - last[0] >= UPDATE_S:
                    last[0] = time.monotonic()
                    await self._save(record)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(report)
            try:
                record["result"] = await operations.run(ctx, name, args, progress)
                record["state"] = "done"
            except StoreError as e:
                record["state"], record["error"] = "failed", str(e)
            except Exception as e:  # a bug: logged once, reported as failed
                log.exception("admin job %s (%s) failed", record["job"], name)
                record["state"], record["error"] = "failed", f"internal error: {type(e).__name__}"
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await self._save(record)

    async def _save(self, record: dict[str, Any]) -> None:
        record["updated"] = time.time()
        await self.kv.put(_key(record["job"]), json.dumps(record).encode())

    async def status(self, job_id: str) -> dict[str, Any]:
        found = await self.kv.get(_key(job_id)) if job_id.isalnum() else None
        if found is None:
            raise NotFound(f"no job {job_id!r}")
        record: dict[str, Any] = json.loads(found.value)
        if record["state"] == "running" and time.time() - record["updated"] > LOST_AFTER_S:
            record["state"], record["error"] = "lost", "the process running it is gone"
        return record

    async def _expire(self) -> None:
        page = await self.kv.range(PREFIX, prefix_end(PREFIX), limit=1000)
        cutoff = time.time() - KEEP_S
        for kv in page.kvs:
            if json.loads(kv.value).get("updated", 0) < cutoff:
                await self.kv.delete(kv.key)
