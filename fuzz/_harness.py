"""What the fuzz targets share: the request-head input format, the S3 error property, and
deterministic splits of a byte string into the pieces a socket might deliver."""

from __future__ import annotations

from collections.abc import Iterator

from store.errors import StoreError
from store.s3.errors import S3Error, code_for


def parse_head(data: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target, headers with lowercased names, body) of an HTTP/1.1 request head, read
    leniently (latin-1, as the gateway's HTTP layer hands them over): the seeds are real request
    heads, and any byte string is some request."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rsplit(" HTTP/", 1)[0] if " HTTP/" in rest else rest
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return method, target, headers, body


def check_s3_error(error: BaseException) -> None:
    """The S3 property: a refusal is the protocol's own error, never an InternalError (500)."""
    if not isinstance(error, S3Error | StoreError):
        raise error
    if code_for(error).status == 500:
        raise AssertionError(f"input maps to 500 InternalError: {error!r}") from error


def pieces(data: bytes, seed: int) -> Iterator[bytes]:
    """``data`` in pieces of 1 to 64 bytes, chosen by a small LCG from ``seed`` (deterministic:
    a crash replays)."""
    state = seed & 0xFFFFFFFF
    at = 0
    while at < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 16) % 64
        yield data[at : at + size]
        at += size
