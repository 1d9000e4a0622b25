"""The NBD endpoint: store/nbd's sans-IO handshake and transmission over Trio streams, serving
block volumes (store/volumes/). The export name is the volume name.

Per connection: the handshake, then one reader loop that parses every request a socket read
brings and starts each in the connection's nursery, so requests run concurrently and replies go
out in completion order (NBD allows any order; a slow extent does not hold up the others). A
send lock keeps each reply (header and data) contiguous. DISC: the requests in flight finish,
then the connection closes. Draining (SIGTERM): requests already read finish; later ones get
ESHUTDOWN; the connection closes when the client disconnects or after ``DRAIN_GRACE_S``.

Limits (``NbdLimits``): a request's bytes (store/nbd/budget.py) come from the connection's
budget, then the server's, before it starts; the reader loop waits for them, so TCP pushes back
on a client whose replies do not drain. Bytes still arriving count too; a request larger than a
budget runs alone; small inline batches go uncounted. A reply stalled for
``send_stall_timeout_s`` closes the connection.

Every connection to a volume in this process shares one ``OpenVolume`` (``VolumeHub``), so a
FLUSH on any of them covers the writes of all: MULTI_CONN is advertised. With several worker
processes (``handoffs``), a connection whose GO names a volume another worker owns is passed to
that worker before the option is answered (store/nbd/handoff.py), so each volume is served by
one process and every process serves some.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

import trio

from store.errors import NotFound, StoreError
from store.gateway.admission import Admission
from store.gateway.http import Drain
from store.gateway.metrics import NbdMetrics
from store.gateway.nbd_handoff import Handoffs
from store.nbd import handshake as hs
from store.nbd import transmission as tx
from store.nbd.budget import ByteBudget, NbdLimits, held_bytes
from store.nbd.constants import BASE_ALLOCATION, Command, CommandFlag, Errno, Info, Option, Reply
from store.nbd.errors import errno_for
from store.nbd.handoff import Handoff, HandoffError
from store.volumes.admin import Volumes
from store.volumes.hub import VolumeHub
from store.volumes.open_volume import OpenVolume

log = logging.getLogger(__name__)

MAX_PAYLOAD = 32 << 20  # largest READ/WRITE (advertised as the maximum block size)
PREFERRED_BLOCK = 64 << 10
READ_BYTES = 1 << 20
SEND_COPY_BYTES = 64 << 10  # reply parts smaller than this are joined before a send
SEND_SLICE_BYTES = 1 << 20  # reply data goes out in slices, each within the stall timeout
CACHE_PIECE_BYTES = 1 << 20  # NBD_CMD_CACHE reads ahead this much at a time
SMALL_BATCH_BYTES = 1 << 20  # inline batches with less read data go uncounted (no take/give)
NOT_SENDING = float("inf")
HANDSHAKE_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 5.0
ALLOCATION_CONTEXT_ID = 1


class NbdServer:
    def __init__(
        self,
        volumes: Volumes,
        metrics: NbdMetrics,
        draining: Drain,
        *,
        tls_context: Any = None,
        tls_required: bool = False,
        limits: NbdLimits | None = None,
        handoffs: Handoffs | None = None,
    ) -> None:
        if handoffs is not None and tls_context is not None:
            raise ValueError("a TLS session cannot be handed to another process")
        self.handoffs = handoffs
        self.volumes = volumes
        self.metrics = metrics
        self.draining = draining
        self.tls_context = tls_context
        self.tls_required = tls_required
        self.limits = limits = limits or NbdLimits()
        self.budget: ByteBudget[trio.Event] = ByteBudget(limits.max_bytes_in_flight)
        self.admission = Admission(limits.max_connections)
        self.hub: VolumeHub | None = None

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as volumes_nursery:
            self.hub = VolumeHub(self.volumes, volumes_nursery)
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept, listener, connections)
                    if self.handoffs is not None:
                        acceptors.start_soon(self._receive_handoffs, self.handoffs, connections)
                    task_status.started()
                    await self.draining.started.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    with contextlib.suppress(trio.ClosedResourceError):
                        await listener.aclose()
                connections.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S + 1
            volumes_nursery.cancel_scope.cancel()  # each open volume flushes as it closes

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                log.warning("NBD accept failed: %s", e)
                await trio.sleep(0.1)
                continue
            if not self.admission.enter():  # NBD has no refusal before the handshake
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._guarded, stream)

    async def _receive_handoffs(self, handoffs: Handoffs, nursery: trio.Nursery) -> None:
        while True:
            try:
                sock, handoff = await handoffs.receive()
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            except (HandoffError, OSError, ValueError) as e:  # ValueError: not a TCP stream
                log.warning("NBD handoff not received: %s", e)
                self.metrics.handoffs.labels("failed").inc()
                await trio.sleep(0.1)  # a lasting fault must not spin the loop
                continue
            self.metrics.handoffs.labels("received").inc()
            if not self.admission.enter():
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._guarded, stream, handoff)

    async def _guarded(self, stream: trio.SocketStream, handoff: Handoff | None = None) -> None:
        with contextlib.suppress(OSError):
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.metrics.connections.inc()
        try:
            await _Connection(self, stream).run(handoff)
        # except*: a client that goes away while requests are in flight surfaces from the
        # connection's nursery as a group
        except* (trio.BrokenResourceError, trio.ClosedResourceError, hs.ProtocolError) as group:
            log.info("NBD connection closed: %s", group.exceptions[0])
        except* Exception:
            log.exception("NBD connection failed")
        finally:
            self.admission.leave()
            self.metrics.connections.dec()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()


class _Connection:
    def __init__(self, server: NbdServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        self.send_lock = trio.Lock()
        self._outbox: list[bytes | bytearray] = []  # replies' parts not yet sent, in order
        # Only the reader loop takes from ``budget``; ``gave`` wakes it when bytes come back.
        self.budget: ByteBudget[None] = ByteBudget(server.limits.max_bytes_in_flight_per_connection)
        self.gave = trio.Event()

    async def _receive(self) -> bytes:
        data = await self.stream.receive_some(READ_BYTES)
        if not data:
            raise trio.ClosedResourceError("the client closed the connection")
        return bytes(data)

    # -- handshake ------------------------------------------------------------------------------

    async def run(self, handoff: Handoff | None = None) -> None:
        """The handshake, then transmission; or, from ``handoff``, the rest of a handshake that
        another worker began."""
        server = self.server
        tls = {"tls": server.tls_context is not None, "tls_required": server.tls_required}
        pending: hs.Event | None = None
        if handoff is None:
            shake = hs.Handshake(**tls)
            await self.stream.send_all(shake.greeting())
        else:
            shake, pending = handoff.resume(**tls), handoff.event
        assert self.server.hub is not None
        async with contextlib.AsyncExitStack() as stack:
            volume = None
            with trio.fail_after(HANDSHAKE_TIMEOUT_S):
                while volume is None:
                    event = shake.next_event() if pending is None else pending
                    pending = None
                    if isinstance(event, hs.NeedData):
                        shake.receive_data(await self._receive())
                        continue
                    if await self._handed_off(shake, event):
                        return
                    reply, export = await self._option(shake, event)
                    if export is not None:
                        # Open the volume before agreeing to serve it: a volume another gateway
                        # has open for writing is refused here, not after the handshake.
                        try:
                            volume = await stack.enter_async_context(self.server.hub.use(export))
                        except StoreError as e:
                            if isinstance(event, hs.ExportNameOption):
                                raise hs.ProtocolError(f"cannot open {export}: {e}") from None
                            reply = shake.error(Option.GO, Reply.ERR_POLICY, str(e))
                        else:
                            reply += (
                                shake.ack(Option.GO) if isinstance(event, hs.InfoOption) else b""
                            )
                    if reply:
                        await self.stream.send_all(reply)
                    if isinstance(event, hs.AbortOption):
                        return
                    if isinstance(event, hs.StartTLSOption) and shake.tls_active:
                        self.stream = trio.SSLStream(
                            self.stream, server.tls_context, server_side=True
                        )
                        await self.stream.do_handshake()
            await self._transmission(shake, volume)

    async def _handed_off(self, shake: hs.Handshake, event: hs.Event) -> bool:
        """Pass the connection to the worker that owns the export ``event`` opens, if that is
        another one; True once it is theirs (this worker then only closes its descriptor)."""
        handoffs = self.server.handoffs
        if handoffs is None or not isinstance(event, hs.InfoOption | hs.ExportNameOption):
            return False
        if isinstance(event, hs.InfoOption) and not event.go:
            return False  # INFO opens nothing: answered here
        owner = handoffs.owner(event.name)
        if owner == handoffs.index:
            return False
        handoff = Handoff.of(shake, event)
        if handoff is None or not isinstance(self.stream, trio.SocketStream):
            # Served here, its volume would be open in two processes: refuse instead.
            raise hs.ProtocolError(f"cannot hand the connection for {event.name!r} to its worker")
        try:
            await handoffs.send(owner, self.stream, handoff)
        except (OSError, trio.TooSlowError) as e:
            self.server.metrics.handoffs.labels("failed").inc()
            message = f"could not hand {event.name!r} to worker {owner}: {e}"
            raise trio.BrokenResourceError(message) from None
        self.server.metrics.handoffs.labels("sent").inc()
        return True

    async def _option(self, shake: hs.Handshake, event: hs.Event) -> tuple[bytes, str | None]:
        """The reply bytes for one option, and the export once the handshake is done."""
        match event:
            case hs.ClientFlags():
                return b"", None
            case hs.AbortOption():
                return shake.ack(Option.ABORT), None
            case hs.BadOption(option, reason):
                return shake.error(option, Reply.ERR_INVALID, reason), None
            case hs.UnknownOption(option):
                return shake.error(option, Reply.ERR_UNSUP, f"option {option} unsupported"), None
            case hs.StartTLSOption():
                if self.server.tls_context is None:
                    message = "TLS is not configured"
                    return shake.error(Option.STARTTLS, Reply.ERR_UNSUP, message), None
                return shake.ack(Option.STARTTLS), None  # run() starts TLS once this is sent
            case hs.TLSRequired(option):
                message = "this server requires TLS: negotiate NBD_OPT_STARTTLS first"
                return shake.error(option, Reply.ERR_TLS_REQD, message), None
            case hs.StructuredReplyOption():
                if shake.structured:
                    return shake.error(
                        Option.STRUCTURED_REPLY, Reply.ERR_INVALID, "already negotiated"
                    ), None
                return shake.ack(Option.STRUCTURED_REPLY), None
            case hs.ListOption():
                out = b"".join(
                    shake.server(v.name, _describe(v))
                    for v in await self.server.volumes.list_volumes()
                )
                return out + shake.ack(Option.LIST), None
            case hs.MetaContextOption():
                return await self._meta_context(shake, event), None
            case hs.InfoOption():
                return await self._info(shake, event)
            case hs.ExportNameOption(name):
                volume = await self._find(name)
                if volume is None:
                    raise hs.ProtocolError(f"no export {name!r}")  # the spec: close
                return shake.export_name_reply(volume.size, tx.export_flags(volume.readonly)), name
        raise AssertionError(event)

    async def _find(self, name: str) -> Any:
        try:
            return await self.server.volumes.get(name)
        except (NotFound, StoreError):
            return None

    async def _meta_context(self, shake: hs.Handshake, event: hs.MetaContextOption) -> bytes:
        option = Option.SET_META_CONTEXT if event.set else Option.LIST_META_CONTEXT
        if event.set:
            shake.begin_set_meta_context()
        if not shake.structured:
            return shake.error(option, Reply.ERR_INVALID, "negotiate structured replies first")
        if await self._find(event.export) is None:
            return shake.error(option, Reply.ERR_UNKNOWN, f"no export {event.export!r}")
        names = hs.match_meta_contexts(event.queries, (BASE_ALLOCATION,), listing=not event.set)
        out = b"".join(shake.meta_context(option, ALLOCATION_CONTEXT_ID, n) for n in names)
        return out + shake.ack(option)

    async def _info(self, shake: hs.Handshake, event: hs.InfoOption) -> tuple[bytes, str | None]:
        option = Option.GO if event.go else Option.INFO
        volume = await self._find(event.name)
        if volume is None:
            return shake.error(option, Reply.ERR_UNKNOWN, f"no export {event.name!r}"), None
        if event.go and self.server.draining.is_set():
            return shake.error(option, Reply.ERR_SHUTDOWN, "the server is shutting down"), None
        out = shake.info_export(option, volume.size, tx.export_flags(volume.readonly))
        if Info.NAME in event.requests:
            out += shake.info_name(option, volume.name)
        if Info.DESCRIPTION in event.requests:
            out += shake.info_description(option, _describe(volume))
        # Minimum 1: any offset and length is served (unaligned.py), whole blocks preferred.
        out += shake.info_block_size(
            option, 1, max(volume.block_bytes, PREFERRED_BLOCK), MAX_PAYLOAD
        )
        if event.go:  # acknowledged once the volume is open (see run)
            return out, volume.name
        return out + shake.ack(option), None

    # -- transmission ---------------------------------------------------------------------------

    async def _transmission(self, shake: hs.Handshake, volume: OpenVolume) -> None:
        self.export = tx.ExportState(
            size=volume.size,
            flags=tx.export_flags(volume.volume.readonly or not volume.writable),
            min_block=1,
            max_payload=MAX_PAYLOAD,
            structured=shake.structured,
            meta_contexts=bool(shake.meta_contexts),
        )
        self.volume = volume
        reader = tx.RequestReader(MAX_PAYLOAD, shake.trailing_data)
        self.slots = trio.Semaphore(self.server.limits.max_requests_in_flight_per_connection)
        self.sending_since = NOT_SENDING  # or when the send in progress started
        async with trio.open_nursery() as watching:
            watching.start_soon(self._watch_sends)
            async with trio.open_nursery() as requests:
                await self._read_requests(reader, requests)
            watching.cancel_scope.cancel()  # the requests in flight are done

    async def _read_requests(self, reader: tx.RequestReader, requests: trio.Nursery) -> None:
        """Each request answered inline or started in ``requests``, until DISC or a drain."""
        slots, draining = self.slots, self.server.draining
        deadline = float("inf")  # once draining: when to stop waiting for the client to go
        while True:
            item = reader.next_request()
            if item is not None and not draining.is_set():
                # In one pass, answer what needs no waiting (cached reads, small writes to dirty
                # extents; read data within both budgets' room), then send the replies together.
                done: list[bytes | bytearray] = []
                started = time.monotonic()
                counts, sizes = [0, 0], [0, 0]  # reads, writes answered inline
                room, held = min(self.budget.room_bytes, self.server.budget.room_bytes), 0
                while item is not None:
                    request, payload = item
                    if request.command == Command.DISC:
                        break
                    length = request.length if request.command == Command.READ else 0
                    if held + length > room:
                        break
                    reply = self._try_inline(request, payload)
                    if reply is None:
                        break
                    held += length
                    done.extend(reply)
                    counts[request.command] += 1
                    sizes[request.command] += request.length
                    item = reader.next_request()
                reply = None  # (no reference left to the data once it is sent)
                if done:
                    if held >= SMALL_BATCH_BYTES:  # counted (within both rooms, as checked)
                        self.budget.take(held)
                        self.server.budget.take(held)
                    try:
                        await self._send_parts(done)
                    finally:
                        done.clear()
                        self._let_go(held if held >= SMALL_BATCH_BYTES else 0)
                    # latency: from reading the batch to sending every reply in it
                    self.server.metrics.observe_inline(counts, sizes, time.monotonic() - started)
            if item is None:
                # Bytes of a request still arriving count too: read on only within budget.
                while self.budget.used_bytes and not self.budget.fits(reader.buffered + 1):
                    self.gave = trio.Event()
                    await self.gave.wait()
                if draining.is_set():
                    deadline = min(deadline, trio.current_time() + DRAIN_GRACE_S)
                    with trio.move_on_at(deadline):
                        reader.receive_data(await self._receive())
                        continue
                    return  # draining, and the client did not disconnect in time
                with draining.idle():  # a drain interrupts the wait, then the loop above
                    reader.receive_data(await self._receive())
                continue
            request, payload = item
            if request.command == Command.DISC:
                return  # the nursery lets the requests in flight finish first
            await slots.acquire()
            cost = held_bytes(request, MAX_PAYLOAD, CACHE_PIECE_BYTES)
            if cost:
                await self._hold(cost)
            requests.start_soon(self._serve_one, request, payload, cost)
            item, payload = None, b""  # the task holds the payload, and frees it

    async def _hold(self, n: int) -> None:
        """``n`` bytes from this connection's budget, then (in turn) from the server's."""
        while not self.budget.try_take(n):
            self.gave = trio.Event()
            await self.gave.wait()
        shared = self.server.budget
        if shared.try_take(n):
            return
        admitted = trio.Event()
        shared.enqueue(n, admitted)
        try:
            await admitted.wait()
        except BaseException:  # cancelled: out of the queue, or its grant given back
            for event in shared.cancel(admitted, n):
                event.set()
            self.budget.give(n)  # (the only task waiting on ``gave`` is this one)
            raise

    def _let_go(self, n: int) -> None:
        """Give ``n`` bytes back to both budgets, waking who waits for them."""
        if n:
            self.budget.give(n)
            self.gave.set()
            for event in self.server.budget.give(n):
                event.set()

    def _try_inline(
        self, request: tx.Request, payload: bytes | memoryview
    ) -> tuple[bytes] | tuple[bytes, bytes | bytearray] | None:
        """The whole reply (its parts) to a READ or WRITE served synchronously, or None for the
        async path (nothing was done). Metrics are the caller's, once per batch."""
        command = request.command
        if command > Command.WRITE or tx.check(request, self.export):
            return None
        try:
            if command == Command.READ:
                data = self.volume.try_read(request.offset, request.length)
                if data is None:
                    return None
                cookie = request.cookie
                if self.export.structured:
                    return tx.data_chunk(cookie, request.offset, len(data), done=True), data
                return tx.simple_reply(cookie), data
            if request.flags & CommandFlag.FUA or not self.volume.try_write(
                request.offset, payload
            ):
                return None
        except StoreError:
            return None  # the async path reports it
        return (tx.simple_reply(request.cookie),)

    async def _serve_one(self, request: tx.Request, payload: bytes | memoryview, held: int) -> None:
        metrics = self.server.metrics
        started = time.monotonic()
        metrics.inflight.inc()
        error = Errno.OK
        try:
            error = tx.check(request, self.export)
            if self.server.draining.is_set() and error == Errno.OK:
                error = Errno.ESHUTDOWN
            if error == Errno.OK:
                try:
                    await self._execute(request, payload)
                    return
                except StoreError as e:
                    error = errno_for(e)
                    log.warning("NBD %s failed: %s", Command(request.command).name, e)
                except Exception:
                    log.exception("NBD request failed")
                    error = Errno.EIO
            await self._send(
                tx.error_reply(request, error, structured=self.export.structured)
                if request.command in (Command.READ, Command.BLOCK_STATUS)
                else tx.simple_reply(request.cookie, error)
            )
        finally:
            self.slots.release()
            self._let_go(held)
            metrics.inflight.dec()
            metrics.observe(request.command, error, time.monotonic() - started)

    async def _execute(self, request: tx.Request, payload: bytes | memoryview) -> None:
        volume, cookie = self.volume, request.cookie
        fua = bool(request.flags & CommandFlag.FUA)
        match request.command:
            case Command.READ:
                data = await volume.read(request.offset, request.length)
                self.server.metrics.bytes_read.inc(len(data))
                if self.export.structured:
                    head = tx.data_chunk(cookie, request.offset, len(data), done=True)
                else:
                    head = tx.simple_reply(cookie)
                await self._send(head, data)
                return
            case Command.WRITE:
                await volume.write(request.offset, payload, fua=fua)
                self.server.metrics.bytes_written.inc(len(payload))
            case Command.FLUSH:
                await volume.flush()
            case Command.TRIM:
                await volume.trim(request.offset, request.length, fua=fua)
            case Command.WRITE_ZEROES:
                punch = not request.flags & CommandFlag.NO_HOLE
                await volume.write_zeroes(request.offset, request.length, punch=punch, fua=fua)
            case Command.CACHE:  # read ahead (verified, into the page cache), a piece at a time
                end = request.offset + request.length
                for at in range(request.offset, end, CACHE_PIECE_BYTES):
                    await volume.read(at, min(CACHE_PIECE_BYTES, end - at))
            case Command.BLOCK_STATUS:
                runs = await volume.block_status(request.offset, tx.status_length(request))
                if request.flags & CommandFlag.REQ_ONE:
                    runs = runs[:1]
                await self._send(
                    tx.block_status_chunk(cookie, ALLOCATION_CONTEXT_ID, runs, done=True)
                )
                return
        await self._send(tx.simple_reply(cookie))

    async def _send(self, head: bytes, data: bytes | bytearray = b"") -> None:
        await self._send_parts((head, data) if data else (head,))

    async def _send_parts(self, parts: Sequence[bytes | bytearray]) -> None:
        """Send replies' parts in order. They join the outbox at once (so replies never
        interleave); whoever holds the send lock sends everything queued by then, so replies
        finished together share system calls: small parts joined into one send, large ones
        (read data) sent as they are, never copied."""
        self._outbox.extend(parts)
        await trio.lowlevel.checkpoint()  # let the replies finished in this turn queue too
        async with self.send_lock:
            if not self._outbox:
                return  # sent by the holder before us
            parts, self._outbox = self._outbox, []
            # Other requests' replies ride in this batch: a send cut short would leave the
            # client half a reply, so it is not cancelled with our request; each slice has the
            # stall timeout instead (then the connection is closed).
            with trio.CancelScope(shield=True):
                pending: list[bytes | bytearray] = []
                for part in parts:
                    if len(part) < SEND_COPY_BYTES:
                        pending.append(part)
                        continue
                    if pending:
                        await self._send_all(b"".join(pending))
                        pending = []
                    await self._send_all(part)
                if pending:
                    await self._send_all(b"".join(pending))

    async def _send_all(self, data: bytes | bytearray) -> None:
        """In slices, each timed by ``_watch_sends`` (a timestamp: no timer per send)."""
        with memoryview(data) as view:
            for at in range(0, len(view), SEND_SLICE_BYTES):
                self.sending_since = trio.current_time()
                await self._send_slice(view[at : at + SEND_SLICE_BYTES])
        self.sending_since = NOT_SENDING

    async def _send_slice(self, piece: memoryview) -> None:
        """One slice, within the stall timeout even where the send is shielded (the watcher
        cannot cancel a shielded send): past it the connection is closed."""
        with trio.move_on_after(self.server.limits.send_stall_timeout_s) as stalled:
            await self.stream.send_all(piece)
        if stalled.cancelled_caught:
            await trio.aclose_forcefully(self.stream)
            raise trio.BrokenResourceError("the client read no reply within the stall timeout")

    async def _watch_sends(self) -> None:
        """Close the connection of a client that takes no reply data for the stall timeout."""
        stall_s = self.server.limits.send_stall_timeout_s
        while True:
            await trio.sleep(stall_s / 8)  # so a stall is noticed within 1.125 timeouts
            if trio.current_time() - self.sending_since >= stall_s:
                raise trio.BrokenResourceError(f"the client read no reply for {stall_s} s")


def _describe(volume: Any) -> str:
    kind = "snapshot" if volume.readonly else "volume"
    text = f"{kind}, {volume.size} bytes, {volume.replicas} replicas"
    return f"{text}: {volume.description}" if volume.description else text
