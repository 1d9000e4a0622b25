"""Every domain error has an S3 code; the error document is well-formed and escaped."""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET

from store import errors as E
from store.s3.errors import DOMAIN_ERRORS, ErrorCode, S3Error, code_for, error_document


def test_every_domain_error_is_mapped_explicitly() -> None:
    classes = [
        cls for _, cls in inspect.getmembers(E, inspect.isclass) if issubclass(cls, E.StoreError)
    ]
    assert classes
    missing = [cls.__name__ for cls in classes if cls not in DOMAIN_ERRORS]
    assert missing == []


def test_lookup_follows_the_class_hierarchy() -> None:
    assert code_for(E.TooFewShards("x")) == ErrorCode("ServiceUnavailable", 503)
    assert code_for(E.NoSuchKey("x", delete_marker=True)).status == 404
    assert code_for(S3Error("SignatureDoesNotMatch", 403, "no")).code == "SignatureDoesNotMatch"
    assert code_for(KeyError("bug")) == ErrorCode("InternalError", 500)


def test_error_document_escapes_user_text() -> None:
    body = error_document(
        ErrorCode("NoSuchKey", 404),
        "no object '<a&b>'",
        request_id="rid",
        resource="/bkt/<a&b>",
        extra={"Key": "<a&b>"},
    )
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Key") == "<a&b>"
    assert root.findtext("Resource") == "/bkt/<a&b>"
    assert root.findtext("RequestId") == "rid"
