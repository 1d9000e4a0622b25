"""Handing a half-done NBD handshake to another worker: what is sent, what the owner resumes,
and the refusals (TLS, too much pipelined, malformed messages). Sans-IO: bytes only, plus one
socket pair for the descriptor passing."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from store.gateway.nbd_handoff import Handoffs, socket_pairs
from store.nbd import constants as C
from store.nbd.handoff import MAX_TRAILING_BYTES, Handoff, HandoffError, owner_of
from store.nbd.handshake import ExportNameOption, Handshake, InfoOption

IHAVEOPT = 0x49484156454F5054
OPT_GO, OPT_STRUCTURED_REPLY, OPT_EXPORT_NAME = 7, 8, 1
REP_ACK, REP_INFO = 1, 3


def option(opt: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def go(name: str, *requests: int) -> bytes:
    raw = name.encode()
    data = struct.pack(">I", len(raw)) + raw + struct.pack(">H", len(requests))
    return option(OPT_GO, data + b"".join(struct.pack(">H", r) for r in requests))


def negotiated(flags: int = 3, *extra: bytes) -> Handshake:
    """A handshake past the client flags and a STRUCTURED_REPLY, with ``extra`` bytes fed."""
    shake = Handshake()
    shake.receive_data(struct.pack(">I", flags) + option(OPT_STRUCTURED_REPLY) + b"".join(extra))
    shake.next_event()
    shake.next_event()
    shake.ack(OPT_STRUCTURED_REPLY)
    return shake


def test_owner_is_a_pure_function_of_the_name_and_spreads() -> None:
    names = [f"volume-{i}" for i in range(400)]
    owners = [owner_of(n, 4) for n in names]
    assert owners == [owner_of(n, 4) for n in names]
    assert min(owners.count(w) for w in range(4)) > 60  # roughly even
    assert {owner_of(n, 1) for n in names} == {0}


def test_the_owner_answers_go_as_the_accepting_worker_would() -> None:
    shake = negotiated(3, go("disk", C.Info.NAME))
    event = shake.next_event()
    assert event == InfoOption("disk", (C.Info.NAME,), True)
    handoff = Handoff.of(shake, event)
    assert handoff is not None
    moved = Handoff.decode(handoff.encode())
    resumed = moved.resume(tls=False, tls_required=False)
    assert moved.event == event
    assert (resumed.no_zeroes, resumed.structured) == (True, True)
    # The resumed handshake answers the pending option and ends, as the original would.
    local = shake.info_export(OPT_GO, 1 << 20, C.TransmissionFlag.HAS_FLAGS) + shake.ack(OPT_GO)
    there = resumed.info_export(OPT_GO, 1 << 20, C.TransmissionFlag.HAS_FLAGS)
    there += resumed.ack(OPT_GO)
    assert there == local and resumed.done and shake.done


def test_export_name_keeps_the_zeroes_choice_and_trailing_requests() -> None:
    request = struct.pack(">IHHQQI", 0x25609513, 0, 0, 7, 0, 4096)  # a READ sent ahead
    raw = b"disk"
    shake = Handshake()
    shake.receive_data(struct.pack(">I", 1) + option(OPT_EXPORT_NAME, raw) + request)
    shake.next_event()
    event = shake.next_event()
    assert event == ExportNameOption("disk")
    handoff = Handoff.of(shake, event)
    assert handoff is not None and handoff.trailing == request
    resumed = Handoff.decode(handoff.encode()).resume(tls=False, tls_required=False)
    reply = resumed.export_name_reply(1 << 20, C.TransmissionFlag.HAS_FLAGS)
    assert len(reply) == 8 + 2 + 124  # no NO_ZEROES from this client: the 124 zero bytes
    assert resumed.trailing_data == request


def test_repeated_information_requests_are_sent_once() -> None:
    """A GO may repeat an info type thousands of times; the handoff carries each once."""
    shake = negotiated(3, go("disk", *([C.Info.NAME] * 20000), C.Info.BLOCK_SIZE))
    event = shake.next_event()
    assert isinstance(event, InfoOption) and len(event.requests) == 20001
    handoff = Handoff.of(shake, event)
    assert handoff is not None
    assert Handoff.decode(handoff.encode()).event == InfoOption(
        "disk", (C.Info.NAME, C.Info.BLOCK_SIZE), True
    )


def test_no_handoff_after_tls_or_with_too_much_pipelined() -> None:
    shake = negotiated(3, go("disk"), bytes(MAX_TRAILING_BYTES + 1))
    event = shake.next_event()
    assert isinstance(event, InfoOption)
    assert Handoff.of(shake, event) is None
    shake = negotiated(3, go("disk"))
    event = shake.next_event()
    assert isinstance(event, InfoOption)
    shake.tls_active = True
    assert Handoff.of(shake, event) is None


def _message(header: object, trailing: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + trailing


GOOD = {
    "export": "disk",
    "go": True,
    "requests": [1],
    "no_zeroes": True,
    "structured": False,
    "meta_contexts": {},
}


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x00\x00",
        struct.pack(">I", 5) + b"{oops",
        _message([]),
        _message({**GOOD, "export": 7}),
        _message({**GOOD, "go": "yes"}),
        _message({**GOOD, "requests": [70000]}),
        _message({**GOOD, "requests": ["a"]}),
        _message({**GOOD, "meta_contexts": {"x": "base:allocation"}}),
        _message({**GOOD, "meta_contexts": {"1": 5}}),
        _message({k: v for k, v in GOOD.items() if k != "structured"}),
        _message(GOOD, bytes(MAX_TRAILING_BYTES + (16 << 10))),
    ],
)
def test_malformed_messages_are_refused(message: bytes) -> None:
    with pytest.raises(HandoffError):
        Handoff.decode(message)


@given(
    name=st.text(min_size=1, max_size=64).filter(lambda s: "\0" not in s),
    requests=st.lists(st.integers(0, 0xFFFF), max_size=5),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    contexts=st.dictionaries(st.integers(0, 2**32 - 1), st.text(max_size=20), max_size=3),
    trailing=st.binary(max_size=200),
)
def test_encode_decode_round_trip(
    name: str,
    requests: list[int],
    flags: tuple[bool, bool, bool],
    contexts: dict[int, str],
    trailing: bytes,
) -> None:
    go_, no_zeroes, structured = flags
    event = InfoOption(name, tuple(requests), True) if go_ else ExportNameOption(name)
    handoff = Handoff(event, no_zeroes, structured, contexts, trailing)
    assert Handoff.decode(handoff.encode()) == handoff


async def test_a_connection_moves_between_handoff_endpoints() -> None:
    pairs = socket_pairs(2)
    outboxes = [out for _, out in pairs]
    sender, receiver = Handoffs(0, pairs[0][0], outboxes), Handoffs(1, pairs[1][0], outboxes)
    left, right = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    handoff = Handoff(ExportNameOption("disk"), True, False, {}, b"ahead")
    try:
        await sender.send(1, stream, handoff)
        await stream.aclose()  # the sender's copy only
        moved, got = await receiver.receive()
        assert got == handoff
        with moved:
            right.sendall(b"ping")
            assert moved.recv(4) == b"ping"  # the same connection, now in the receiver
    finally:
        right.close()
        sender.close()
        receiver.close()


async def test_a_message_without_a_descriptor_is_refused() -> None:
    pairs = socket_pairs(1)
    endpoint = Handoffs(0, pairs[0][0], [pairs[0][1]])
    try:
        pairs[0][1].send(Handoff(ExportNameOption("disk"), True, False, {}, b"").encode())
        with pytest.raises(HandoffError, match="0 descriptors"):
            await endpoint.receive()
    finally:
        endpoint.close()
