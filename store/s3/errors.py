"""S3 errors: the one table from domain errors to S3 codes, and the error document (sans-IO).

Domain errors (``store.errors``) know nothing of HTTP; this module maps each class once to the
S3 error code and HTTP status AWS uses for that condition (quorum and timeouts are 503
ServiceUnavailable, which clients retry). Protocol-level failures (a bad signature, malformed
XML) are raised by the s3 layer itself as ``S3Error`` with their own code. Anything that is
neither is a bug: the gateway logs it once and answers 500 InternalError.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from store import errors as E


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int


# Most specific classes first is not needed: lookup walks the exception's MRO.
DOMAIN_ERRORS: dict[type[E.StoreError], ErrorCode] = {
    E.StoreError: ErrorCode("InternalError", 500),
    E.InvalidArgument: ErrorCode("InvalidArgument", 400),
    E.InvalidEncryptionAlgorithm: ErrorCode("InvalidEncryptionAlgorithmError", 400),
    E.EncryptionMismatch: ErrorCode("InvalidRequest", 400),
    E.InvalidBucketName: ErrorCode("InvalidBucketName", 400),
    E.KeyTooLong: ErrorCode("KeyTooLongError", 400),
    E.BadDigest: ErrorCode("BadDigest", 400),
    E.PayloadDigestMismatch: ErrorCode("XAmzContentSHA256Mismatch", 400),
    E.InvalidPart: ErrorCode("InvalidPart", 400),
    E.InvalidPartOrder: ErrorCode("InvalidPartOrder", 400),
    E.EntityTooSmall: ErrorCode("EntityTooSmall", 400),
    E.EntityTooLarge: ErrorCode("EntityTooLarge", 400),
    E.IncompleteBody: ErrorCode("IncompleteBody", 400),
    E.NotFound: ErrorCode("NoSuchKey", 404),
    E.NoSuchBucket: ErrorCode("NoSuchBucket", 404),
    E.NoSuchKey: ErrorCode("NoSuchKey", 404),
    E.NoSuchVersion: ErrorCode("NoSuchVersion", 404),
    E.NoSuchUpload: ErrorCode("NoSuchUpload", 404),
    E.AlreadyExists: ErrorCode("BucketAlreadyExists", 409),
    E.BucketAlreadyExists: ErrorCode("BucketAlreadyExists", 409),
    E.NotEmpty: ErrorCode("BucketNotEmpty", 409),
    E.BucketNotEmpty: ErrorCode("BucketNotEmpty", 409),
    E.Conflict: ErrorCode("OperationAborted", 409),
    E.PreconditionFailed: ErrorCode("PreconditionFailed", 412),
    E.OutOfRange: ErrorCode("InvalidRange", 416),
    E.MethodNotAllowed: ErrorCode("MethodNotAllowed", 405),
    E.ReadOnly: ErrorCode("AccessDenied", 403),
    E.PermissionDenied: ErrorCode("AccessDenied", 403),
    E.Locked: ErrorCode("AccessDenied", 403),
    # No S3 code says "the disks are full"; 507 as MinIO answers (XMinioStorageFull).
    E.NoSpace: ErrorCode("InsufficientStorage", 507),
    E.Unavailable: ErrorCode("ServiceUnavailable", 503),
    E.TooFewShards: ErrorCode("ServiceUnavailable", 503),
    E.Corrupt: ErrorCode("InternalError", 500),
}

INTERNAL = ErrorCode("InternalError", 500)


class S3Error(Exception):
    """A failure the S3 protocol layer itself detects, with its S3 code and status."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code, status)
        self.message = message
        # headers the error answer carries (a 416's Content-Range, a 304's ETag)
        self.response_headers: list[tuple[str, str]] = []


def code_for(error: BaseException) -> ErrorCode:
    """The S3 code and status for any exception (InternalError for bugs).

    >>> code_for(E.NoSuchBucket("x")), code_for(ValueError())
    (ErrorCode(code='NoSuchBucket', status=404), ErrorCode(code='InternalError', status=500))
    """
    if isinstance(error, S3Error):
        return error.code
    for cls in type(error).__mro__:
        found = DOMAIN_ERRORS.get(cls)
        if found is not None:
            return found
    return INTERNAL


def error_document(
    code: ErrorCode,
    message: str,
    *,
    request_id: str,
    resource: str = "",
    extra: dict[str, str] | None = None,
) -> bytes:
    """The XML body of an S3 error response.

    >>> error_document(ErrorCode("NoSuchKey", 404), "gone", request_id="r1", resource="/b/k")
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>NoSuchKey</Code><Message>gone</Message><Resource>/b/k</Resource><RequestId>r1</RequestId></Error>'
    """  # noqa: E501
    parts = [f"<Code>{code.code}</Code>", f"<Message>{escape(message)}</Message>"]
    for name, value in (extra or {}).items():
        parts.append(f"<{name}>{escape(value)}</{name}>")
    if resource:
        parts.append(f"<Resource>{escape(resource)}</Resource>")
    parts.append(f"<RequestId>{escape(request_id)}</RequestId>")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    return body.encode()
