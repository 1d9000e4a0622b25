"""A drive on a chunk server, reached through the chunk RPC: ``store.chunk.api.DriveAPI`` as calls.

Every call is one RPC (``drive_rpc.Method``) with the transport's deadline; the chunk server's
errors come back as the same exceptions (an OSError with its errno: a failing drive looks like
one here too), and a server that cannot be reached raises Unavailable. Shard appends send the
encoder's block CRCs along (as the frames' CRCs when the blocks fit the wire), so the chunk
server verifies and stores them without recomputing. A remote drive has no inline capability:
the volume layer takes the async calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from store.chunk.api import (
    Buffer,
    DriveStat,
    ExtentGeometry,
    ExtentImage,
    InlineExtents,
    ShardBlocks,
    ShardGeometry,
)
from store.chunk.drive_rpc import Method, b64, decode, encode, raise_for, unb64
from store.errors import InvalidArgument
from store.rpc import wire
from store.rpc.transport import Message, RpcClient


def _wire_blocks(block_bytes: int) -> bool:
    return 0 < block_bytes <= wire.MAX_BLOCK_BYTES and not block_bytes & (block_bytes - 1)


class RemoteDrive:
    """Drive ``drive_id`` of the chunk server ``client`` talks to."""

    def __init__(self, client: RpcClient, drive_id: str) -> None:
        self.client = client
        self.drive_id = drive_id

    def __repr__(self) -> str:
        host, port = self.client.address
        return f"RemoteDrive({self.drive_id!r} on {host}:{port})"

    async def _call(
        self,
        method: Method,
        args: dict[str, Any],
        payload: Buffer = b"",
        *,
        block_bytes: int = 0,
        crcs: tuple[int, ...] = (),
    ) -> Message:
        request = Message(method, encode(drive=self.drive_id, **args), payload, block_bytes, crcs)
        reply = await self.client.call(request)
        raise_for(reply, f"{self!r} {method.name}")
        return reply

    # -- shards ---------------------------------------------------------------------------------

    async def create(self, sid: str, block_bytes: int) -> RemoteShardSink:
        reply = await self._call(Method.CREATE, {"sid": sid, "block_bytes": block_bytes})
        return RemoteShardSink(self, str(decode(reply.body)["sink"]), block_bytes)

    async def read(self, sid: str, offset: int = 0, length: int | None = None) -> Buffer:
        reply = await self._call(Method.READ, {"sid": sid, "offset": offset, "length": length})
        return reply.payload

    async def read_blocks(self, sid: str, offset: int, length: int) -> ShardBlocks:
        reply = await self._call(
            Method.READ_BLOCKS, {"sid": sid, "offset": offset, "length": length}
        )
        doc = decode(reply.body)
        geometry = ShardGeometry(int(doc["block_bytes"]), int(doc["length"]))
        return ShardBlocks(geometry, int(doc["first_block"]), reply.payload, unb64(doc["crcs"]))

    async def geometry(self, sid: str) -> ShardGeometry:
        doc = decode((await self._call(Method.GEOMETRY, {"sid": sid})).body)
        return ShardGeometry(int(doc["block_bytes"]), int(doc["length"]))

    async def verify(self, sid: str) -> list[int]:
        return [int(b) for b in decode((await self._call(Method.VERIFY, {"sid": sid})).body)["bad"]]

    async def delete(self, sid: str) -> bool:
        return bool(decode((await self._call(Method.DELETE, {"sid": sid})).body)["deleted"])

    async def list_shards(self) -> AsyncIterator[str]:
        after = ""
        while True:
            doc = decode((await self._call(Method.LIST, {"after": after})).body)
            for sid in doc["sids"]:
                yield str(sid)
            if not doc.get("more") or not doc["sids"]:
                return
            after = str(doc["sids"][-1])

    async def clean_tmp(self, older_than_s: float = 0.0) -> int:
        reply = await self._call(Method.CLEAN_TMP, {"older_than_s": older_than_s})
        return int(decode(reply.body)["removed"])

    async def stat(self) -> DriveStat:
        doc = decode((await self._call(Method.STAT, {})).body)
        return DriveStat(int(doc["total_bytes"]), int(doc["free_bytes"]))

    # -- extents --------------------------------------------------------------------------------

    @staticmethod
    def _g(eid: str, geometry: ExtentGeometry, **more: Any) -> dict[str, Any]:
        """An extent call's arguments."""
        g = {"extent_bytes": geometry.extent_bytes, "block_bytes": geometry.block_bytes}
        return {"eid": eid, **g, **more}

    async def extent_create(
        self,
        eid: str,
        geometry: ExtentGeometry,
        image: ExtentImage | None = None,
        *,
        fence: int = 0,
    ) -> None:
        if image is None:
            await self._call(Method.EXTENT_CREATE, self._g(eid, geometry, fence=fence))
            return
        args = self._g(
            eid, geometry, image=True, crcs=b64(image.crcs), states=b64(image.states), fence=fence
        )
        await self._call(Method.EXTENT_CREATE, args, image.data)

    async def extent_read(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytearray:
        args = self._g(eid, geometry, offset=offset, length=length)
        reply = await self._call(Method.EXTENT_READ, args)
        return bytearray(reply.payload)

    async def extent_write(
        self, eid: str, geometry: ExtentGeometry, offset: int, data: Buffer, *, fence: int = 0
    ) -> None:
        args = self._g(eid, geometry, offset=offset, fence=fence)
        await self._call(Method.EXTENT_WRITE, args, data)

    async def extent_zero(
        self,
        eid: str,
        geometry: ExtentGeometry,
        offset: int,
        length: int,
        *,
        punch: bool,
        fence: int = 0,
    ) -> None:
        args = self._g(eid, geometry, offset=offset, length=length, punch=punch, fence=fence)
        await self._call(Method.EXTENT_ZERO, args)

    async def extent_sync(self, eid: str, geometry: ExtentGeometry, *, fence: int = 0) -> None:
        await self._call(Method.EXTENT_SYNC, self._g(eid, geometry, fence=fence))

    async def extent_verify(self, eid: str, geometry: ExtentGeometry) -> None:
        await self._call(Method.EXTENT_VERIFY, self._g(eid, geometry))

    async def extent_image(self, eid: str, geometry: ExtentGeometry) -> ExtentImage:
        reply = await self._call(Method.EXTENT_IMAGE, self._g(eid, geometry))
        doc = decode(reply.body)
        return ExtentImage(unb64(doc["crcs"]), unb64(doc["states"]), bytearray(reply.payload))

    async def extent_rebuild(self, eid: str, geometry: ExtentGeometry, *, fence: int = 0) -> int:
        reply = await self._call(Method.EXTENT_REBUILD, self._g(eid, geometry, fence=fence))
        return int(decode(reply.body)["fixed"])

    async def extent_states(
        self, eid: str, geometry: ExtentGeometry, offset: int, length: int
    ) -> bytes:
        args = self._g(eid, geometry, offset=offset, length=length)
        reply = await self._call(Method.EXTENT_STATES, args)
        return unb64(decode(reply.body)["states"])

    async def extent_delete(self, eid: str) -> bool:
        reply = await self._call(Method.EXTENT_DELETE, {"eid": eid})
        return bool(decode(reply.body)["deleted"])

    async def extent_release(self, prefix: str = "", *, save: bool = True) -> None:
        await self._call(Method.EXTENT_RELEASE, {"prefix": prefix, "save": save})

    def inline_extents(self) -> InlineExtents | None:
        return None  # every call crosses the network: nothing is served without awaiting


class RemoteShardSink:
    """A shard being written on a chunk server (``store.chunk.api.ShardSink``)."""

    def __init__(self, drive: RemoteDrive, sink_id: str, block_bytes: int) -> None:
        self._drive = drive
        self._sink = sink_id
        self._block = block_bytes
        self._done = False

    def _check_open(self) -> None:
        if self._done:
            raise InvalidArgument("shard writer is closed")

    async def write(self, data: Buffer) -> None:
        self._check_open()
        await self._drive._call(Method.SINK_WRITE, {"sink": self._sink}, data)

    async def append(self, data: Buffer, crcs: Sequence[int]) -> None:
        self._check_open()
        if _wire_blocks(self._block) and len(crcs) == -(-len(data) // self._block):
            args: dict[str, Any] = {"sink": self._sink}
            await self._drive._call(
                Method.SINK_APPEND, args, data, block_bytes=self._block, crcs=tuple(crcs)
            )
        else:  # blocks the wire cannot frame: the CRCs travel in the body
            args = {"sink": self._sink, "crcs": list(crcs)}
            await self._drive._call(Method.SINK_APPEND, args, data)

    async def commit(self) -> ShardGeometry:
        self._check_open()
        self._done = True
        doc = decode((await self._drive._call(Method.SINK_COMMIT, {"sink": self._sink})).body)
        return ShardGeometry(int(doc["block_bytes"]), int(doc["length"]))

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        await self._drive._call(Method.SINK_ABORT, {"sink": self._sink})
