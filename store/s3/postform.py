"""Browser uploads (POST Object): the multipart form, its policy and signature (sans-IO).

The form's fields come first and the file last (S3 requires it), so ``FormReader`` collects the
fields, stops at the start of the file part so the caller can check the policy, and then hands
out the file's bytes as they arrive: the upload streams (python-multipart does the parsing).

The policy is a base64 JSON document: ``expiration`` and ``conditions``. It is signed like a
string to sign, with the SigV4 key of the credential in ``x-amz-credential``. Every form field
except ``x-amz-signature``, ``file``, ``policy`` and ``x-ignore-*`` must be allowed by a condition;
conditions are exact matches (``{"field": "value"}`` or ``["eq", "$field", "value"]``), prefixes
(``["starts-with", "$field", "prefix"]``) and ``["content-length-range", min, max]``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import time
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from store.s3.errors import S3Error

MAX_FIELD_BYTES = 64 << 10
MAX_BOUNDARY_BYTES = 256  # python-multipart's own limit, which its constructor raises on
# Fields no policy condition needs to cover (the signature's own, and the file).
EXEMPT = {"x-amz-signature", "file", "policy", "awsaccesskeyid", "signature"}


def _bad(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise S3Error("PreconditionFailed", 412, "POST needs multipart/form-data with a boundary")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise S3Error("MalformedPOSTRequest", 400, "the multipart boundary is over 256 bytes")
    return bytes(boundary)


@dataclass
class FormReader:
    """Feed request bytes; ``fields`` fill in, then ``file_started`` and file bytes in
    ``take_file_data()``, then ``done``."""

    boundary: bytes
    fields: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    file_content_type: str = ""
    file_started: bool = False
    done: bool = False
    _data: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._headers: dict[str, bytes] = {}
        self._name = b""
        self._value = bytearray()
        self._header_name = b""
        self._in_file = False
        self._field_bytes = 0
        self._parser = MultipartParser(
            self.boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except S3Error:
            raise
        except Exception as e:  # the parser's own errors: a broken form
            raise S3Error("MalformedPOSTRequest", 400, f"the form is malformed: {e}") from None

    def take_file_data(self) -> list[bytes]:
        data, self._data = self._data, []
        return data

    # -- parser callbacks ---------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._value = bytearray()
        self._header_name = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._header_name.lower()
        self._headers[name.decode("latin-1")] = (
            self._headers.get(name.decode("latin-1"), b"") + data[start:end]
        )

    def _header_end(self) -> None:
        self._header_name = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = options.get(b"name", b"")
        if self._name.lower() == b"file":
            if self.file_started:
                raise _bad("more than one file in the form")
            self.file_started = self._in_file = True
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.file_content_type = self._headers.get("content-type", b"").decode("latin-1")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._data.append(bytes(data[start:end]))
            return
        self._field_bytes += end - start
        if self._field_bytes > MAX_FIELD_BYTES:
            raise _bad("the form fields are too large")
        self._value += data[start:end]

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        if self.file_started:
            return  # S3 ignores fields after the file
        name = self._name.decode("utf-8", "replace").lower()
        self.fields[name] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.done = True


@dataclass(frozen=True, slots=True)
class Policy:
    expiration: float
    conditions: list[Any]
    length_range: tuple[int, int] | None


def decode_policy(b64: str) -> Policy:
    try:
        doc = json.loads(base64.b64decode(b64, validate=True))
        expiration = doc["expiration"]
        conditions = doc["conditions"]
        when = calendar.timegm(
            time.strptime(expiration.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        )
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise _bad("the policy is not valid base64 JSON with expiration and conditions") from None
    if not isinstance(conditions, list):
        raise _bad("the policy's conditions must be a list")
    length_range = None
    for c in conditions:
        if isinstance(c, dict) and not c:
            raise _bad("the policy has an empty condition")
        if isinstance(c, list) and c and str(c[0]).lower() == "content-length-range":
            if len(c) != 3 or not all(isinstance(v, int) and v >= 0 for v in c[1:]):
                raise _bad("content-length-range needs a minimum and a maximum")
            length_range = (int(c[1]), int(c[2]))
    return Policy(float(when), conditions, length_range)


def check_policy(policy: Policy, fields: dict[str, str], bucket: str, now: float) -> None:
    """Every condition holds, and every field is covered by one (AccessDenied otherwise)."""
    if now > policy.expiration:
        raise S3Error("AccessDenied", 403, "invalid according to policy: policy expired")
    values = {**fields, "bucket": bucket}
    covered = {"bucket"}
    for c in policy.conditions:
        if isinstance(c, dict):
            for name, expected in c.items():
                name = name.lower()
                covered.add(name)
                if values.get(name) != expected:
                    raise _denied(f"policy condition failed: {name}")
        elif isinstance(c, list) and len(c) == 3 and str(c[0]).lower() in ("eq", "starts-with"):
            name = str(c[1]).lstrip("$").lower()
            covered.add(name)
            value = values.get(name, "")
            operator = str(c[0]).lower()
            if operator == "eq" and value != c[2]:
                raise _denied(f"policy condition failed: {name}")
            if operator == "starts-with" and not value.startswith(str(c[2])):
                raise _denied(f"policy condition failed: {name}")
        elif isinstance(c, list) and c and str(c[0]).lower() == "content-length-range":
            continue
        else:
            raise _bad(f"unsupported policy condition {c!r}")
    for name in fields:
        if name not in EXEMPT and not name.startswith("x-ignore-") and name not in covered:
            raise _denied(f"extra input field: {name}")


def _denied(message: str) -> S3Error:
    return S3Error("AccessDenied", 403, f"invalid according to policy: {message}")
