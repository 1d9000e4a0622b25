"""When lifecycle rules are due (sans-IO): a version's expiry, a noncurrent version's, an expired
delete marker, an upload's abort; and the x-amz-expiration and x-amz-abort-* headers saying so.
The rules themselves are store/s3/lifecycle.py's."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from store.s3.lifecycle import DAY_S, Rule


def after_days(start: float, days: int, day_s: float = DAY_S) -> float:
    """When an action ``days`` after ``start`` is due: the next midnight after ``start``, plus
    ``days`` (with ``day_s`` a "midnight" is a multiple of ``day_s``).

    >>> from store.s3 import xml
    >>> from store.s3.lifecycle import parse_timestamp
    >>> xml.iso8601(after_days(parse_timestamp("2014-01-15T10:30:00Z") or 0.0, 3))
    '2014-01-19T00:00:00.000Z'
    >>> after_days(10.0, 2, day_s=1.0), after_days(10.5, 2, day_s=1.0)
    (13.0, 13.0)
    """
    return (math.floor(start / day_s) + 1 + days) * day_s


def matches(rule: Rule, key: str, size: int, tags: Mapping[str, str]) -> bool:
    """Whether ``rule`` is enabled and its filter selects this version."""
    return rule.enabled and rule.filter.selects(key, size, tags)


def _first_due(candidates: Iterable[tuple[Rule, float | None]]) -> tuple[Rule, float] | None:
    """The rule due soonest (the first written among equals)."""
    best: tuple[Rule, float] | None = None
    for rule, at in candidates:
        if at is not None and (best is None or at < best[1]):
            best = rule, at
    return best


def _expires_at(rule: Rule, mtime: float, day_s: float) -> float | None:
    expiration = rule.expiration
    if expiration is None:
        return None
    if expiration.days is not None:
        return after_days(mtime, expiration.days, day_s)
    return expiration.date


def _current_expiry(
    rules: Iterable[Rule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    mtime: float,
    day_s: float,
) -> tuple[Rule, float] | None:
    return _first_due(
        (rule, _expires_at(rule, mtime, day_s)) for rule in rules if matches(rule, key, size, tags)
    )


def expiration_due(
    rules: Iterable[Rule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    mtime: float,
    now: float,
    day_s: float = DAY_S,
) -> Rule | None:
    """The rule that expires this current version (last modified ``mtime``) by ``now``, if any.

    In a versioned bucket expiring the current version means adding a delete marker.
    """
    found = _current_expiry(rules, key, size, tags, mtime, day_s)
    return found[0] if found is not None and found[1] <= now else None


def noncurrent_due(
    rules: Iterable[Rule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    noncurrent_since: float,
    newer_noncurrent: int,
    now: float,
    day_s: float = DAY_S,
) -> Rule | None:
    """The rule that removes this noncurrent version by ``now``, if any.

    ``noncurrent_since`` is when its successor was written; ``newer_noncurrent`` counts the
    noncurrent versions of the key newer than this one: a rule keeping ``NewerNoncurrentVersions``
    spares it while fewer than that many are newer.
    """
    found = _first_due(
        (rule, after_days(noncurrent_since, rule.noncurrent.days, day_s))
        for rule in rules
        if rule.noncurrent is not None
        and matches(rule, key, size, tags)
        and newer_noncurrent >= (rule.noncurrent.newer_versions or 0)
    )
    return found[0] if found is not None and found[1] <= now else None


def delete_marker_expired(
    rules: Iterable[Rule],
    key: str,
    only_version_left: bool,
    *,
    mtime: float | None = None,
    now: float | None = None,
    day_s: float = DAY_S,
) -> bool:
    """Whether a delete marker that is the current version of ``key`` should be removed.

    Only a marker with no other versions left (an expired object delete marker) ever is: at once
    under ``ExpiredObjectDeleteMarker``, and, given the marker's ``mtime`` and ``now``, once a
    Days or Date rule would expire it. A marker has no tags and no size.
    """
    if not only_version_left:
        return False
    for rule in rules:
        if rule.expiration is None or not matches(rule, key, 0, {}):
            continue
        if rule.expiration.expired_object_delete_marker:
            return True
        if mtime is not None and now is not None:
            at = _expires_at(rule, mtime, day_s)
            if at is not None and at <= now:
                return True
    return False


def _upload_rules(rules: Iterable[Rule], key: str) -> Iterable[Rule]:
    # Uploads have no tags or size: only prefix filters select them.
    for rule in rules:
        selector = rule.filter
        if rule.abort_days is None or not rule.enabled or selector.tags or selector.by_size:
            continue
        if key.startswith(selector.prefix or ""):
            yield rule


def _abort_at(
    rules: Iterable[Rule], key: str, initiated: float, day_s: float
) -> tuple[Rule, float] | None:
    return _first_due(
        (rule, after_days(initiated, rule.abort_days or 0, day_s))
        for rule in _upload_rules(rules, key)
    )


def abort_due(
    rules: Iterable[Rule], key: str, initiated: float, now: float, day_s: float = DAY_S
) -> Rule | None:
    """The rule that aborts an upload of ``key`` begun at ``initiated`` by ``now``, if any."""
    found = _abort_at(rules, key, initiated, day_s)
    return found[0] if found is not None and found[1] <= now else None


def _header_id(rule_id: str) -> str:
    # The ID goes inside a quoted header value: percent-encode anything that could end the
    # quotes or the header (quotes, backslashes, controls, non-ASCII).
    return quote(rule_id, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\%'))


def _http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def expiration_header(
    rules: Iterable[Rule],
    key: str,
    size: int,
    tags: Mapping[str, str],
    mtime: float,
    day_s: float = DAY_S,
) -> str | None:
    """The ``x-amz-expiration`` value of a PUT, GET or HEAD answer for this current version.

    >>> from store.s3.lifecycle import ENABLED, Expiration, parse_timestamp
    >>> rule = Rule(ENABLED, rule_id="picture-deletion-rule", expiration=Expiration(days=3))
    >>> expiration_header([rule], "a.jpg", 1, {}, parse_timestamp("2022-12-19T10:00:00Z") or 0)
    'expiry-date="Fri, 23 Dec 2022 00:00:00 GMT", rule-id="picture-deletion-rule"'
    """
    found = _current_expiry(rules, key, size, tags, mtime, day_s)
    if found is None:
        return None
    rule, at = found
    return f'expiry-date="{_http_date(at)}", rule-id="{_header_id(rule.rule_id)}"'


def abort_headers(
    rules: Iterable[Rule], key: str, initiated: float, day_s: float = DAY_S
) -> list[tuple[str, str]]:
    """The ``x-amz-abort-date`` and ``x-amz-abort-rule-id`` headers of a CreateMultipartUpload
    (or ListParts) answer, when a rule will abort the upload."""
    found = _abort_at(rules, key, initiated, day_s)
    if found is None:
        return []
    rule, at = found
    return [("x-amz-abort-date", _http_date(at)), ("x-amz-abort-rule-id", _header_id(rule.rule_id))]
