"""Fuzz the S3 router and endpoint table (``store.s3.router.route``, ``endpoints.find``).

Input: an HTTP/1.1 request head (``METHOD target HTTP/1.1``, headers, blank line), as a client
sends it. Properties: ``route`` returns a ``Route`` naming an operation of the endpoint table
for that method and the addressed target (service, bucket or object), or raises the protocol's
own error, never one that maps to 500; a request never names two sub-resources; routing is
deterministic.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error, parse_head

    from store.s3 import endpoints
    from store.s3.router import route

BASE_DOMAINS = ("s3.local", "s3.amazonaws.com")
_OPERATIONS = {(e.target, e.method): set() for e in endpoints.ENDPOINTS}
for _e in endpoints.ENDPOINTS:
    _OPERATIONS[(_e.target, _e.method)].add(_e.operation)


def TestOneInput(data: bytes) -> None:
    method, target, header_list, _ = parse_head(data)
    headers = dict(header_list)
    host = headers.get("host", "")
    try:
        r = route(method, target, host, headers, BASE_DOMAINS)
    except Exception as e:  # the property: what escapes
        check_s3_error(e)
        return
    kind = endpoints.OBJECT if r.key else endpoints.BUCKET if r.bucket else endpoints.SERVICE
    assert r.operation in _OPERATIONS.get((kind, method), ()), (kind, method, r)
    subs = [name for name in r.query if name in endpoints.SUBRESOURCES]
    assert len(subs) <= 1, subs
    assert r.raw_path == target.partition("?")[0]
    assert route(method, target, host, headers, BASE_DOMAINS) == r


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
