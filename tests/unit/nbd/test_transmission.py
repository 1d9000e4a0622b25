"""The NBD transmission phase: requests cut from a byte stream, the spec's checks, reply bytes.

Expected bytes are packed here from proto.md's layouts ("Request message", "Simple reply
message", "Structured reply chunk message", "Structured reply types"), with the spec's numbers
written out rather than imported from the code under test.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.nbd import constants as C
from store.nbd.constants import Errno
from store.nbd.constants import TransmissionFlag as T
from store.nbd.handshake import ProtocolError
from store.nbd.transmission import (
    ExportState,
    Request,
    RequestReader,
    block_status_chunk,
    check,
    chunk,
    data_chunk,
    error_chunk,
    error_reply,
    hole_chunk,
    none_chunk,
    simple_reply,
)

# -- the spec's numbers ---------------------------------------------------------------------------

REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS = range(8)
RESIZE = 8  # experimental extension, not implemented here

FUA = 1 << 0
NO_HOLE = 1 << 1
DF = 1 << 2
REQ_ONE = 1 << 3
FAST_ZERO = 1 << 4
PAYLOAD_LEN = 1 << 5  # extended headers only

REPLY_FLAG_DONE = 1 << 0
TYPE_NONE = 0
TYPE_OFFSET_DATA = 1
TYPE_OFFSET_HOLE = 2
TYPE_BLOCK_STATUS = 5
TYPE_ERROR = 2**15 + 1

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108

ALL_COMMANDS = (READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS)
ALL_FLAGS = (FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO)


def request(
    command: int, *, flags: int = 0, cookie: int = 1, offset: int = 0, length: int = 0
) -> bytes:
    """C: u32 magic, u16 command flags, u16 type, u64 cookie, u64 offset, u32 length."""
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, command, cookie, offset, length)


def write(cookie: int, offset: int, payload: bytes, flags: int = 0) -> bytes:
    return request(WRITE, flags=flags, cookie=cookie, offset=offset, length=len(payload)) + payload


def drain(reader: RequestReader) -> list[tuple[Request, bytes]]:
    out = []
    while (item := reader.next_request()) is not None:
        out.append(item)
    return out


# -- numbering ------------------------------------------------------------------------------------


def test_protocol_numbers_match_the_spec() -> None:
    assert (C.REQUEST_MAGIC, C.SIMPLE_REPLY_MAGIC, C.STRUCTURED_REPLY_MAGIC) == (
        REQUEST_MAGIC,
        SIMPLE_REPLY_MAGIC,
        STRUCTURED_REPLY_MAGIC,
    )
    assert [int(c) for c in C.Command] == list(ALL_COMMANDS)
    assert [int(f) for f in C.CommandFlag] == list(ALL_FLAGS)
    assert [int(f) for f in T] == [1 << n for n in range(12)]  # HAS_FLAGS .. SEND_FAST_ZERO
    assert (T.READ_ONLY, T.SEND_FUA, T.SEND_DF, T.SEND_FAST_ZERO) == (2, 8, 128, 2048)
    assert (C.ReplyType.NONE, C.ReplyType.OFFSET_DATA, C.ReplyType.OFFSET_HOLE) == (0, 1, 2)
    assert (C.ReplyType.BLOCK_STATUS, C.ReplyType.ERROR, C.ReplyType.ERROR_OFFSET) == (
        5,
        2**15 + 1,
        2**15 + 2,
    )
    assert C.REPLY_FLAG_DONE == 1
    spec_errnos = [0, EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN]
    assert [int(e) for e in Errno] == spec_errnos
    assert (C.AllocationFlag.HOLE, C.AllocationFlag.ZERO) == (1, 2)
    assert C.BASE_ALLOCATION == "base:allocation"


# -- RequestReader --------------------------------------------------------------------------------


def test_one_read_request() -> None:
    reader = RequestReader(
        1 << 20, request(READ, cookie=0xDEADBEEFCAFEF00D, offset=4096, length=512)
    )
    assert drain(reader) == [(Request(0, READ, 0xDEADBEEFCAFEF00D, 4096, 512), b"")]
    assert reader.buffered == 0


def test_header_fields_are_big_endian_and_full_width() -> None:
    wire = request(0xFFFF, flags=0xFFFF, cookie=2**64 - 1, offset=2**64 - 1, length=2**32 - 1)
    assert wire[:4] == b"\x25\x60\x95\x13"
    reader = RequestReader(16)
    reader.receive_data(wire)
    assert reader.next_request() == (Request(0xFFFF, 0xFFFF, 2**64 - 1, 2**64 - 1, 2**32 - 1), b"")


def test_incomplete_header_waits() -> None:
    reader = RequestReader(1 << 20)
    wire = request(FLUSH, cookie=5)
    reader.receive_data(wire[:27])
    assert reader.next_request() is None
    assert reader.buffered == 27
    reader.receive_data(wire[27:])
    assert reader.next_request() == (Request(0, FLUSH, 5, 0, 0), b"")
    assert reader.next_request() is None


def test_write_comes_with_its_payload() -> None:
    payload = bytes(range(256)) * 4
    reader = RequestReader(1 << 20)
    reader.receive_data(write(7, 8192, payload, flags=FUA))
    ((req, data),) = drain(reader)
    assert req == Request(FUA, WRITE, 7, 8192, 1024)
    assert data == payload
    assert isinstance(data, bytes)


def test_write_waits_for_its_whole_payload() -> None:
    wire = write(1, 0, b"x" * 100)
    reader = RequestReader(1 << 20)
    reader.receive_data(wire[:-1])
    assert reader.next_request() is None
    assert reader.buffered == len(wire) - 1
    reader.receive_data(wire[-1:])
    assert reader.next_request() == (Request(0, WRITE, 1, 0, 100), b"x" * 100)


def test_zero_length_write() -> None:
    reader = RequestReader(1 << 20, write(3, 0, b"") + request(FLUSH, cookie=4))
    assert drain(reader) == [(Request(0, WRITE, 3, 0, 0), b""), (Request(0, FLUSH, 4, 0, 0), b"")]


def test_only_write_carries_a_payload() -> None:
    # READ, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS have a length but no payload.
    wire = b"".join(request(c, cookie=c, offset=0, length=4096) for c in ALL_COMMANDS if c != WRITE)
    reader = RequestReader(512, wire)
    assert [r.command for r, _ in drain(reader)] == [c for c in ALL_COMMANDS if c != WRITE]


def test_write_at_the_payload_limit_is_accepted() -> None:
    reader = RequestReader(4096, write(1, 0, b"\xaa" * 4096))
    assert drain(reader) == [(Request(0, WRITE, 1, 0, 4096), b"\xaa" * 4096)]


def test_write_over_the_payload_limit_is_refused_from_the_header_alone() -> None:
    reader = RequestReader(4096, request(WRITE, cookie=1, length=4097))
    with pytest.raises(ProtocolError):
        reader.next_request()


def test_read_over_the_payload_limit_is_not_a_framing_error() -> None:
    reader = RequestReader(4096, request(READ, length=1 << 30))
    assert drain(reader) == [(Request(0, READ, 1, 0, 1 << 30), b"")]


@pytest.mark.parametrize("magic", [0, 0x12560953, 0x25609514, SIMPLE_REPLY_MAGIC, 0x13956025])
def test_bad_request_magic_is_a_protocol_error(magic: int) -> None:
    # 0x12560953 (historic) and 0x25609514 (nbd-server's log) are reserved, never a request.
    reader = RequestReader(1 << 20, struct.pack(">IHHQQI", magic, 0, READ, 1, 0, 512))
    with pytest.raises(ProtocolError):
        reader.next_request()


def test_bad_magic_after_good_requests() -> None:
    reader = RequestReader(1 << 20, request(FLUSH) + b"\x00" * 28)
    assert reader.next_request() == (Request(0, FLUSH, 1, 0, 0), b"")
    with pytest.raises(ProtocolError):
        reader.next_request()


def pipeline() -> tuple[bytes, list[tuple[Request, bytes]]]:
    items = [
        (Request(0, READ, 1, 0, 4096), b""),
        (Request(FUA, WRITE, 2, 4096, 3), b"abc"),
        (Request(0, WRITE, 3, 0, 0), b""),
        (Request(0, TRIM, 4, 8192, 4096), b""),
        (Request(NO_HOLE | FAST_ZERO, WRITE_ZEROES, 5, 0, 1 << 20), b""),
        (Request(0, WRITE, 6, 512, 600), bytes(range(200)) * 3),
        (Request(REQ_ONE, BLOCK_STATUS, 7, 0, 1 << 30), b""),
        (Request(0, CACHE, 8, 0, 512), b""),
        (Request(0, FLUSH, 9, 0, 0), b""),
        (Request(0, DISC, 10, 0, 0), b""),
    ]
    wire = b"".join(
        request(r.command, flags=r.flags, cookie=r.cookie, offset=r.offset, length=r.length) + p
        for r, p in items
    )
    return wire, items


def test_pipelined_requests_in_one_buffer() -> None:
    wire, items = pipeline()
    reader = RequestReader(1 << 20)
    reader.receive_data(wire)
    assert drain(reader) == items
    assert reader.buffered == 0


def test_split_at_every_byte_position() -> None:
    wire, items = pipeline()
    for cut in range(len(wire) + 1):
        reader = RequestReader(1 << 20)
        reader.receive_data(wire[:cut])
        got = drain(reader)
        reader.receive_data(wire[cut:])
        got += drain(reader)
        assert got == items, cut
        assert reader.buffered == 0


@given(cuts=st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    wire, items = pipeline()
    reader = RequestReader(1 << 20)
    got = []
    pos = i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        reader.receive_data(memoryview(wire)[pos : pos + n])
        got += drain(reader)
        pos, i = pos + n, i + 1
    assert got == items


def test_initial_data_is_the_handshake_trailing_bytes() -> None:
    wire, items = pipeline()
    reader = RequestReader(1 << 20, wire[:50])
    got = drain(reader)
    reader.receive_data(wire[50:])
    assert got + drain(reader) == items


def test_long_streams_are_compacted_without_losing_bytes() -> None:
    big = b"\x5a" * (600 << 10)
    one = write(1, 0, big) + request(READ, cookie=2, length=512)
    reader = RequestReader(1 << 20)
    got = []
    for _ in range(4):  # more than 1 MiB consumed: the buffer drops what was read
        reader.receive_data(one[:1000])
        got += drain(reader)
        reader.receive_data(one[1000:])
        got += drain(reader)
    assert got == [(Request(0, WRITE, 1, 0, len(big)), big), (Request(0, READ, 2, 0, 512), b"")] * 4
    assert reader.buffered == 0


# -- check ----------------------------------------------------------------------------------------

SIZE = 1 << 20
FULL = ExportState(
    size=SIZE,
    flags=T.HAS_FLAGS
    | T.SEND_FLUSH
    | T.SEND_FUA
    | T.SEND_TRIM
    | T.SEND_WRITE_ZEROES
    | T.SEND_DF
    | T.SEND_CACHE
    | T.SEND_FAST_ZERO,
    min_block=512,
    max_payload=64 << 10,
    structured=True,
    meta_contexts=True,
)


def with_(**changes: object) -> ExportState:
    return dataclasses.replace(FULL, **changes)  # type: ignore[arg-type]


def without(flag: T) -> ExportState:
    return with_(flags=FULL.flags & ~flag)


def req(command: int, flags: int = 0, offset: int = 0, length: int | None = None) -> Request:
    """A request that passes every check but the one under test."""
    if length is None:
        length = 0 if command in (FLUSH, DISC) else 4096
    return Request(flags, command, 1, offset, length)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_well_formed_requests_pass(command: int) -> None:
    assert check(req(command), FULL) == Errno.OK


@pytest.mark.parametrize("command", [RESIZE, 9, 0x100, 0xFFFF])
def test_unknown_command_is_einval(command: int) -> None:
    # "The server SHOULD return NBD_EINVAL if it receives an unknown command."
    assert check(req(command, length=0), FULL) == Errno.EINVAL


@pytest.mark.parametrize("command", ALL_COMMANDS)
@pytest.mark.parametrize("bit", [PAYLOAD_LEN, 1 << 6, 1 << 10, 1 << 15])
def test_unknown_command_flag_is_einval(command: int, bit: int) -> None:
    # "The server SHOULD return NBD_EINVAL if it receives an unknown command flag."
    assert check(req(command, flags=bit), FULL) == Errno.EINVAL


VALID_FLAGS = {
    READ: FUA | DF,
    WRITE: FUA,
    DISC: FUA,
    FLUSH: FUA,
    TRIM: FUA,
    CACHE: FUA,
    WRITE_ZEROES: FUA | NO_HOLE | FAST_ZERO,
    BLOCK_STATUS: FUA | REQ_ONE,
}


@pytest.mark.parametrize("flag", ALL_FLAGS)
@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_each_flag_is_valid_only_for_its_commands(command: int, flag: int) -> None:
    # "It also SHOULD return NBD_EINVAL if it receives a request with a flag not explicitly
    # documented as applicable to the given request." FUA: all commands (with SEND_FUA); NO_HOLE
    # and FAST_ZERO: WRITE_ZEROES; DF: READ; REQ_ONE: BLOCK_STATUS.
    expected = Errno.OK if VALID_FLAGS[command] & flag else Errno.EINVAL
    assert check(req(command, flags=flag), FULL) == expected


def test_all_valid_flags_together() -> None:
    for command, flags in VALID_FLAGS.items():
        assert check(req(command, flags=flags), FULL) == Errno.OK, command


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_fua_needs_send_fua(command: int) -> None:
    assert check(req(command, flags=FUA), without(T.SEND_FUA)) == Errno.EINVAL
    assert check(req(command), without(T.SEND_FUA)) == Errno.OK


def test_df_needs_structured_replies() -> None:
    # SEND_DF "MUST [be left] clear if structured replies have not been negotiated".
    assert check(req(READ, flags=DF), with_(structured=False)) == Errno.EINVAL
    assert check(req(READ), with_(structured=False)) == Errno.OK


def test_df_needs_send_df() -> None:
    # "Clients MUST NOT set the NBD_CMD_FLAG_DF request flag unless this transmission flag
    # [NBD_FLAG_SEND_DF] is set"; a server that did not set it does not support DF.
    assert check(req(READ, flags=DF), without(T.SEND_DF)) == Errno.EINVAL
    assert check(req(READ), without(T.SEND_DF)) == Errno.OK


def test_fast_zero_needs_send_fast_zero() -> None:
    # "If the server did not advertise NBD_FLAG_SEND_FAST_ZERO, then it ... SHOULD fail with
    # NBD_EINVAL if the NBD_CMD_FLAG_FAST_ZERO flag was set."
    export = without(T.SEND_FAST_ZERO)
    assert check(req(WRITE_ZEROES, flags=FAST_ZERO), export) == Errno.EINVAL
    assert check(req(WRITE_ZEROES, flags=NO_HOLE), export) == Errno.OK


@pytest.mark.parametrize("flag", [NO_HOLE, FAST_ZERO])
def test_write_zeroes_flags_are_refused_on_a_write(flag: int) -> None:
    assert check(req(WRITE, flags=flag), FULL) == Errno.EINVAL


def test_req_one_only_on_block_status() -> None:
    assert check(req(BLOCK_STATUS, flags=REQ_ONE), FULL) == Errno.OK
    for command in (READ, WRITE, TRIM, CACHE, WRITE_ZEROES):
        assert check(req(command, flags=REQ_ONE), FULL) == Errno.EINVAL


READ_ONLY = with_(flags=FULL.flags | T.READ_ONLY)


@pytest.mark.parametrize("command", [WRITE, TRIM, WRITE_ZEROES])
def test_modifying_a_read_only_export_is_eperm(command: int) -> None:
    # "it SHOULD return NBD_EPERM if it receives a write or trim request on a read-only export";
    # WRITE_ZEROES: "It SHOULD return NBD_EPERM if it receives a write zeroes request on a
    # read-only export."
    assert check(req(command), READ_ONLY) == Errno.EPERM


@pytest.mark.parametrize("command", [READ, CACHE, BLOCK_STATUS, FLUSH, DISC])
def test_reading_a_read_only_export_is_fine(command: int) -> None:
    assert check(req(command), READ_ONLY) == Errno.OK


def test_read_only_write_past_the_end_is_refused_either_way() -> None:
    assert check(req(WRITE, offset=SIZE), READ_ONLY) in (Errno.EPERM, Errno.ENOSPC)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(SIZE - 512, 1024), (SIZE, 512), (SIZE + 512, 512), (2**64 - 512, 512), (0, SIZE + 512)],
)
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # "The server SHOULD return NBD_ENOSPC if it receives a write request including one or
        # more sectors beyond the size of the device" (and the same for WRITE_ZEROES) ...
        (WRITE, Errno.ENOSPC),
        (WRITE_ZEROES, Errno.ENOSPC),
        # ... "NBD_EINVAL if it receives a read or trim request" beyond it; BLOCK_STATUS: "SHOULD
        # return NBD_EINVAL"; CACHE: the same range rules as READ.
        (READ, Errno.EINVAL),
        (TRIM, Errno.EINVAL),
        (CACHE, Errno.EINVAL),
        (BLOCK_STATUS, Errno.EINVAL),
    ],
)
def test_past_the_end(command: int, expected: Errno, offset: int, length: int) -> None:
    export = with_(max_payload=SIZE + 1024)  # so a long READ is refused for its range alone
    assert check(req(command, offset=offset, length=length), export) == expected


@pytest.mark.parametrize("command", [READ, WRITE, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS])
def test_up_to_the_end_is_fine(command: int) -> None:
    assert check(req(command, offset=SIZE - 4096, length=4096), FULL) == Errno.OK
    assert check(req(command, offset=0, length=SIZE), with_(max_payload=SIZE)) == Errno.OK


@pytest.mark.parametrize("command", [READ, WRITE, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS])
@pytest.mark.parametrize(("offset", "length"), [(1, 512), (511, 512), (512, 1), (512, 1000)])
def test_misaligned_is_einval(command: int, offset: int, length: int) -> None:
    # "The server SHOULD report an NBD_EINVAL error if the client's request is not aligned to
    # advertised minimum block size boundaries".
    assert check(req(command, offset=offset, length=length), FULL) == Errno.EINVAL


@pytest.mark.parametrize("command", [READ, WRITE, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS])
def test_minimum_block_of_one_allows_any_alignment(command: int) -> None:
    assert check(req(command, offset=1, length=3), with_(min_block=1)) == Errno.OK


@pytest.mark.parametrize("command", [FLUSH, DISC])
@pytest.mark.parametrize(("offset", "length"), [(512, 0), (0, 512), (1, 1)])
def test_flush_and_disc_take_no_range(command: int, offset: int, length: int) -> None:
    # DISC: "The values of the length and offset fields in a disconnect request MUST be zero."
    # FLUSH: "length and offset are reserved, and MUST be set to all-zero."
    assert check(req(command, offset=offset, length=length), FULL) == Errno.EINVAL


def test_block_status_needs_meta_contexts() -> None:
    # "Servers SHOULD reply with NBD_EINVAL to clients sending NBD_CMD_BLOCK_STATUS without
    # selecting at least one metadata context."
    assert check(req(BLOCK_STATUS), with_(meta_contexts=False)) == Errno.EINVAL


def test_block_status_needs_structured_replies() -> None:
    assert check(req(BLOCK_STATUS), with_(structured=False)) == Errno.EINVAL


def test_read_over_the_maximum_payload_is_einval() -> None:
    # "The server SHOULD report an NBD_EINVAL error if the client's request ... is larger than
    # the advertised maximum block size."
    assert check(req(READ, length=64 << 10), FULL) == Errno.OK
    assert check(req(READ, length=(64 << 10) + 512), FULL) == Errno.EINVAL


def test_trim_may_exceed_the_maximum_payload() -> None:
    # The maximum block size binds READ, WRITE, CACHE and WRITE_ZEROES, not TRIM.
    assert check(req(TRIM, length=SIZE), FULL) == Errno.OK


def test_zero_length_requests_are_not_refused() -> None:
    # A length of 0 is unspecified ("the server SHOULD NOT disconnect"); these checks pass it.
    for command in (READ, WRITE, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS):
        assert check(req(command, offset=SIZE, length=0), FULL) == Errno.OK, command


def test_a_minimal_export_refuses_every_optional_flag() -> None:
    bare = ExportState(
        size=SIZE,
        flags=T.HAS_FLAGS,
        min_block=1,
        max_payload=1 << 25,
        structured=False,
        meta_contexts=False,
    )
    assert check(req(READ), bare) == Errno.OK
    assert check(req(WRITE), bare) == Errno.OK
    for command, flags in VALID_FLAGS.items():
        for flag in ALL_FLAGS:
            if flags & flag:
                expected = Errno.OK if flag == NO_HOLE else Errno.EINVAL
                assert check(req(command, flags=flag), bare) == expected, (command, flag)


# -- replies: exact bytes -------------------------------------------------------------------------


def header(flags: int, type_: int, cookie: int, length: int) -> bytes:
    """S: u32 magic, u16 flags, u16 type, u64 cookie, u32 payload length."""
    return struct.pack(">IHHQI", STRUCTURED_REPLY_MAGIC, flags, type_, cookie, length)


def test_simple_reply_bytes() -> None:
    assert simple_reply(0x0102030405060708) == (
        b"\x67\x44\x66\x98" + b"\x00\x00\x00\x00" + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    )
    assert simple_reply(9, EINVAL) == struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, EINVAL, 9)
    assert simple_reply(2**64 - 1, Errno.ENOSPC) == struct.pack(
        ">IIQ", SIMPLE_REPLY_MAGIC, 28, 2**64 - 1
    )
    assert len(simple_reply(1)) == 16


def test_chunk_header_bytes() -> None:
    assert chunk(5, TYPE_OFFSET_DATA, 100, done=True) == header(REPLY_FLAG_DONE, 1, 5, 100)
    assert chunk(5, TYPE_OFFSET_DATA, 100, done=False) == header(0, 1, 5, 100)
    assert chunk(2**64 - 1, TYPE_ERROR, 0, done=True)[:8] == b"\x66\x8e\x33\xef\x00\x01\x80\x01"
    assert len(chunk(1, 0, 0, done=True)) == 20


def test_data_chunk_bytes() -> None:
    # NBD_REPLY_TYPE_OFFSET_DATA: length = 8 + data; payload = u64 offset, then the data (which
    # the caller sends after these bytes).
    out = data_chunk(3, 1 << 33, 4096, done=False)
    assert out == header(0, TYPE_OFFSET_DATA, 3, 8 + 4096) + struct.pack(">Q", 1 << 33)
    assert len(out) == 28
    assert data_chunk(3, 0, 1, done=True) == header(1, TYPE_OFFSET_DATA, 3, 9) + bytes(8)


def test_hole_chunk_bytes() -> None:
    # NBD_REPLY_TYPE_OFFSET_HOLE: length exactly 12: u64 offset, u32 hole size.
    out = hole_chunk(4, 8192, 65536, done=True)
    assert out == header(1, TYPE_OFFSET_HOLE, 4, 12) + struct.pack(">QI", 8192, 65536)
    assert len(out) == 32
    assert hole_chunk(4, 0, 512, done=False)[4:6] == b"\x00\x00"


def test_none_chunk_bytes() -> None:
    # NBD_REPLY_TYPE_NONE: length 0, always with NBD_REPLY_FLAG_DONE.
    assert none_chunk(77) == header(REPLY_FLAG_DONE, TYPE_NONE, 77, 0)


def test_error_chunk_bytes() -> None:
    # NBD_REPLY_TYPE_ERROR: u32 error, u16 message length, message; length = 6 + message.
    assert (
        error_chunk(6, EIO, "disk on fire")
        == header(1, TYPE_ERROR, 6, 6 + 12) + struct.pack(">IH", EIO, 12) + b"disk on fire"
    )
    assert error_chunk(6, EINVAL) == header(1, TYPE_ERROR, 6, 6) + struct.pack(">IH", EINVAL, 0)
    assert error_chunk(6, EINVAL, done=False)[4:6] == b"\x00\x00"
    assert (
        error_chunk(6, ENOSPC, "é")
        == header(1, TYPE_ERROR, 6, 8) + struct.pack(">IH", ENOSPC, 2) + "é".encode()
    )


def test_error_chunk_message_is_capped_at_4096_bytes() -> None:
    # "message length MUST NOT exceed the 4096 bytes string length limit"
    out = error_chunk(1, EIO, "m" * 5000)
    assert out == header(1, TYPE_ERROR, 1, 6 + 4096) + struct.pack(">IH", EIO, 4096) + b"m" * 4096


def test_error_chunk_cap_keeps_the_message_valid_utf8() -> None:
    # A string is UTF-8: cutting at 4096 bytes must not split a multi-byte character.
    out = error_chunk(1, EIO, "ab" + "€" * 2000)  # byte 4096 is the 2nd of the 1365th "€"
    (length,) = struct.unpack_from(">I", out, 16)
    (message_bytes,) = struct.unpack_from(">H", out, 24)
    message = out[26:]
    assert len(message) == message_bytes == length - 6
    assert message_bytes <= 4096
    assert message.decode("utf-8") == "ab" + "€" * 1364


def test_block_status_chunk_bytes() -> None:
    # NBD_REPLY_TYPE_BLOCK_STATUS: u32 context id, then (u32 length, u32 status) descriptors;
    # length = 4 + 8 * n.
    hole_zero = C.AllocationFlag.HOLE | C.AllocationFlag.ZERO
    out = block_status_chunk(8, 1, [(4096, 0), (1 << 20, hole_zero)], done=True)
    assert out == header(1, TYPE_BLOCK_STATUS, 8, 4 + 16) + struct.pack(
        ">IIIII", 1, 4096, 0, 1 << 20, 3
    )
    assert (
        block_status_chunk(8, 0xFFFFFFFF, [(512, 1)], done=False)
        == header(0, TYPE_BLOCK_STATUS, 8, 12)
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x02\x00"
        + b"\x00\x00\x00\x01"
    )


def test_error_reply_simple_without_structured_replies() -> None:
    r = Request(0, WRITE, 0xABCDEF, 0, 512)
    assert error_reply(r, EPERM, structured=False, message="read-only") == struct.pack(
        ">IIQ", SIMPLE_REPLY_MAGIC, EPERM, 0xABCDEF
    )


def test_error_reply_is_an_error_chunk_with_structured_replies() -> None:
    # A READ "MUST NOT use a simple reply ... (even for the case of an early NBD_EINVAL due to
    # bad flags)" once structured replies are negotiated.
    r = Request(DF, READ, 42, 0, 512)
    assert (
        error_reply(r, EINVAL, structured=True, message="bad flags")
        == header(REPLY_FLAG_DONE, TYPE_ERROR, 42, 6 + 9)
        + struct.pack(">IH", EINVAL, 9)
        + b"bad flags"
    )
    assert error_reply(r, EIO, structured=True) == header(1, TYPE_ERROR, 42, 6) + struct.pack(
        ">IH", EIO, 0
    )
