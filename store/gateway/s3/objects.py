"""Object handlers: put, get and head, copy, tagging, attributes, browser POST, deletes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from store.auth import users
from store.codec import checksums
from store.errors import InvalidArgument, OutOfRange, StoreError
from store.gateway.http import Response
from store.gateway.s3 import copy as s3_copy
from store.gateway.s3 import encryption as s3_sse
from store.gateway.s3 import lifecycle as s3_lifecycle
from store.gateway.s3 import locking as s3_lock
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.records import Version
from store.s3 import postform, sigv4, xml
from store.s3.errors import S3Error, code_for

OPERATIONS: dict[str, str] = {
    "PutObject": "put_object",
    "GetObject": "get_object",
    "HeadObject": "get_object",
    "DeleteObject": "delete_object",
    "DeleteObjects": "delete_objects",
    "CopyObject": "copy_object",
    "GetObjectTagging": "get_object_tagging",
    "PutObjectTagging": "put_object_tagging",
    "DeleteObjectTagging": "put_object_tagging",
    "GetObjectAttributes": "get_object_attributes",
    "PostObject": "post_object",
}


class ObjectHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def put_object(self, call: Call) -> Response:
        bucket, owner, attributes, sealing = await self.new_version(call)
        req = call.request
        if s3_lock.needs_integrity_check(req, bucket):
            raise S3Error(
                "InvalidRequest",
                400,
                "Content-MD5 or an x-amz-checksum- header is required for a PutObject with "
                "object lock parameters",
            )
        body, size, state = m.body_of(call, engine_checks_sha256=True)
        algorithm, expected = m.checksum_request(req)
        version = await self.engine.put_object(
            call.route.bucket,
            call.route.key,
            body,
            size=size,
            owner=owner,
            attributes=attributes,
            content_type=req.header("content-type") or "",
            metadata=m.user_metadata(req),
            headers=m.stored_headers(req),
            tags=m.parse_tagging_header(req.header("x-amz-tagging")),
            content_md5=m.content_md5(req),
            checksum_algorithm=algorithm,
            expected_checksum=expected
            if expected is not None
            else state.trailer_checksum(algorithm),
            if_match=req.header("if-match"),
            if_none_match=req.header("if-none-match"),
            payload_sha256=state.payload_sha256,
            sealing=sealing,
        )
        headers = [("etag", f'"{version.etag}"')]
        headers += m.version_headers(version)
        headers += s3_lifecycle.expiration_headers(
            bucket, version, self.config.lifecycle_day_seconds
        )
        headers += s3_sse.response_headers(req, version.encryption)
        if version.checksum:
            headers.append(
                (checksums.header_name(version.checksum.algorithm), version.checksum.value)
            )
        return Response(200, headers)

    async def get_object(self, call: Call) -> Response:
        """GetObject and HeadObject. Conditions are checked on the record before any data is
        read; a GET reads its first window before answering, so a read error is a clean S3
        error rather than a cut-off body."""
        req, q = call.request, call.route.query
        _check_response_overrides(call)
        bucket = await self.engine.get_bucket(call.route.bucket)
        byte_range = _valid_range(m.parse_range(req.header("range")))
        part = _part_number(q.get("partNumber"))
        v = await self.authz.object(call, bucket, version_id=q.get("versionId"))
        data_key = s3_sse.read_key(req.header_map, v.encryption, self.keys)
        try:
            m.check_read_conditions(req, v)
        except m.NotModified as e:  # a 304 still names the version (RFC 9110 15.4.5)
            e.response_headers = [("etag", f'"{v.etag}"'), ("last-modified", m.http_date(v.mtime))]
            raise
        reader = self.engine.open_object(
            call.route.bucket,
            call.route.key,
            byte_range=byte_range,
            part_number=part,
            version=v,
            deferred=True,
            data_key=data_key,
        )
        head = call.route.operation == "HeadObject"
        try:
            if head:
                reader.resolve(v)
            else:
                await reader.start()
        except OutOfRange as e:
            raise RangeNotSatisfiable(str(e), v.size) from None
        headers = m.object_headers(v, q) + s3_lock.lock_headers(bucket, v)
        headers += s3_lifecycle.expiration_headers(bucket, v, self.config.lifecycle_day_seconds)
        headers += s3_sse.response_headers(req, v.encryption)
        status = 200
        if byte_range is not None:
            status = 206
            last = reader.offset + reader.length - 1
            headers.append(("content-range", f"bytes {reader.offset}-{last}/{v.size}"))
        if part is not None:
            headers.append(("x-amz-mp-parts-count", str(len(v.parts) or 1)))
        if req.header("x-amz-checksum-mode") == "ENABLED" and v.checksum and byte_range is None:
            headers += _checksum_headers(v, part)
        return Response(status, headers, b"" if head else reader, length=reader.length)

    async def copy_object(self, call: Call) -> Response:
        _, owner, attributes, sealing = await self.new_version(call)
        headers, body = await s3_copy.copy_object(
            self.engine,
            call,
            self.reader_of(call),
            owner=owner,
            attributes=attributes,
            source_key=self.source_key(call),
            sealing=sealing,
        )
        return m.xml(200, body, headers)

    async def get_object_tagging(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        v = await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        return m.xml(200, m.tagging_document(dict(sorted(v.tags.items()))), m.version_headers(v))

    async def put_object_tagging(self, call: Call) -> Response:
        """PutObjectTagging, and DeleteObjectTagging (an empty tag set)."""
        bucket = await self.engine.get_bucket(call.route.bucket)
        await self.authz.object(call, bucket, version_id=call.route.query.get("versionId"))
        put = call.route.operation == "PutObjectTagging"
        tags = xml.parse_tagging(await self.read_document(call)) if put else {}
        v = await self.engine.set_object_tags(
            call.route.bucket, call.route.key, tags, call.route.query.get("versionId")
        )
        return Response(200 if put else 204, m.version_headers(v))

    async def get_object_attributes(self, call: Call) -> Response:
        bucket = await self.engine.get_bucket(call.route.bucket)
        req, q = call.request, call.route.query
        wanted = {a.strip() for a in (req.header("x-amz-object-attributes") or "").split(",")}
        wanted.discard("")
        if not wanted:
            raise InvalidArgument("x-amz-object-attributes must name at least one attribute")
        v = await self.authz.object(call, bucket, version_id=q.get("versionId"))
        s3_sse.read_key(req.header_map, v.encryption, self.keys)  # SSE-C: the key is required
        out = []
        if "ETag" in wanted:
            out.append(xml.field("ETag", v.etag))
        if "Checksum" in wanted and v.checksum:
            out.append(
                xml.element(
                    "Checksum",
                    [
                        xml.field("Checksum" + v.checksum.algorithm, v.checksum.value),
                        xml.field("ChecksumType", v.checksum.type),
                    ],
                )
            )
        marker = _header_int(req.header("x-amz-part-number-marker"), 0, "part-number-marker")
        limit = min(_header_int(req.header("x-amz-max-parts"), 1000, "max-parts"), 1000)
        if "ObjectParts" in wanted and v.parts:
            numbered = list(enumerate(v.parts, 1))[marker : marker + limit]
            parts = []
            for number, part in numbered:
                children = [xml.field("PartNumber", number), xml.field("Size", part.size)]
                if part.checksum and v.checksum:
                    children.append(xml.field("Checksum" + v.checksum.algorithm, part.checksum))
                parts.append(xml.element("Part", children))
            last = numbered[-1][0] if numbered else marker
            out.append(
                xml.element(
                    "ObjectParts",
                    [
                        xml.field("PartsCount", len(v.parts)),
                        xml.field("PartNumberMarker", marker),
                        xml.field("NextPartNumberMarker", last),
                        xml.field("MaxParts", limit),
                        xml.field("IsTruncated", last < len(v.parts)),
                        *parts,
                    ],
                )
            )
        if "StorageClass" in wanted:
            out.append(xml.field("StorageClass", v.storage_class or "STANDARD"))
        if "ObjectSize" in wanted:
            out.append(xml.field("ObjectSize", v.size))
        headers = [("last-modified", m.http_date(v.mtime)), *m.version_headers(v)]
        return m.xml(200, xml.document("GetObjectAttributesResponse", out), headers)

    async def post_object(self, call: Call) -> Response:
        """Browser upload: a multipart form whose policy is signed (see store/s3/postform.py)."""
        req = call.request
        form = postform.FormReader(postform.boundary_of(req.header("content-type")))
        pieces = aiter(req)
        async for piece in pieces:
            form.feed(piece)
            if form.file_started or form.done:
                break
        if not form.file_started:
            raise InvalidArgument("POST requires exactly one file upload per request")
        fields = form.fields
        await self._post_signer(call, fields)
        key = fields.get("key", "").replace("${filename}", form.filename)
        if not key:
            raise InvalidArgument("Bucket POST must contain a field named 'key'")
        bucket = await self.authz.bucket(call, key=key)
        policy_doc = None
        if call.user:  # a signed form: its policy holds, and covers every field
            policy_doc = postform.decode_policy(fields.get("policy", ""))
            resolved = {**fields, "key": key}  # conditions see the key ${filename} made
            postform.check_policy(policy_doc, resolved, call.route.bucket, time.time())
        owner = self.authz.new_object_owner(call, bucket)
        acl_fields = {"x-amz-acl": fields["acl"]} if "acl" in fields else {}
        attributes = {
            "acl": await self.authz.new_object_acl(call, bucket, owner, acl_fields),
            "storage_class": m.storage_class_value(fields.get("x-amz-storage-class")),
        }
        sealing = s3_sse.write_sealing(fields, bucket, self.keys)
        low, high = (policy_doc.length_range if policy_doc else None) or (0, None)

        async def file_data() -> AsyncIterator[bytes]:
            total = 0
            chunks = form.take_file_data()
            while True:
                for chunk in chunks:
                    total += len(chunk)
                    if high is not None and total > high:
                        raise S3Error(
                            "EntityTooLarge",
                            400,
                            "your proposed upload exceeds the maximum allowed size",
                        )
                    yield chunk
                if form.done:
                    break
                piece = await anext(pieces, None)
                if piece is None:
                    raise S3Error("IncompleteBody", 400, "the form ended before the file did")
                form.feed(piece)
                chunks = form.take_file_data()
            if total < low:
                raise S3Error(
                    "EntityTooSmall",
                    400,
                    "your proposed upload is smaller than the minimum allowed size",
                )

        version = await self.engine.put_object(
            call.route.bucket,
            key,
            file_data(),
            owner=owner,
            attributes=attributes,
            sealing=sealing,
            content_type=fields.get("content-type") or form.file_content_type,
            metadata={
                n[len("x-amz-meta-") :]: v for n, v in fields.items() if n.startswith("x-amz-meta-")
            },
            tags=_form_tags(fields.get("tagging")),
        )
        headers = [("etag", f'"{version.etag}"'), *m.version_headers(version)]
        location = f"/{call.route.bucket}/{quote(key)}"
        redirect = fields.get("success_action_redirect")
        if redirect:
            sep = "&" if "?" in redirect else "?"
            target = (
                f"{redirect}{sep}bucket={quote(call.route.bucket)}&key={quote(key)}"
                f"&etag={quote(chr(34) + version.etag + chr(34))}"
            )
            return Response(303, [("location", target), *headers])
        status = int(fields.get("success_action_status", "204") or 204)
        if status == 201:  # S3's PostResponse carries no namespace
            fields_xml = [
                xml.field("Location", location),
                xml.field("Bucket", call.route.bucket),
                xml.field("Key", key),
                xml.field("ETag", f'"{version.etag}"'),
            ]
            body = (xml.HEAD + xml.element("PostResponse", fields_xml)).encode()
            return m.xml(201, body, [("location", location), *headers])
        return Response(200 if status == 200 else 204, [("location", location), *headers])

    async def _post_signer(self, call: Call, fields: dict[str, str]) -> None:
        """Who signed a POST form: SigV4 (x-amz-credential...), the legacy signature
        (AWSAccessKeyId, signature), or nobody (an anonymous upload, which then needs a bucket
        that lets anyone write; a policy then would be signed by no one)."""
        v4 = any(f in fields for f in ("x-amz-credential", "x-amz-signature", "x-amz-algorithm"))
        v2 = any(f in fields for f in ("awsaccesskeyid", "signature"))
        needed = ("x-amz-credential", "x-amz-signature", "policy") if v4 else ()
        needed = needed or (("awsaccesskeyid", "signature", "policy") if v2 else ())
        missing = [f for f in needed if not fields.get(f)]
        if missing:
            raise InvalidArgument(f"a signed POST needs the field {missing[0]!r}")
        if v4:
            access_key = fields.get("x-amz-credential", "").partition("/")[0]
        elif v2:
            access_key = fields.get("awsaccesskeyid", "")
        else:
            if "policy" in fields:
                raise S3Error("AccessDenied", 403, "a POST policy must be signed")
            return
        found = await users.lookup(self.engine.kv, access_key) if access_key else None

        def secret(_ak: str) -> str | None:
            return found.secret_key if found else None

        if v4:
            sigv4.verify_post_policy(fields, secret, self.config.region)
        else:
            sigv4.verify_post_policy_v2(fields, secret)
        assert found is not None
        call.user = found.user
        call.admin = found.user == users.ROOT_USER

    async def delete_object(self, call: Call) -> Response:
        version_id = call.route.query.get("versionId")
        bucket = await self._bucket(call, version_id=version_id)
        result = await self.engine.delete_object(
            call.route.bucket,
            call.route.key,
            version_id,
            owner=call.user,
            bypass_governance=self.bypass_governance(call, bucket),
        )
        headers = []
        if result.delete_marker:
            headers.append(("x-amz-delete-marker", "true"))
        if result.version_id != "null" or call.route.query.get("versionId"):
            headers.append(("x-amz-version-id", result.version_id))
        return Response(204, headers)

    async def delete_objects(self, call: Call) -> Response:
        """Each key is authorized as its own DeleteObject; refused ones are reported as
        AccessDenied errors in the result, as S3 does."""
        bucket = await self.engine.get_bucket(call.route.bucket)
        body = await self.read_document(call, listing=True)
        _check_body_integrity(call, body)
        objects, quiet = xml.parse_delete(body)
        bypass = self.bypass_governance(call, bucket)
        out = []
        for key, version_id in objects:
            try:
                self.authz.check(
                    call, bucket, operation="DeleteObject", key=key, version_id=version_id
                )
                result = await self.engine.delete_object(
                    call.route.bucket, key, version_id, owner=call.user, bypass_governance=bypass
                )
            except (StoreError, S3Error) as e:
                code = code_for(e)
                out.append(
                    xml.element(
                        "Error",
                        [
                            xml.field("Key", key),
                            *([xml.field("VersionId", version_id)] if version_id else []),
                            xml.field("Code", code.code),
                            xml.field("Message", str(e)),
                        ],
                    )
                )
                continue
            if quiet:
                continue
            children = [xml.field("Key", key)]
            if version_id:
                children.append(xml.field("VersionId", version_id))
            if result.delete_marker:
                children += [
                    xml.field("DeleteMarker", True),
                    xml.field("DeleteMarkerVersionId", result.version_id),
                ]
            out.append(xml.element("Deleted", children))
        return m.xml(200, xml.document("DeleteResult", out))


class RangeNotSatisfiable(S3Error):
    """416 InvalidRange, with the Content-Range: bytes */SIZE that RFC 9110 asks of it."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__("InvalidRange", 416, message)
        self.response_headers = [("content-range", f"bytes */{size}")]


