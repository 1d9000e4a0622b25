"""The NBD fixed-newstyle handshake, server side: bytes in, events out, replies as exact bytes.

Every expected byte string is packed here from the layouts in NetworkBlockDevice/nbd
doc/proto.md ("Fixed newstyle negotiation", "Option types", "Option reply types"), with the
spec's numbers written out below rather than imported from the code under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.nbd import constants as C
from store.nbd.handshake import (
    NEED_DATA,
    AbortOption,
    BadOption,
    ClientFlags,
    Event,
    ExportNameOption,
    Handshake,
    InfoOption,
    ListOption,
    MetaContextOption,
    ProtocolError,
    StartTLSOption,
    StructuredReplyOption,
    UnknownOption,
    match_meta_contexts,
)

# -- the spec's numbers ---------------------------------------------------------------------------

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC = 0x0003E889045565A9

FLAG_FIXED_NEWSTYLE = 1 << 0  # handshake flags
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0  # client flags
FLAG_C_NO_ZEROES = 1 << 1

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_POLICY = 2**31 + 2
REP_ERR_INVALID = 2**31 + 3
REP_ERR_PLATFORM = 2**31 + 4
REP_ERR_TLS_REQD = 2**31 + 5
REP_ERR_UNKNOWN = 2**31 + 6
REP_ERR_SHUTDOWN = 2**31 + 7
REP_ERR_BLOCK_SIZE_REQD = 2**31 + 8
REP_ERR_TOO_BIG = 2**31 + 9

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# transmission flags used in replies
HAS_FLAGS = 1 << 0
READ_ONLY = 1 << 1
SEND_FLUSH = 1 << 2
SEND_FUA = 1 << 3


# -- wire builders (the client's side, from the spec's layouts) -----------------------------------


def option(opt: int, data: bytes = b"") -> bytes:
    """C: "IHAVEOPT", u32 option, u32 length, data."""
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def string(text: str | bytes) -> bytes:
    """A u32-length-prefixed string, as inside INFO/GO and the meta-context options."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">I", len(raw)) + raw


def info_data(name: str | bytes, requests: tuple[int, ...] = ()) -> bytes:
    """INFO/GO: u32 name length, name, u16 count, u16 x count."""
    return string(name) + struct.pack(f">H{len(requests)}H", len(requests), *requests)


def meta_data(export: str | bytes, queries: tuple[str | bytes, ...]) -> bytes:
    """LIST/SET_META_CONTEXT: u32 export length, export, u32 count, count x (u32 length, query)."""
    return string(export) + struct.pack(">I", len(queries)) + b"".join(map(string, queries))


def reply(opt: int, rep: int, payload: bytes = b"") -> bytes:
    """S: u64 reply magic, u32 option, u32 reply type, u32 length, payload."""
    return struct.pack(">QIII", REPLY_MAGIC, opt, rep, len(payload)) + payload


def flags(value: int) -> bytes:
    return struct.pack(">I", value)


def drain(hs: Handshake) -> list[Event]:
    events: list[Event] = []
    while True:
        event = hs.next_event()
        if event is NEED_DATA:
            return events
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)


def started(client_flags: int = FLAG_C_FIXED_NEWSTYLE) -> Handshake:
    """A handshake past the client flags."""
    hs = Handshake()
    hs.receive_data(flags(client_flags))
    assert drain(hs) == [ClientFlags(C.ClientFlag(client_flags))]
    return hs


def parse_one(wire: bytes) -> Event:
    hs = started()
    hs.receive_data(wire)
    events = drain(hs)
    assert len(events) == 1, events
    return events[0]


# -- numbering ------------------------------------------------------------------------------------


