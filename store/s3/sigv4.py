"""AWS Signature Version 4 for S3, verified server-side (sans-IO).

A request is authenticated one of two ways:

- ``Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/s3/aws4_request,
  SignedHeaders=a;b;c, Signature=HEX`` with ``x-amz-date`` (or ``Date``) and
  ``x-amz-content-sha256`` (a hex SHA-256 of the body, ``UNSIGNED-PAYLOAD``, or one of the
  ``STREAMING-*`` modes whose chunks carry their own signatures, see ``ChunkSigner``);
- presigned query parameters ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` (payload unsigned).

The signature covers the canonical request: method, the path exactly as sent (S3 does not
normalise or double-encode it), the query sorted with every name and value URI-encoded, the signed
headers (trimmed, inner spaces collapsed), the signed header list and the payload hash. The
string to sign adds the timestamp and the credential scope; the key is an HMAC chain over date,
region, service and "aws4_request". Comparisons are constant-time. SigV2 and SigV4a are refused
with S3's own error.
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from urllib.parse import quote, unquote

from store.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_S = 15 * 60
MAX_PRESIGN_S = 7 * 24 * 3600

_CREDENTIAL = re.compile(r"([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the signature covers: the request as received (header names lowercased)."""

    method: str
    path: str  # percent-encoded, as on the request line, without the query
    query: str  # raw query string, without "?"
    headers: Sequence[tuple[str, str]]

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return ",".join(values) if values else None


@dataclass(frozen=True, slots=True)
class Auth:
    """A verified caller, and what is needed to check the rest of the body."""

    access_key: str
    payload: str  # hex SHA-256 the body must match, UNSIGNED-PAYLOAD, or a streaming mode
    amz_date: str
    scope: str
    signing_key: bytes
    seed_signature: str
    presigned: bool = False


SecretLookup = Callable[[str], str | None]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 key for a day (cached: it changes once a day per access key)."""
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(query: str, *, drop_signature: bool = False) -> str:
    """Query parameters sorted by name then value, each URI-encoded once.

    >>> canonical_query("prefix=a b&list-type=2&x")
    'list-type=2&prefix=a%20b&x='
    """
    pairs = []
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        if drop_signature and name == "X-Amz-Signature":
            continue
        pairs.append((_canonical_component(name), _canonical_component(value)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


_CANONICAL = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*")


def _canonical_component(text: str) -> str:
    """Decode then encode once; a component that is canonical already is kept as it is
    (the common case: clients send canonical queries), which skips both steps."""
    if _CANONICAL.fullmatch(text):
        decoded = unquote(text) if "%" in text else text
        if "%" not in text or _uri_encode(decoded) == text:
            return text
    return _uri_encode(unquote(text))


def canonical_request(
    req: SignedRequest, signed_headers: Sequence[str], payload: str, *, presigned: bool = False
) -> str:
    lines = [req.method, req.path or "/", canonical_query(req.query, drop_signature=presigned)]
    for name in signed_headers:
        value = req.header(name)
        if value is None:
            raise S3Error(
                "AccessDenied",
                403,
                f"there were headers present in the request which were "
                f"not signed, or a signed header is missing: {name}",
            )
        lines.append(f"{name}:{' '.join(value.split())}")
    lines += ["", ";".join(signed_headers), payload]
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def parse_amz_date(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 basic timestamp (20130524T000000Z) or an HTTP date."""
    if len(value) == 16 and value[8] == "T" and value[15] == "Z" and value[:8].isdigit():
        try:
            return float(
                calendar.timegm(
                    (
                        int(value[0:4]),
                        int(value[4:6]),
                        int(value[6:8]),
                        int(value[9:11]),
                        int(value[11:13]),
                        int(value[13:15]),
                        0,
                        0,
                        0,
                    )
                )
            )
        except ValueError:
            pass
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        parsed = parsedate_tz(value)
        if parsed is None:
            raise S3Error("AccessDenied", 403, f"invalid date {value!r}") from None
        return float(mktime_tz(parsed))


def _refuse_other_schemes(authorization: str | None, query: str) -> None:
    if authorization is not None and not authorization.startswith(ALGORITHM + " "):
        if authorization.startswith("AWS4-ECDSA-P256-SHA256"):
            raise S3Error("InvalidRequest", 400, "SigV4a is not supported; use AWS4-HMAC-SHA256")
        raise S3Error(
            "InvalidRequest",
            400,
            "the authorization mechanism you have provided is not supported; "
            "please use AWS4-HMAC-SHA256",
        )
    if "Signature=" in query and "X-Amz-Signature=" not in query and "AWSAccessKeyId=" in query:
        raise S3Error("InvalidRequest", 400, "SigV2 presigned URLs are not supported")


