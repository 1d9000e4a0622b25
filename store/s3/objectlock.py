"""S3 Object Lock: the bucket configuration, per-version retention and legal hold (sans-IO).

A locked bucket keeps every version write-once for as long as its lock holds:

- A *retention* (``Retention``: a mode and a retain-until time) protects one version until that
  time. ``COMPLIANCE`` binds everyone: while it holds, the version can't be deleted and its
  retention can't be shortened, removed or turned into ``GOVERNANCE``; it can only be extended.
  ``GOVERNANCE`` binds those who don't send ``x-amz-bypass-governance-retention: true`` (with the
  ``s3:BypassGovernanceRetention`` permission, which the gateway checks): with the bypass it can
  be shortened, removed, changed, and the version deleted. Anyone may extend either mode. A
  retention whose time has passed protects nothing.
- A *legal hold* (ON/OFF) protects a version from deletion with no end date, whatever its
  retention says, until it is turned OFF; nothing bypasses it.
- The bucket's configuration (``LockConfiguration``) may name a default retention, a mode and a
  period in Days or Years, that a new version gets when its PUT names none (explicit
  ``x-amz-object-lock-*`` headers win). Its ``ObjectLockEnabled`` is always ``Enabled``: once on,
  object lock can't be turned off.

Deleting a key without a version id only adds a delete marker, which locks never prevent; the
rules here are for removing a version (``may_delete``) and replacing a retention
(``check_new_retention``). Both return or raise AWS's codes: past dates are InvalidArgument,
refusals AccessDenied 403. The gateway stores the configuration in the bucket's settings as the
document ``render_configuration`` gives (``to_setting``/``from_setting``), the way CORS is kept,
and a version's retention in its metadata as ``Retention.to_json()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from store.s3 import xml
from store.s3.errors import S3Error

GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)

DAY_S = 86400.0
# AWS's ceiling for a default retention: 100 years, in either unit.
MAX_DAYS = 36500
MAX_YEARS = 100
INT32_MAX = 2**31 - 1

MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
LEGAL_HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"


# -- timestamps ----------------------------------------------------------------------------------

# ISO 8601 in its extended form (dashes and colons), as S3's timestamps are written: a date, or
# a date and time with optional seconds, fraction and zone. The basic form (20300101) is refused
# as S3 refuses it.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)


def parse_timestamp(value: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 timestamp, or None when it is not one.

    A date alone is midnight UTC, and so is a time without a zone (S3 answers in UTC).

    >>> parse_timestamp("2030-01-01T00:00:00Z"), parse_timestamp("2030-01-01T01:00:00.5+01:00")
    (1893456000.0, 1893456000.5)
    >>> parse_timestamp("2030-01-01"), parse_timestamp("20300101"), parse_timestamp("2030-02-30")
    (1893456000.0, None, None)
    """
    found = _TIMESTAMP.fullmatch(value.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        whole = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    offset_s = 0
    if zone is not None and zone not in ("Z", "z"):
        hours = int(zone[1:3])
        minutes = int(zone[-2:]) if len(zone) > 3 else 0
        if hours > 23 or minutes > 59:
            return None
        offset_s = (hours * 3600 + minutes * 60) * (1 if zone[0] == "+" else -1)
    seconds = float(int(whole.timestamp()) - offset_s)
    return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    """One version's retention: protected in ``mode`` until ``until`` (epoch seconds)."""

    mode: str
    until: float

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown object lock mode {self.mode!r}")

    def active(self, now: float) -> bool:
        """Whether it still protects the version (the retain-until time is still ahead)."""
        return now < self.until

    def to_json(self) -> dict[str, Any]:
        """For a version's metadata.

        >>> r = Retention(COMPLIANCE, 1893456000.0)
        >>> r.to_json(), Retention.from_json(r.to_json()) == r
        ({'mode': 'COMPLIANCE', 'until': 1893456000.0}, True)
        """
        return {"mode": self.mode, "until": self.until}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Retention:
        until = data["until"]
        if isinstance(until, bool) or not isinstance(until, int | float):
            raise ValueError(f"a retention's until is a number, not {until!r}")
        return cls(str(data["mode"]), float(until))


@dataclass(frozen=True, slots=True)
class DefaultRetention:
    """A bucket's default retention: ``mode`` for ``days`` or for ``years`` (exactly one)."""

    mode: str
    days: int | None = None
    years: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES or (self.days is None) == (self.years is None):
            raise ValueError("a default retention has a mode and one of days or years")

    def retain_until(self, now: float, day_s: float = DAY_S) -> float:
        """When a version written at ``now`` stops being protected.

        Days are ``day_s`` long (86400 s; tests shorten them as lifecycle's do). Years are
        calendar years in UTC (29 February + 1 year is 1 March), or 365 days when ``day_s`` is
        not a real day.

        >>> DefaultRetention(GOVERNANCE, days=2).retain_until(100.0, day_s=10.0)
        120.0
        >>> leap = parse_timestamp("2028-02-29T12:00:00Z") or 0.0
        >>> xml.iso8601(DefaultRetention(COMPLIANCE, years=1).retain_until(leap))
        '2029-03-01T12:00:00.000Z'
        """
        if self.days is not None:
            return now + self.days * day_s
        assert self.years is not None
        if day_s != DAY_S:
            return now + self.years * 365 * day_s
        start = datetime.fromtimestamp(now, UTC)
        try:
            end = start.replace(year=start.year + self.years)
        except ValueError:  # 29 February into a common year
            end = start.replace(year=start.year + self.years, month=3, day=1)
        return end.timestamp()


@dataclass(frozen=True, slots=True)
class LockConfiguration:
    """A bucket's object lock configuration; lock is always enabled once configured."""

    default: DefaultRetention | None = None


def default_retention(
    config: LockConfiguration | None, now: float, day_s: float = DAY_S
) -> Retention | None:
    """The retention a version written at ``now`` gets when its request names none.

    >>> default_retention(LockConfiguration(DefaultRetention(GOVERNANCE, days=1)), 0.0)
    Retention(mode='GOVERNANCE', until=86400.0)
    >>> default_retention(LockConfiguration(), 0.0) is None
    True
    """
    if config is None or config.default is None:
        return None
    return Retention(config.default.mode, config.default.retain_until(now, day_s))


def require_configuration(config: LockConfiguration | None) -> LockConfiguration:
    """The bucket's configuration, or AWS's refusal of retention and legal hold requests (and of
    ``x-amz-object-lock-*`` headers) on a bucket without object lock."""
    if config is None:
        raise S3Error("InvalidRequest", 400, "Bucket is missing Object Lock Configuration")
    return config


# -- documents -----------------------------------------------------------------------------------


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedXML", 400, message)


def _fields(node: Element, allowed: tuple[str, ...]) -> dict[str, Element]:
    """The children of ``node`` by name: each at most once, none unknown, leaves hold text."""
    if (node.text or "").strip():
        raise _malformed(f"<{node.tag}> holds elements, not text")
    found: dict[str, Element] = {}
    for child in node:
        if child.tag not in allowed or child.tag in found:
            raise _malformed(f"unexpected or repeated <{child.tag}> in <{node.tag}>")
        if (child.tail or "").strip():
            raise _malformed(f"text after <{child.tag}> in <{node.tag}>")
        found[child.tag] = child
    return found


def _leaf(node: Element) -> str:
    if len(node):
        raise _malformed(f"<{node.tag}> holds text, not elements")
    return str(node.text or "").strip()


def _period(node: Element) -> int:
    text = _leaf(node)
    if not re.fullmatch(r"[+-]?\d{1,64}", text) or abs(int(text)) > INT32_MAX:  # <4300 digits
        raise _malformed(f"<{node.tag}> must be an integer")
    value = int(text)
    if value <= 0:
        raise S3Error(
            "InvalidArgument", 400, "Default retention period must be a positive integer value."
        )
    if value > (MAX_DAYS if node.tag == "Days" else MAX_YEARS):
        raise S3Error(
            "InvalidArgument",
            400,
            f"Default retention period is too long: at most {MAX_DAYS} days or {MAX_YEARS} years.",
        )
    return value


def parse_configuration(body: bytes) -> LockConfiguration:
    """A PutObjectLockConfiguration body.

    >>> parse_configuration(
    ...     b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
    ...     b"<DefaultRetention><Mode>COMPLIANCE</Mode><Years>1</Years></DefaultRetention>"
    ...     b"</Rule></ObjectLockConfiguration>"
    ... )
    LockConfiguration(default=DefaultRetention(mode='COMPLIANCE', days=None, years=1))
    """
    found = _fields(xml.parse(body, "ObjectLockConfiguration"), ("ObjectLockEnabled", "Rule"))
    enabled = found.get("ObjectLockEnabled")
    if enabled is None or _leaf(enabled) != "Enabled":
        raise _malformed("ObjectLockEnabled must be Enabled")
    rule = found.get("Rule")
    if rule is None:
        return LockConfiguration()
    retention = _fields(rule, ("DefaultRetention",)).get("DefaultRetention")
    if retention is None:
        raise _malformed("a Rule needs a DefaultRetention")
    parts = _fields(retention, ("Mode", "Days", "Years"))
    mode = _leaf(parts["Mode"]) if "Mode" in parts else ""
    if mode not in MODES:
        raise _malformed("DefaultRetention needs a Mode of GOVERNANCE or COMPLIANCE")
    if ("Days" in parts) == ("Years" in parts):
        raise _malformed("DefaultRetention needs exactly one of Days or Years")
    if "Days" in parts:
        return LockConfiguration(DefaultRetention(mode, days=_period(parts["Days"])))
    return LockConfiguration(DefaultRetention(mode, years=_period(parts["Years"])))


def render_configuration(config: LockConfiguration) -> bytes:
    """The GetObjectLockConfiguration answer (and the stored form)."""
    children = [xml.field("ObjectLockEnabled", "Enabled")]
    default = config.default
    if default is not None:
        period = (
            xml.field("Days", default.days)
            if default.days is not None
            else xml.field("Years", default.years)
        )
        retention = xml.element("DefaultRetention", [xml.field("Mode", default.mode), period])
        children.append(xml.element("Rule", [retention]))
    return xml.document("ObjectLockConfiguration", children)


def to_setting(config: LockConfiguration) -> str:
    """The value kept in the bucket's (JSON) settings: the normalised document as text."""
    return render_configuration(config).decode()


def from_setting(value: str) -> LockConfiguration:
    return parse_configuration(value.encode())


def parse_retention(body: bytes) -> Retention | None:
    """A PutObjectRetention body; None for an empty ``<Retention/>``, which asks to remove the
    retention (allowed only as ``check_new_retention`` says)."""
    found = _fields(xml.parse(body, "Retention"), ("Mode", "RetainUntilDate"))
    if not found:
        return None
    mode = _leaf(found["Mode"]) if "Mode" in found else ""
    if mode not in MODES:
        raise _malformed("Retention needs a Mode of GOVERNANCE or COMPLIANCE")
    if "RetainUntilDate" not in found:
        raise _malformed("Retention needs a RetainUntilDate")
    until = parse_timestamp(_leaf(found["RetainUntilDate"]))
    if until is None:
        raise _malformed("RetainUntilDate must be an ISO 8601 timestamp")
    return Retention(mode, until)


def render_retention(retention: Retention) -> bytes:
    """The GetObjectRetention answer."""
    return xml.document(
        "Retention",
        [
            xml.field("Mode", retention.mode),
            xml.field("RetainUntilDate", xml.iso8601(retention.until)),
        ],
    )


def parse_legal_hold(body: bytes) -> bool:
    """A PutObjectLegalHold body: whether the hold is ON."""
    status = _fields(xml.parse(body, "LegalHold"), ("Status",)).get("Status")
    value = _leaf(status) if status is not None else ""
    if value not in ("ON", "OFF"):
        raise _malformed("LegalHold needs a Status of ON or OFF")
    return value == "ON"


def render_legal_hold(on: bool) -> bytes:
    """The GetObjectLegalHold answer."""
    return xml.document("LegalHold", [xml.field("Status", "ON" if on else "OFF")])


# -- headers -------------------------------------------------------------------------------------


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def retention_from_headers(headers: Mapping[str, str]) -> Retention | None:
    """The retention a PutObject, CopyObject or CreateMultipartUpload names, if any.

    Whether its date is in the future is ``check_new_retention(None, retention, now, ...)``'s
    question, asked with the request's clock.

    >>> retention_from_headers({"X-Amz-Object-Lock-Mode": "GOVERNANCE",
    ...                         "X-Amz-Object-Lock-Retain-Until-Date": "2030-01-01T00:00:00Z"})
    Retention(mode='GOVERNANCE', until=1893456000.0)
    """
    found = _lower(headers)
    mode, until = found.get(MODE_HEADER), found.get(UNTIL_HEADER)
    if mode is None and until is None:
        return None
    if mode is None or until is None:
        raise S3Error(
            "InvalidArgument",
            400,
            f"{UNTIL_HEADER} and {MODE_HEADER} must both be supplied",
        )
    if mode not in MODES:
        raise S3Error("InvalidArgument", 400, "Unknown wormMode directive.")
    seconds = parse_timestamp(until)
    if seconds is None:
        raise S3Error(
            "InvalidArgument", 400, "The retain until date must be provided in ISO 8601 format"
        )
    return Retention(mode, seconds)


def legal_hold_from_headers(headers: Mapping[str, str]) -> bool | None:
    """The legal hold a write names (``x-amz-object-lock-legal-hold``): True, False or None."""
    value = _lower(headers).get(LEGAL_HOLD_HEADER)
    if value is None:
        return None
    if value not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", 400, "Legal Hold must be either of 'ON' or 'OFF'")
    return value == "ON"


def bypass_from_headers(headers: Mapping[str, str]) -> bool:
    """Whether the request asks to bypass GOVERNANCE retention (its permission is checked
    elsewhere)."""
    return _lower(headers).get(BYPASS_HEADER, "").strip().lower() == "true"


def lock_headers(retention: Retention | None, legal_hold: bool | None) -> list[tuple[str, str]]:
    """The object lock headers of a GetObject or HeadObject answer.

    >>> lock_headers(Retention(COMPLIANCE, 0.0), True)  # doctest: +NORMALIZE_WHITESPACE
    [('x-amz-object-lock-mode', 'COMPLIANCE'),
     ('x-amz-object-lock-retain-until-date', '1970-01-01T00:00:00.000Z'),
     ('x-amz-object-lock-legal-hold', 'ON')]
    """
    out = []
    if retention is not None:
        out += [(MODE_HEADER, retention.mode), (UNTIL_HEADER, xml.iso8601(retention.until))]
    if legal_hold is not None:
        out.append((LEGAL_HOLD_HEADER, "ON" if legal_hold else "OFF"))
    return out


# -- rules ---------------------------------------------------------------------------------------


def check_new_retention(
    old: Retention | None, new: Retention | None, now: float, bypass_governance: bool
) -> None:
    """Raise unless a version whose retention is ``old`` may get ``new`` (None removes it).

    A retain-until date must lie ahead (InvalidArgument). Keeping or extending the same mode is
    always allowed; while ``old`` is in effect anything else (shortening, removing, changing the
    mode) needs GOVERNANCE and the bypass, and is never allowed under COMPLIANCE (AccessDenied).
    """
    if new is not None and not new.active(now):
        raise S3Error("InvalidArgument", 400, "The retain until date must be in the future!")
    if old is None or not old.active(now):
        return
    if new is not None and new.mode == old.mode and new.until >= old.until:
        return
    if old.mode == COMPLIANCE:
        raise S3Error(
            "AccessDenied",
            403,
            "Access Denied: a COMPLIANCE retention can only be extended while it is in effect",
        )
    if not bypass_governance:
        raise S3Error(
            "AccessDenied",
            403,
            "Access Denied: shortening, removing or changing a GOVERNANCE retention needs "
            f"{BYPASS_HEADER}",
        )


def may_delete(
    retention: Retention | None, legal_hold: bool, now: float, bypass_governance: bool
) -> str | None:
    """None when the version may be removed, else why not (the caller answers AccessDenied).

    >>> may_delete(Retention(GOVERNANCE, 10.0), False, 5.0, bypass_governance=True) is None
    True
    >>> may_delete(None, True, 5.0, bypass_governance=True)
    'the object version is under a legal hold'
    """
    if legal_hold:
        return "the object version is under a legal hold"
    if retention is None or not retention.active(now):
        return None
    until = xml.iso8601(retention.until)
    if retention.mode == COMPLIANCE:
        return f"the object version is locked in COMPLIANCE mode until {until}"
    if not bypass_governance:
        return (
            f"the object version is locked in GOVERNANCE mode until {until} "
            f"(deleting it needs {BYPASS_HEADER})"
        )
    return None