def test_protocol_numbers_match_the_spec() -> None:
    assert (C.NBDMAGIC, C.IHAVEOPT, C.OPTION_REPLY_MAGIC) == (NBDMAGIC, IHAVEOPT, REPLY_MAGIC)
    assert struct.pack(">Q", C.NBDMAGIC) == b"NBDMAGIC"
    assert struct.pack(">Q", C.IHAVEOPT) == b"IHAVEOPT"
    assert [C.Option[n] for n in ("EXPORT_NAME", "ABORT", "LIST", "PEEK_EXPORT", "STARTTLS")] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert (C.Option.INFO, C.Option.GO, C.Option.STRUCTURED_REPLY) == (6, 7, 8)
    assert (C.Option.LIST_META_CONTEXT, C.Option.SET_META_CONTEXT) == (9, 10)
    assert (C.Reply.ACK, C.Reply.SERVER, C.Reply.INFO, C.Reply.META_CONTEXT) == (1, 2, 3, 4)
    errors = [
        C.Reply.ERR_UNSUP,
        C.Reply.ERR_POLICY,
        C.Reply.ERR_INVALID,
        C.Reply.ERR_PLATFORM,
        C.Reply.ERR_TLS_REQD,
        C.Reply.ERR_UNKNOWN,
        C.Reply.ERR_SHUTDOWN,
        C.Reply.ERR_BLOCK_SIZE_REQD,
        C.Reply.ERR_TOO_BIG,
    ]
    assert errors == [2**31 + n for n in range(1, 10)]
    assert (C.Info.EXPORT, C.Info.NAME, C.Info.DESCRIPTION, C.Info.BLOCK_SIZE) == (0, 1, 2, 3)
    assert (C.HandshakeFlag.FIXED_NEWSTYLE, C.HandshakeFlag.NO_ZEROES) == (1, 2)
    assert (C.ClientFlag.FIXED_NEWSTYLE, C.ClientFlag.NO_ZEROES) == (1, 2)
    assert C.MAX_STRING_BYTES == 4096


# -- greeting and client flags --------------------------------------------------------------------


def test_greeting_is_magic_ihaveopt_and_both_handshake_flags() -> None:
    expected = struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)
    assert Handshake().greeting() == expected
    assert expected == b"NBDMAGICIHAVEOPT\x00\x03"


def test_client_flags_need_all_four_bytes() -> None:
    hs = Handshake()
    for byte in flags(FLAG_C_FIXED_NEWSTYLE)[:3]:
        hs.receive_data(bytes([byte]))
        assert hs.next_event() is NEED_DATA
    hs.receive_data(b"\x01")
    assert hs.next_event() == ClientFlags(C.ClientFlag.FIXED_NEWSTYLE)
    assert hs.next_event() is NEED_DATA
    assert hs.no_zeroes is False