def _credential(
    value: str, lookup: SecretLookup, expected_region: str | None, code: str
) -> tuple[str, str, str, str, str]:
    found = _CREDENTIAL.fullmatch(value.strip())
    if not found:
        raise S3Error(code, 400, f"malformed credential {value!r}")
    access_key, date, region, service = found.groups()
    if service != "s3":
        raise S3Error(code, 400, f"service {service!r} is not s3")
    if expected_region is not None and region != expected_region:
        raise S3Error(
            code,
            400,
            f"the authorization header is malformed; the region {region!r} is wrong; "
            f"expecting {expected_region!r}",
        )
    secret = lookup(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", 403, "the access key id you provided does not exist")
    return access_key, date, region, service, secret


def _check(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise S3Error(
            "SignatureDoesNotMatch",
            403,
            "the request signature we calculated does not match the signature you provided",
        )


def is_anonymous(req: SignedRequest) -> bool:
    """No credentials at all (neither header nor presigned query parameters)."""
    return req.header("authorization") is None and not any(
        marker in req.query
        for marker in ("X-Amz-Signature=", "X-Amz-Credential=", "Signature=", "AWSAccessKeyId=")
    )


def verify(
    req: SignedRequest,
    lookup: SecretLookup,
    *,
    now: float | None = None,
    region: str | None = None,
) -> Auth:
    """Authenticate a request (header or presigned); raises S3Error with S3's code. With
    ``region``, a credential scope naming another region is AuthorizationHeaderMalformed (or
    AuthorizationQueryParametersError when presigned), as S3 answers."""
    now = time.time() if now is None else now
    authorization = req.header("authorization")
    _refuse_other_schemes(authorization, req.query)
    if authorization is not None:
        return _verify_header(req, authorization, lookup, now, region)
    if "X-Amz-Signature=" in req.query or "X-Amz-Credential=" in req.query:
        return _verify_presigned(req, lookup, now, region)
    raise S3Error("AccessDenied", 403, "anonymous access is not allowed")


def _verify_header(
    req: SignedRequest, authorization: str, lookup: SecretLookup, now: float, region: str | None
) -> Auth:
    fields: dict[str, str] = {}
    for part in authorization[len(ALGORITHM) + 1 :].split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise S3Error("AuthorizationHeaderMalformed", 400, "malformed Authorization header")
        fields[name] = value
    try:
        credential, signed, signature = (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
        )
    except KeyError as e:
        raise S3Error("AuthorizationHeaderMalformed", 400, f"missing {e.args[0]}") from None
    access_key, date, region, service, secret = _credential(
        credential, lookup, region, "AuthorizationHeaderMalformed"
    )
    amz_date = req.header("x-amz-date") or req.header("date")
    if amz_date is None:
        raise S3Error("AccessDenied", 403, "AWS authentication requires a valid Date or x-amz-date")
    when = parse_amz_date(amz_date)
    if abs(now - when) > MAX_SKEW_S:
        raise S3Error(
            "RequestTimeTooSkewed",
            403,
            "the difference between the request time and the server's time is too large",
        )
    if time.strftime("%Y%m%d", time.gmtime(when)) != date:
        raise S3Error("AuthorizationHeaderMalformed", 400, "credential date does not match")
    payload = req.header("x-amz-content-sha256")
    if payload is None:
        raise S3Error("InvalidRequest", 400, "missing required header x-amz-content-sha256")
    if payload not in (UNSIGNED, *STREAMING_MODES) and not _HEX64.fullmatch(payload):
        raise S3Error("InvalidArgument", 400, "x-amz-content-sha256 must be a hex SHA-256")
    names = signed.split(";")
    if "host" not in names or names != sorted(names):
        raise S3Error("AuthorizationHeaderMalformed", 400, "SignedHeaders must include host")
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(secret, date, region, service)
    iso_date = req.header("x-amz-date") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    text = string_to_sign(iso_date, scope, canonical_request(req, names, payload))
    _check(sign(key, text), signature)
    return Auth(access_key, payload, iso_date, scope, key, signature)


def _verify_presigned(
    req: SignedRequest, lookup: SecretLookup, now: float, region: str | None
) -> Auth:
    params: dict[str, str] = {}
    for item in req.query.split("&"):
        name, _, value = item.partition("=")
        params[unquote(name)] = unquote(value)
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error(
            "AuthorizationQueryParametersError", 400, "X-Amz-Algorithm must be " + ALGORITHM
        )
    try:
        credential = params["X-Amz-Credential"]
        amz_date = params["X-Amz-Date"]
        expires = int(params["X-Amz-Expires"])
        names = params["X-Amz-SignedHeaders"].split(";")
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError) as e:
        raise S3Error(
            "AuthorizationQueryParametersError", 400, f"bad or missing presign parameter {e}"
        ) from None
    if not 0 < expires <= MAX_PRESIGN_S:
        # S3 answers 403 here (an URL that is expired, or never valid), not 400
        raise S3Error("AccessDenied", 403, "X-Amz-Expires must be between 1 and 604800 seconds")
    access_key, date, region, service, secret = _credential(
        credential, lookup, region, "AuthorizationQueryParametersError"
    )
    when = parse_amz_date(amz_date)
    if now > when + expires:
        raise S3Error("AccessDenied", 403, "request has expired")
    if when - now > MAX_SKEW_S:
        raise S3Error("AccessDenied", 403, "request is not valid yet")
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(secret, date, region, service)
    payload = req.header("x-amz-content-sha256") or UNSIGNED
    text = string_to_sign(amz_date, scope, canonical_request(req, names, payload, presigned=True))
    _check(sign(key, text), signature)
    return Auth(access_key, payload, amz_date, scope, key, signature, presigned=True)


def verify_post_policy(
    fields: Mapping[str, str], lookup: SecretLookup, region: str | None = None
) -> str:
    """The access key whose signature covers a browser upload's policy (POST Object)."""
    if fields.get("x-amz-algorithm") != ALGORITHM:
        raise S3Error("InvalidArgument", 400, f"x-amz-algorithm must be {ALGORITHM}")
    access_key, date, region, service, secret = _credential(
        fields.get("x-amz-credential", ""), lookup, region, "InvalidArgument"
    )
    key = signing_key(secret, date, region, service)
    _check(sign(key, fields.get("policy", "")), fields.get("x-amz-signature", ""))
    return access_key


def verify_post_policy_v2(fields: Mapping[str, str], lookup: SecretLookup) -> str:
    """The access key of a browser upload signed the legacy way (``AWSAccessKeyId`` and
    ``signature``: base64 HMAC-SHA1 of the base64 policy), which S3 still accepts for POST
    forms and which old uploaders send. Only the form's policy is signed so, never a request."""
    access_key = fields.get("awsaccesskeyid", "")
    secret = lookup(access_key) if access_key else None
    if secret is None:
        raise S3Error("InvalidAccessKeyId", 403, "the access key id you provided does not exist")
    digest = hmac.new(secret.encode(), fields.get("policy", "").encode(), hashlib.sha1).digest()
    _check(base64.b64encode(digest).decode(), fields.get("signature", ""))
    return access_key


class ChunkSigner:
    """Verifies the signature chain of aws-chunked bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD):
    each chunk's signature covers the previous signature and the chunk's SHA-256; the trailer's
    covers the trailer lines."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self.previous = auth.seed_signature

    def verify_chunk(self, data: bytes | bytearray | memoryview, signature: str) -> None:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._auth.amz_date,
                self._auth.scope,
                self.previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        _check(sign(self._auth.signing_key, text), signature)
        self.previous = signature

    def verify_trailer(self, trailer: bytes, signature: str) -> None:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self._auth.amz_date,
                self._auth.scope,
                self.previous,
                hashlib.sha256(trailer).hexdigest(),
            ]
        )
        _check(sign(self._auth.signing_key, text), signature)


def authorization(
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    payload_sha256: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: float | None = None,
) -> list[tuple[str, str]]:
    """The headers that sign a request (x-amz-date, x-amz-content-sha256, Authorization): the
    client side of ``verify``, for the ``store`` CLI's admin requests. ``headers`` must hold
    ``host``; every header given is signed.

    >>> signed = authorization("GET", "/", "", [("host", "h")], EMPTY_SHA256,
    ...                        access_key="AK", secret_key="secret12", region="us-east-1")
    >>> [name for name, _ in signed]
    ['x-amz-date', 'x-amz-content-sha256', 'authorization']
    """
    stamp = time.gmtime(time.time() if now is None else now)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", stamp)
    date = amz_date[:8]
    extra = [("x-amz-date", amz_date), ("x-amz-content-sha256", payload_sha256)]
    all_headers = [(n.lower(), v.strip()) for n, v in headers] + extra
    names = sorted({n for n, _ in all_headers})
    request = SignedRequest(method, path, query, all_headers)
    scope = f"{date}/{region}/s3/aws4_request"
    key = signing_key(secret_key, date, region, "s3")
    signature = sign(
        key, string_to_sign(amz_date, scope, canonical_request(request, names, payload_sha256))
    )
    value = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    return [*extra, ("authorization", value)]
