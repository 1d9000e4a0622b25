"""aws-chunked decoding: every split point, signed and unsigned, trailers, malformed framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.s3.chunked import Chunk, ChunkedDecoder, Trailers
from store.s3.errors import S3Error

SIG = "a" * 64


def encode(chunks: list[bytes], signed: bool, trailers: dict[str, str] | None) -> bytes:
    out = b""
    for data in [*chunks, b""]:
        ext = f";chunk-signature={SIG}" if signed else ""
        out += f"{len(data):x}{ext}\r\n".encode() + data + (b"\r\n" if data else b"")
    for name, value in (trailers or {}).items():
        out += f"{name}:{value}\r\n".encode()
    return out + b"\r\n"


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=5),
    signed=st.booleans(),
    trailer=st.booleans(),
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=10),
)
def test_any_split_decodes_the_same(
    chunks: list[bytes], signed: bool, trailer: bool, cuts: list[int]
) -> None:
    trailers = {"x-amz-checksum-crc32": "AAAAAA=="} if trailer else None
    wire = encode(chunks, signed, trailers)
    decoder = ChunkedDecoder()
    events: list[Chunk | Trailers] = []
    pos = i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        events += decoder.feed(wire[pos : pos + n])
        pos += n
        i += 1
    assert decoder.done
    data = [e for e in events if isinstance(e, Chunk)]
    assert [c.data for c in data] == [*chunks, b""]
    assert all(c.signature == (SIG if signed else None) for c in data)
    assert events[-1] == Trailers(trailers or {})


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\n", b"3\r\nabcX\r\n", b"3\r\nabc\r\n0\r\n\r\nextra", b"1" * 5000, b"ffffffffff\r\n"],
)
def test_malformed_framing(wire: bytes) -> None:
    with pytest.raises(S3Error) as e:
        ChunkedDecoder().feed(wire)
    assert e.value.code.code == "IncompleteBody"
