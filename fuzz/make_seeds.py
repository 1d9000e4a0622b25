"""Write the seed corpora under ``fuzz/corpus/`` (run once; the files it writes are committed).

S3 seeds are what botocore itself sends: a client pointed at a fake endpoint, whose requests are
caught before they leave (``before-send``), signed with the fuzz targets' key at their fixed
time. aws-chunked bodies are botocore's (unsigned, CRC32 trailer) and the signed framing of
AWS's streaming examples, chained from ``s3_chunked.SEED_SIGNATURE``. NBD seeds are the byte
sequences qemu (qemu-img, qemu-nbd) and libnbd (nbdinfo, nbdcopy) send.

    .venv/bin/python fuzz/make_seeds.py
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import io
import json
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.compat
import botocore.crt.auth
import botocore.signers
from botocore.config import Config

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import s3_chunked  # noqa: E402
import s3_sigv4  # noqa: E402

from store.s3 import sigv4  # noqa: E402

NOW = datetime.datetime(2023, 11, 14, 22, 13, 20)


def _fixed_now(remove_tzinfo: bool = True) -> datetime.datetime:
    return NOW if remove_tzinfo else NOW.replace(tzinfo=datetime.UTC)


for _module in (botocore.auth, botocore.crt.auth, botocore.signers, botocore.compat):
    _module.get_current_datetime = _fixed_now  # type: ignore[attr-defined]


UNSIGNED_HEADERS = {
    "user-agent": "Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux lang/python#3.11.7 "
    "cfg/retry-mode#standard Botocore/1.44.8",
    "amz-sdk-invocation-id": "2f1f4a54-0c0c-4b8e-9d52-6c2bd0e4a1f7",
}


class Caught(Exception):
    def __init__(self, request: botocore.awsrequest.AWSPreparedRequest) -> None:
        self.request = request


def _catch(request: botocore.awsrequest.AWSPreparedRequest, **_: Any) -> None:
    raise Caught(request)


def client(virtual: bool = False, scheme: str = "http", **config: Any) -> Any:
    endpoint = f"{scheme}://{'s3.local' if virtual else 'localhost'}:9000"
    c = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3_sigv4.ACCESS_KEY,
        aws_secret_access_key=s3_sigv4.SECRET_KEY,
        config=Config(
            s3={"addressing_style": "virtual" if virtual else "path"},
            signature_version="s3v4",
            **config,
        ),
    )
    c.meta.events.register("before-send", _catch)
    return c


def capture(call: Callable[[], Any]) -> tuple[bytes, bytes]:
    """(request head, body) of the request a botocore call sends."""
    try:
        call()
    except Caught as caught:
        r = caught.request
    else:
        raise AssertionError("the call sent nothing")
    url = botocore.compat.urlsplit(r.url)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"{r.method} {target} HTTP/1.1"]
    if not any(name.lower() == "host" for name in r.headers):
        lines.append(f"Host: {url.netloc}")
    for name, value in r.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        # unsigned and different on every run: fixed, so the seeds are reproducible
        value = UNSIGNED_HEADERS.get(name.lower(), value)
        lines.append(f"{name}: {value}")
    body = r.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body or b""


def presigned(
    operation: str, params: dict[str, Any], expires: int = 3600, verb: str = "GET"
) -> bytes:
    """The request a browser or curl makes with a presigned URL (its signed headers added)."""
    url = client().generate_presigned_url(operation, Params=params, ExpiresIn=expires)
    parts = botocore.compat.urlsplit(url)
    extra = "".join(
        f"{name}: {params[field]}\r\n"
        for name, field in (("Content-Type", "ContentType"),)
        if field in params
    )
    line = f"{verb} {parts.path}?{parts.query} HTTP/1.1"
    return f"{line}\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode()


def write(target: str, name: str, data: bytes) -> None:
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


# -- S3 requests ---------------------------------------------------------------------------------

PART = '<Part><ETag>"9b2cf535f27731c974343645a3985328"</ETag><PartNumber>{}</PartNumber></Part>'


def s3_requests() -> dict[str, tuple[bytes, bytes]]:
    c, v = client(), client(virtual=True)
    upload = "2~Qd8s3Yq4ZtZ9nHqW1zL0a5r8uCk"
    lifecycle = {
        "Rules": [
            {
                "ID": "tmp",
                "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}]}},
                "Status": "Enabled",
                "Expiration": {"Days": 7},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2},
            },
            {
                "ID": "uploads",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                "Expiration": {"ExpiredObjectDeleteMarker": True},
            },
        ]
    }
    acl = {
        "Owner": {"ID": "owner", "DisplayName": "owner"},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "alice"}, "Permission": "FULL_CONTROL"},
            {
                "Grantee": {
                    "Type": "Group",
                    "URI": "http://acs.amazonaws.com/groups/global/AllUsers",
                },
                "Permission": "READ",
            },
        ],
    }
    cors = {
        "CORSRules": [
            {
                "ID": "web",
                "AllowedOrigins": ["https://*.example.com"],
                "AllowedMethods": ["GET", "PUT"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3000,
            }
        ]
    }
    lock = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
    }
    calls: dict[str, Callable[[], Any]] = {
        "list_buckets": c.list_buckets,
        "create_bucket": lambda: c.create_bucket(
            Bucket="photos", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        ),
        "list_objects_v2": lambda: c.list_objects_v2(
            Bucket="photos", Prefix="2023/11/", Delimiter="/", MaxKeys=100
        ),
        "list_versions": lambda: c.list_object_versions(Bucket="photos", KeyMarker="a b"),
        "put_object": lambda: c.put_object(
            Bucket="photos", Key="2023/11/caf\u00e9 & co+1.jpg", Body=b"hello world\n"
        ),
        "put_object_virtual": lambda: v.put_object(
            Bucket="photos", Key="a//b/", Body=b"x", ContentType="image/jpeg", Tagging="a=b"
        ),
        "get_object": lambda: c.get_object(
            Bucket="photos", Key="k", Range="bytes=0-99", VersionId="v1", IfNoneMatch='"e"'
        ),
        "head_object_virtual": lambda: v.head_object(Bucket="photos", Key="dir/k"),
        "copy_object": lambda: c.copy_object(
            Bucket="photos",
            Key="copy",
            CopySource={"Bucket": "src", "Key": "a b", "VersionId": "3"},
        ),
        "create_multipart": lambda: c.create_multipart_upload(Bucket="photos", Key="big.iso"),
        "upload_part": lambda: c.upload_part(
            Bucket="photos", Key="big.iso", UploadId=upload, PartNumber=2, Body=b"p" * 64
        ),
        "list_parts": lambda: c.list_parts(Bucket="photos", Key="big.iso", UploadId=upload),
        "complete_multipart": lambda: c.complete_multipart_upload(
            Bucket="photos",
            Key="big.iso",
            UploadId=upload,
            MultipartUpload={
                "Parts": [
                    {"ETag": '"9b2cf535f27731c974343645a3985328"', "PartNumber": 1},
                    {"ETag": '"a1"', "PartNumber": 2, "ChecksumCRC32": "AAAAAA=="},
                ]
            },
        ),
        "delete_objects": lambda: c.delete_objects(
            Bucket="photos",
            Delete={"Objects": [{"Key": "a"}, {"Key": "b&c", "VersionId": "v2"}], "Quiet": True},
        ),
        "put_object_tagging": lambda: c.put_object_tagging(
            Bucket="photos", Key="k", Tagging={"TagSet": [{"Key": "team", "Value": "blue"}]}
        ),
        "put_bucket_tagging": lambda: c.put_bucket_tagging(
            Bucket="photos", Tagging={"TagSet": [{"Key": "cost", "Value": "r&d"}]}
        ),
        "put_bucket_versioning": lambda: c.put_bucket_versioning(
            Bucket="photos", VersioningConfiguration={"Status": "Enabled"}
        ),
        "put_bucket_acl": lambda: c.put_bucket_acl(Bucket="photos", AccessControlPolicy=acl),
        "put_object_acl_header": lambda: c.put_object_acl(
            Bucket="photos",
            Key="k",
            GrantRead='id="alice", uri="http://acs.amazonaws.com/groups/global/AllUsers"',
        ),
        "put_lifecycle": lambda: c.put_bucket_lifecycle_configuration(
            Bucket="photos", LifecycleConfiguration=lifecycle
        ),
        "put_object_lock": lambda: c.put_object_lock_configuration(
            Bucket="photos", ObjectLockConfiguration=lock
        ),
        "put_retention": lambda: c.put_object_retention(
            Bucket="photos",
            Key="k",
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": datetime.datetime(2030, 1, 1)},
        ),
        "put_legal_hold": lambda: c.put_object_legal_hold(
            Bucket="photos", Key="k", LegalHold={"Status": "ON"}
        ),
        "put_cors": lambda: c.put_bucket_cors(Bucket="photos", CORSConfiguration=cors),
        "put_policy": lambda: c.put_bucket_policy(Bucket="photos", Policy=json.dumps(POLICY)),
        "get_object_attributes": lambda: c.get_object_attributes(
            Bucket="photos", Key="k", ObjectAttributes=["ETag", "ObjectSize"]
        ),
    }
    return {name: capture(call) for name, call in calls.items()}


POLICY = {
    "Version": "2012-10-17",
    "Id": "web",
    "Statement": [
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": "arn:aws:s3:::photos/public/*",
            "Condition": {
                "IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]},
                "Bool": {"aws:SecureTransport": "true"},
            },
        },
        {
            "Sid": "Home",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:user/alice", "bob"]},
            "Action": "s3:*Object",
            "Resource": "arn:aws:s3:::photos/home/${aws:username}/*",
        },
        {
            "Effect": "Allow",
            "Principal": {"CanonicalUser": "alice"},
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::photos",
            "Condition": {
                "StringLike": {"s3:prefix": ["home/${aws:username}/*", ""]},
                "NumericLessThanEquals": {"s3:max-keys": "1000"},
            },
        },
        {
            "Effect": "Deny",
            "NotPrincipal": {"AWS": "alice"},
            "NotAction": "s3:Get*",
            "NotResource": ["arn:aws:s3:::photos/home/*"],
            "Condition": {
                "DateGreaterThan": {"aws:CurrentTime": "2023-01-01T00:00:00Z"},
                "ForAnyValue:StringEquals": {"s3:ExistingObjectTag/team": ["blue", "red"]},
                "Null": {"aws:Referer": "false"},
                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::photos*"},
            },
        },
    ],
}


def s3_seeds() -> None:
    requests = s3_requests()
    heads = {name: head for name, (head, _) in requests.items()}
    heads["presigned_get"] = presigned("get_object", {"Bucket": "photos", "Key": "a b/c.txt"})
    heads["presigned_put"] = presigned(
        "put_object", {"Bucket": "photos", "Key": "up", "ContentType": "text/plain"}, 604800, "PUT"
    )
    heads["two_subresources"] = b"PUT /photos?acl&tagging HTTP/1.1\r\nHost: localhost:9000\r\n\r\n"
    heads["sigv2"] = (
        b"GET /photos/k?AWSAccessKeyId=AKIDFUZZEXAMPLE&Expires=1700003600&Signature=abc%3D "
        b"HTTP/1.1\r\nHost: localhost:9000\r\n\r\n"
    )
    for name in (
        "list_buckets",
        "list_objects_v2",
        "put_object",
        "put_object_virtual",
        "get_object",
        "head_object_virtual",
        "copy_object",
        "upload_part",
        "complete_multipart",
        "delete_objects",
        "put_object_acl_header",
        "get_object_attributes",
        "two_subresources",
        "presigned_get",
    ):
        write("s3_router", name, heads[name])
    for name in (
        "list_buckets",
        "put_object",
        "put_object_virtual",
        "get_object",
        "copy_object",
        "upload_part",
        "delete_objects",
        "presigned_get",
        "presigned_put",
        "sigv2",
    ):
        write("s3_sigv4", name, heads[name])
    bodies = {
        "M": requests["complete_multipart"][1],
        "D": requests["delete_objects"][1],
        "V": requests["put_bucket_versioning"][1],
        "T": requests["put_object_tagging"][1],
        "U": requests["put_bucket_tagging"][1],
        "B": requests["create_bucket"][1],
        "A": requests["put_bucket_acl"][1],
        "L": requests["put_lifecycle"][1],
        "O": requests["put_object_lock"][1],
        "R": requests["put_retention"][1],
        "H": requests["put_legal_hold"][1],
        "C": requests["put_cors"][1],
    }
    for kind, body in bodies.items():
        write("s3_xml", f"{kind}_{hashlib.sha1(body).hexdigest()[:8]}", kind.encode() + body)
    write("s3_policy", "boto3_policy", requests["put_policy"][1])
    write(
        "s3_policy",
        "public_read",
        json.dumps(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": "s3:GetObject",
                    "Resource": ["arn:aws:s3:::photos/*"],
                }
            }
        ).encode(),
    )
    chunked_seeds()
    postform_seeds()


# -- aws-chunked ---------------------------------------------------------------------------------


def signed_chunks(chunks: list[bytes], trailer: list[tuple[str, str]] | None) -> bytes:
    """The signed framing (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]) of ``chunks``."""
    auth = s3_chunked.AUTH
    previous = auth.seed_signature
    out = []
    for data in [*chunks, b""]:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                auth.amz_date,
                auth.scope,
                previous,
                sigv4.EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        previous = sigv4.sign(auth.signing_key, text)
        out.append(f"{len(data):x};chunk-signature={previous}\r\n".encode() + data)
        out.append(b"\r\n" if data else b"")
    if trailer is not None:
        lines = "".join(f"{n}:{v}\n" for n, v in trailer).encode()
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                auth.amz_date,
                auth.scope,
                previous,
                hashlib.sha256(lines).hexdigest(),
            ]
        )
        signature = sigv4.sign(auth.signing_key, text)
        out.append("".join(f"{n}:{v}\r\n" for n, v in trailer).encode())
        out.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)


def chunked_seeds() -> None:
    # Over https botocore streams a file-like body as aws-chunked with a checksum trailer.
    c = client(scheme="https")
    for name, call in {
        "boto3_crc32_trailer": lambda: c.put_object(
            Bucket="photos", Key="k", Body=io.BytesIO(b"hello world\n" * 20)
        ),
        "boto3_upload_part_sha256": lambda: c.upload_part(
            Bucket="photos",
            Key="k",
            UploadId="u",
            PartNumber=1,
            Body=io.BytesIO(bytes(range(256))),
            ChecksumAlgorithm="SHA256",
        ),
    }.items():
        head, body = capture(call)
        assert b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" in head, head
        write("s3_chunked", name, body)
    write("s3_chunked", "signed", signed_chunks([b"a" * 300, b"hello world\n"], None))
    write(
        "s3_chunked",
        "signed_trailer",
        signed_chunks([b"\x00\xff" * 100], [("x-amz-checksum-crc32c", "sOO8/Q==")]),
    )
    write("s3_chunked", "unsigned_empty", b"0\r\nx-amz-checksum-sha256:47DEQpj8=\r\n\r\n")


# -- POST forms ----------------------------------------------------------------------------------


def form(fields: dict[str, str], file: bytes, boundary: str) -> bytes:
    out = []
    for name, value in fields.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    out.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cat.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    head = f"multipart/form-data; boundary={boundary}\r\n".encode()
    return head + "".join(out).encode() + file + f"\r\n--{boundary}--\r\n".encode()


def postform_seeds() -> None:
    post = client().generate_presigned_post(
        "uploads",
        "user/${filename}",
        Fields={"acl": "public-read", "success_action_status": "201"},
        Conditions=[
            {"acl": "public-read"},
            {"success_action_status": "201"},
            ["starts-with", "$key", "user/"],
            ["content-length-range", 1, 1 << 20],
        ],
        ExpiresIn=3600,
    )
    fields = post["fields"]
    write("s3_postform", "boto3_presigned_post", form(fields, b"\xff\xd8\xff\xe0JFIF", "XyZ"))
    browser = dict(fields)
    browser["x-ignore-tracking"] = "1"
    write(
        "s3_postform",
        "browser",
        form(browser, b"GIF89a" + bytes(40), "----WebKitFormBoundary7MA4YWxkTrZu0gW"),
    )
    v2_policy = base64.b64encode(
        json.dumps(
            {
                "expiration": "2023-11-15T00:00:00Z",
                "conditions": [{"bucket": "uploads"}, ["eq", "$key", "a"]],
            }
        ).encode()
    ).decode()
    signature = base64.b64encode(
        hmac.new(s3_sigv4.SECRET_KEY.encode(), v2_policy.encode(), "sha1").digest()
    ).decode()
    v2 = {
        "key": "a",
        "AWSAccessKeyId": s3_sigv4.ACCESS_KEY,
        "policy": v2_policy,
        "signature": signature,
    }
    write("s3_postform", "sigv2_form", form(v2, b"hello", "b0undary"))


# -- NBD -----------------------------------------------------------------------------------------

IHAVEOPT = 0x49484156454F5054


def option(number: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", IHAVEOPT, number, len(data)) + data


def string(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def request(command: int, cookie: int, offset: int, length: int, flags: int = 0) -> bytes:
    return struct.pack(">IHHQQI", 0x25609513, flags, command, cookie, offset, length)


def go(name: bytes, *infos: int) -> bytes:
    return option(7, string(name) + struct.pack(f">H{len(infos)}H", len(infos), *infos))


def meta(number: int, name: bytes, *queries: bytes) -> bytes:
    return option(
        number, string(name) + struct.pack(">I", len(queries)) + b"".join(map(string, queries))
    )


def nbd_seeds() -> None:
    flags = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
    first = request(0, 1, 0, 512) + request(7, 2, 0, 1 << 20, flags=8) + request(2, 3, 0, 0)
    seeds = {
        # qemu-img info nbd://host/disk: structured replies, base:allocation, GO with BLOCK_SIZE
        "qemu_img": b"\x08"
        + flags
        + option(8)
        + meta(10, b"disk", b"base:allocation")
        + go(b"disk", 3)
        + first,
        # nbdinfo nbd://host/disk: extended headers refused, then the same with NAME/DESCRIPTION
        "nbdinfo": b"\x08"
        + flags
        + option(11)
        + option(8)
        + meta(9, b"disk")
        + meta(10, b"disk", b"base:allocation")
        + option(6, string(b"disk") + struct.pack(">HHHH", 3, 1, 2, 3))
        + go(b"disk", 1, 2, 3)
        + request(0, 1, 0, 4096, flags=4)
        + request(3, 2, 0, 0)
        + request(2, 3, 0, 0),
        # nbdinfo --list: LIST, then ABORT
        "nbdinfo_list": b"\x00" + flags + option(3) + option(8) + option(2),
        # old nbd-client: EXPORT_NAME without NO_ZEROES, then a write and a flush
        "export_name": b"\x00"
        + struct.pack(">I", 1)
        + option(1, b"vol1")
        + request(1, 7, 0, 512, flags=1)
        + bytes(range(256)) * 2
        + request(3, 8, 0, 0),
        # qemu-nbd --tls-creds client against a TLS-only server: STARTTLS first
        "starttls": b"\x0b" + flags + option(5) + option(8) + go(b"disk", 3),
        # a client that skips the handshake and sends a request at once
        "request_first": b"\x00" + flags + request(0, 1, 0, 512),
        "go_refused": b"\x0c"
        + flags
        + go(b"nope")
        + go(b"disk")
        + go(b"disk")
        + request(2, 1, 0, 0),
    }
    for name, data in seeds.items():
        write("nbd_handshake", name, data)
    # transmission: an export of 8 MiB (2048 << 12), 512-byte blocks, 64 KiB max payload
    export = bytes([2 | 4 | 16, 9, 7]) + struct.pack(">I", 2048) + bytes([12])
    read_only = bytes([1 | 2, 9, 7]) + struct.pack(">I", 16) + bytes([9])
    write(
        "nbd_transmission",
        "qemu_io",
        export
        + request(0, 1, 0, 65536)
        + request(1, 2, 4096, 1024, flags=1)
        + bytes(range(256)) * 4
        + request(6, 3, 8192, 1 << 20, flags=2)
        + request(4, 4, 1 << 22, 1 << 20)
        + request(7, 5, 0, 8 << 20, flags=8)
        + request(0, 6, 0, 512, flags=4)
        + request(5, 7, 0, 4096)
        + request(3, 8, 0, 0)
        + request(2, 9, 0, 0),
    )
    write(
        "nbd_transmission",
        "read_only",
        read_only
        + request(1, 1, 0, 512)
        + bytes(512)
        + request(4, 2, 0, 512)
        + request(0, 3, 7680, 1024),
    )
    write(
        "nbd_transmission",
        "nbdcopy_pipelined",
        export + b"".join(request(0, i, i << 16, 65536) for i in range(16)),
    )


# -- regressions: inputs that once escaped as a 500 ------------------------------------------------


def regression_seeds() -> None:
    cors = (
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
        b"</AllowedMethod><MaxAgeSeconds>\xc2\xb2</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    )
    write("s3_xml", "regression_cors_superscript_digit", b"C" + cors)
    digits = b"1" * 4301  # int() refuses more than 4300 digits
    write(
        "s3_xml",
        "regression_lifecycle_4301_digits",
        b"L<LifecycleConfiguration><Rule><Status>Enabled</Status><Expiration><Days>"
        + digits
        + b"</Days></Expiration></Rule></LifecycleConfiguration>",
    )
    write(
        "s3_xml",
        "regression_lock_4301_digits",
        b"O<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
        b"<DefaultRetention><Mode>GOVERNANCE</Mode><Years>"
        + digits
        + b"</Years></DefaultRetention></Rule></ObjectLockConfiguration>",
    )
    write("s3_policy", "regression_deep_nesting", b'{"Statement": ' + b"[" * 3000)
    nested = base64.b64encode(b"[" * 3000).decode()
    write("s3_postform", "regression_policy_deep_nesting", form({"policy": nested}, b"x", "b"))
    long_boundary = "b" * 300  # python-multipart refuses more than 256 in its constructor
    write("s3_postform", "regression_long_boundary", form({"key": "k"}, b"x", long_boundary))


def main() -> None:
    shutil.rmtree(HERE / "corpus", ignore_errors=True)
    s3_seeds()
    nbd_seeds()
    regression_seeds()
    for folder in sorted((HERE / "corpus").iterdir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
