"""Fuzz browser uploads (``store.s3.postform``): the multipart form, the policy document and its
signature (``sigv4.verify_post_policy``).

Input: the request's Content-Type value, CRLF, then the body, as boto3's
``generate_presigned_post`` fields posted by a browser or ``requests`` send it (signed with
``s3_sigv4``'s key). Properties: every step returns or raises the protocol's own error, never one
that maps to 500; the fields and file bytes do not depend on how the body is split into reads;
the file part is the last thing collected (fields after it are ignored). python-multipart itself
notices some broken framing sooner or later depending on the reads; the property is that the
gateway's view (the fields when the file starts, or a refusal) does not depend on them.
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports():
    from _harness import check_s3_error, pieces

    from store.s3 import postform, sigv4

ACCESS_KEY = "AKIDFUZZEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZKEY"
NOW = 1_700_000_000.0
BUCKET = "uploads"
logging.getLogger("python_multipart").setLevel(logging.CRITICAL)  # it logs each broken header

Form = tuple[dict[str, str], bytes, bool, bool]


def _lookup(access_key: str) -> str | None:
    return SECRET_KEY if access_key == ACCESS_KEY else None


def _read(boundary: bytes, parts: list[bytes]) -> Form | None:
    """(fields, file bytes, file started, done), or None when the form is refused."""
    form = postform.FormReader(boundary)
    data = []
    try:
        for part in parts:
            form.feed(part)
            data += form.take_file_data()
    except Exception as e:  # the property: what escapes
        check_s3_error(e)
        return None
    return form.fields, b"".join(data), form.file_started, form.done


def TestOneInput(data: bytes) -> None:
    content_type, _, body = data.partition(b"\r\n")
    try:
        boundary = postform.boundary_of(content_type.decode("latin-1"))
    except Exception as e:
        check_s3_error(e)
        return
    whole = _read(boundary, [body])
    split = _read(boundary, list(pieces(body, len(body))))
    # What the gateway acts on: the fields once the file part starts (else it refuses the form).
    seen = [(f[0], f[2]) if f is not None and f[2] else None for f in (whole, split)]
    assert seen[0] == seen[1], ("split-dependent form", whole, split)
    if whole is None:
        return
    fields, file_data, started, done = whole
    assert started or not file_data
    if done and split is not None and split[3]:
        assert split == whole, (split, whole)
    try:
        policy = postform.decode_policy(fields.get("policy", ""))
        postform.check_policy(policy, fields, BUCKET, NOW)
        if "x-amz-signature" in fields:
            assert sigv4.verify_post_policy(fields, _lookup) == ACCESS_KEY
        else:
            assert sigv4.verify_post_policy_v2(fields, _lookup) == ACCESS_KEY
    except Exception as e:
        check_s3_error(e)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
