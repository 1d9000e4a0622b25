"""Multipart upload handlers: create, upload (and copy) parts, complete, abort."""

from __future__ import annotations

from store.codec import checksums
from store.errors import InvalidArgument
from store.gateway.http import Response
from store.gateway.s3 import copy as s3_copy
from store.gateway.s3 import encryption as s3_sse
from store.gateway.s3 import lifecycle as s3_lifecycle
from store.gateway.s3 import messages as m
from store.gateway.s3.call import Call
from store.gateway.s3.handlers import HandlerGroup
from store.objects.multipart import CompletedPart
from store.s3 import xml

OPERATIONS: dict[str, str] = {
    "CreateMultipartUpload": "create_multipart",
    "UploadPart": "upload_part",
    "UploadPartCopy": "upload_part_copy",
    "CompleteMultipartUpload": "complete_multipart",
    "AbortMultipartUpload": "abort_multipart",
}


class MultipartHandlers(HandlerGroup):
    OPERATIONS = OPERATIONS

    async def create_multipart(self, call: Call) -> Response:
        bucket, owner, attributes, sealing = await self.new_version(call)
        if sealing is not None:  # every part is sealed under this envelope's key
            attributes["encryption"] = {"env": sealing.envelope.to_json()}
        req = call.request
        algorithm = req.header("x-amz-checksum-algorithm") or ""
        upload = await self.engine.multipart.create(
            call.route.bucket,
            call.route.key,
            owner=owner,
            attributes=attributes,
            content_type=req.header("content-type") or "",
            metadata=m.user_metadata(req),
            headers=m.stored_headers(req),
            checksum_algorithm=algorithm,
            checksum_type=req.header("x-amz-checksum-type") or "",
            tags=m.parse_tagging_header(req.header("x-amz-tagging")),
        )
        body = xml.document(
            "InitiateMultipartUploadResult",
            [
                xml.field("Bucket", call.route.bucket),
                xml.field("Key", call.route.key),
                xml.field("UploadId", upload.upload_id),
            ],
        )
        headers = s3_lifecycle.abort_headers(bucket, upload, self.config.lifecycle_day_seconds)
        headers += s3_sse.response_headers(req, upload.encryption)
        if upload.checksum_algorithm:
            headers += [
                ("x-amz-checksum-algorithm", upload.checksum_algorithm),
                ("x-amz-checksum-type", upload.checksum_type),
            ]
        return m.xml(200, body, headers)

    async def upload_part(self, call: Call) -> Response:
        await self._bucket(call)
        q, req = call.route.query, call.request
        try:
            number = int(q.get("partNumber", ""))
        except ValueError:
            raise InvalidArgument("partNumber must be an integer") from None
        body, size, state = m.body_of(call, engine_checks_sha256=True)
        algorithm, expected = m.checksum_request(req)
        part = await self.engine.multipart.upload_part(
            call.route.bucket,
            call.route.key,
            q.get("uploadId", ""),
            number,
            body,
            size=size,
            content_md5=m.content_md5(req),
            checksum_algorithm=algorithm,
            expected_checksum=expected
            if expected is not None
            else state.trailer_checksum(algorithm),
            payload_sha256=state.payload_sha256,
            data_key=s3_sse.upload_key(req, self.keys),
        )
        headers = [("etag", f'"{part.etag}"')]
        if part.nonce:
            headers += s3_sse.part_response_headers(req)
        if part.checksum:
            alg, _, value = part.checksum.partition(":")
            headers.append((checksums.header_name(alg), value))
        return Response(200, headers)

    async def upload_part_copy(self, call: Call) -> Response:
        await self._bucket(call)
        headers, body = await s3_copy.upload_part_copy(
            self.engine,
            call,
            self.reader_of(call),
            source_key=self.source_key(call),
            part_key=s3_sse.upload_key(call.request, self.keys),
        )
        return m.xml(200, body, headers)

    async def complete_multipart(self, call: Call) -> Response:
        await self._bucket(call)
        body = await self.read_document(call, listing=True)
        entries = xml.parse_complete_multipart(body)
        req = call.request
        expected = None
        for algorithm in checksums.ALGORITHMS:
            value = req.header(checksums.header_name(algorithm))
            if value:
                expected = value
        listed = [
            CompletedPart(e.number, e.etag, next(iter(e.checksums.values()), "")) for e in entries
        ]
        version = await self.engine.multipart.complete(
            call.route.bucket,
            call.route.key,
            call.route.query.get("uploadId", ""),
            listed,
            expected_checksum=expected,
            checksum_type=req.header("x-amz-checksum-type") or "",
            if_match=req.header("if-match"),
            if_none_match=req.header("if-none-match"),
        )
        children = [
            xml.field("Location", f"/{call.route.bucket}/{call.route.key}"),
            xml.field("Bucket", call.route.bucket),
            xml.field("Key", call.route.key),
            xml.field("ETag", f'"{version.etag}"'),
        ]
        if version.checksum:
            children.append(
                xml.field("Checksum" + version.checksum.algorithm, version.checksum.value)
            )
            children.append(xml.field("ChecksumType", version.checksum.type))
        headers = m.version_headers(version) + s3_sse.response_headers(req, version.encryption)
        return m.xml(200, xml.document("CompleteMultipartUploadResult", children), headers)

    async def abort_multipart(self, call: Call) -> Response:
        await self._bucket(call)
        await self.engine.multipart.abort(
            call.route.bucket, call.route.key, call.route.query.get("uploadId", "")
        )
        return Response(204)
