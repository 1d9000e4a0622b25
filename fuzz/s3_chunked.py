"""Fuzz the aws-chunked decoder (``store.s3.chunked.ChunkedDecoder``) and the chunk signature
chain (``sigv4.ChunkSigner``).

Input: an aws-chunked body as boto3 and the aws CLI send it (signed chunks, unsigned chunks with
checksum trailers, signed trailers). The seeds' signatures chain from ``SEED_SIGNATURE`` under
``AUTH``'s key, so the signature checks run as they do in the gateway. Properties: malformed
framing raises ``S3Error`` IncompleteBody and nothing else; a bad signature raises the protocol's
own 403; the outcome does not depend on how the body is split into reads; what decodes, encoded
again, decodes to the same events.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error, pieces

    from store.s3 import sigv4
    from store.s3.chunked import Chunk, ChunkedDecoder, Trailers
    from store.s3.errors import S3Error

AMZ_DATE = "20231114T221320Z"
SCOPE = "20231114/us-east-1/s3/aws4_request"
SEED_SIGNATURE = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AUTH = sigv4.Auth(
    "AKIDFUZZEXAMPLE",
    sigv4.STREAMING_SIGNED_TRAILER,
    AMZ_DATE,
    SCOPE,
    sigv4.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZKEY", "20231114", "us-east-1", "s3"),
    SEED_SIGNATURE,
)

Outcome = tuple[str, object]


def _decode(parts: list[bytes]) -> tuple[Outcome, list[Chunk | Trailers]]:
    decoder = ChunkedDecoder()
    events: list[Chunk | Trailers] = []
    try:
        for part in parts:
            events += decoder.feed(part)
    except S3Error as e:
        assert e.code.code == "IncompleteBody" and e.code.status == 400, e.code
        return ("error", e.code), events
    return ("ok", (tuple(events), decoder.done)), events


def _encode(events: list[Chunk | Trailers]) -> bytes:
    out = []
    for event in events:
        if isinstance(event, Chunk):
            ext = f";chunk-signature={event.signature}" if event.signature is not None else ""
            out.append(f"{len(event.data):x}{ext}\r\n".encode() + event.data)
            out.append(b"\r\n" if event.data else b"")
        else:
            lines = [f"{n}:{v}\r\n" for n, v in event.headers.items()]
            if event.signature is not None:
                lines.append(f"x-amz-trailer-signature:{event.signature}\r\n")
            out.append("".join(lines).encode("latin-1") + b"\r\n")
    return b"".join(out)


def _verify_signatures(events: list[Chunk | Trailers]) -> None:
    signer = sigv4.ChunkSigner(AUTH)
    decoder = ChunkedDecoder()
    for event in events:
        if isinstance(event, Chunk):
            if event.signature is not None:
                signer.verify_chunk(event.data, event.signature)
        elif event.signature is not None:
            signer.verify_trailer(decoder.signed_trailer_bytes(event), event.signature)


def TestOneInput(data: bytes) -> None:
    whole, events = _decode([data])
    split, _ = _decode(list(pieces(data, len(data) * 31 + (data[0] if data else 0))))
    assert whole == split, (whole, split)
    if whole[0] != "ok":
        return
    try:
        _verify_signatures(events)
    except Exception as e:  # the property: what escapes
        check_s3_error(e)
    again, _ = _decode([_encode(events)])
    assert again == whole, (whole, again)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
