"""Handing an NBD connection to the worker process that owns its export, sans-IO.

With several worker processes each accepts NBD connections (the kernel spreads them), but every
connection to one volume must be served by one process: they share its ``OpenVolume``, so a
FLUSH on any covers the writes of all (MULTI_CONN), and a volume is open for writing in one
process at a time. ``owner_of`` names that process from the export name alone, so every worker
agrees without asking anyone. When a client's GO (or EXPORT_NAME) names an export another worker
owns, the accepting worker answers nothing for that option: it passes the socket (SCM_RIGHTS)
with a ``Handoff``, what the handshake agreed so far plus the option, and the owner answers the
option as if it had read it itself (``Handoff.resume``). A TLS session cannot move between
processes, so connections that started TLS are never handed off.

Wire form: ``u32`` length of a JSON header, the header, then the bytes the client sent after the
option (normally none). ``decode`` checks every field: the message comes from a sibling process,
but a bug there must not become a bad handshake here.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from store.nbd import handshake as hs
from store.nbd.constants import Option

MAX_TRAILING_BYTES = 64 << 10  # a client that sends more before GO's reply is not handed off
MAX_MESSAGE_BYTES = MAX_TRAILING_BYTES + (16 << 10)
_LENGTH = struct.Struct(">I")


class HandoffError(ValueError):
    """A handoff message that does not decode."""


def owner_of(export: str, workers: int) -> int:
    """The worker that serves ``export``: stable across processes and restarts.

    >>> owner_of("vm-disk", 1), owner_of("vm-disk", 4) == owner_of("vm-disk", 4)
    (0, True)
    """
    return zlib.crc32(export.encode()) % workers


@dataclass(frozen=True, slots=True)
class Handoff:
    """An option that names an export, and the handshake state it is answered in."""

    event: hs.InfoOption | hs.ExportNameOption
    no_zeroes: bool
    structured: bool
    meta_contexts: dict[int, str]
    trailing: bytes

    @classmethod
    def of(cls, shake: hs.Handshake, event: hs.InfoOption | hs.ExportNameOption) -> Handoff | None:
        """What to send for ``event``, or None if this connection cannot move (TLS is on, or the
        client sent too much ahead)."""
        trailing = shake.trailing_data
        if shake.tls_active or len(trailing) > MAX_TRAILING_BYTES:
            return None
        if isinstance(event, hs.InfoOption):  # repeats say nothing more (a GO may carry 32k)
            event = hs.InfoOption(event.name, tuple(dict.fromkeys(event.requests))[:64], event.go)
        handoff = cls(event, shake.no_zeroes, shake.structured, dict(shake.meta_contexts), trailing)
        return handoff if len(handoff.encode()) <= MAX_MESSAGE_BYTES else None

    @property
    def export(self) -> str:
        return self.event.name

    def resume(self, *, tls: bool, tls_required: bool) -> hs.Handshake:
        """A handshake in the state the sender's was in, its option read and not yet answered."""
        return hs.Handshake.resumed(
            tls=tls,
            tls_required=tls_required,
            no_zeroes=self.no_zeroes,
            structured=self.structured,
            meta_contexts=self.meta_contexts,
            option=Option.GO if isinstance(self.event, hs.InfoOption) else Option.EXPORT_NAME,
            trailing=self.trailing,
        )

    def encode(self) -> bytes:
        event = self.event
        header = {
            "export": event.name,
            "go": isinstance(event, hs.InfoOption),
            "requests": list(event.requests) if isinstance(event, hs.InfoOption) else [],
            "no_zeroes": self.no_zeroes,
            "structured": self.structured,
            "meta_contexts": {str(k): v for k, v in self.meta_contexts.items()},
        }
        raw = json.dumps(header).encode()
        return _LENGTH.pack(len(raw)) + raw + self.trailing

    @classmethod
    def decode(cls, message: bytes) -> Handoff:
        """The inverse of ``encode``.

        >>> h = Handoff(hs.InfoOption("v", (3,), True), True, True, {1: "base:allocation"}, b"x")
        >>> Handoff.decode(h.encode()) == h
        True
        """
        if len(message) < _LENGTH.size or len(message) > MAX_MESSAGE_BYTES:
            raise HandoffError(f"a handoff of {len(message)} bytes")
        (size,) = _LENGTH.unpack_from(message)
        try:
            header = json.loads(message[_LENGTH.size : _LENGTH.size + size])
            export = header["export"]
            requests = tuple(header["requests"])
            contexts = {int(k): v for k, v in header["meta_contexts"].items()}
            flags = header["go"], header["no_zeroes"], header["structured"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HandoffError(f"a bad handoff header: {e}") from None
        if not isinstance(export, str) or not all(isinstance(f, bool) for f in flags):
            raise HandoffError("a bad handoff header: wrong field types")
        if not all(isinstance(r, int) and 0 <= r < 1 << 16 for r in requests):
            raise HandoffError("a bad handoff header: information requests")
        if not all(isinstance(v, str) for v in contexts.values()):
            raise HandoffError("a bad handoff header: meta contexts")
        go, no_zeroes, structured = flags
        event: hs.InfoOption | hs.ExportNameOption = (
            hs.InfoOption(export, requests, True) if go else hs.ExportNameOption(export)
        )
        trailing = message[_LENGTH.size + size :]
        return cls(event, no_zeroes, structured, contexts, bytes(trailing))
