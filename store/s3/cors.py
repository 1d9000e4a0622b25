"""Bucket CORS: the configuration document, preflight answers and response headers (sans-IO).

Rules match as S3 matches them: the first rule whose AllowedOrigin (one ``*`` wildcard allowed)
matches the Origin, whose AllowedMethod has the method, and whose AllowedHeader patterns cover
every requested header.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from store.s3 import xml
from store.s3.errors import S3Error

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


@dataclass(frozen=True, slots=True)
class Rule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age_s: int | None = None
    rule_id: str = ""

    def matches(self, origin: str, method: str, request_headers: list[str]) -> bool:
        if method not in self.methods:
            return False
        if not any(fnmatch.fnmatchcase(origin, o) for o in self.origins):
            return False
        allowed = [h.lower() for h in self.headers]
        return all(any(fnmatch.fnmatchcase(h.lower(), a) for a in allowed) for h in request_headers)


def parse(body: bytes) -> list[Rule]:
    root = xml.parse(body, "CORSConfiguration")
    rules = []
    for node in root.findall("CORSRule"):
        origins = tuple(o.text or "" for o in node.findall("AllowedOrigin"))
        methods = tuple(m.text or "" for m in node.findall("AllowedMethod"))
        if not origins or not methods or any(m not in METHODS for m in methods):
            raise S3Error(
                "MalformedXML",
                400,
                "each CORSRule needs AllowedOrigin and "
                "AllowedMethod (GET, PUT, POST, DELETE or HEAD)",
            )
        if any(o.count("*") > 1 for o in origins):
            raise S3Error("InvalidRequest", 400, "AllowedOrigin can have at most one wildcard")
        max_age = xml.text(node, "MaxAgeSeconds")
        rules.append(
            Rule(
                origins,
                methods,
                tuple(h.text or "" for h in node.findall("AllowedHeader")),
                tuple(h.text or "" for h in node.findall("ExposeHeader")),
                int(max_age) if re.fullmatch(r"[0-9]{1,10}", max_age) else None,
                xml.text(node, "ID"),
            )
        )
    if not rules or len(rules) > 100:
        raise S3Error("MalformedXML", 400, "a CORS configuration has 1 to 100 rules")
    return rules


def render(rules: list[Rule]) -> bytes:
    out = []
    for rule in rules:
        children = [xml.field("ID", rule.rule_id)] if rule.rule_id else []
        children += [xml.field("AllowedOrigin", o) for o in rule.origins]
        children += [xml.field("AllowedMethod", m) for m in rule.methods]
        children += [xml.field("AllowedHeader", h) for h in rule.headers]
        children += [xml.field("ExposeHeader", h) for h in rule.expose]
        if rule.max_age_s is not None:
            children.append(xml.field("MaxAgeSeconds", rule.max_age_s))
        out.append(xml.element("CORSRule", children))
    return xml.document("CORSConfiguration", out)


def find(rules: list[Rule], origin: str, method: str, request_headers: list[str]) -> Rule | None:
    return next((r for r in rules if r.matches(origin, method, request_headers)), None)


def headers(
    rule: Rule,
    origin: str,
    *,
    preflight: bool,
    method: str = "",
    request_headers: list[str] | None = None,
) -> list[tuple[str, str]]:
    out = [
        ("access-control-allow-origin", "*" if rule.origins == ("*",) else origin),
        ("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
    ]
    # S3 names the rule's methods on actual requests too, not only on preflights.
    out.append(("access-control-allow-methods", ", ".join(rule.methods)))
    if preflight:
        if request_headers:
            out.append(("access-control-allow-headers", ", ".join(request_headers)))
        if rule.max_age_s is not None:
            out.append(("access-control-max-age", str(rule.max_age_s)))
    elif rule.expose:
        out.append(("access-control-expose-headers", ", ".join(rule.expose)))
    return out
