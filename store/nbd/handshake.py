"""The server side of the NBD fixed-newstyle handshake, sans-IO (no sockets, no trio).

Theory of operation (proto.md, "Fixed newstyle negotiation"):

    S: greeting()                 "NBDMAGIC" "IHAVEOPT" u16 handshake flags
    C: u32 client flags           -> event ClientFlags (FIXED_NEWSTYLE is required)
    C: "IHAVEOPT" u32 option u32 length, data     -> one event per option, parsed
    S: replies to that option, built by the methods below; each option gets zero or more
       informational replies (SERVER, INFO, META_CONTEXT) and then exactly one final reply
       (ACK or an error), except EXPORT_NAME, answered by ``export_name_reply`` (or a close)
    ... until the server ACKs GO or answers EXPORT_NAME: ``done`` is set and the bytes after the
    handshake (the first transmission requests) are in ``trailing_data``.

The state this layer keeps is what the transmission phase needs: whether structured replies were
acknowledged, the meta contexts the client selected (the last SET_META_CONTEXT wins), and
whether the client asked for NO_ZEROES, and whether TLS is on (after an acknowledged STARTTLS
the server wraps the stream in TLS and feeds this object the decrypted bytes; with
``tls_required`` every other option before it is a ``TLSRequired`` event). What exports exist,
and other policy, are the server's.
Malformed framing raises ``ProtocolError`` (the server closes the connection); malformed option
*data* becomes a ``BadOption`` event, which the server answers with ``Reply.ERR_INVALID`` (except
a bad EXPORT_NAME, which has no error reply: ``ProtocolError``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from store.nbd.constants import (
    IHAVEOPT,
    MAX_OPTION_BYTES,
    MAX_STRING_BYTES,
    NBDMAGIC,
    OPTION_REPLY_MAGIC,
    ClientFlag,
    HandshakeFlag,
    Info,
    Option,
    Reply,
    TransmissionFlag,
)


class ProtocolError(Exception):
    """The peer broke the framing; the only safe answer is to close the connection."""


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientFlags:
    flags: ClientFlag


@dataclass(frozen=True, slots=True)
class ExportNameOption:
    name: str


@dataclass(frozen=True, slots=True)
class InfoOption:
    """NBD_OPT_INFO, or NBD_OPT_GO (``go``): the export and the info types asked for."""

    name: str
    requests: tuple[int, ...]
    go: bool


@dataclass(frozen=True, slots=True)
class ListOption:
    pass


@dataclass(frozen=True, slots=True)
class AbortOption:
    pass


@dataclass(frozen=True, slots=True)
class StartTLSOption:
    pass


@dataclass(frozen=True, slots=True)
class StructuredReplyOption:
    pass


@dataclass(frozen=True, slots=True)
class TLSRequired:
    """An option sent in plain text to a server that requires TLS: answer
    ``error(option, Reply.ERR_TLS_REQD, ...)`` (proto.md: to every option but STARTTLS and
    ABORT; a plain EXPORT_NAME has no error reply and raises ``ProtocolError``)."""

    option: int


@dataclass(frozen=True, slots=True)
class MetaContextOption:
    """NBD_OPT_LIST_META_CONTEXT, or NBD_OPT_SET_META_CONTEXT (``set``)."""

    export: str
    queries: tuple[str, ...]
    set: bool


@dataclass(frozen=True, slots=True)
class UnknownOption:
    option: int


@dataclass(frozen=True, slots=True)
class BadOption:
    """An option whose data does not parse: answer ``error(option, Reply.ERR_INVALID, ...)``."""

    option: int
    reason: str


Event = (
    ClientFlags
    | ExportNameOption
    | InfoOption
    | ListOption
    | AbortOption
    | StartTLSOption
    | StructuredReplyOption
    | TLSRequired
    | MetaContextOption
    | UnknownOption
    | BadOption
)


class NeedData:
    """``next_event`` has no complete message yet: feed more bytes."""


NEED_DATA = NeedData()

_OPTION_HEAD = struct.Struct(">QII")
_REPLY_HEAD = struct.Struct(">QIII")


class Handshake:
    def __init__(self, *, tls: bool = False, tls_required: bool = False) -> None:
        self._buffer = bytearray()
        self._got_flags = False
        self.tls_offered = tls or tls_required
        self.tls_required = tls_required
        self.tls_active = False  # STARTTLS was acknowledged: the bytes that follow are TLS
        self.no_zeroes = False
        self.structured = False
        self.meta_contexts: dict[int, str] = {}  # id -> name, as last set by the client
        self.done = False
        self._pending: int | None = None  # the option being answered

    @classmethod
    def resumed(
        cls,
        *,
        tls: bool,
        tls_required: bool,
        no_zeroes: bool,
        structured: bool,
        meta_contexts: dict[int, str],
        option: int,
        trailing: bytes,
    ) -> Handshake:
        """A handshake that another process began (store/nbd/handoff.py): the client's flags and
        ``option`` already read, that option not yet answered, ``trailing`` the bytes after it."""
        shake = cls(tls=tls, tls_required=tls_required)
        shake._got_flags = True
        shake.no_zeroes = no_zeroes
        shake.structured = structured
        shake.meta_contexts = dict(meta_contexts)
        shake._pending = option
        shake._buffer += trailing
        return shake

    # -- input ----------------------------------------------------------------------------------

    def greeting(self) -> bytes:
        flags = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES
        return struct.pack(">QQH", NBDMAGIC, IHAVEOPT, flags)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the handshake ended (the first requests)."""
        return bytes(self._buffer)

    def next_event(self) -> Event | NeedData:
        if self.done:
            raise ProtocolError("the handshake is over")
        if not self._got_flags:
            if len(self._buffer) < 4:
                return NEED_DATA
            (flags,) = struct.unpack_from(">I", self._buffer)
            del self._buffer[:4]
            self._got_flags = True
            # int(): ~ of an IntFlag complements only its defined members, hiding unknown bits
            known = int(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES)
            if not flags & ClientFlag.FIXED_NEWSTYLE or flags & ~known:
                raise ProtocolError(f"unsupported client flags {flags:#x}")
            self.no_zeroes = bool(flags & ClientFlag.NO_ZEROES)
            return ClientFlags(ClientFlag(flags))
        if len(self._buffer) < _OPTION_HEAD.size:
            return NEED_DATA
        magic, option, length = _OPTION_HEAD.unpack_from(self._buffer)
        if magic != IHAVEOPT:
            raise ProtocolError(f"bad option magic {magic:#x}")
        if length > MAX_OPTION_BYTES:
            raise ProtocolError(f"option {option} carries {length} bytes, over the limit")
        end = _OPTION_HEAD.size + length
        if len(self._buffer) < end:
            return NEED_DATA
        data = bytes(self._buffer[_OPTION_HEAD.size : end])
        del self._buffer[:end]
        self._pending = option
        if option == Option.STARTTLS and self.tls_active and not data:
            return BadOption(option, "TLS is already active")
        if self.tls_required and not self.tls_active:
            if option == Option.EXPORT_NAME:
                raise ProtocolError("TLS is required before EXPORT_NAME")
            if option not in (Option.STARTTLS, Option.ABORT):
                return TLSRequired(option)
        return _parse_option(option, data)

    # -- replies --------------------------------------------------------------------------------

    def reply(self, option: int, reply: int, payload: bytes = b"") -> bytes:
        """One option reply message. A final one (ACK or an error) ends the option; an ACK of
        STRUCTURED_REPLY or GO changes the state."""
        if reply == Reply.ACK or reply & (1 << 31):
            self._pending = None
            if reply == Reply.ACK and option == Option.STRUCTURED_REPLY:
                self.structured = True
            if reply == Reply.ACK and option == Option.GO:
                self.done = True
            if reply == Reply.ACK and option == Option.STARTTLS:
                if self._buffer:  # sent before our ACK: plain text the TLS session would eat
                    raise ProtocolError("data sent after STARTTLS before its reply")
                # proto.md: after STARTTLS succeeds the server MUST NOT preserve earlier state
                self.tls_active = True
                self.structured = False
                self.meta_contexts = {}
        return _REPLY_HEAD.pack(OPTION_REPLY_MAGIC, option, reply, len(payload)) + payload

    def ack(self, option: int) -> bytes:
        return self.reply(option, Reply.ACK)

    def error(self, option: int, reply: Reply, message: str = "") -> bytes:
        assert reply & (1 << 31), reply
        return self.reply(option, reply, _string(message))

    def server(self, name: str, description: str = "") -> bytes:
        """One NBD_REP_SERVER entry of a LIST answer."""
        raw = _string(name)
        return self.reply(
            Option.LIST, Reply.SERVER, struct.pack(">I", len(raw)) + raw + _string(description)
        )

    def info_export(self, option: int, size: int, flags: TransmissionFlag) -> bytes:
        return self.reply(option, Reply.INFO, struct.pack(">HQH", Info.EXPORT, size, flags))

    def info_name(self, option: int, name: str) -> bytes:
        return self.reply(option, Reply.INFO, struct.pack(">H", Info.NAME) + _string(name))

    def info_description(self, option: int, text: str) -> bytes:
        return self.reply(option, Reply.INFO, struct.pack(">H", Info.DESCRIPTION) + _string(text))

    def info_block_size(self, option: int, minimum: int, preferred: int, maximum: int) -> bytes:
        payload = struct.pack(">HIII", Info.BLOCK_SIZE, minimum, preferred, maximum)
        return self.reply(option, Reply.INFO, payload)

    def meta_context(self, option: int, context_id: int, name: str) -> bytes:
        if option == Option.SET_META_CONTEXT:
            self.meta_contexts[context_id] = name
        return self.reply(option, Reply.META_CONTEXT, struct.pack(">I", context_id) + _string(name))

    def begin_set_meta_context(self) -> None:
        """A SET_META_CONTEXT replaces what an earlier one selected (even if it fails)."""
        self.meta_contexts = {}

    def export_name_reply(self, size: int, flags: TransmissionFlag) -> bytes:
        """The answer to NBD_OPT_EXPORT_NAME for an export that exists; the handshake ends."""
        self.done = True
        self._pending = None
        return struct.pack(">QH", size, flags) + (b"" if self.no_zeroes else bytes(124))