def _valid_range(
    byte_range: tuple[int | None, int | None] | None,
) -> tuple[int | None, int | None] | None:
    """A Range whose last byte is before its first is invalid, and RFC 9110 says to ignore an
    invalid Range (the whole object, 200), unlike an unsatisfiable one (416)."""
    if byte_range is not None and None not in byte_range:
        first, last = byte_range
        assert first is not None and last is not None
        if last < first:
            return None
    return byte_range


def _part_number(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 10_000:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
    return int(value)


_OVERRIDES = (
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
)


def _check_response_overrides(call: Call) -> None:
    """response-* parameters become response headers: text a header can carry, and only on
    signed requests (S3 refuses them on anonymous ones)."""
    given = [name for name in _OVERRIDES if name in call.route.query]
    if not given:
        return
    if not call.user:
        raise S3Error(
            "InvalidRequest",
            400,
            "Request specific response headers cannot be used for anonymous GET requests.",
        )
    for name in given:
        value = call.route.query[name]
        if not value.isascii() or any(c in value for c in "\r\n\0") or not value.isprintable():
            raise InvalidArgument(f"{name} must be printable ASCII")


def _form_tags(value: str | None) -> dict[str, str] | None:
    """A POST form's tagging field: a Tagging XML document (as S3 defines it), or the
    header's key=value&... form."""
    if value is None:
        return None
    if value.lstrip().startswith("<"):
        return xml.parse_tagging(value.encode())
    return m.parse_tagging_header(value)


def _check_body_integrity(call: Call, body: bytes) -> None:
    """S3 requires DeleteObjects to carry Content-MD5 or an x-amz-checksum-* of its body (a
    trailer counts: the chunked decoder verifies it); both are checked here."""
    req = call.request
    given = req.header("content-md5")
    if given is not None:
        if m.content_md5(req) != hashlib.md5(body).digest():
            raise S3Error("BadDigest", 400, "the Content-MD5 you specified did not match")
        return
    for algorithm in checksums.ALGORITHMS:
        value = req.header(checksums.header_name(algorithm))
        if value is not None:
            expected = checksums.parse_b64_checksum(algorithm, value)
            if checksums.checksum_of(algorithm, body) != expected:
                raise S3Error("BadDigest", 400, f"the {algorithm} you specified did not match")
            return
    if req.header("x-amz-trailer") is None:
        raise S3Error(
            "InvalidRequest", 400, "Missing required header for this request: Content-MD5"
        )


def _checksum_headers(v: Version, part_number: int | None) -> list[tuple[str, str]]:
    """A version's checksum headers (x-amz-checksum-mode); for ?partNumber= of a multipart
    object, the part's own checksum, as S3 answers."""
    assert v.checksum is not None
    name = checksums.header_name(v.checksum.algorithm)
    if part_number is not None and v.parts:
        value = v.parts[part_number - 1].checksum
        return [(name, value), ("x-amz-checksum-type", v.checksum.type)] if value else []
    return [(name, v.checksum.value), ("x-amz-checksum-type", v.checksum.type)]


def _header_int(value: str | None, default: int, name: str) -> int:
    """A non-negative integer header (InvalidArgument otherwise)."""
    if value is None:
        return default
    if not value.strip().isdigit():
        raise InvalidArgument(f"x-amz-{name} must be a non-negative integer")
    return int(value)