def test_client_no_zeroes_is_recorded() -> None:
    hs = started(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
    assert hs.no_zeroes is True


@pytest.mark.parametrize(
    "value",
    [
        0,  # plain newstyle: this server requires fixed newstyle
        FLAG_C_NO_ZEROES,  # NO_ZEROES without FIXED_NEWSTYLE
        FLAG_C_FIXED_NEWSTYLE | 1 << 2,  # unknown flags: the server MUST drop the connection
        FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES | 1 << 2,
        FLAG_C_FIXED_NEWSTYLE | 1 << 16,
        FLAG_C_FIXED_NEWSTYLE | 1 << 31,
        0xFFFFFFFF,
    ],
)
def test_bad_client_flags_are_a_protocol_error(value: int) -> None:
    hs = Handshake()
    hs.receive_data(flags(value))
    with pytest.raises(ProtocolError):
        hs.next_event()


def test_options_arriving_with_the_flags_are_parsed_after_them() -> None:
    hs = Handshake()
    hs.receive_data(flags(FLAG_C_FIXED_NEWSTYLE) + option(OPT_LIST) + option(OPT_ABORT))
    assert drain(hs) == [ClientFlags(C.ClientFlag.FIXED_NEWSTYLE), ListOption(), AbortOption()]


# -- every option type ----------------------------------------------------------------------------

OPTIONS: list[tuple[str, bytes, Event]] = [
    ("export-name", option(OPT_EXPORT_NAME, b"disk0"), ExportNameOption("disk0")),
    ("export-name default", option(OPT_EXPORT_NAME), ExportNameOption("")),
    ("export-name utf-8", option(OPT_EXPORT_NAME, "dïsk/ü".encode()), ExportNameOption("dïsk/ü")),
    (
        "export-name 4096 bytes",
        option(OPT_EXPORT_NAME, b"n" * 4096),
        ExportNameOption("n" * 4096),
    ),
    (
        "info",
        option(OPT_INFO, info_data("disk", (INFO_EXPORT, INFO_NAME, INFO_BLOCK_SIZE))),
        InfoOption("disk", (0, 1, 3), go=False),
    ),
    (
        "go",
        option(OPT_GO, info_data("disk", (INFO_DESCRIPTION, INFO_BLOCK_SIZE))),
        InfoOption("disk", (2, 3), go=True),
    ),
    ("go no requests, default export", option(OPT_GO, info_data("")), InfoOption("", (), True)),
    (
        "info unknown request types are passed on (the server ignores them)",
        option(OPT_INFO, info_data("d", (0xFFFF, 7))),
        InfoOption("d", (0xFFFF, 7), go=False),
    ),
    (
        "info 4096-byte name",
        option(OPT_INFO, info_data("x" * 4096)),
        InfoOption("x" * 4096, (), False),
    ),
    ("list", option(OPT_LIST), ListOption()),
    ("abort", option(OPT_ABORT), AbortOption()),
    ("starttls", option(OPT_STARTTLS), StartTLSOption()),
    ("structured reply", option(OPT_STRUCTURED_REPLY), StructuredReplyOption()),
    (
        "list meta context, several queries",
        option(OPT_LIST_META_CONTEXT, meta_data("disk", ("base:", "qemu:dirty-bitmap:b0"))),
        MetaContextOption("disk", ("base:", "qemu:dirty-bitmap:b0"), set=False),
    ),
    (
        "list meta context, no query",
        option(OPT_LIST_META_CONTEXT, meta_data("disk", ())),
        MetaContextOption("disk", (), set=False),
    ),
    (
        "set meta context, several queries",
        option(
            OPT_SET_META_CONTEXT,
            meta_data("", ("base:allocation", "x-test:a", "base:allocation")),
        ),
        MetaContextOption("", ("base:allocation", "x-test:a", "base:allocation"), set=True),
    ),
    (
        "set meta context, empty query string",
        option(OPT_SET_META_CONTEXT, meta_data("d", ("",))),
        MetaContextOption("d", ("",), set=True),
    ),
    ("peek export (withdrawn)", option(OPT_PEEK_EXPORT), UnknownOption(4)),
    ("option zero", option(0), UnknownOption(0)),
    ("extended headers (not implemented)", option(11), UnknownOption(11)),
    ("unknown with data", option(0xDEADBEEF, b"\x00" * 37), UnknownOption(0xDEADBEEF)),
]


@pytest.mark.parametrize(
    ("wire", "expected"), [o[1:] for o in OPTIONS], ids=[o[0] for o in OPTIONS]
)
def test_each_option_type_parses(wire: bytes, expected: Event) -> None:
    assert parse_one(wire) == expected


def test_abort_with_data_is_still_an_abort() -> None:
    # proto.md, NBD_OPT_ABORT: "a server SHOULD ignore any data sent by the client rather than
    # rejecting the request as invalid."
    assert parse_one(option(OPT_ABORT, b"bye")) == AbortOption()


def test_unknown_option_data_is_skipped_and_the_next_option_parses() -> None:
    # Baseline: servers "MUST NOT fail to parse the next message received".
    hs = started()
    hs.receive_data(option(0x7FFF, b"IHAVEOPT" * 5) + option(OPT_LIST))
    assert drain(hs) == [UnknownOption(0x7FFF), ListOption()]


# -- malformed option data: BadOption, and the stream goes on -------------------------------------

NAME_4097 = b"n" * 4097
BAD: list[tuple[str, int, bytes]] = [
    ("info: no name length", OPT_INFO, b"\x00\x00\x00"),
    ("info: empty data", OPT_INFO, b""),
    ("info: name longer than the data", OPT_INFO, struct.pack(">I", 10) + b"disk" + b"\0\0"),
    ("info: no request count", OPT_INFO, string("disk")),
    ("info: half a request count", OPT_INFO, string("disk") + b"\x00"),
    ("info: fewer requests than the count", OPT_INFO, string("d") + struct.pack(">HH", 2, 0)),
    ("info: more requests than the count", OPT_INFO, string("d") + struct.pack(">HHH", 1, 0, 3)),
    ("info: odd trailing byte", OPT_INFO, string("d") + struct.pack(">HH", 1, 0) + b"\x00"),
    ("go: count mismatch", OPT_GO, string("d") + struct.pack(">H", 1)),
    ("info: invalid utf-8 name", OPT_INFO, info_data(b"\xff\xfe")),
    ("go: truncated utf-8 sequence", OPT_GO, info_data("é".encode()[:1])),
    ("info: NUL in the name", OPT_INFO, info_data(b"di\x00sk")),
    ("go: name over 4096 bytes", OPT_GO, info_data(NAME_4097)),
    ("list: with data", OPT_LIST, b"\x00"),
    ("starttls: with data", OPT_STARTTLS, b"x"),
    ("structured reply: with data", OPT_STRUCTURED_REPLY, b"\x00\x00\x00\x00"),
    ("meta: empty data", OPT_LIST_META_CONTEXT, b""),
    ("meta: no query count", OPT_LIST_META_CONTEXT, string("disk")),
    ("meta: short query count", OPT_SET_META_CONTEXT, string("disk") + b"\x00\x00\x01"),
    (
        "meta: fewer queries than the count",
        OPT_SET_META_CONTEXT,
        string("d") + struct.pack(">I", 2) + string("base:allocation"),
    ),
    (
        "meta: bytes after the last query",
        OPT_SET_META_CONTEXT,
        meta_data("d", ("base:allocation",)) + b"\x00",
    ),
    (
        "meta: truncated query length",
        OPT_LIST_META_CONTEXT,
        string("d") + struct.pack(">I", 1) + b"\x00\x00",
    ),
    (
        "meta: query longer than the data",
        OPT_LIST_META_CONTEXT,
        string("d") + struct.pack(">II", 1, 100) + b"base:",
    ),
    (
        "meta: huge count, little data",
        OPT_LIST_META_CONTEXT,
        string("d") + struct.pack(">I", 0xFFFFFFFF),
    ),
    ("meta: invalid utf-8 export", OPT_LIST_META_CONTEXT, meta_data(b"\xc3", ())),
    ("meta: invalid utf-8 query", OPT_SET_META_CONTEXT, meta_data("d", (b"base:\x80",))),
    ("meta: NUL in the export", OPT_SET_META_CONTEXT, meta_data(b"d\x00", ("base:allocation",))),
    ("meta: NUL in a query", OPT_LIST_META_CONTEXT, meta_data("d", ("base:", b"base:\x00"))),
    ("meta: export over 4096 bytes", OPT_LIST_META_CONTEXT, meta_data(NAME_4097, ())),
    ("meta: query over 4096 bytes", OPT_SET_META_CONTEXT, meta_data("d", (b"base:" + NAME_4097,))),
]


@pytest.mark.parametrize(("opt", "data"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_option_data_is_a_bad_option(opt: int, data: bytes) -> None:
    hs = started()
    hs.receive_data(option(opt, data) + option(OPT_LIST))
    events = drain(hs)
    assert len(events) == 2, events
    bad, following = events
    assert isinstance(bad, BadOption)
    assert bad.option == opt
    assert bad.reason
    assert following == ListOption()  # the option was consumed whole; framing is intact


@pytest.mark.parametrize(
    "name",
    [b"\xff", b"ab\x00", NAME_4097],
    ids=["invalid utf-8", "NUL", "over 4096 bytes"],
)
def test_malformed_export_name_closes_the_connection(name: bytes) -> None:
    # NBD_OPT_EXPORT_NAME cannot be answered with an error: "the server MUST terminate the
    # session" (proto.md, NBD_OPT_EXPORT_NAME), so this is not a BadOption.
    hs = started()
    hs.receive_data(option(OPT_EXPORT_NAME, name))
    with pytest.raises(ProtocolError):
        hs.next_event()


# -- framing errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "magic",
    [0, NBDMAGIC, IHAVEOPT ^ 1, REPLY_MAGIC, int.from_bytes(b"ihaveopt", "big")],
)
def test_bad_option_magic_is_a_protocol_error(magic: int) -> None:
    hs = started()
    hs.receive_data(struct.pack(">QII", magic, OPT_LIST, 0))
    with pytest.raises(ProtocolError):
        hs.next_event()


def test_option_length_over_the_limit_is_refused_from_the_header_alone() -> None:
    hs = started()
    hs.receive_data(struct.pack(">QII", IHAVEOPT, OPT_INFO, C.MAX_OPTION_BYTES + 1))
    with pytest.raises(ProtocolError):
        hs.next_event()


def test_huge_option_length_is_refused() -> None:
    hs = started()
    hs.receive_data(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0xFFFFFFFF))
    with pytest.raises(ProtocolError):
        hs.next_event()


def test_option_length_at_the_limit_waits_for_its_data() -> None:
    hs = started()
    data = b"\x00" * C.MAX_OPTION_BYTES
    wire = option(0x1000, data)
    hs.receive_data(wire[:-1])
    assert hs.next_event() is NEED_DATA
    hs.receive_data(wire[-1:])
    assert hs.next_event() == UnknownOption(0x1000)


def test_incomplete_option_header_needs_data() -> None:
    hs = started()
    wire = option(OPT_LIST)
    for i in range(len(wire) - 1):
        hs.receive_data(wire[i : i + 1])
        assert hs.next_event() is NEED_DATA
    hs.receive_data(wire[-1:])
    assert hs.next_event() == ListOption()


def test_next_event_after_the_handshake_is_a_protocol_error() -> None:
    hs = started()
    hs.receive_data(option(OPT_GO, info_data("d")))
    assert drain(hs) == [InfoOption("d", (), go=True)]
    hs.ack(OPT_GO)
    with pytest.raises(ProtocolError):
        hs.next_event()


# -- any split of the stream gives the same events ------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
queries = st.lists(names.map(lambda s: "base:" + s), max_size=4).map(tuple)
info_requests = st.lists(st.integers(0, 0xFFFF), max_size=5).map(tuple)


@st.composite
def options(draw: st.DrawFn) -> tuple[bytes, Event]:
    """One option on the wire and the event it must produce."""
    kind = draw(st.sampled_from(["export", "info", "list", "meta", "simple", "unknown", "bad"]))
    if kind == "export":
        name = draw(names)
        return option(OPT_EXPORT_NAME, name.encode()), ExportNameOption(name)
    if kind == "info":
        name, requests = draw(names), draw(info_requests)
        return option(OPT_INFO, info_data(name, requests)), InfoOption(name, requests, go=False)
    if kind == "meta":
        export, qs, is_set = draw(names), draw(queries), draw(st.booleans())
        opt = OPT_SET_META_CONTEXT if is_set else OPT_LIST_META_CONTEXT
        return option(opt, meta_data(export, qs)), MetaContextOption(export, qs, set=is_set)
    if kind == "simple":
        opt, event = draw(
            st.sampled_from(
                [
                    (OPT_LIST, ListOption()),
                    (OPT_ABORT, AbortOption()),
                    (OPT_STARTTLS, StartTLSOption()),
                    (OPT_STRUCTURED_REPLY, StructuredReplyOption()),
                ]
            )
        )
        return option(opt), event
    if kind == "unknown":
        opt = draw(st.integers(11, 0xFFFFFFFF))
        return option(opt, draw(st.binary(max_size=40))), UnknownOption(opt)
    # "bad": a LIST with data, whose reason text is not part of the contract
    return option(OPT_LIST, draw(st.binary(min_size=1, max_size=8))), BadOption(OPT_LIST, "")


def run(wire: bytes, cuts: list[int]) -> tuple[list[Event], bytes]:
    """Feed ``wire`` in pieces; answer a GO with ACK, as a server would, and stop there."""
    hs = Handshake()
    events: list[Event] = []
    pos = i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)] if cuts else len(wire)
        hs.receive_data(wire[pos : pos + n])
        pos, i = pos + n, i + 1
        while not hs.done:
            event = hs.next_event()
            if event is NEED_DATA:
                break
            assert not isinstance(event, type(NEED_DATA))
            events.append(event)
            if isinstance(event, InfoOption) and event.go:
                hs.ack(OPT_GO)
    assert hs.done
    return events, hs.trailing_data