def _string(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > MAX_STRING_BYTES:
        raise ValueError("an NBD string is at most 4096 bytes")
    return raw


def _parse_option(option: int, data: bytes) -> Event:
    try:
        match option:
            case Option.EXPORT_NAME:
                try:
                    return ExportNameOption(_decode(data))
                except ValueError as e:  # no error reply exists: the session must end
                    raise ProtocolError(f"bad export name: {e}") from None
            case Option.INFO | Option.GO:
                name, rest = _take_string(data)
                if len(rest) < 2:
                    raise ValueError("no count of information requests")
                (count,) = struct.unpack_from(">H", rest)
                if len(rest) != 2 + 2 * count:
                    raise ValueError("information requests do not match their count")
                requests = struct.unpack_from(f">{count}H", rest, 2)
                return InfoOption(name, tuple(requests), option == Option.GO)
            case Option.ABORT:
                return AbortOption()  # proto.md: the server SHOULD ignore any data sent with it
            case Option.LIST | Option.STARTTLS | Option.STRUCTURED_REPLY:
                if data:
                    raise ValueError("this option carries no data")
                if option == Option.LIST:
                    return ListOption()
                if option == Option.STARTTLS:
                    return StartTLSOption()
                return StructuredReplyOption()
            case Option.LIST_META_CONTEXT | Option.SET_META_CONTEXT:
                export, rest = _take_string(data)
                if len(rest) < 4:
                    raise ValueError("no count of queries")
                (count,) = struct.unpack_from(">I", rest)
                rest = rest[4:]
                queries = []
                for _ in range(count):
                    query, rest = _take_string(rest)
                    queries.append(query)
                if rest:
                    raise ValueError("bytes after the last query")
                return MetaContextOption(export, tuple(queries), option == Option.SET_META_CONTEXT)
            case _:
                return UnknownOption(option)
    except ValueError as e:
        return BadOption(option, str(e))


def _take_string(data: bytes) -> tuple[str, bytes]:
    """A u32-length-prefixed string and what follows it."""
    if len(data) < 4:
        raise ValueError("truncated string length")
    (length,) = struct.unpack_from(">I", data)
    if length > MAX_STRING_BYTES or len(data) < 4 + length:
        raise ValueError("bad string length")
    return _decode(data[4 : 4 + length]), data[4 + length :]


def _decode(raw: bytes) -> str:
    if len(raw) > MAX_STRING_BYTES:
        raise ValueError("string over 4096 bytes")
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if "\0" in text:
        raise ValueError("NUL in a string")
    return text


def match_meta_contexts(
    queries: tuple[str, ...], available: tuple[str, ...], *, listing: bool
) -> list[str]:
    """The contexts queries select (proto.md "Metadata querying"): exact names; when listing,
    also a namespace ("base:" is every context in it), and no query at all means every context.

    >>> match_meta_contexts(("base:allocation", "qemu:dirty"), ("base:allocation",), listing=False)
    ['base:allocation']
    >>> match_meta_contexts(("base:",), ("base:allocation",), listing=False)
    []
    >>> match_meta_contexts(("base:",), ("base:allocation",), listing=True)
    ['base:allocation']
    """
    if listing and not queries:
        return list(available)
    chosen: list[str] = []
    for query in queries:
        for name in available:
            hit = name == query or (listing and query.endswith(":") and name.startswith(query))
            if hit and name not in chosen:
                chosen.append(name)
    return chosen
