"""S3 request and response plumbing: bodies (raw, signed, aws-chunked), headers, conditions."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote_plus

from store.codec import checksums
from store.errors import InvalidArgument
from store.gateway.http import BadRequest, BodyTimeout, ClientGone, Request, Response
from store.gateway.s3.call import Call
from store.objects.records import Version
from store.s3 import sigv4
from store.s3 import xml as s3xml
from store.s3.chunked import Chunk, ChunkedDecoder, Trailers
from store.s3.errors import S3Error

STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class BodyState:
    """What decoding a body learned: the trailers, once the body has been read."""

    def __init__(self) -> None:
        self.trailers: dict[str, str] = {}
        self.payload_sha256: str | None = None

    def trailer_checksum(self, algorithm: str | None) -> Callable[[], str | None] | None:
        if algorithm is None:
            return None
        name = checksums.header_name(algorithm)
        return lambda: self.trailers.get(name)


async def raw(req: Request) -> AsyncIterator[bytes]:
    """The body as it arrives. A body the HTTP layer cannot read is S3's 400, never a 500: a
    client too slow is RequestTimeout, and a body cut short or with broken chunked framing is
    IncompleteBody (what AWS answers for any broken aws-chunked framing too)."""
    try:
        async for piece in req:
            yield piece
    except BodyTimeout as e:
        raise S3Error(
            "RequestTimeout",
            400,
            "Your socket connection to the server was not read from or written to within the "
            f"timeout period. Idle connections will be closed. ({e})",
        ) from None
    except (BadRequest, ClientGone) as e:
        raise S3Error("IncompleteBody", 400, f"the request body could not be read: {e}") from None


async def sha256_checked(req: Request, expected: str) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    async for piece in raw(req):
        digest.update(piece)
        yield piece
    if digest.hexdigest() != expected:
        raise S3Error(
            "XAmzContentSHA256Mismatch",
            400,
            "the provided x-amz-content-sha256 does not match what was computed",
        )


async def dechunk(
    req: Request, signer: sigv4.ChunkSigner | None, state: BodyState, payload: str = ""
) -> AsyncIterator[bytes]:
    """The decoded aws-chunked body. Signed modes verify every chunk's signature; a trailer is
    allowed only in the ``-TRAILER`` modes, and in the signed one it must be signed too."""
    trailers_allowed = payload in (sigv4.STREAMING_SIGNED_TRAILER, sigv4.STREAMING_UNSIGNED_TRAILER)
    decoder = ChunkedDecoder()
    async for piece in raw(req):
        for event in decoder.feed(piece):
            if isinstance(event, Chunk):
                if signer is not None:
                    if event.signature is None:
                        raise S3Error("SignatureDoesNotMatch", 403, "a chunk is not signed")
                    signer.verify_chunk(event.data, event.signature)
                if event.data:
                    yield event.data
            elif isinstance(event, Trailers):
                if event.headers and not trailers_allowed:
                    raise S3Error("InvalidRequest", 400, f"{payload} bodies carry no trailer")
                if signer is not None and event.headers:
                    if event.signature is None:
                        raise S3Error("SignatureDoesNotMatch", 403, "the trailer is not signed")
                    signer.verify_trailer(decoder.signed_trailer_bytes(event), event.signature)
                state.trailers = event.headers
    if not decoder.done:
        raise S3Error("IncompleteBody", 400, "the aws-chunked body ended early")


def access_key_of(req: Request, raw_query: str) -> str:
    auth = req.header("authorization") or ""
    found = re.search(r"Credential=([^/,\s]+)/", auth)
    if found:
        return found[1]
    found = re.search(r"X-Amz-Credential=([^%&/]+)(?:%2F|/)", raw_query)
    return found[1] if found else ""


def xml(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("content-type", "application/xml"), *(headers or [])], body)


def user_metadata(req: Request) -> dict[str, str]:
    meta = {n[len("x-amz-meta-") :]: v for n, v in req.headers if n.startswith("x-amz-meta-")}
    if sum(len(n) + len(v) for n, v in meta.items()) > 2048:
        raise S3Error("MetadataTooLarge", 400, "user metadata is limited to 2 KB")
    return meta


def stored_headers(req: Request) -> dict[str, str]:
    out = {}
    for name in STORED_HEADERS:
        value = req.header(name)
        if value is None:
            continue
        if name == "content-encoding":
            value = ", ".join(
                v for v in (p.strip() for p in value.split(",")) if v != "aws-chunked"
            )
            if not value:
                continue
        out[name] = value
    return out


def content_md5(req: Request) -> bytes | None:
    value = req.header("content-md5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest", 400, "the Content-MD5 you specified is not valid") from None
    if len(raw) != 16:
        raise S3Error("InvalidDigest", 400, "the Content-MD5 you specified is not valid")
    return raw


def checksum_request(req: Request) -> tuple[str | None, str | None]:
    """(algorithm, expected value in a header) of the request's additional checksum."""
    for algorithm in checksums.ALGORITHMS:
        value = req.header(checksums.header_name(algorithm))
        if value is not None:
            return algorithm, value
    trailer = req.header("x-amz-trailer")
    if trailer:
        name = trailer.strip().lower()
        for algorithm in checksums.ALGORITHMS:
            if checksums.header_name(algorithm) == name:
                return algorithm, None
        raise InvalidArgument(f"unsupported trailer {trailer}")
    sdk = req.header("x-amz-sdk-checksum-algorithm")
    if sdk:
        return checksums.canonical_algorithm(sdk), None
    return None, None


