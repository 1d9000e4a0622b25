"""What every S3 handler works with: the gateway's settings and one request on its way."""

from __future__ import annotations

from dataclasses import dataclass, field

from store.gateway.http import Request
from store.s3 import sigv4
from store.s3.router import Route


@dataclass
class GatewayConfig:
    region: str = "us-east-1"
    base_domains: list[str] = field(default_factory=list)
    # Object ownership of buckets created without x-amz-object-ownership (docs/s3.md).
    default_object_ownership: str = "ObjectWriter"
    # The length of a day for lifecycle rules and default retention periods (tests shorten it,
    # as Ceph's rgw_lc_debug_interval does).
    day_s: float = 86400.0


@dataclass
class Call:
    """One request on its way through the gateway."""

    request: Request
    route: Route
    request_id: str
    user: str = ""  # "" for an anonymous request
    auth: sigv4.Auth | None = None
    admin: bool = False  # the root user
