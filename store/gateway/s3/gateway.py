"""The S3 gateway: HTTP requests -> route -> SigV4 -> handlers -> HTTP responses.

Every request gets a request id (``x-amz-request-id``) and one access-log line. Errors are
mapped once (``store.s3.errors.code_for``) to S3's error document; anything that is not a store or
protocol error is logged with its traceback and answered 500 InternalError. The handlers live in
groups by area (buckets, objects, multipart, listings, ACLs, object lock, lifecycle, encryption);
each names the operations of the endpoint table (``store.s3.endpoints``) it serves, and every
other endpoint is answered NotImplemented.

Request bodies stream into the engine: the aws-chunked framing is decoded (and every chunk
signature verified) on the way, a signed payload's SHA-256 is checked before the engine commits,
and a checksum sent as a trailer is handed to the engine to verify before the commit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from store.auth import users
from store.auth.master_keys import MasterKeys
from store.config import S3Config
from store.errors import StoreError
from store.gateway import metrics
from store.gateway.http import BadRequest, BodyIncomplete, BodyTimeout, Request, Response
from store.gateway.s3 import acl, buckets, lifecycle, listings, lock, multipart, objects, sse
from store.gateway.s3 import messages as m
from store.gateway.s3.access import Authorizer
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup, Services
from store.objects.engine import ObjectEngine
from store.s3 import sigv4, xml
from store.s3.errors import ErrorCode, S3Error, code_for, error_document
from store.s3.router import route

log = logging.getLogger(__name__)
access_log = logging.getLogger("store.access")

GROUPS: tuple[type[HandlerGroup], ...] = (
    buckets.BucketHandlers,
    objects.ObjectHandlers,
    multipart.MultipartHandlers,
    listings.ListingHandlers,
    acl.AclHandlers,
    lock.LockHandlers,
    lifecycle.LifecycleHandlers,
    sse.EncryptionHandlers,
)
# The operations of the endpoint table this gateway implements.
IMPLEMENTED: frozenset[str] = frozenset(op for group in GROUPS for op in group.OPERATIONS)


class S3Gateway:
    def __init__(
        self,
        engine: ObjectEngine,
        config: S3Config | None = None,
        master_keys: MasterKeys | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or S3Config()
        self.keys = master_keys or MasterKeys()
        self.metrics = metrics.GatewayMetrics(engine)
        self.authz = Authorizer(engine)
        services = Services(engine, self.authz, self.config, self.keys)
        self._ops: dict[str, Callable[[Call], Awaitable[Response]]] = {}
        for group in GROUPS:
            self._ops.update(group(services).handlers())

    # -- the request pipeline -------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if _is_scrape(request):
            return Response(200, [("content-type", metrics.CONTENT_TYPE)], self.metrics.render())
        self.metrics.inflight.inc()
        try:
            return await self._handle(request)
        finally:
            self.metrics.inflight.dec()

    async def _handle(self, request: Request) -> Response:
        request_id = secrets.token_hex(8).upper()
        started = time.monotonic()
        call: Call | None = None
        try:
            headers = request.header_map
            r = route(
                request.method,
                request.target,
                headers.get("host", ""),
                headers,
                self.config.domains,
            )
            call = Call(request, r, request_id)
            await self._authenticate(call)
            handler = self._ops.get(r.operation)
            if handler is None:
                raise S3Error("NotImplemented", 501, f"{r.operation} is not implemented")
            response = await handler(call)
        except (StoreError, S3Error, Exception) as e:
            response = self._error(e, request, call, request_id)
        if call is not None and request.header("origin"):
            response.headers += await buckets.cors_headers(self.engine, call)
        response.headers.append(("x-amz-request-id", request_id))
        response.headers.append(("server", "store"))
        elapsed = time.monotonic() - started
        access_log.info(
            "%s %s %s %s %d %.1fms %s",
            request.peer,
            call.user if call else "-",
            request.method,
            request.target[:200],
            response.status,
            1000 * elapsed,
            request_id,
        )
        sent = (
            response.length
            if response.length is not None
            else (len(response.body) if isinstance(response.body, bytes) else 0)
        )
        operation = call.route.operation if call else "Unknown"
        self.metrics.observe(operation, response.status, elapsed, request.body_bytes, sent)
        return response

    def _error(
        self, error: BaseException, request: Request, call: Call | None, request_id: str
    ) -> Response:
        code = code_for(error)
        if isinstance(error, BadRequest):  # the HTTP layer's refusal, surfacing in a handler
            code = ErrorCode("BadRequest", error.status)
        if code.status == 500 and not isinstance(error, S3Error | StoreError):
            log.exception("request %s failed", request_id, exc_info=error)
            message = "we encountered an internal error; please try again"
        else:
            message = str(error)
        extra: dict[str, str] = {}
        headers: list[tuple[str, str]] = [("content-type", "application/xml")]
        if call is not None:
            if call.route.bucket:
                extra["BucketName"] = call.route.bucket
            if call.route.key:
                extra["Key"] = xml.xml_safe(call.route.key)
        headers += getattr(error, "response_headers", [])
        if getattr(error, "delete_marker", False):
            headers.append(("x-amz-delete-marker", "true"))
            if getattr(error, "version_id", ""):
                headers.append(("x-amz-version-id", error.version_id))  # type: ignore[attr-defined]
        path = request.target.partition("?")[0]
        body = error_document(
            code, xml.xml_safe(message), request_id=request_id, resource=path, extra=extra
        )
        if request.method == "HEAD" or code.status == 304:
            return Response(
                code.status,
                headers[1:] if code.status == 304 else headers,
                b"",
                length=None if code.status != 304 else 0,
            )
        return Response(code.status, headers, body)

    async def _authenticate(self, call: Call) -> None:
        req = call.request
        signed = sigv4.SignedRequest(
            req.method, call.route.raw_path, call.route.raw_query, req.headers
        )
        if call.route.operation == "PreflightRequest" or (
            sigv4.is_anonymous(signed) and call.route.bucket
        ):
            return  # anonymous: only what a bucket policy grants to "*" (checked per bucket)
        access_key = m.access_key_of(req, call.route.raw_query)
        found = await users.lookup(self.engine.kv, access_key) if access_key else None
        call.auth = sigv4.verify(
            signed, lambda ak: found.secret_key if found else None, region=self.config.region
        )
        assert found is not None
        call.user = found.user
        call.admin = found.user == users.ROOT_USER


def _is_scrape(request: Request) -> bool:
    """Prometheus scrapes GET /metrics without credentials; a signed request for /metrics is
    S3 (a bucket may be called "metrics")."""
    return (
        request.method == "GET"
        and request.target == "/metrics"
        and request.header("authorization") is None
    )


def bad_request_response(request: Request | None, error: BadRequest) -> Response:
    """Answers to requests the HTTP layer refuses before routing (malformed, too large)."""
    if isinstance(error, BodyTimeout):
        code = "RequestTimeout"
    elif isinstance(error, BodyIncomplete):
        code = "IncompleteBody"
    else:
        code = {
            431: "RequestHeaderSectionTooLarge",
            414: "RequestURITooLong",
            505: "HttpVersionNotSupported",
            503: "SlowDown",
        }.get(error.status, "BadRequest")
    body = error_document(
        ErrorCode(code, error.status), str(error), request_id=secrets.token_hex(8).upper()
    )
    return Response(error.status, [("content-type", "application/xml")], body)
