"""The aws-chunked body encoding (sans-IO decoder).

Bodies sent with ``x-amz-content-sha256: STREAMING-*`` are framed as

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<size bytes>\\r\\n     ... repeated ...
    0[;chunk-signature=<64 hex>]\\r\\n
    [<trailer name>:<value>\\r\\n ...]                                  (the *-TRAILER modes)
    \\r\\n

``ChunkedDecoder.feed`` takes bytes as they arrive and returns the decoded events: ``Chunk``
(data, and its signature when signed) and finally ``Trailers``. The framing never reaches
storage. Limits: a chunk header line of 4 KiB, trailers of 16 KiB, chunks of 64 MiB.

Every malformed input (a size that is not 1-16 hex digits, a missing CRLF, an unknown chunk
extension, a limit exceeded, bytes after the end) raises ``S3Error`` IncompleteBody, 400: AWS
answers IncompleteBody for any broken aws-chunked framing. A body that simply stops is not an
error here (the decoder cannot see the end of the stream): the caller checks ``done`` then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from store.s3.errors import S3Error

MAX_LINE_BYTES = 4096
MAX_TRAILER_BYTES = 16 << 10
MAX_CHUNK_BYTES = 64 << 20
_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?")


@dataclass(frozen=True, slots=True)
class Chunk:
    data: bytes
    signature: str | None  # None for unsigned streaming


@dataclass(frozen=True, slots=True)
class Trailers:
    headers: dict[str, str] = field(default_factory=dict)
    signature: str | None = None  # x-amz-trailer-signature, for the signed-trailer mode


def _bad(message: str) -> S3Error:
    return S3Error("IncompleteBody", 400, f"malformed aws-chunked body: {message}")


class ChunkedDecoder:
    """Incremental decoder; ``done`` once the trailers (or the final empty line) are in."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "header"  # header | data | data-crlf | trailers | done
        self._need = 0
        self._signature: str | None = None
        self._pending = bytearray()
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Chunk | Trailers]:
        if self.done:
            if data:
                raise _bad("bytes after the end of the body")
            return []
        self._buf += data
        out: list[Chunk | Trailers] = []
        while True:
            if self._state == "header":
                line = self._line(MAX_LINE_BYTES)
                if line is None:
                    return out
                found = _HEADER.fullmatch(line)
                if not found:
                    raise _bad("bad chunk header")
                self._need = int(found[1], 16)
                self._signature = found[2].decode() if found[2] else None
                if self._need > MAX_CHUNK_BYTES:
                    raise _bad("chunk too large")
                if self._need == 0:
                    out.append(Chunk(b"", self._signature))
                    self._state = "trailers"
                else:
                    self._state = "data"
            elif self._state == "data":
                take = min(self._need - len(self._pending), len(self._buf))
                self._pending += self._buf[:take]
                del self._buf[:take]
                if len(self._pending) < self._need:
                    return out
                self._state = "data-crlf"
            elif self._state == "data-crlf":
                if len(self._buf) < 2:
                    return out
                if self._buf[:2] != b"\r\n":
                    raise _bad("chunk data not followed by CRLF")
                del self._buf[:2]
                out.append(Chunk(bytes(self._pending), self._signature))
                self._pending = bytearray()
                self._state = "header"
            elif self._state == "trailers":
                end = self._buf.find(b"\r\n\r\n")
                if self._buf.startswith(b"\r\n"):
                    raw = b""
                    del self._buf[:2]
                elif 0 <= end <= MAX_TRAILER_BYTES:  # however the body was split into reads
                    raw = bytes(self._buf[:end])
                    del self._buf[: end + 4]
                else:
                    if end >= 0 or len(self._buf) > MAX_TRAILER_BYTES + 4:
                        raise _bad("trailers too large")
                    return out
                out.append(self._trailers(raw))
                self._state = "done"
                self.done = True
                if self._buf:
                    raise _bad("bytes after the end of the body")
                return out
            else:
                return out

    def _line(self, limit: int) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > limit:
                raise _bad("chunk header line too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    @staticmethod
    def _trailers(raw: bytes) -> Trailers:
        headers: dict[str, str] = {}
        signature = None
        for line in raw.split(b"\r\n") if raw else ():
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _bad("bad trailer line")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                signature = value
            else:
                headers[name] = value
        return Trailers(headers, signature)

    def signed_trailer_bytes(self, trailers: Trailers) -> bytes:
        """The trailer text the trailer signature covers (each header line, LF-terminated)."""
        return b"".join(f"{n}:{v}\n".encode() for n, v in trailers.headers.items())
