"""Fuzz the XML request bodies (``store.s3.xml`` and the documents parsed on top of it: ACLs,
lifecycle, object lock, CORS).

Input: one selector byte naming the document (``KINDS``), then the body as boto3 serialises it.
Properties: each parser returns its value or raises the protocol's own error (MalformedXML,
MalformedACLError, InvalidTag, ...), never one that maps to 500; where the module renders the
document too, what parses renders to a document that parses to the same value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error

    from store.s3 import acl, cors, lifecycle, objectlock, xml

USERS = frozenset({"alice", "bob", "owner"})


def _acl(body: bytes) -> None:
    owner, grants = acl.parse_policy(body, USERS.__contains__)
    again = acl.parse_policy(acl.render_policy(owner or "owner", grants), USERS.__contains__)
    assert set(again[1]) == set(grants), (grants, again)


def _lifecycle(body: bytes) -> None:
    rules = lifecycle.parse(body)
    assert lifecycle.parse(lifecycle.render(rules)) == rules
    assert lifecycle.from_setting(lifecycle.to_setting(rules)) == rules


def _lock(body: bytes) -> None:
    config = objectlock.parse_configuration(body)
    assert objectlock.from_setting(objectlock.to_setting(config)) == config


def _retention(body: bytes) -> None:
    retention = objectlock.parse_retention(body)
    if retention is not None:
        again = objectlock.parse_retention(objectlock.render_retention(retention))
        assert again is not None and again.mode == retention.mode
        assert abs(again.until - retention.until) <= 0.001, (retention, again)


def _legal_hold(body: bytes) -> None:
    on = objectlock.parse_legal_hold(body)
    assert objectlock.parse_legal_hold(objectlock.render_legal_hold(on)) == on


def _cors(body: bytes) -> None:
    rules = cors.parse(body)
    assert cors.parse(cors.render(rules)) == rules


# One letter per document; any other first byte picks one by its value.
KINDS: dict[str, Callable[[bytes], object]] = {
    "M": xml.parse_complete_multipart,
    "D": xml.parse_delete,
    "V": xml.parse_versioning,
    "T": xml.parse_tagging,
    "U": lambda body: xml.parse_tagging(body, xml.BUCKET_TAG_LIMIT),
    "B": xml.parse_create_bucket,
    "A": _acl,
    "L": _lifecycle,
    "O": _lock,
    "R": _retention,
    "H": _legal_hold,
    "C": _cors,
}
_BY_INDEX = list(KINDS.values())


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    parser = KINDS.get(chr(data[0])) or _BY_INDEX[data[0] % len(_BY_INDEX)]
    try:
        parser(data[1:])
    except Exception as e:  # the property: what escapes
        check_s3_error(e)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