def parse_range(value: str | None) -> tuple[int | None, int | None] | None:
    if value is None:
        return None
    found = _RANGE.fullmatch(value.strip())
    if not found or (not found[1] and not found[2]):
        return None  # S3 ignores a range it cannot parse
    first = int(found[1]) if found[1] else None
    last = int(found[2]) if found[2] else None
    return first, last


def http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def version_headers(v: Version) -> list[tuple[str, str]]:
    return [] if v.null else [("x-amz-version-id", v.public_id)]


def object_headers(v: Version, q: dict[str, str] | Any) -> list[tuple[str, str]]:
    headers = [
        ("etag", f'"{v.etag}"'),
        ("last-modified", http_date(v.mtime)),
        ("accept-ranges", "bytes"),
        ("content-type", v.content_type or "binary/octet-stream"),
    ]
    headers += [(n, val) for n, val in v.headers.items()]
    headers += [(f"x-amz-meta-{n}", val) for n, val in v.metadata.items()]
    headers += version_headers(v)
    if v.tags:
        headers.append(("x-amz-tagging-count", str(len(v.tags))))
    if v.storage_class and v.storage_class != "STANDARD":
        headers.append(("x-amz-storage-class", v.storage_class))
    overrides = {
        "response-content-type": "content-type",
        "response-content-language": "content-language",
        "response-expires": "expires",
        "response-cache-control": "cache-control",
        "response-content-disposition": "content-disposition",
        "response-content-encoding": "content-encoding",
    }
    for param, name in overrides.items():
        if param in q:
            headers = [(n, val) for n, val in headers if n != name] + [(name, q[param])]
    return headers


def check_read_conditions(req: Request, v: Version) -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since, with RFC 9110's precedence."""
    names = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
    check_read_conditions_from({n: req.header(n) for n in names}, v)


def check_read_conditions_from(headers: dict[str, str | None], v: Version) -> None:
    etag = f'"{v.etag}"'
    if_match, if_none_match = headers.get("if-match"), headers.get("if-none-match")
    unmodified_since = date(headers.get("if-unmodified-since"))
    modified_since = date(headers.get("if-modified-since"))
    if if_match is not None:
        if not etag_in(if_match, etag):
            raise precondition_failed()
    elif unmodified_since is not None and int(v.mtime) > unmodified_since:
        raise precondition_failed()
    if if_none_match is not None:
        if etag_in(if_none_match, etag):
            raise NotModified()
    elif modified_since is not None and int(v.mtime) <= modified_since:
        raise NotModified()


