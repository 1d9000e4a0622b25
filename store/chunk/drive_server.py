"""A chunk server's side of the drive seam: calls from the chunk RPC answered by local drives.

Each call names a drive and a method (``drive_rpc.Method``); the answer is the drive's result,
or its error as a status. Shards being written live here between calls as sinks under random
ids; a sink idle for ``SINK_IDLE_S`` (its gateway died mid-write) is aborted, so its temporary
file goes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from store.chunk.api import ExtentGeometry, ExtentImage
from store.chunk.drive import Drive, ShardWriter
from store.chunk.drive_rpc import (
    LIST_PAGE,
    Method,
    b64,
    decode,
    decode_drive,
    encode,
    error_kind,
    error_reply,
    unb64,
)
from store.chunk.server_metrics import DriveServerMetrics
from store.errors import InvalidArgument, NotFound, StoreError
from store.rpc.transport import Message

log = logging.getLogger(__name__)

SINK_IDLE_S = 600.0
# Extent calls answered on the event loop: reads the page cache holds (RWF_NOWAIT: they never
# wait for the disk) up to a frame, writes up to a few blocks (a write may wait for writeback).
INLINE_READ_BYTES = 1 << 20
INLINE_WRITE_BYTES = 128 << 10
MAX_SINKS = 4096


def _geometry(args: dict[str, Any]) -> ExtentGeometry:
    extent, block = args.get("extent_bytes"), args.get("block_bytes")
    if not isinstance(extent, int) or not isinstance(block, int) or block <= 0 or extent <= 0:
        raise InvalidArgument("an extent call needs extent_bytes and block_bytes")
    return ExtentGeometry(extent, block)


def _int(args: dict[str, Any], name: str) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer")
    return value


def _fence(args: dict[str, Any]) -> int:
    value = args.get("fence", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument("fence must be a token (a non-negative integer)")
    return value


def _str(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


class DriveServer:
    def __init__(
        self, drives: Mapping[str, Drive], metrics: DriveServerMetrics | None = None
    ) -> None:
        self.drives = drives
        self.metrics = metrics
        self._sinks: dict[str, tuple[ShardWriter, float]] = {}
        self._handlers: dict[int, Callable[[Drive, dict[str, Any], Message], Awaitable[Message]]]
        self._handlers = {
            Method.CREATE: self._create,
            Method.SINK_WRITE: self._sink_write,
            Method.SINK_APPEND: self._sink_append,
            Method.SINK_COMMIT: self._sink_commit,
            Method.SINK_ABORT: self._sink_abort,
            Method.READ: self._read,
            Method.READ_BLOCKS: self._read_blocks,
            Method.GEOMETRY: self._geometry,
            Method.VERIFY: self._verify,
            Method.DELETE: self._delete,
            Method.LIST: self._list,
            Method.CLEAN_TMP: self._clean_tmp,
            Method.STAT: self._stat,
            Method.EXTENT_CREATE: self._extent_create,
            Method.EXTENT_READ: self._extent_read,
            Method.EXTENT_WRITE: self._extent_write,
            Method.EXTENT_ZERO: self._extent_zero,
            Method.EXTENT_SYNC: self._extent_sync,
            Method.EXTENT_VERIFY: self._extent_verify,
            Method.EXTENT_IMAGE: self._extent_image,
            Method.EXTENT_REBUILD: self._extent_rebuild,
            Method.EXTENT_STATES: self._extent_states,
            Method.EXTENT_DELETE: self._extent_delete,
            Method.EXTENT_RELEASE: self._extent_release,
        }

    async def handle(self, request: Message, peer: str) -> Message:
        """One call (transport.Handler), counted in the metrics."""
        began = time.monotonic()
        reply = await self._handle(request, peer)
        self._record(request, reply, began)
        return reply

    def handle_now(self, request: Message, peer: str) -> Message | None:
        """An extent read the page cache holds, or a write it takes, answered without blocking
        (transport.Inline: no task, no thread); None for everything else."""
        if request.code not in (Method.EXTENT_READ, Method.EXTENT_WRITE):
            return None
        if len(request.payload) > INLINE_WRITE_BYTES:
            return None
        began = time.monotonic()
        try:
            args = decode(request.body)
            drive = self.drives.get(_str(args, "drive"))
            if drive is None:
                return None  # the handler gives the error
            eid, geometry, offset = _str(args, "eid"), _geometry(args), _int(args, "offset")
            inline = drive.inline_extents()
            if request.code == Method.EXTENT_READ:
                length = _int(args, "length")
                if length > INLINE_READ_BYTES:
                    return None
                data = inline.read_now(eid, geometry, offset, length)
                if data is None:
                    return None
                reply = Message(0, b"", data)
            else:
                if not inline.write_now(eid, geometry, offset, request.payload, fence=_fence(args)):
                    return None
                reply = Message(0)
        except (StoreError, OSError) as e:
            reply = error_reply(e)
        self._record(request, reply, began)
        return reply

    def _record(self, request: Message, reply: Message, began: float) -> None:
        if self.metrics is None:
            return
        try:
            method = Method(request.code).name
        except ValueError:
            method = "unknown"
        drive = decode_drive(request.body)
        outcome = "ok" if reply.code == 0 else error_kind(reply.code)
        self.metrics.record(
            drive if drive in self.drives else "unknown",
            method,
            outcome,
            time.monotonic() - began,
            len(request.payload),
            len(reply.payload),
        )

    async def _handle(self, request: Message, peer: str) -> Message:
        try:
            handler = self._handlers.get(request.code)
            if handler is None:
                raise InvalidArgument(f"no drive method {request.code}")
            args = decode(request.body)
            drive = self.drives.get(_str(args, "drive"))
            if drive is None:
                raise NotFound(f"no drive {args.get('drive')!r} on this chunk server")
            return await handler(drive, args, request)
        except (StoreError, OSError) as e:
            return error_reply(e)
        except Exception as e:  # a bug: logged once, answered as an internal error
            log.exception("chunk server: %s from %s failed", Method(request.code).name, peer)
            return error_reply(e)

    async def sweep_sinks(self, interval_s: float = 60.0) -> None:
        """Abort sinks nobody wrote to for SINK_IDLE_S (run in the server's nursery)."""
        while True:
            await trio.sleep(interval_s)
            cutoff = trio.current_time() - SINK_IDLE_S
            for sink_id, (writer, used) in list(self._sinks.items()):
                if used < cutoff:
                    del self._sinks[sink_id]
                    await writer.abort()

    # -- shards ---------------------------------------------------------------------------------

    def _sink(self, args: dict[str, Any]) -> ShardWriter:
        sink_id = _str(args, "sink")
        found = self._sinks.get(sink_id)
        if found is None:
            raise NotFound(f"no shard being written as {sink_id!r} (aborted, or done)")
        self._sinks[sink_id] = (found[0], trio.current_time())
        return found[0]

    async def _create(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        if len(self._sinks) >= MAX_SINKS:
            raise InvalidArgument(f"{MAX_SINKS} shards are being written already")
        writer = await drive.create(_str(args, "sid"), _int(args, "block_bytes"))
        sink_id = secrets.token_hex(16)
        self._sinks[sink_id] = (writer, trio.current_time())
        return Message(0, encode(sink=sink_id))

    async def _sink_write(self, _: Drive, args: dict[str, Any], request: Message) -> Message:
        await self._sink(args).write(request.payload)
        return Message(0)

    async def _sink_append(self, _: Drive, args: dict[str, Any], request: Message) -> Message:
        crcs = args.get("crcs")
        given = request.crcs if crcs is None else [int(c) for c in crcs]
        await self._sink(args).append(request.payload, list(given))
        return Message(0)

    async def _sink_commit(self, _: Drive, args: dict[str, Any], __: Message) -> Message:
        writer = self._sink(args)
        del self._sinks[_str(args, "sink")]
        geometry = await writer.commit()
        return Message(0, encode(block_bytes=geometry.block_bytes, length=geometry.length))

    async def _sink_abort(self, _: Drive, args: dict[str, Any], __: Message) -> Message:
        found = self._sinks.pop(_str(args, "sink"), None)
        if found is not None:
            await found[0].abort()
        return Message(0)

    async def _read(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        length = args.get("length")
        if length is not None and not isinstance(length, int):
            raise InvalidArgument("length must be an integer")
        data = await drive.read(_str(args, "sid"), _int(args, "offset"), length)
        return Message(0, b"", data)

    async def _read_blocks(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        blocks = await drive.read_blocks(
            _str(args, "sid"), _int(args, "offset"), _int(args, "length")
        )
        body = encode(
            block_bytes=blocks.geometry.block_bytes,
            length=blocks.geometry.length,
            first_block=blocks.first_block,
            crcs=b64(blocks.crcs),
        )
        return Message(0, body, blocks.data)

    async def _geometry(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        g = await drive.geometry(_str(args, "sid"))
        return Message(0, encode(block_bytes=g.block_bytes, length=g.length))

    async def _verify(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        return Message(0, encode(bad=await drive.verify(_str(args, "sid"))))

    async def _delete(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        return Message(0, encode(deleted=await drive.delete(_str(args, "sid"))))

    async def _list(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        after = args.get("after", "")
        out: list[str] = []
        async for sid in drive.list_shards():
            if sid > after:
                out.append(sid)
                if len(out) >= LIST_PAGE:
                    break
        return Message(0, encode(sids=out, more=len(out) >= LIST_PAGE))

    async def _clean_tmp(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        older = args.get("older_than_s", 0.0)
        if not isinstance(older, int | float):
            raise InvalidArgument("older_than_s must be a number")
        return Message(0, encode(removed=await drive.clean_tmp(float(older))))

    async def _stat(self, drive: Drive, _: dict[str, Any], __: Message) -> Message:
        stat = await drive.stat()
        return Message(0, encode(total_bytes=stat.total_bytes, free_bytes=stat.free_bytes))

    # -- extents --------------------------------------------------------------------------------

    async def _extent_create(self, drive: Drive, args: dict[str, Any], req: Message) -> Message:
        image = None
        if args.get("image"):
            crcs, states = unb64(_str(args, "crcs")), unb64(_str(args, "states"))
            image = ExtentImage(crcs, states, bytes(req.payload))
        await drive.extent_create(_str(args, "eid"), _geometry(args), image, fence=_fence(args))
        return Message(0)

    async def _extent_read(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        data = await drive.extent_read(
            _str(args, "eid"), _geometry(args), _int(args, "offset"), _int(args, "length")
        )
        return Message(0, b"", data)

    async def _extent_write(self, drive: Drive, args: dict[str, Any], req: Message) -> Message:
        eid, offset = _str(args, "eid"), _int(args, "offset")
        await drive.extent_write(eid, _geometry(args), offset, req.payload, fence=_fence(args))
        return Message(0)

    async def _extent_zero(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        await drive.extent_zero(
            _str(args, "eid"),
            _geometry(args),
            _int(args, "offset"),
            _int(args, "length"),
            punch=bool(args.get("punch")),
            fence=_fence(args),
        )
        return Message(0)

    async def _extent_sync(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        await drive.extent_sync(_str(args, "eid"), _geometry(args), fence=_fence(args))
        return Message(0)

    async def _extent_verify(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        await drive.extent_verify(_str(args, "eid"), _geometry(args))
        return Message(0)

    async def _extent_image(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        image = await drive.extent_image(_str(args, "eid"), _geometry(args))
        return Message(0, encode(crcs=b64(image.crcs), states=b64(image.states)), image.data)

    async def _extent_rebuild(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        fixed = await drive.extent_rebuild(_str(args, "eid"), _geometry(args), fence=_fence(args))
        return Message(0, encode(fixed=fixed))

    async def _extent_states(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        states = await drive.extent_states(
            _str(args, "eid"), _geometry(args), _int(args, "offset"), _int(args, "length")
        )
        return Message(0, encode(states=b64(states)))

    async def _extent_delete(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        return Message(0, encode(deleted=await drive.extent_delete(_str(args, "eid"))))

    async def _extent_release(self, drive: Drive, args: dict[str, Any], _: Message) -> Message:
        prefix = args.get("prefix", "")
        if not isinstance(prefix, str):
            raise InvalidArgument("prefix must be a string")
        await drive.extent_release(prefix, save=bool(args.get("save", True)))
        return Message(0)
