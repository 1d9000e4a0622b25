"""Access control lists as S3 defines them: canned ACLs, grant headers, AccessControlPolicy XML.

An ACL is a resource's owner plus a list of grants, each giving one permission (FULL_CONTROL,
READ, WRITE, READ_ACP, WRITE_ACP) to one grantee: a canonical user (here: a user name, which is
also the ID S3 responses show) or one of S3's predefined groups (AllUsers: anyone, anonymous
included; AuthenticatedUsers: any signed request; LogDelivery). Grants by e-mail address cannot
be resolved here and are refused as AWS refuses an unknown address. Stored form (JSON): a list of
``[kind, grantee, permission]`` with kind "user" or "group" (the group's URI).

What a permission allows is S3's table (``PERMISSION_OF``); the decision itself, with bucket
policies, ownership controls and the public access block, is ``store.s3.access``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from store.s3 import xml
from store.s3.errors import S3Error

FULL_CONTROL, READ, WRITE, READ_ACP, WRITE_ACP = (
    "FULL_CONTROL",
    "READ",
    "WRITE",
    "READ_ACP",
    "WRITE_ACP",
)
PERMISSIONS = (FULL_CONTROL, READ, WRITE, READ_ACP, WRITE_ACP)
GROUPS = "http://acs.amazonaws.com/groups/"
ALL_USERS = GROUPS + "global/AllUsers"
AUTHENTICATED_USERS = GROUPS + "global/AuthenticatedUsers"
LOG_DELIVERY = GROUPS + "s3/LogDelivery"
KNOWN_GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
# The canonical user AWS grants READ in aws-exec-read (EC2 reading AMI bundles); no user here.
EC2_READER = "6aa5a366c34c1cbe25dc49211496e913e0351eb0e8c37aa3477e40942ec6b97c"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_GRANTS = 100

CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
GRANT_HEADERS = {
    "x-amz-grant-full-control": FULL_CONTROL,
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
}


@dataclass(frozen=True, slots=True)
class Grant:
    kind: str  # "user" or "group"
    grantee: str  # a user name, or a group URI
    permission: str

    def to_json(self) -> list[str]:
        return [self.kind, self.grantee, self.permission]

    @classmethod
    def from_json(cls, item: Sequence[str]) -> Grant:
        return cls(item[0], item[1], item[2])


def user(name: str, permission: str) -> Grant:
    return Grant("user", name, permission)


def group(uri: str, permission: str) -> Grant:
    return Grant("group", uri, permission)


def private(owner: str) -> tuple[Grant, ...]:
    return (user(owner, FULL_CONTROL),)


def canned(name: str, owner: str, bucket_owner: str, *, for_bucket: bool) -> tuple[Grant, ...]:
    """The grants of a canned ACL, as the S3 user guide's table lists them.

    >>> canned("public-read", "ann", "ann", for_bucket=True)[0].permission
    'READ'
    >>> canned("bucket-owner-read", "bob", "ann", for_bucket=False)[1].grantee
    'ann'
    """
    # Grants to groups first, the owner's last: the order S3 (and RGW) list them in, which some
    # clients and test suites compare position by position.
    base = private(owner)
    if name == "private":
        return base
    if name == "public-read":
        return (group(ALL_USERS, READ), *base)
    if name == "public-read-write":
        return (group(ALL_USERS, READ), group(ALL_USERS, WRITE), *base)
    if name == "authenticated-read":
        return (group(AUTHENTICATED_USERS, READ), *base)
    if name == "aws-exec-read":
        return (*base, user(EC2_READER, READ))
    if name in ("bucket-owner-read", "bucket-owner-full-control"):
        # S3 ignores these on buckets; on an object the bucket owner is granted (once).
        if for_bucket or bucket_owner == owner:
            return base
        return (*base, user(bucket_owner, READ if name.endswith("read") else FULL_CONTROL))
    if name == "log-delivery-write":
        if not for_bucket:
            raise S3Error("InvalidArgument", 400, "log-delivery-write applies to buckets only")
        return (group(LOG_DELIVERY, WRITE), group(LOG_DELIVERY, READ_ACP), *base)
    raise S3Error("InvalidArgument", 400, f"unknown canned ACL {name!r}")


_GRANTEE = re.compile(
    r'\s*(id|uri|emailAddress)\s*=\s*(?:"([^"]*)"|([^",\s]+))\s*(?:,|$)', re.IGNORECASE
)


def _parse_grantees(value: str) -> list[tuple[str, str]]:
    """``id="..", uri="..", emailAddress=".."`` of a grant header.

    >>> _parse_grantees('id="ann", uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    [('id', 'ann'), ('uri', 'http://acs.amazonaws.com/groups/global/AllUsers')]
    """
    out, pos = [], 0
    while pos < len(value):
        found = _GRANTEE.match(value, pos)
        if found is None:
            raise S3Error("InvalidArgument", 400, f"malformed grant header value {value!r}")
        grantee = found[2] if found[2] is not None else found[3]
        out.append((found.group(1).lower().replace("emailaddress", "emailAddress"), grantee))
        pos = found.end()
    if not out:
        raise S3Error("InvalidArgument", 400, "a grant header must name a grantee")
    return out


def _grantee(kind: str, value: str, user_exists: Callable[[str], bool]) -> Grant | None:
    if kind == "emailAddress":
        raise S3Error(
            "UnresolvableGrantByEmailAddress",
            400,
            "the e-mail address you provided does not match any account on record",
        )
    if kind == "uri":
        if value not in KNOWN_GROUPS:
            raise S3Error("InvalidArgument", 400, f"unknown group {value!r}")
        return Grant("group", value, "")
    if not user_exists(value):
        raise S3Error("InvalidArgument", 400, f"invalid id: no user {value!r}")
    return Grant("user", value, "")


def from_headers(
    headers: Mapping[str, str],
    owner: str,
    bucket_owner: str,
    *,
    for_bucket: bool,
    user_exists: Callable[[str], bool],
) -> tuple[Grant, ...] | None:
    """The ACL a request asks for with ``x-amz-acl`` or ``x-amz-grant-*``; None when it names
    none. Both at once is InvalidRequest, as in S3. Explicit grants replace the default ACL
    entirely (the owner keeps control of the resource as its owner, not through a grant)."""
    name = headers.get("x-amz-acl")
    named = [(h, headers[h]) for h in GRANT_HEADERS if h in headers]
    if name is not None and named:
        raise S3Error(
            "InvalidRequest", 400, "specifying both canned ACLs and header grants is not allowed"
        )
    if name is not None:
        return canned(name.strip(), owner, bucket_owner, for_bucket=for_bucket)
    if not named:
        return None
    grants: list[Grant] = []
    for header, value in named:
        for kind, grantee in _parse_grantees(value):
            g = _grantee(kind, grantee, user_exists)
            if g is not None:
                grants.append(Grant(g.kind, g.grantee, GRANT_HEADERS[header]))
    return _checked(grants)


def _checked(grants: list[Grant]) -> tuple[Grant, ...]:
    if len(grants) > MAX_GRANTS:
        raise S3Error("MalformedACLError", 400, f"an ACL may hold at most {MAX_GRANTS} grants")
    unique: dict[Grant, None] = dict.fromkeys(grants)
    return tuple(unique)


def _malformed(message: str) -> S3Error:
    return S3Error(
        "MalformedACLError",
        400,
        "the XML you provided was not well-formed or did not validate against our published "
        f"schema: {message}",
    )


def parse_policy(body: bytes, user_exists: Callable[[str], bool]) -> tuple[str, tuple[Grant, ...]]:
    """(owner id or "", grants) of an AccessControlPolicy document (PutBucketAcl/PutObjectAcl)."""
    root = xml.parse(body, "AccessControlPolicy")
    owner = root.find("Owner")
    owner_id = xml.text(owner, "ID") if owner is not None else ""
    acl = root.find("AccessControlList")
    if acl is None:
        raise _malformed("AccessControlList is missing")
    grants: list[Grant] = []
    for node in acl:
        if node.tag != "Grant":
            raise _malformed(f"unexpected <{node.tag}>")
        grantee = node.find("Grantee")
        permission = xml.text(node, "Permission")
        if grantee is None or permission not in PERMISSIONS:
            raise _malformed("each Grant needs a Grantee and a valid Permission")
        kind = next((v for k, v in grantee.attrib.items() if k.rsplit("}", 1)[-1] == "type"), "")
        if kind == "CanonicalUser":
            g = _grantee("id", xml.text(grantee, "ID"), user_exists)
        elif kind == "Group":
            g = _grantee("uri", xml.text(grantee, "URI"), user_exists)
        elif kind == "AmazonCustomerByEmail":
            g = _grantee("emailAddress", xml.text(grantee, "EmailAddress"), user_exists)
        else:
            raise _malformed(f"unknown grantee type {kind!r}")
        assert g is not None
        grants.append(Grant(g.kind, g.grantee, permission))
    return owner_id, _checked(grants)


def render_policy(owner: str, grants: Iterable[Grant]) -> bytes:
    """GetBucketAcl / GetObjectAcl."""
    items = []
    # group grants first, then users (as S3 lists them; some clients compare by position)
    for g in sorted(grants, key=lambda g: g.kind != "group"):
        if g.kind == "user":
            who = (
                f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser">'
                f"{xml.field('ID', g.grantee)}{xml.field('DisplayName', g.grantee)}</Grantee>"
            )
        else:
            uri = xml.field("URI", g.grantee)
            who = f'<Grantee xmlns:xsi="{XSI}" xsi:type="Group">{uri}</Grantee>'
        items.append(f"<Grant>{who}{xml.field('Permission', g.permission)}</Grant>")
    return xml.document(
        "AccessControlPolicy",
        [xml.owner(owner), xml.element("AccessControlList", items)],
    )


def is_public(grants: Iterable[Grant]) -> bool:
    """Grants to AllUsers or AuthenticatedUsers are public (S3 Block Public Access's rule)."""
    return any(g.kind == "group" and g.grantee in (ALL_USERS, AUTHENTICATED_USERS) for g in grants)


def permits(
    grants: Iterable[Grant], principal: str, permission: str, *, ignore_public: bool
) -> bool:
    """Does some grant give ``principal`` ("" for anonymous) ``permission``?"""
    for g in grants:
        if g.permission not in (permission, FULL_CONTROL):
            continue
        if g.kind == "user" and principal and g.grantee == principal:
            return True
        everyone = g.grantee == ALL_USERS or (g.grantee == AUTHENTICATED_USERS and principal)
        if g.kind == "group" and not ignore_public and everyone:
            return True
    return False


def to_json(grants: Iterable[Grant]) -> list[list[str]]:
    return [g.to_json() for g in grants]


def from_json(items: Iterable[Sequence[str]] | None, owner: str) -> tuple[Grant, ...]:
    """Stored grants; a resource without stored grants has the private ACL."""
    return private(owner) if items is None else tuple(Grant.from_json(i) for i in items)
