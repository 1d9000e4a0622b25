"""Flow control for the transmission phase, sans-IO: the bytes a server holds for the requests
it has taken, against a limit.

What a request holds (``held_bytes``): a READ its reply data, from the moment it is read until
the reply is sent; a WRITE its payload, until it is written; a CACHE the one piece it reads ahead
at a time. Other commands hold nothing worth counting (their count is bounded elsewhere).

``ByteBudget`` rules, the invariants its users rely on:
  - ``used_bytes`` is what was taken and not given back; never below 0.
  - Bytes fit when ``used_bytes + n <= limit_bytes``, or when nothing at all is held: a request
    larger than the whole limit is still served, alone.
  - Waiters are admitted in FIFO order, and ``try_take`` refuses while anyone waits: small
    requests cannot starve a large one.
  - Nothing here blocks or wakes anything: ``give`` and ``cancel`` return the waiters they
    admitted (their bytes already taken on their behalf), and the caller wakes them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from store.nbd.constants import Command
from store.nbd.transmission import Request

W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class NbdLimits:
    """What clients can make an NBD server hold (store/gateway/nbd.py applies them)."""

    max_bytes_in_flight_per_connection: int = 64 << 20  # two maximum-size requests
    max_bytes_in_flight: int = 1 << 30  # all the connections of one process together
    max_requests_in_flight_per_connection: int = 128
    # A reply's data goes out in slices; one that makes no progress this long (the client
    # stopped reading) closes the connection, and what it held is given back.
    send_stall_timeout_s: float = 60.0
    # Connections served at once (handshakes included); more are closed as they are accepted.
    max_connections: int = 1024


def held_bytes(request: Request, max_payload: int, piece_bytes: int) -> int:
    """The bytes the server holds while serving ``request`` (see above); CACHE reads ahead
    ``piece_bytes`` at a time. A READ or CACHE over ``max_payload`` holds nothing: it is refused
    (EINVAL) unread; a WRITE over it never gets this far (RequestReader refuses it)."""
    command, length = request.command, request.length
    if length > max_payload:
        return 0
    if command == Command.READ or command == Command.WRITE:
        return length
    return min(length, piece_bytes) if command == Command.CACHE else 0


class ByteBudget(Generic[W]):
    """Bytes held against ``limit_bytes``; waiters are whatever the caller wakes (events).

    >>> budget = ByteBudget[str](10)
    >>> budget.try_take(8), budget.try_take(4)  # 8 + 4 > 10
    (True, False)
    >>> budget.enqueue(4, "a"); budget.enqueue(1, "b")
    >>> budget.try_take(1)  # "a" and "b" wait: no overtaking, though 1 byte would fit
    False
    >>> budget.give(8)  # both admitted, in order
    ['a', 'b']
    >>> budget.used_bytes, budget.room_bytes
    (5, 5)
    >>> budget.give(5), budget.try_take(25)  # nothing held: a request over the limit, alone
    ((), True)
    >>> budget.enqueue(3, "c"); budget.cancel("c", 3), budget.waiting
    ((), 0)
    """

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError(f"a byte budget needs a positive limit, not {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._waiting: deque[tuple[int, W]] = deque()

    def fits(self, n: int) -> bool:
        return not self.used_bytes or self.used_bytes + n <= self.limit_bytes

    @property
    def room_bytes(self) -> int:
        """How many bytes ``try_take`` would grant now (0 while anyone waits)."""
        return 0 if self._waiting else max(0, self.limit_bytes - self.used_bytes)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_take(self, n: int) -> bool:
        if self._waiting or not self.fits(n):
            return False
        self.used_bytes += n
        return True

    def take(self, n: int) -> None:
        """Take ``n`` bytes the caller knows are there (within ``room_bytes``)."""
        assert n <= self.room_bytes, (n, self.room_bytes)
        self.used_bytes += n

    def enqueue(self, n: int, waiter: W) -> None:
        """``waiter`` waits for ``n`` bytes (after a failed ``try_take``)."""
        self._waiting.append((n, waiter))

    def give(self, n: int) -> Sequence[W]:
        """Give back ``n`` bytes; the waiters that admits, in order."""
        assert 0 <= n <= self.used_bytes, (n, self.used_bytes)
        self.used_bytes -= n
        return self._admit()

    def cancel(self, waiter: W, n: int) -> Sequence[W]:
        """``waiter`` stops waiting for its ``n`` bytes: it leaves the queue or, if it was
        admitted already, gives them back. The waiters that admits."""
        for i, (_, queued) in enumerate(self._waiting):
            if queued is waiter:
                del self._waiting[i]
                return self._admit()
        return self.give(n)

    def _admit(self) -> Sequence[W]:
        if not self._waiting:
            return ()  # (the common case: no list to build)
        admitted = []
        while self._waiting and self.fits(self._waiting[0][0]):
            n, waiter = self._waiting.popleft()
            self.used_bytes += n
            admitted.append(waiter)
        return admitted
