"""Fuzz the NBD fixed-newstyle handshake (``store.nbd.handshake.Handshake``) and the hand-over to
the transmission phase (``transmission.RequestReader``).

Input: one configuration byte (bit 0: TLS offered, bit 1: TLS required, bit 2: the first GO for
an export that exists is refused, bit 3: the client waits for each option's reply before it
sends more, as qemu and libnbd do; otherwise it pipelines), then what the client sends, as
qemu-img/qemu-nbd and nbdinfo send it: client flags, options, and after GO or EXPORT_NAME the
first transmission requests. The bytes arrive in pieces; a
simulated server (answering like ``store.gateway.nbd``) replies to each event. Properties,
checked against an independent reading of the byte stream (proto.md):

- only ``ProtocolError`` escapes, and only where the spec says to close: client flags without
  FIXED_NEWSTYLE or with unknown bits, a bad option magic (a transmission request before the
  handshake ended is one), option data over the limit, a bad or TLS-less EXPORT_NAME, data
  sent after STARTTLS before its reply;
- every event belongs to the option in the frame the oracle sees at that point, consuming
  exactly that frame; a complete frame is never left waiting (``NeedData``);
- ``TLSRequired`` comes only while TLS is required and not active;
- nothing is accepted after the handshake ends, and ``trailing_data`` is exactly the bytes after
  it, which the transmission reader parses as requests (bad magic is a ``ProtocolError``).
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from _harness import pieces

    from store.nbd import handshake as hs
    from store.nbd import transmission as tx
    from store.nbd.constants import (
        IHAVEOPT,
        MAX_OPTION_BYTES,
        REQUEST_MAGIC,
        Command,
        Option,
        Reply,
    )

EXPORTS = {"": 1 << 20, "disk": 64 << 20, "vol1": 4096}
MAX_PAYLOAD = 1 << 16
_EVENT_OPTIONS = {
    hs.ExportNameOption: (Option.EXPORT_NAME,),
    hs.InfoOption: (Option.INFO, Option.GO),
    hs.ListOption: (Option.LIST,),
    hs.AbortOption: (Option.ABORT,),
    hs.StartTLSOption: (Option.STARTTLS,),
    hs.StructuredReplyOption: (Option.STRUCTURED_REPLY,),
    hs.MetaContextOption: (Option.LIST_META_CONTEXT, Option.SET_META_CONTEXT),
}

_PARSED = {option for options in _EVENT_OPTIONS.values() for option in options}


class Ended(Exception):
    """The simulated server ends the session (ABORT, an unknown EXPORT_NAME)."""


class Session:
    def __init__(self, config: int, wire: bytes) -> None:
        self.tls = bool(config & 1)
        self.tls_required = bool(config & 2)
        self.refuse_go = bool(config & 4)
        self.lockstep = bool(config & 8)
        self.wire = wire
        self.shake = hs.Handshake(tls=self.tls, tls_required=self.tls_required)
        self.sizes = (len(p) for p in pieces(bytes(64 * len(wire) + 64), len(wire) ^ config))
        self.fed = 0  # bytes of wire given to the handshake
        self.pos = 0  # bytes of wire the oracle has seen consumed

    def feed(self, sink: hs.Handshake | tx.RequestReader) -> bool:
        if self.fed >= len(self.wire):
            return False
        end = self.fed + next(self.sizes)
        if self.lockstep and not self.shake.done:  # never past the frame being read
            head = self.frame()
            frame_end = 4 if self.pos == 0 else self.pos + 16 + (head[2] if head else 0)
            if frame_end > self.fed:
                end = min(end, frame_end)
        sink.receive_data(self.wire[self.fed : end])
        self.fed = min(end, len(self.wire))
        return True

    def frame(self) -> tuple[int, int, int] | None:
        """(magic, option, length) of the next frame, if its header has arrived."""
        if self.fed - self.pos < 16:
            return None
        return struct.unpack_from(">QII", self.wire, self.pos)

    def must_close(self) -> str | None:
        """Why the spec says the next step closes the connection, if it does."""
        if self.pos == 0:
            if self.fed < 4:
                return None
            (flags,) = struct.unpack_from(">I", self.wire)
            return "flags" if not flags & 1 or flags & ~3 else None
        head = self.frame()
        if head is None:
            return None
        magic, option, length = head
        if magic != IHAVEOPT:
            return "magic"
        if length > MAX_OPTION_BYTES:
            return "length"
        if option == Option.EXPORT_NAME:
            return "export name"  # when its name is bad or TLS is required: checked below
        return None

    def complete(self) -> bool:
        if self.pos == 0:
            return self.fed >= 4
        head = self.frame()
        return head is not None and self.fed - self.pos >= 16 + head[2]

    def run(self) -> None:
        while not self.shake.done:
            reason = self.must_close()
            try:
                event = self.shake.next_event()
            except hs.ProtocolError:
                assert reason is not None, "ProtocolError on a frame the spec allows"
                if reason == "export name":
                    self._check_bad_export_name()
                return
            if isinstance(event, hs.NeedData):
                assert not self.complete(), "a complete frame left waiting"
                assert reason in (None, "export name"), f"NeedData on a frame to refuse: {reason}"
                if not self.feed(self.shake):
                    return
                continue
            assert reason in (None, "export name"), f"accepted a frame to refuse: {reason}"
            self._consume(event)
            try:
                self._answer(event)
            except Ended:
                return
            except hs.ProtocolError:
                assert isinstance(event, hs.StartTLSOption) and self.fed > self.pos
                return
        self._transmission()

    def _check_bad_export_name(self) -> None:
        _, _, length = self.frame() or (0, 0, 0)
        data = self.wire[self.pos + 16 : self.pos + 16 + length]
        if self.tls_required and not self.shake.tls_active:
            return
        try:
            name = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        assert "\0" in name or len(data) > 4096, f"refused a good export name {name!r}"

    def _consume(self, event: object) -> None:
        if isinstance(event, hs.ClientFlags):
            assert self.pos == 0
            self.pos = 4
            return
        assert self.pos >= 4, f"{event} before the client flags"
        head = self.frame()
        assert head is not None
        _, option, length = head
        if isinstance(event, hs.TLSRequired):
            assert self.tls_required and not self.shake.tls_active
            assert event.option == option
        elif isinstance(event, hs.BadOption | hs.UnknownOption):
            assert event.option == option
            if isinstance(event, hs.UnknownOption):
                assert option not in _PARSED, option
        else:
            assert option in _EVENT_OPTIONS[type(event)], (event, option)
        self.pos += 16 + length

    def _answer(self, event: object) -> None:
        shake = self.shake
        match event:
            case hs.ClientFlags():
                pass
            case hs.AbortOption():
                shake.ack(Option.ABORT)
                raise Ended
            case hs.BadOption(option, reason):
                shake.error(option, Reply.ERR_INVALID, reason)
            case hs.UnknownOption(option) | hs.TLSRequired(option):
                shake.error(option, Reply.ERR_UNSUP)
            case hs.StartTLSOption():
                if self.tls:
                    shake.ack(Option.STARTTLS)
                    assert shake.tls_active and not shake.structured
                else:
                    shake.error(Option.STARTTLS, Reply.ERR_UNSUP)
            case hs.StructuredReplyOption():
                if shake.structured:
                    shake.error(Option.STRUCTURED_REPLY, Reply.ERR_INVALID)
                else:
                    shake.ack(Option.STRUCTURED_REPLY)
                    assert shake.structured
            case hs.ListOption():
                for name in EXPORTS:
                    shake.server(name)
                shake.ack(Option.LIST)
            case hs.MetaContextOption(export, queries, set_):
                option = Option.SET_META_CONTEXT if set_ else Option.LIST_META_CONTEXT
                if set_:
                    shake.begin_set_meta_context()
                if not shake.structured or export not in EXPORTS:
                    shake.error(option, Reply.ERR_INVALID)
                    return
                names = hs.match_meta_contexts(queries, ("base:allocation",), listing=not set_)
                for name in names:
                    shake.meta_context(option, 1, name)
                shake.ack(option)
            case hs.InfoOption(name, _, go):
                option = Option.GO if go else Option.INFO
                if name not in EXPORTS or (go and self.refuse_go):
                    self.refuse_go = self.refuse_go and name not in EXPORTS  # once: busy
                    shake.error(option, Reply.ERR_UNKNOWN)
                    assert not shake.done
                    return
                shake.info_export(option, EXPORTS[name], tx.export_flags(False))
                shake.info_block_size(option, 512, 4096, MAX_PAYLOAD)
                shake.ack(option)
                assert shake.done == go
            case hs.ExportNameOption(name):
                if name not in EXPORTS:
                    raise Ended
                shake.export_name_reply(EXPORTS[name], tx.export_flags(False))
            case _:
                raise AssertionError(event)

    def _transmission(self) -> None:
        try:
            self.shake.next_event()
        except hs.ProtocolError:
            pass
        else:
            raise AssertionError("an event after the handshake ended")
        assert self.shake.trailing_data == self.wire[self.pos : self.fed]
        reader = tx.RequestReader(MAX_PAYLOAD, self.shake.trailing_data)
        while True:
            head = self.wire[self.pos : self.pos + 28]
            try:
                found = reader.next_request()
            except hs.ProtocolError:
                magic, _, command, _, _, length = tx.REQUEST.unpack(head)
                assert magic != REQUEST_MAGIC or (command == Command.WRITE and length > MAX_PAYLOAD)
                return
            if found is None:
                if not self.feed(reader):
                    return
                continue
            request, payload = found
            magic, flags, command, cookie, offset, length = tx.REQUEST.unpack(head)
            assert magic == REQUEST_MAGIC
            assert request == (flags, command, cookie, offset, length)
            size = length if command == Command.WRITE else 0
            assert bytes(payload) == self.wire[self.pos + 28 : self.pos + 28 + size]
            self.pos += 28 + size


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    Session(data[0], data[1:]).run()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