def normalise(event: Event) -> Event:
    return BadOption(event.option, "") if isinstance(event, BadOption) else event


@given(
    opts=st.lists(options(), max_size=8),
    tail=st.binary(max_size=40),
    cuts=st.lists(st.integers(1, 23), min_size=1, max_size=12),
)
def test_any_split_of_the_stream_gives_the_same_events(
    opts: list[tuple[bytes, Event]], tail: bytes, cuts: list[int]
) -> None:
    go = option(OPT_GO, info_data("disk", (INFO_BLOCK_SIZE,)))
    wire = flags(FLAG_C_FIXED_NEWSTYLE) + b"".join(w for w, _ in opts) + go + tail
    expected = [
        ClientFlags(C.ClientFlag.FIXED_NEWSTYLE),
        *(e for _, e in opts),
        InfoOption("disk", (INFO_BLOCK_SIZE,), go=True),
    ]
    whole_events, whole_tail = run(wire, [])
    split_events, split_tail = run(wire, cuts)
    assert [normalise(e) for e in whole_events] == expected
    assert split_events == whole_events
    assert whole_tail == split_tail == tail


def test_every_single_cut_point_gives_the_same_events() -> None:
    wire = (
        flags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        + option(OPT_STRUCTURED_REPLY)
        + option(OPT_SET_META_CONTEXT, meta_data("disk", ("base:allocation", "qemu:x")))
        + option(OPT_INFO, info_data("disk", (INFO_EXPORT, INFO_NAME)))
        + option(OPT_GO, info_data("disk"))
        + b"REQUEST"
    )
    reference = run(wire, [])
    for cut in range(1, len(wire)):
        hs_events, tail = run(wire[:cut] + wire[cut:], [cut, len(wire)])
        assert (hs_events, tail) == reference


