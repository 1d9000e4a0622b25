"""One request on its way through the S3 gateway (its settings are ``store.config.S3Config``)."""

from __future__ import annotations

from dataclasses import dataclass

from store.gateway.http import Request
from store.s3 import sigv4
from store.s3.router import Route


@dataclass
class Call:
    """One request on its way through the gateway."""

    request: Request
    route: Route
    request_id: str
    user: str = ""  # "" for an anonymous request
    auth: sigv4.Auth | None = None
    admin: bool = False  # the root user
