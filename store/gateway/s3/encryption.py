"""Server-side encryption in the gateway: which key seals a write, which opens a read.

- SSE-C: ``x-amz-server-side-encryption-customer-{algorithm,key,key-MD5}`` on the write and on
  every GET, HEAD, UploadPart and copy (``x-amz-copy-source-...`` for the source). The key is
  never stored; a wrong one is 403 AccessDenied, a missing one 400 InvalidRequest.
- SSE-S3: ``x-amz-server-side-encryption: AES256``, or the bucket's default encryption
  (Get/Put/DeleteBucketEncryption); data keys are wrapped by the master keys
  (``store.auth.master_keys``).
- SSE-KMS (``aws:kms``, ``aws:kms:dsse``) is refused with NotImplemented: there is no KMS here,
  and pretending would leave a client believing in a key service that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from store.auth.master_keys import MasterKeys
from store.codec import encryption as enc
from store.gateway.http import Request
from store.objects.records import Bucket, Upload
from store.objects.sealing import Sealing, envelope_of, mode_of, new_stream
from store.s3 import xml
from store.s3.errors import S3Error

SETTING = "encryption"
SSE = "x-amz-server-side-encryption"
CUSTOMER = "x-amz-server-side-encryption-customer-"
COPY_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
KMS = ("aws:kms", "aws:kms:dsse")


def _customer_key(headers: Mapping[str, str], prefix: str) -> bytes | None:
    return enc.parse_customer_key(
        headers.get(prefix + "algorithm"),
        headers.get(prefix + "key"),
        headers.get(prefix + "key-md5"),
    )


def _managed(keys: MasterKeys) -> Sealing:
    envelope, key = enc.new_managed_envelope(keys.keys, keys.current)
    return new_stream(envelope, key)


def write_sealing(headers: Mapping[str, str], bucket: Bucket, keys: MasterKeys) -> Sealing | None:
    """How a write (PutObject, CopyObject destination, CreateMultipartUpload, POST) is sealed:
    by its headers (or form fields), else by the bucket's default encryption; None: stored in
    the clear."""
    method = headers.get(SSE)
    customer = _customer_key(headers, CUSTOMER)
    if method is not None and customer is not None:
        raise S3Error(
            "InvalidArgument",
            400,
            "Server Side Encryption with Customer provided key is incompatible with the "
            "encryption method specified",
        )
    if method in KMS:
        raise S3Error(
            "NotImplemented", 501, "SSE-KMS is not supported here; use SSE-S3 (AES256) or SSE-C"
        )
    if method is not None and method != "AES256":
        raise S3Error("InvalidArgument", 400, "The encryption method specified is not supported")
    if customer is not None:
        envelope, key = enc.new_customer_envelope(customer)
        return new_stream(envelope, key)
    if method == "AES256" or bucket.settings.get(SETTING, {}).get("algorithm") == "AES256":
        return _managed(keys)
    return None


def read_key(
    headers: Mapping[str, str],
    record: Mapping[str, Any] | None,
    keys: MasterKeys,
    *,
    copy: bool = False,
) -> bytes | None:
    """The data key that opens a stored stream, from what the request brings (the copy
    source's headers with ``copy``): EncryptionMismatch (400 InvalidRequest) when they do not
    fit how it was stored, WrongCustomerKey (403) for another SSE-C key."""
    customer = _customer_key(headers, COPY_CUSTOMER if copy else CUSTOMER)
    if record is None:
        if customer is not None:
            raise enc.EncryptionMismatch(enc.NOT_APPLICABLE)
        return None
    envelope = envelope_of(record)
    if envelope.mode == enc.CUSTOMER and customer is None:
        raise enc.EncryptionMismatch(enc.PARAMETERS_REQUIRED)
    return enc.data_key_for(envelope, customer_key=customer, master_keys=keys.keys)


def upload_key(req: Request, keys: MasterKeys) -> Callable[[Upload], bytes | None]:
    """UploadPart's key for its upload (the same SSE-C key as at CreateMultipartUpload)."""
    return lambda upload: read_key(req.header_map, upload.encryption, keys)


def response_headers(req: Request, record: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What S3 answers about a stream's encryption (PUT, GET, HEAD, copies, multipart)."""
    mode = mode_of(record)
    if mode == enc.MANAGED:
        return [(SSE, "AES256")]
    if mode == enc.CUSTOMER:
        md5 = req.header(CUSTOMER + "key-md5") or ""
        return [(CUSTOMER + "algorithm", "AES256"), (CUSTOMER + "key-md5", md5)]
    return []


def part_response_headers(req: Request) -> list[tuple[str, str]]:
    """UploadPart's answer for a part of an encrypted upload."""
    if req.header(CUSTOMER + "key") is not None:
        md5 = req.header(CUSTOMER + "key-md5") or ""
        return [(CUSTOMER + "algorithm", "AES256"), (CUSTOMER + "key-md5", md5)]
    return [(SSE, "AES256")]


def parse_configuration(body: bytes) -> dict[str, Any]:
    root = xml.parse(body, "ServerSideEncryptionConfiguration")
    rules = root.findall("Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML", 400, "ServerSideEncryptionConfiguration needs one Rule")
    default = rules[0].find("ApplyServerSideEncryptionByDefault")
    if default is None:
        raise S3Error("MalformedXML", 400, "the Rule needs ApplyServerSideEncryptionByDefault")
    algorithm = xml.text(default, "SSEAlgorithm")
    if algorithm in KMS:
        raise S3Error("NotImplemented", 501, "SSE-KMS is not supported here; use AES256")
    if algorithm != "AES256" or default.find("KMSMasterKeyID") is not None:
        raise S3Error("MalformedXML", 400, "SSEAlgorithm must be AES256")
    bucket_key = xml.text(rules[0], "BucketKeyEnabled", "false").strip().lower()
    if bucket_key not in ("true", "false"):
        raise S3Error("MalformedXML", 400, "BucketKeyEnabled must be true or false")
    return {"algorithm": algorithm, "bucket_key": bucket_key == "true"}


def render_configuration(config: Mapping[str, Any]) -> bytes:
    default = xml.element(
        "ApplyServerSideEncryptionByDefault", [xml.field("SSEAlgorithm", config["algorithm"])]
    )
    rule = xml.element("Rule", [default, xml.field("BucketKeyEnabled", config["bucket_key"])])
    return xml.document("ServerSideEncryptionConfiguration", [rule])