# -- replies: exact bytes -------------------------------------------------------------------------


def test_ack_bytes() -> None:
    assert started().ack(OPT_LIST) == reply(OPT_LIST, REP_ACK)
    assert started().ack(OPT_ABORT) == struct.pack(">QIII", REPLY_MAGIC, 2, 1, 0)


@pytest.mark.parametrize(
    "rep",
    [
        C.Reply.ERR_UNSUP,
        C.Reply.ERR_POLICY,
        C.Reply.ERR_INVALID,
        C.Reply.ERR_PLATFORM,
        C.Reply.ERR_TLS_REQD,
        C.Reply.ERR_UNKNOWN,
        C.Reply.ERR_SHUTDOWN,
        C.Reply.ERR_BLOCK_SIZE_REQD,
        C.Reply.ERR_TOO_BIG,
    ],
)
def test_error_bytes_with_and_without_a_message(rep: C.Reply) -> None:
    hs = started()
    assert hs.error(OPT_INFO, rep) == reply(OPT_INFO, int(rep))
    assert hs.error(OPT_INFO, rep, "no such export: ü") == reply(
        OPT_INFO, int(rep), "no such export: ü".encode()
    )


def test_error_numbers_on_the_wire() -> None:
    hs = started()
    assert hs.error(0xABCD, C.Reply.ERR_UNSUP) == struct.pack(
        ">QIII", REPLY_MAGIC, 0xABCD, REP_ERR_UNSUP, 0
    )
    assert hs.error(OPT_LIST, C.Reply.ERR_INVALID, "x")[12:16] == b"\x80\x00\x00\x03"


