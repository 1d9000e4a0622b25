"""STARTTLS and the TLS-required mode of the sans-IO handshake (proto.md: NBD_OPT_STARTTLS,
NBD_REP_ERR_TLS_REQD; nbdkit --tls=require and qemu-nbd tls-creds behave the same way)."""

from __future__ import annotations

import pytest

from store.nbd import constants as C
from store.nbd.handshake import (
    AbortOption,
    BadOption,
    ExportNameOption,
    Handshake,
    ListOption,
    ProtocolError,
    StartTLSOption,
    TLSRequired,
)
from tests.unit.nbd.test_handshake import (
    FLAG_C_FIXED_NEWSTYLE,
    OPT_ABORT,
    OPT_EXPORT_NAME,
    OPT_GO,
    OPT_INFO,
    OPT_LIST,
    OPT_LIST_META_CONTEXT,
    OPT_STARTTLS,
    OPT_STRUCTURED_REPLY,
    REP_ACK,
    REP_ERR_TLS_REQD,
    drain,
    flags,
    info_data,
    option,
)


def shake(*, required: bool) -> Handshake:
    hs = Handshake(tls=True, tls_required=required)
    hs.receive_data(flags(FLAG_C_FIXED_NEWSTYLE))
    drain(hs)
    return hs


@pytest.mark.parametrize(
    "opt, data",
    [
        (OPT_LIST, b""),
        (OPT_GO, info_data("vol")),
        (OPT_INFO, info_data("vol")),
        (OPT_STRUCTURED_REPLY, b""),
        (OPT_LIST_META_CONTEXT, b"\0\0\0\0\0\0\0\0"),
        (99, b"whatever"),
    ],
)
def test_required_refuses_every_plain_option(opt: int, data: bytes) -> None:
    hs = shake(required=True)
    hs.receive_data(option(opt, data))
    assert drain(hs) == [TLSRequired(opt)]
    reply = hs.error(opt, C.Reply.ERR_TLS_REQD, "negotiate TLS")
    assert int.from_bytes(reply[12:16], "big") == REP_ERR_TLS_REQD
    assert not hs.done


def test_required_closes_on_plain_export_name() -> None:
    # EXPORT_NAME has no error reply: the only answer is to close.
    hs = shake(required=True)
    hs.receive_data(option(OPT_EXPORT_NAME, b"vol"))
    with pytest.raises(ProtocolError):
        drain(hs)


def test_required_allows_abort_and_starttls() -> None:
    hs = shake(required=True)
    hs.receive_data(option(OPT_STARTTLS) + option(OPT_ABORT))
    assert drain(hs) == [StartTLSOption(), AbortOption()]


def test_after_starttls_everything_is_allowed_and_state_is_fresh() -> None:
    hs = shake(required=True)
    hs.receive_data(option(OPT_STARTTLS))
    assert drain(hs) == [StartTLSOption()]
    ack = hs.ack(OPT_STARTTLS)
    assert int.from_bytes(ack[12:16], "big") == REP_ACK
    assert hs.tls_active and not hs.structured
    hs.receive_data(option(OPT_LIST) + option(OPT_EXPORT_NAME, b"vol"))
    assert drain(hs) == [ListOption(), ExportNameOption("vol")]


def test_optional_mode_serves_plain_options() -> None:
    hs = shake(required=False)
    hs.receive_data(option(OPT_LIST))
    assert drain(hs) == [ListOption()]
    assert hs.tls_offered and not hs.tls_active


def test_a_second_starttls_is_invalid() -> None:
    hs = shake(required=False)
    hs.receive_data(option(OPT_STARTTLS))
    drain(hs)
    hs.ack(OPT_STARTTLS)
    hs.receive_data(option(OPT_STARTTLS))
    [event] = drain(hs)
    assert isinstance(event, BadOption) and event.option == OPT_STARTTLS


def test_bytes_sent_before_the_starttls_reply_close_the_connection() -> None:
    # The client must wait for the ACK: bytes already buffered are plain text that would be
    # mistaken for the TLS session (a downgrade or injection attempt).
    hs = shake(required=False)
    hs.receive_data(option(OPT_STARTTLS) + option(OPT_LIST))
    assert hs.next_event() == StartTLSOption()
    with pytest.raises(ProtocolError):
        hs.ack(OPT_STARTTLS)
