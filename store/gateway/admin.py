"""The admin API: JSON over HTTP under a reserved path of the S3 port, SigV4-authenticated.

    POST /_store/admin/v1/<operation>   {"args": {...}}  -> 200 {"result": ...}
                                                          or 202 {"job": {...}} (long ones)
    GET  /_store/admin/v1/jobs/<id>                       -> 200 {"job": {...}}

The path can never be a bucket's (bucket names have no ``_``). Requests are signed like any S3
request (service ``s3``, the service's region) by a user holding the admin right (root, or a user
added with ``--admin``); the signed payload hash covers the JSON body. Operations are
``store.admin.operations``'s; errors are ``{"error": code, "message": ...}`` with the status the
S3 error table gives the same condition. ``store`` CLI commands are the client.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable

from store.admin import operations
from store.admin.jobs import Jobs
from store.auth import users
from store.errors import PermissionDenied, StoreError
from store.gateway.http import Request, Response
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.s3 import sigv4
from store.s3.errors import S3Error, code_for
from store.s3.router import Route

log = logging.getLogger(__name__)

PREFIX = "/_store/admin/v1/"
MAX_BODY_BYTES = 64 << 10


def is_admin_request(request: Request) -> bool:
    return request.target.startswith(PREFIX)


def _json(status: int, body: object) -> Response:
    return Response(status, [("content-type", "application/json")], json.dumps(body).encode())


class AdminApi:
    def __init__(self, ctx: operations.Context, jobs: Jobs, region: str) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.region = region

    def in_front_of(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A request handler answering admin requests here and passing the others on."""

        async def handle(request: Request) -> Response:
            if is_admin_request(request):
                return await self.handle(request)
            return await handler(request)

        return handle

    async def handle(self, request: Request) -> Response:
        request_id = secrets.token_hex(8).upper()
        try:
            response = await self._handle(request, request_id)
        except (StoreError, S3Error) as e:
            code = code_for(e)
            response = _json(code.status, {"error": code.code, "message": str(e)})
        except Exception:
            log.exception("admin request %s failed", request_id)
            response = _json(500, {"error": "InternalError", "message": "internal error"})
        response.headers.append(("x-amz-request-id", request_id))
        return response

    async def _handle(self, request: Request, request_id: str) -> Response:
        path, _, query = request.target.partition("?")
        signed = sigv4.SignedRequest(request.method, path, query, request.headers)
        access_key = m.access_key_of(request, query)
        found = await users.lookup(self.ctx.engine.kv, access_key) if access_key else None
        auth = sigv4.verify(
            signed, lambda _ak: found.secret_key if found else None, region=self.region
        )
        assert found is not None
        if not found.admin:
            raise PermissionDenied("the admin API needs a user with the admin right")
        name = path[len(PREFIX) :]
        if request.method == "GET" and name.startswith("jobs/"):
            return _json(200, {"job": await self.jobs.status(name[len("jobs/") :])})
        if request.method != "POST":
            raise S3Error("MethodNotAllowed", 405, "admin operations are POST requests")
        call = Call(
            request, Route("Admin", raw_path=path, raw_query=query), request_id, found.user, auth
        )
        raw = await m.read_small(call, MAX_BODY_BYTES)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise S3Error("MalformedJSON", 400, "the body is not JSON") from None
        args = body.get("args", {}) if isinstance(body, dict) else None
        if not isinstance(args, dict):
            raise S3Error("MalformedJSON", 400, 'the body must be {"args": {...}}')
        if name not in operations.OPERATIONS:
            raise S3Error("NotImplemented", 501, f"no admin operation {name!r}")
        log.info("admin %s by %s", name, found.user)
        if name in operations.JOBS:
            return _json(202, {"job": await self.jobs.start(self.ctx, name, args)})
        return _json(200, {"result": await operations.run(self.ctx, name, args)})