def test_error_refuses_a_non_error_reply_type() -> None:
    with pytest.raises(AssertionError):
        started().error(OPT_LIST, C.Reply.ACK)


def test_error_message_over_4096_bytes_is_refused() -> None:
    hs = started()
    assert len(hs.error(OPT_LIST, C.Reply.ERR_POLICY, "m" * 4096)) == 20 + 4096
    with pytest.raises(ValueError):
        hs.error(OPT_LIST, C.Reply.ERR_POLICY, "m" * 4097)


def test_server_bytes() -> None:
    hs = started()
    assert hs.server("disk0", "a test disk") == reply(
        OPT_LIST, REP_SERVER, struct.pack(">I", 5) + b"disk0" + b"a test disk"
    )
    assert hs.server("") == reply(OPT_LIST, REP_SERVER, b"\x00\x00\x00\x00")
    assert hs.server("é") == reply(OPT_LIST, REP_SERVER, b"\x00\x00\x00\x02\xc3\xa9")


def test_info_export_bytes() -> None:
    hs = started()
    flags_ = C.TransmissionFlag.HAS_FLAGS | C.TransmissionFlag.SEND_FLUSH
    payload = struct.pack(">HQH", INFO_EXPORT, 1 << 40, HAS_FLAGS | SEND_FLUSH)
    assert len(payload) == 12  # "length MUST be 12"
    assert hs.info_export(OPT_GO, 1 << 40, flags_) == reply(OPT_GO, REP_INFO, payload)
    assert hs.info_export(OPT_INFO, 2**64 - 1, C.TransmissionFlag(0xFFFF)) == reply(
        OPT_INFO, REP_INFO, b"\x00\x00" + b"\xff" * 10
    )


def test_info_name_and_description_bytes() -> None:
    hs = started()
    assert hs.info_name(OPT_INFO, "disk0") == reply(
        OPT_INFO, REP_INFO, struct.pack(">H", INFO_NAME) + b"disk0"
    )
    assert hs.info_name(OPT_GO, "") == reply(OPT_GO, REP_INFO, b"\x00\x01")
    assert hs.info_description(OPT_GO, "fast ü") == reply(
        OPT_GO, REP_INFO, struct.pack(">H", INFO_DESCRIPTION) + "fast ü".encode()
    )


def test_info_block_size_bytes() -> None:
    hs = started()
    payload = struct.pack(">HIII", INFO_BLOCK_SIZE, 512, 4096, 32 << 20)
    assert len(payload) == 14  # "The length MUST be 14"
    assert hs.info_block_size(OPT_GO, 512, 4096, 32 << 20) == reply(OPT_GO, REP_INFO, payload)


def test_meta_context_bytes() -> None:
    hs = started()
    assert hs.meta_context(OPT_LIST_META_CONTEXT, 0, "base:allocation") == reply(
        OPT_LIST_META_CONTEXT, REP_META_CONTEXT, struct.pack(">I", 0) + b"base:allocation"
    )
    assert hs.meta_context(OPT_SET_META_CONTEXT, 0xFFFFFFFF, "x-a:b") == reply(
        OPT_SET_META_CONTEXT, REP_META_CONTEXT, b"\xff\xff\xff\xff" + b"x-a:b"
    )


