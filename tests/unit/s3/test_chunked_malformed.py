"""aws-chunked decoding of hostile input: every malformed body is S3's 400 IncompleteBody (what
AWS answers for any broken aws-chunked framing), never another exception, whatever the splits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.s3.chunked import MAX_CHUNK_BYTES, ChunkedDecoder
from store.s3.errors import S3Error

SIG = ";chunk-signature=" + "a" * 64

MALFORMED = {
    "non-hex size": b"ZZ\r\nabc\r\n0\r\n\r\n",
    "negative size": b"-3\r\nabc\r\n0\r\n\r\n",
    "0x prefix": b"0x3\r\nabc\r\n0\r\n\r\n",
    "empty size line": b"\r\nabc\r\n0\r\n\r\n",
    "space before CRLF": b"3 \r\nabc\r\n0\r\n\r\n",
    "17 hex digits": b"1" * 17 + b"\r\n",
    "chunk over the limit": f"{MAX_CHUNK_BYTES + 1:x}\r\n".encode(),
    "size line without CRLF past 4 KiB": b"1" * 5000,
    "LF only after the size": b"3\nabc\r\n0\r\n\r\n",
    "missing CRLF after data": b"3\r\nabcXX0\r\n\r\n",
    "LF only after data": b"3\r\nabc\n0\r\n\r\n",
    "data longer than its size": b"3\r\nabcd\r\n0\r\n\r\n",
    "unknown chunk extension": b"3;foo=bar\r\nabc\r\n0\r\n\r\n",
    "short signature": b"3;chunk-signature=abc\r\nabc\r\n0\r\n\r\n",
    "upper-case signature": b"3;chunk-signature=" + b"A" * 64 + b"\r\nabc\r\n",
    "signature with a trailing byte": (SIG + "0").encode().join([b"3", b"\r\nabc\r\n"]),
    "non-ASCII size": b"\xff\r\nabc\r\n",
    "NUL in the size line": b"3\x00\r\nabc\r\n",
    "trailer line without a colon": b"0\r\nx-amz-checksum-crc32\r\n\r\n",
    "trailers over 16 KiB": b"0\r\nx-amz-meta: " + b"v" * (17 << 10),
    "trailers over 16 KiB, ended": b"0\r\nx-amz-meta: " + b"v" * (17 << 10) + b"\r\n\r\n",
    "bytes after the end": b"3\r\nabc\r\n0\r\n\r\nextra",
}


def decode(wire: bytes, split: int | None = None) -> ChunkedDecoder:
    decoder = ChunkedDecoder()
    if split is None:
        decoder.feed(wire)
    else:
        for pos in range(0, len(wire), split):
            decoder.feed(wire[pos : pos + split])
    return decoder


@pytest.mark.parametrize("split", [None, 1, 7])
@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_framing_is_incomplete_body(wire: bytes, split: int | None) -> None:
    with pytest.raises(S3Error) as e:
        decode(wire, split)
    assert (e.value.code.code, e.value.code.status) == ("IncompleteBody", 400)


CUT_SHORT = {
    "in the size line": b"3",
    "in the data": b"3\r\nab",
    "before the data's CRLF": b"3\r\nabc",
    "between CR and LF": b"3\r\nabc\r",
    "before the final chunk": b"3\r\nabc\r\n",
    "in the signature": b"3;chunk-signature=aaaa",
    "in the trailers": b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n",
}


@pytest.mark.parametrize("wire", CUT_SHORT.values(), ids=CUT_SHORT.keys())
def test_a_body_cut_short_is_not_done(wire: bytes) -> None:
    # The decoder cannot know the body ended: the caller sees ``done`` still False at the end of
    # the stream and answers IncompleteBody (store.gateway.s3.messages.dechunk).
    assert not decode(wire).done


@given(
    wire=st.lists(
        st.sampled_from(
            [b"0", b"3", b"f", b"Z", b"-", b";", SIG.encode(), b"\r\n", b"\r", b"\n", b":"]
            + [b"abc", b"x-amz-checksum-crc32", b"\xff", b" ", b"\r\n\r\n"]
        )
        | st.binary(max_size=8),
        max_size=20,
    ).map(b"".join),
    split=st.integers(1, 16),
)
def test_any_input_decodes_or_is_a_400(wire: bytes, split: int) -> None:
    try:
        decode(wire, split)
    except S3Error as e:
        assert e.code.status == 400
