"""Every S3 endpoint: (target, method, sub-resource) -> operation, with the query it accepts.

The table follows the Amazon S3 API reference. A request names its operation by its method, by
what it addresses (the service, a bucket or an object) and by the one *sub-resource* key in its
query (``?acl``, ``?uploads``, ``?uploadId=...``); a few operations are told apart by a header or
a parameter (``x-amz-copy-source``, ``list-type=2``, ``id``). The rules that keep a request from
ever reaching an operation it did not name:

- at most one sub-resource key per request; two (``?acl&tagging``) are refused;
- a sub-resource that has no endpoint for the method and target is refused (405 when the
  sub-resource has other methods there, 501 otherwise): ``PUT /b/k?retention`` is never PutObject;
- every other query parameter must be one the operation takes (``versionId`` on GetObjectAcl,
  ``prefix`` on ListObjects...), or one that any request may carry: presigned-URL parameters
  (``X-Amz-*``) and ``x-id`` (which must then name the operation). A parameter S3 defines for
  other operations is InvalidArgument; one S3 does not define is NotImplemented on a write
  and ignored on a read (GET, HEAD), as S3 ignores it (browsers add their own query: a POST
  form's success_action_redirect comes back with bucket, key and etag).

Which operations the gateway implements is the gateway's business: it answers NotImplemented for
an endpoint it has no handler for. This module is pure (no I/O); ``tests/unit/s3`` walks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from store.s3.errors import S3Error

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"

# Conditions that tell endpoints with the same (target, method, sub-resource) apart.
COPY = "copy"  # an x-amz-copy-source header
NO_COPY = "no-copy"
V2 = "list-type=2"
V1 = "no list-type"
WITH_ID = "id"  # an ?id= parameter (one configuration, not the list)
NO_ID = "no id"


@dataclass(frozen=True, slots=True)
class Endpoint:
    operation: str  # the AWS API action name, e.g. "GetObjectAcl"
    target: str  # SERVICE, BUCKET or OBJECT
    method: str
    subresource: str = ""  # the query key that selects it ("" for none)
    params: frozenset[str] = frozenset()  # the other query parameters it takes
    when: str = ""  # a condition telling it from a sibling endpoint

    @property
    def mutates(self) -> bool:
        return self.method in ("PUT", "POST", "DELETE")


_RESPONSE_OVERRIDES = (
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
)
_VERSION = ("versionId",)


def _e(
    op: str, target: str, method: str, sub: str = "", params: Iterable[str] = (), when: str = ""
) -> Endpoint:
    return Endpoint(op, target, method, sub, frozenset(params), when)


def _config(sub: str, name: str, methods: str = "GET PUT DELETE") -> list[Endpoint]:
    """A bucket configuration with Get/Put/Delete<name> on ``?sub``."""
    verbs = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}
    return [_e(verbs[m] + name, BUCKET, m, sub) for m in methods.split()]


def _id_config(sub: str, name: str) -> list[Endpoint]:
    """Analytics, inventory, metrics, intelligent-tiering: configurations named by ``?id=``,
    listed when no id is given."""
    return [
        _e(f"Get{name}Configuration", BUCKET, "GET", sub, ["id"], WITH_ID),
        _e(f"List{name}Configurations", BUCKET, "GET", sub, ["continuation-token"], NO_ID),
        _e(f"Put{name}Configuration", BUCKET, "PUT", sub, ["id"]),
        _e(f"Delete{name}Configuration", BUCKET, "DELETE", sub, ["id"]),
    ]


ENDPOINTS: tuple[Endpoint, ...] = (
    # the service
    _e(
        "ListBuckets",
        SERVICE,
        "GET",
        "",
        ["max-buckets", "continuation-token", "prefix", "bucket-region"],
    ),
    _e("ListBuckets", SERVICE, "HEAD", ""),
    # buckets
    _e("CreateBucket", BUCKET, "PUT"),
    _e("DeleteBucket", BUCKET, "DELETE"),
    _e("HeadBucket", BUCKET, "HEAD"),
    _e(
        "ListObjects",
        BUCKET,
        "GET",
        "",
        ["delimiter", "encoding-type", "marker", "max-keys", "prefix"],
        V1,
    ),
    _e(
        "ListObjectsV2",
        BUCKET,
        "GET",
        "",
        [
            "list-type",
            "continuation-token",
            "delimiter",
            "encoding-type",
            "fetch-owner",
            "max-keys",
            "prefix",
            "start-after",
        ],
        V2,
    ),
    _e("PostObject", BUCKET, "POST"),
    _e("PreflightRequest", BUCKET, "OPTIONS"),
    _e("DeleteObjects", BUCKET, "POST", "delete"),
    _e(
        "ListObjectVersions",
        BUCKET,
        "GET",
        "versions",
        ["delimiter", "encoding-type", "key-marker", "max-keys", "prefix", "version-id-marker"],
    ),
    _e(
        "ListMultipartUploads",
        BUCKET,
        "GET",
        "uploads",
        ["delimiter", "encoding-type", "key-marker", "max-uploads", "prefix", "upload-id-marker"],
    ),
    _e("GetBucketLocation", BUCKET, "GET", "location"),
    _e("GetBucketPolicyStatus", BUCKET, "GET", "policyStatus"),
    _e("GetBucketLifecycleConfiguration", BUCKET, "GET", "lifecycle"),
    _e("PutBucketLifecycleConfiguration", BUCKET, "PUT", "lifecycle"),
    _e("DeleteBucketLifecycle", BUCKET, "DELETE", "lifecycle"),
    _e("GetBucketNotificationConfiguration", BUCKET, "GET", "notification"),
    _e("PutBucketNotificationConfiguration", BUCKET, "PUT", "notification"),
    _e("GetObjectLockConfiguration", BUCKET, "GET", "object-lock"),
    _e("PutObjectLockConfiguration", BUCKET, "PUT", "object-lock"),
    _e("CreateSession", BUCKET, "GET", "session"),
    *_config("accelerate", "BucketAccelerateConfiguration", "GET PUT"),
    *_config("acl", "BucketAcl", "GET PUT"),
    *_config("cors", "BucketCors"),
    *_config("encryption", "BucketEncryption"),
    *_config("logging", "BucketLogging", "GET PUT"),
    *_config("ownershipControls", "BucketOwnershipControls"),
    *_config("policy", "BucketPolicy"),
    *_config("publicAccessBlock", "PublicAccessBlock"),
    *_config("replication", "BucketReplication"),
    *_config("requestPayment", "BucketRequestPayment", "GET PUT"),
    *_config("tagging", "BucketTagging"),
    *_config("versioning", "BucketVersioning", "GET PUT"),
    *_config("website", "BucketWebsite"),
    *_config("abac", "BucketAbac", "GET PUT"),
    *_id_config("analytics", "BucketAnalytics"),
    *_id_config("intelligent-tiering", "BucketIntelligentTiering"),
    *_id_config("inventory", "BucketInventory"),
    *_id_config("metrics", "BucketMetrics"),
    _e("CreateBucketMetadataTableConfiguration", BUCKET, "POST", "metadataTable"),
    _e("GetBucketMetadataTableConfiguration", BUCKET, "GET", "metadataTable"),
    _e("DeleteBucketMetadataTableConfiguration", BUCKET, "DELETE", "metadataTable"),
    _e("CreateBucketMetadataConfiguration", BUCKET, "POST", "metadataConfiguration"),
    _e("GetBucketMetadataConfiguration", BUCKET, "GET", "metadataConfiguration"),
    _e("DeleteBucketMetadataConfiguration", BUCKET, "DELETE", "metadataConfiguration"),
    _e("UpdateBucketMetadataInventoryTableConfiguration", BUCKET, "PUT", "metadataInventoryTable"),
    _e("UpdateBucketMetadataJournalTableConfiguration", BUCKET, "PUT", "metadataJournalTable"),
    # objects
    _e("PutObject", OBJECT, "PUT", "", (), NO_COPY),
    _e("CopyObject", OBJECT, "PUT", "", (), COPY),
    _e("GetObject", OBJECT, "GET", "", ["partNumber", *_VERSION, *_RESPONSE_OVERRIDES]),
    _e("HeadObject", OBJECT, "HEAD", "", ["partNumber", *_VERSION, *_RESPONSE_OVERRIDES]),
    _e("DeleteObject", OBJECT, "DELETE", "", _VERSION),
    _e("PreflightRequest", OBJECT, "OPTIONS"),
    _e("GetObjectAcl", OBJECT, "GET", "acl", _VERSION),
    _e("PutObjectAcl", OBJECT, "PUT", "acl", _VERSION),
    _e("GetObjectAttributes", OBJECT, "GET", "attributes", _VERSION),
    _e("GetObjectLegalHold", OBJECT, "GET", "legal-hold", _VERSION),
    _e("PutObjectLegalHold", OBJECT, "PUT", "legal-hold", _VERSION),
    _e("GetObjectRetention", OBJECT, "GET", "retention", _VERSION),
    _e("PutObjectRetention", OBJECT, "PUT", "retention", _VERSION),
    _e("GetObjectTagging", OBJECT, "GET", "tagging", _VERSION),
    _e("PutObjectTagging", OBJECT, "PUT", "tagging", _VERSION),
    _e("DeleteObjectTagging", OBJECT, "DELETE", "tagging", _VERSION),
    _e("GetObjectTorrent", OBJECT, "GET", "torrent"),
    _e("RestoreObject", OBJECT, "POST", "restore", _VERSION),
    _e("SelectObjectContent", OBJECT, "POST", "select", ["select-type"]),
    _e("RenameObject", OBJECT, "PUT", "renameObject"),
    _e("CreateMultipartUpload", OBJECT, "POST", "uploads"),
    _e("UploadPart", OBJECT, "PUT", "uploadId", ["partNumber"], NO_COPY),
    _e("UploadPartCopy", OBJECT, "PUT", "uploadId", ["partNumber"], COPY),
    _e("CompleteMultipartUpload", OBJECT, "POST", "uploadId"),
    _e("AbortMultipartUpload", OBJECT, "DELETE", "uploadId"),
    _e("ListParts", OBJECT, "GET", "uploadId", ["max-parts", "part-number-marker"]),
)

SUBRESOURCES: frozenset[str] = frozenset(e.subresource for e in ENDPOINTS if e.subresource)
# Parameters S3 defines for some operation (so a misplaced one is InvalidArgument, not unknown).
PARAMETERS: frozenset[str] = frozenset(p for e in ENDPOINTS for p in e.params)

_BY_KEY: dict[tuple[str, str, str], tuple[Endpoint, ...]] = {}
for _endpoint in ENDPOINTS:
    _k = (_endpoint.target, _endpoint.method, _endpoint.subresource)
    _BY_KEY[_k] = (*_BY_KEY.get(_k, ()), _endpoint)


def _holds(when: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    if when == "":
        return True
    if when in (COPY, NO_COPY):
        return ("x-amz-copy-source" in headers) == (when == COPY)
    if when in (V2, V1):
        return ("list-type" in query) == (when == V2)
    return ("id" in query) == (when == WITH_ID)


def _is_global(name: str) -> bool:
    """Parameters any request may carry: presigned-URL auth and hoisted headers, and the SDKs'
    ``x-id`` operation hint."""
    return name == "x-id" or name[:6].lower() == "x-amz-"


def find(
    target: str, method: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> Endpoint:
    """The endpoint a request names, or the S3 error that refuses it.

    >>> find(OBJECT, "GET", {"acl": "", "versionId": "v1"}, {}).operation
    'GetObjectAcl'
    >>> find(OBJECT, "PUT", {"retention": ""}, {}).operation
    'PutObjectRetention'
    >>> find(BUCKET, "PUT", {"acl": "", "tagging": ""}, {})
    Traceback (most recent call last):
    ...
    store.s3.errors.S3Error: a request may name one sub-resource, not acl and tagging
    """
    subs = sorted(k for k in query if k in SUBRESOURCES)
    if len(subs) > 1:
        raise S3Error(
            "InvalidRequest", 400, f"a request may name one sub-resource, not {' and '.join(subs)}"
        )
    sub = subs[0] if subs else ""
    candidates = _BY_KEY.get((target, method, sub))
    if not candidates:
        where = {SERVICE: "the service", BUCKET: "a bucket", OBJECT: "an object"}[target]
        named = f"?{sub} on {where}" if sub else where
        if any(t == target and s == sub for t, _, s in _BY_KEY):
            raise S3Error("MethodNotAllowed", 405, f"{method} is not allowed on {named}")
        raise S3Error("NotImplemented", 501, f"{method} {named} is not implemented")
    endpoint = next(e for e in candidates if _holds(e.when, query, headers))
    for name in query:
        if name == sub or name in endpoint.params or _is_global(name):
            continue
        if name in PARAMETERS:
            raise S3Error(
                "InvalidArgument", 400, f"{name} is not a parameter of {endpoint.operation}"
            )
        if not endpoint.mutates:
            continue  # a read ignores what S3 does not define (a redirect's own query, say)
        raise S3Error("NotImplemented", 501, f"the query parameter {name!r} is not implemented")
    hint = query.get("x-id")
    if hint is not None and hint != endpoint.operation:
        raise S3Error(
            "InvalidArgument", 400, f"x-id names {hint!r} but the request is {endpoint.operation}"
        )
    if endpoint.when == V2 and query.get("list-type") != "2":
        raise S3Error("InvalidArgument", 400, "list-type must be 2")
    if endpoint.when == WITH_ID and not query.get("id"):
        raise S3Error("InvalidArgument", 400, "the id parameter must name a configuration")
    return endpoint