def test_reply_is_the_generic_frame() -> None:
    hs = started()
    assert hs.reply(0x12345678, 0x9ABCDEF0, b"xyz") == (
        REPLY_MAGIC.to_bytes(8, "big")
        + b"\x12\x34\x56\x78"
        + b"\x9a\xbc\xde\xf0"
        + b"\x00\x00\x00\x03"
        + b"xyz"
    )


def test_export_name_reply_with_zeroes() -> None:
    hs = started(FLAG_C_FIXED_NEWSTYLE)
    hs.receive_data(option(OPT_EXPORT_NAME, b"disk"))
    assert drain(hs) == [ExportNameOption("disk")]
    out = hs.export_name_reply(1 << 30, C.TransmissionFlag.HAS_FLAGS | C.TransmissionFlag.READ_ONLY)
    assert out == struct.pack(">QH", 1 << 30, HAS_FLAGS | READ_ONLY) + b"\x00" * 124
    assert len(out) == 134
    assert hs.done


def test_export_name_reply_without_zeroes() -> None:
    hs = started(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
    hs.receive_data(option(OPT_EXPORT_NAME))
    assert drain(hs) == [ExportNameOption("")]
    out = hs.export_name_reply(4096, C.TransmissionFlag.HAS_FLAGS)
    assert out == struct.pack(">QH", 4096, HAS_FLAGS)
    assert len(out) == 10
    assert hs.done


# -- state ----------------------------------------------------------------------------------------


def test_initial_state() -> None:
    hs = Handshake()
    assert (hs.no_zeroes, hs.structured, hs.meta_contexts, hs.done) == (False, False, {}, False)
    assert hs.trailing_data == b""


def test_ack_of_structured_reply_turns_structured_replies_on() -> None:
    hs = started()
    hs.receive_data(option(OPT_STRUCTURED_REPLY))
    assert drain(hs) == [StructuredReplyOption()]
    assert hs.structured is False
    hs.ack(OPT_STRUCTURED_REPLY)
    assert hs.structured is True
    assert hs.done is False


def test_refusing_structured_reply_leaves_it_off() -> None:
    hs = started()
    hs.error(OPT_STRUCTURED_REPLY, C.Reply.ERR_UNSUP)
    assert hs.structured is False


def test_acks_of_other_options_change_nothing() -> None:
    hs = started()
    for opt in (OPT_LIST, OPT_INFO, OPT_ABORT, OPT_SET_META_CONTEXT, OPT_LIST_META_CONTEXT, 99):
        hs.ack(opt)
    assert (hs.structured, hs.done, hs.meta_contexts) == (False, False, {})


def test_info_replies_to_go_do_not_end_the_handshake() -> None:
    hs = started()
    hs.info_export(OPT_GO, 1 << 20, C.TransmissionFlag.HAS_FLAGS)
    hs.info_block_size(OPT_GO, 1, 4096, 1 << 25)
    hs.info_name(OPT_GO, "d")
    assert hs.done is False


def test_ack_of_go_ends_the_handshake() -> None:
    hs = started()
    hs.ack(OPT_INFO)
    assert hs.done is False
    hs.ack(OPT_GO)
    assert hs.done is True


@pytest.mark.parametrize("rep", [C.Reply.ERR_UNKNOWN, C.Reply.ERR_TLS_REQD, C.Reply.ERR_POLICY])
def test_error_to_go_does_not_end_the_handshake(rep: C.Reply) -> None:
    hs = started()
    hs.error(OPT_GO, rep, "no")
    assert hs.done is False
    hs.receive_data(option(OPT_LIST))
    assert drain(hs) == [ListOption()]


def test_set_meta_context_replies_record_the_ids() -> None:
    hs = started()
    hs.begin_set_meta_context()
    hs.meta_context(OPT_SET_META_CONTEXT, 1, "base:allocation")
    hs.meta_context(OPT_SET_META_CONTEXT, 7, "qemu:dirty-bitmap:b0")
    hs.ack(OPT_SET_META_CONTEXT)
    assert hs.meta_contexts == {1: "base:allocation", 7: "qemu:dirty-bitmap:b0"}


def test_list_meta_context_replies_record_nothing() -> None:
    hs = started()
    hs.meta_context(OPT_LIST_META_CONTEXT, 0, "base:allocation")
    hs.ack(OPT_LIST_META_CONTEXT)
    assert hs.meta_contexts == {}


def test_a_new_set_meta_context_replaces_the_old_selection() -> None:
    # "Issuing this command replaces all previously-set metadata contexts (including when this
    # command fails)".
    hs = started()
    hs.begin_set_meta_context()
    hs.meta_context(OPT_SET_META_CONTEXT, 1, "base:allocation")
    hs.begin_set_meta_context()
    assert hs.meta_contexts == {}
    hs.meta_context(OPT_SET_META_CONTEXT, 2, "x-a:b")
    assert hs.meta_contexts == {2: "x-a:b"}
    hs.begin_set_meta_context()
    hs.error(OPT_SET_META_CONTEXT, C.Reply.ERR_TOO_BIG)
    assert hs.meta_contexts == {}


def test_starttls_ack_forgets_the_negotiated_state() -> None:
    # NBD_OPT_STARTTLS: "When this command succeeds, the server MUST NOT preserve any negotiation
    # state (such as a request for NBD_OPT_STRUCTURED_REPLY, or metadata contexts from
    # NBD_OPT_SET_META_CONTEXT) issued before this command."
    hs = started()
    hs.ack(OPT_STRUCTURED_REPLY)
    hs.begin_set_meta_context()
    hs.meta_context(OPT_SET_META_CONTEXT, 1, "base:allocation")
    hs.ack(OPT_SET_META_CONTEXT)
    hs.error(OPT_STARTTLS, C.Reply.ERR_POLICY)
    assert (hs.structured, hs.meta_contexts) == (True, {1: "base:allocation"})
    hs.ack(OPT_STARTTLS)
    assert (hs.structured, hs.meta_contexts) == (False, {})


def test_trailing_data_after_go_holds_the_first_requests() -> None:
    request = struct.pack(">IHHQQI", 0x25609513, 0, 0, 1, 0, 512)
    hs = Handshake()
    hs.receive_data(flags(FLAG_C_FIXED_NEWSTYLE) + option(OPT_GO, info_data("d")) + request[:5])
    assert drain(hs)[-1] == InfoOption("d", (), go=True)
    hs.ack(OPT_GO)
    hs.receive_data(request[5:])
    assert hs.trailing_data == request


def test_trailing_data_after_export_name() -> None:
    request = struct.pack(">IHHQQI", 0x25609513, 0, 3, 9, 0, 0)
    hs = Handshake()
    hs.receive_data(flags(FLAG_C_FIXED_NEWSTYLE) + option(OPT_EXPORT_NAME, b"d") + request)
    assert hs.next_event() == ClientFlags(C.ClientFlag.FIXED_NEWSTYLE)
    assert hs.next_event() == ExportNameOption("d")  # the server answers before asking again
    hs.export_name_reply(512, C.TransmissionFlag.HAS_FLAGS)
    assert hs.trailing_data == request


def test_trailing_data_is_empty_when_nothing_followed() -> None:
    hs = started()
    hs.receive_data(option(OPT_GO, info_data("d")))
    drain(hs)
    hs.ack(OPT_GO)
    assert hs.trailing_data == b""


# -- match_meta_contexts (proto.md "Metadata querying", "The base: metadata namespace") ------------

AVAILABLE = ("base:allocation", "qemu:dirty-bitmap:b0", "qemu:allocation-depth")


@pytest.mark.parametrize(
    ("queries", "listing", "expected"),
    [
        # exact names select, in either option
        (("base:allocation",), False, ["base:allocation"]),
        (("base:allocation",), True, ["base:allocation"]),
        # "base:" alone: ignored by SET, a wildcard for LIST
        (("base:",), False, []),
        (("base:",), True, ["base:allocation"]),
        (("qemu:",), True, ["qemu:dirty-bitmap:b0", "qemu:allocation-depth"]),
        # no query: LIST returns everything, SET selects nothing
        ((), True, list(AVAILABLE)),
        ((), False, []),
        # unknown namespaces and leaf names are ignored, not errors
        (("x-other:thing", "base:nothing"), False, []),
        (("x-other:", "nbd-server:"), True, []),
        # a name prefix that is not a namespace matches nothing
        (("base:alloc",), True, []),
        (("base",), True, []),
        (("",), True, []),
        (("",), False, []),
        # no duplicates, first-query order
        (("base:allocation", "base:", "base:allocation"), True, ["base:allocation"]),
        (
            ("qemu:dirty-bitmap:b0", "base:allocation", "qemu:dirty-bitmap:b0"),
            False,
            ["qemu:dirty-bitmap:b0", "base:allocation"],
        ),
    ],
)
def test_match_meta_contexts(queries: tuple[str, ...], listing: bool, expected: list[str]) -> None:
    assert match_meta_contexts(queries, AVAILABLE, listing=listing) == expected


def test_match_meta_contexts_with_nothing_available() -> None:
    assert match_meta_contexts((), (), listing=True) == []
    assert match_meta_contexts(("base:allocation",), (), listing=False) == []
