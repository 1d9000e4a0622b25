"""Routing over a real socket: every endpoint of the table gets its operation or a refusal, and a
request naming a sub-resource the gateway does not implement changes nothing and reads nothing.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.gateway.s3 import IMPLEMENTED as OPERATIONS
from store.s3.endpoints import ENDPOINTS, SERVICE
from tests.integration.conftest import Server
from tests.integration.test_bad_input import signed
from tests.unit.s3.test_endpoints import UNIMPLEMENTED_SUBRESOURCES, _request

DATA = b"the object's own bytes, which no sub-resource request may replace"


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, str]:
    from tests.integration.conftest import make_client

    s3 = make_client(server.endpoint)
    full, empty = f"route{time.monotonic_ns() % 10**9}", f"routeempty{time.monotonic_ns() % 10**9}"
    scratch = f"routescratch{time.monotonic_ns() % 10**9}"
    for name in (full, empty, scratch):
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=full, Key="some/key", Body=DATA)
    return {"full": full, "empty": empty, "scratch": scratch}


def _snapshot(server: Server, world: dict[str, str]) -> tuple[object, ...]:
    full, empty = world["full"], world["empty"]
    status, data = signed(server, "GET", f"/{full}/some/key")
    return (
        (status, data),
        signed(server, "GET", f"/{full}?list-type=2")[0],
        signed(server, "GET", f"/{full}?versions")[1].count(b"<Version>"),
        signed(server, "HEAD", f"/{empty}")[0],
        signed(server, "GET", f"/{empty}?list-type=2")[1].count(b"<Contents>"),
        signed(server, "GET", "/")[1].split(b"<Name>")[1:],
    )


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: f"{e.method}-{e.operation}")
def test_the_server_walks_the_table(server: Server, world: dict[str, str], e: Any) -> None:
    """Unimplemented endpoints answer 501 NotImplemented with S3's error document and change
    nothing; implemented ones are never answered as not implemented."""
    if e.target == SERVICE or e.operation in ("PreflightRequest", "PostObject"):
        return  # answered before or without the table's operation (CORS, forms): tested apart
    target, headers = _request(e)
    if e.operation in OPERATIONS:  # on a bucket of its own: these do change things
        status, body = signed(server, e.method, target.replace("/bkt", "/" + world["scratch"], 1),
                              b"<x/>", headers)  # fmt: skip
        assert b"NotImplemented" not in body, (e.operation, status, body)
        return
    before = _snapshot(server, world)
    target = target.replace("/bkt", "/" + world["full"], 1)
    status, body = signed(server, e.method, target, b"<x/>", headers)
    assert status == 501 and b"<Code>NotImplemented</Code>" in body, (e.operation, body)
    assert e.operation.encode() in body
    assert _snapshot(server, world) == before


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
    where=st.sampled_from(["full-bucket", "empty-bucket", "object", "missing-object"]),
    sub=st.sampled_from(sorted(UNIMPLEMENTED_SUBRESOURCES)),
    extra=st.dictionaries(
        st.sampled_from(["versionId", "prefix", "uploadId", "partNumber", "acl", "x-id", "zz"]),
        st.text(alphabet="abc123", max_size=4),
        max_size=2,
    ),
    body=st.sampled_from([b"", b"<AccessControlPolicy/>", DATA[::-1], b"\x00" * 100]),
    copy=st.booleans(),
)
def test_an_unimplemented_subresource_touches_no_data(
    server: Server,
    world: dict[str, str],
    method: str,
    where: str,
    sub: str,
    extra: dict[str, str],
    body: bytes,
    copy: bool,
) -> None:
    path = {
        "full-bucket": f"/{world['full']}",
        "empty-bucket": f"/{world['empty']}",
        "object": f"/{world['full']}/some/key",
        "missing-object": f"/{world['full']}/new/key",
    }[where]
    query = "&".join([quote(sub), *(f"{quote(k)}={quote(v)}" for k, v in extra.items())])
    headers = {"x-amz-copy-source": f"/{world['full']}/some/key"} if copy else {}
    before = _snapshot(server, world)
    status, answer = signed(server, method, f"{path}?{query}", body, headers)
    assert status in (400, 405, 501), (method, path, query, status, answer)
    assert DATA not in answer
    assert _snapshot(server, world) == before
