"""Passing NBD connections between worker processes (store/nbd/handoff.py says why and what).

The supervisor makes one ``SOCK_SEQPACKET`` socket pair per worker: worker i receives on the
read end of pair i and sends to worker j on the write end of pair j (each message one handoff,
the connection's descriptor in its ``SCM_RIGHTS``). The supervisor keeps every end open, so a
connection handed to a worker that is restarting waits in the socket until the new process reads
it, as new connections wait in its listening socket's backlog.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
from collections.abc import Sequence

import trio

from store.nbd.handoff import MAX_MESSAGE_BYTES, Handoff, HandoffError, owner_of

SEND_TIMEOUT_S = 5.0  # the owner's socket stays full this long: the connection is closed
_FD_BYTES = array.array("i").itemsize


def socket_pairs(workers: int) -> list[tuple[socket.socket, socket.socket]]:
    """(receive end, send end) for each worker, inheritable by the worker processes."""
    pairs = []
    for _ in range(workers):
        inbox, outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        inbox.set_inheritable(True)
        outbox.set_inheritable(True)
        pairs.append((inbox, outbox))
    return pairs


class Handoffs:
    """One worker's side: its inbox, and every worker's outbox (by index; its own unused)."""

    def __init__(self, index: int, inbox: socket.socket, outboxes: Sequence[socket.socket]) -> None:
        if not 0 <= index < len(outboxes):
            raise ValueError(f"worker {index} of {len(outboxes)}")
        self.index = index
        self.workers = len(outboxes)
        self._inbox = trio.socket.from_stdlib_socket(inbox)
        self._outboxes = [trio.socket.from_stdlib_socket(s) for s in outboxes]

    def owner(self, export: str) -> int:
        return owner_of(export, self.workers)

    async def send(self, worker: int, stream: trio.SocketStream, handoff: Handoff) -> None:
        """Pass the connection under ``stream`` to ``worker``; the caller then closes its copy
        (a close, never a shutdown: the connection lives on in the owner)."""
        fds = array.array("i", [stream.socket.fileno()])
        with trio.fail_after(SEND_TIMEOUT_S):
            await self._outboxes[worker].sendmsg(
                [handoff.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
            )

    async def receive(self) -> tuple[socket.socket, Handoff]:
        """The next connection handed to this worker, and where its handshake stands."""
        message, ancillary, flags, _ = await self._inbox.recvmsg(
            MAX_MESSAGE_BYTES + 1, socket.CMSG_SPACE(4 * _FD_BYTES), socket.MSG_CMSG_CLOEXEC
        )
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % _FD_BYTES])
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 1:
                raise HandoffError(f"a handoff with {len(fds)} descriptors, flags {flags:#x}")
            handoff = Handoff.decode(message)
            sock = socket.socket(fileno=fds[0])  # OSError if it is not a socket
        except BaseException:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        return sock, handoff

    def close(self) -> None:
        for sock in (self._inbox, *self._outboxes):
            with contextlib.suppress(OSError):
                sock.close()