def parse_tagging_header(value: str | None) -> dict[str, str]:
    """The x-amz-tagging header: URL-encoded ``k1=v1&k2=v2``."""
    if not value:
        return {}
    pairs = (item.partition("=") for item in value.split("&"))
    return s3xml.tag_set(
        ((unquote_plus(k), unquote_plus(v)) for k, _, v in pairs), s3xml.OBJECT_TAG_LIMIT
    )


def precondition_failed() -> S3Error:
    return S3Error(
        "PreconditionFailed", 412, "at least one of the preconditions you specified did not hold"
    )


class NotModified(S3Error):
    def __init__(self) -> None:
        super().__init__("NotModified", 304, "not modified")


def etag_in(condition: str, etag: str) -> bool:
    items = [i.strip() for i in condition.split(",")]
    return "*" in items or etag in items or etag.strip('"') in items


def date(value: str | None) -> float | None:
    parsed = email.utils.parsedate_tz(value) if value else None
    return None if parsed is None else float(email.utils.mktime_tz(parsed))


# -- request bodies ------------------------------------------------------------------------------


def body_of(
    call: Call, *, engine_checks_sha256: bool = False
) -> tuple[AsyncIterator[bytes], int | None, BodyState]:
    """The decoded request body, its length if known, and what it learns on the way.

    With ``engine_checks_sha256`` a signed payload's SHA-256 is left to the engine, which
    hashes it in its worker thread with the MD5 (``state.payload_sha256``)."""
    req = call.request
    payload = call.auth.payload if call.auth is not None else sigv4.UNSIGNED
    state = BodyState()
    if payload in sigv4.STREAMING_MODES:
        decoded = req.header("x-amz-decoded-content-length")
        size = int(decoded) if decoded and decoded.isdigit() else None
        signed = call.auth is not None and payload != sigv4.STREAMING_UNSIGNED_TRAILER
        signer = sigv4.ChunkSigner(call.auth) if signed and call.auth else None
        return dechunk(req, signer, state, payload), size, state
    length = req.header("content-length")
    size = int(length) if length and length.isdigit() else None
    if payload == sigv4.UNSIGNED:
        return raw(req), size, state
    if engine_checks_sha256:
        state.payload_sha256 = payload
        return raw(req), size, state
    return sha256_checked(req, payload), size, state


async def read_small(call: Call, limit: int) -> bytes:
    """A whole (small: an XML or JSON document) request body; MaxMessageLengthExceeded past
    ``limit`` bytes."""
    body, _, _ = body_of(call)
    out = bytearray()
    async for piece in body:
        out += piece
        if len(out) > limit:
            raise S3Error("MaxMessageLengthExceeded", 400, "the request body is too large")
    return bytes(out)


# Storage classes whose objects read at once: accepted, stored and returned. There is one tier
# of storage here, so the class is a label; the archive classes, which S3 serves only after a
# RestoreObject, are refused rather than pretended.
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
)
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE")


def storage_class(req: Request) -> str:
    """The x-amz-storage-class of a write ("" for STANDARD)."""
    return storage_class_value(req.header("x-amz-storage-class"))


def storage_class_value(value: str | None) -> str:
    if value is None or value == "STANDARD":
        return ""
    if value in STORAGE_CLASSES:
        return value
    if value in ARCHIVE_CLASSES:
        raise S3Error(
            "InvalidStorageClass", 400, f"the storage class {value} is not supported here"
        )
    raise S3Error("InvalidStorageClass", 400, "the storage class you specified is not valid")


def tagging_document(tags: dict[str, str]) -> bytes:
    items = [
        s3xml.element("Tag", [s3xml.field("Key", k), s3xml.field("Value", v)])
        for k, v in tags.items()
    ]
    return s3xml.document("Tagging", [s3xml.element("TagSet", items)])
