"""Bucket lifecycle configurations: the document, and when each rule acts on a version (sans-IO).

A configuration is 1 to 1000 rules. Each has an optional ``ID`` (up to 255 characters, unique;
none is made up when a client sends none), a ``Status`` (``Disabled`` rules never act), a filter
and at least one action. The filter is the legacy rule-level ``<Prefix>`` or a ``<Filter>`` with
exactly one of ``Prefix``, ``Tag``, ``ObjectSizeGreaterThan``, ``ObjectSizeLessThan`` or ``And``
(a prefix, tags and the two sizes together); an empty or absent filter selects every object. A
filter selects a version when its key starts with the prefix, every tag is on the version with
that value (a tag without ``Value`` wants an empty value), and its size is strictly between the
two bounds. The actions:

- ``Expiration`` of current versions after ``Days`` or from a ``Date`` (midnight UTC), or
  ``ExpiredObjectDeleteMarker``: remove a delete marker that is the last version of its key.
  Days and Date rules remove such lone markers too once they are that old, as S3 does.
- ``NoncurrentVersionExpiration``: remove a version ``NoncurrentDays`` after it stopped being
  current, keeping the ``NewerNoncurrentVersions`` (1-100) newest noncurrent versions whatever
  their age.
- ``AbortIncompleteMultipartUpload``: abort an upload ``DaysAfterInitiation`` after it began.
  Uploads have no tags or size yet, so S3 refuses this action in a rule that filters on them.

``Transition`` and ``NoncurrentVersionTransition`` are refused (501 NotImplemented): this store
has one storage class.

Time: S3 counts days from the midnight UTC after the event (creation, becoming noncurrent,
initiation): an object created 15 January 10:30 with ``Days`` 3 expires 19 January 00:00. With
``day_s`` (86400 s unless tests shorten the day) a "midnight" is a multiple of ``day_s`` since the
epoch, and an event exactly on one counts from the next, as MinIO computes it. A ``Date`` is an
absolute time whatever ``day_s`` is. When several rules would remove the same version, the one
due first wins (S3 honours the shorter expiration).

Errors are AWS's: MalformedXML for structure (unknown, repeated or missing elements, a filter
with two predicates, non-numbers), InvalidArgument for bad values, InvalidRequest for
combinations S3 refuses. The gateway keeps a configuration in the bucket's settings as the
normalised document (``to_setting``/``from_setting``, the way CORS is kept) and re-reads it with
``parse``; ``parse(render(rules)) == rules``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from store.s3 import xml
from store.s3.errors import S3Error
from store.s3.objectlock import parse_timestamp

ENABLED, DISABLED = "Enabled", "Disabled"
DAY_S = 86400.0
MAX_RULES = 1000
MAX_ID_CHARS = 255
MAX_NEWER_NONCURRENT = 100
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Filter:
    """Which versions a rule acts on. ``and_`` and ``legacy`` only say how it is written:
    inside ``<And>``, or as the rule's own ``<Prefix>``."""

    prefix: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None  # ObjectSizeGreaterThan, bytes
    size_lt: int | None = None  # ObjectSizeLessThan, bytes
    and_: bool = False
    legacy: bool = False

    def selects(self, key: str, size: int, tags: Mapping[str, str]) -> bool:
        """
        >>> f = Filter("logs/", (("class", "tmp"),), size_gt=10, and_=True)
        >>> f.selects("logs/a", 11, {"class": "tmp", "x": "y"}), f.selects("logs/a", 10, {})
        (True, False)
        """
        if self.prefix and not key.startswith(self.prefix):
            return False
        if any(tags.get(name) != value for name, value in self.tags):
            return False
        if self.size_gt is not None and size <= self.size_gt:
            return False
        return self.size_lt is None or size < self.size_lt

    @property
    def by_size(self) -> bool:
        return self.size_gt is not None or self.size_lt is not None


@dataclass(frozen=True, slots=True)
class Expiration:
    """Exactly one of: ``days``; ``date`` (epoch seconds at a midnight UTC);
    ``expired_object_delete_marker``."""

    days: int | None = None
    date: float | None = None
    expired_object_delete_marker: bool | None = None


@dataclass(frozen=True, slots=True)
class NoncurrentExpiration:
    days: int
    newer_versions: int | None = None  # NewerNoncurrentVersions: how many to keep regardless


@dataclass(frozen=True, slots=True)
class Rule:
    status: str
    filter: Filter = Filter()
    rule_id: str = ""
    expiration: Expiration | None = None
    noncurrent: NoncurrentExpiration | None = None
    abort_days: int | None = None  # AbortIncompleteMultipartUpload's DaysAfterInitiation

    @property
    def enabled(self) -> bool:
        return self.status == ENABLED


# -- parsing -------------------------------------------------------------------------------------

ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
TRANSITIONS = ("Transition", "NoncurrentVersionTransition")  # refused: one storage class
RULE_ELEMENTS = ("ID", "Prefix", "Filter", "Status", *ACTIONS, *TRANSITIONS)
FILTER_ELEMENTS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedXML", 400, message)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def _refused(message: str) -> S3Error:
    return S3Error("InvalidRequest", 400, message)


def _children(
    node: Element, allowed: Iterable[str], repeatable: Iterable[str] = ()
) -> dict[str, list[Element]]:
    """The children of a container by name; unknown ones, repeats of a single element and stray
    text are malformed."""
    if (node.text or "").strip():
        raise _malformed(f"<{node.tag}> holds elements, not text")
    names, repeats = set(allowed), set(repeatable)
    found: dict[str, list[Element]] = {}
    for child in node:
        if child.tag not in names:
            raise _malformed(f"unexpected <{child.tag}> in <{node.tag}>")
        if child.tag in found and child.tag not in repeats:
            raise _malformed(f"<{node.tag}> has more than one <{child.tag}>")
        if (child.tail or "").strip():
            raise _malformed(f"text after <{child.tag}> in <{node.tag}>")
        found.setdefault(child.tag, []).append(child)
    return found


def _one(found: Mapping[str, list[Element]], name: str) -> Element | None:
    nodes = found.get(name)
    return nodes[0] if nodes else None


def _text(node: Element) -> str:
    """A leaf's text exactly as sent (prefixes, IDs and tags keep their spaces)."""
    if len(node):
        raise _malformed(f"<{node.tag}> holds text, not elements")
    return node.text or ""


def _integer(node: Element, limit: int = INT32_MAX) -> int:
    text = _text(node).strip()
    if not re.fullmatch(r"[+-]?\d{1,64}", text) or abs(int(text)) > limit:  # int(): <4300 digits
        raise _malformed(f"<{node.tag}> must be an integer")
    return int(text)


def _positive(node: Element, action: str) -> int:
    value = _integer(node)
    if value <= 0:
        raise _invalid(f"'{node.tag}' for {action} action must be a positive integer")
    return value


def _tag(node: Element) -> tuple[str, str]:
    found = _children(node, ("Key", "Value"))
    key = _one(found, "Key")
    if key is None:
        raise _malformed("a Tag needs a Key")
    value = _one(found, "Value")
    pair = (_text(key), _text(value) if value is not None else "")
    if not pair[0] or len(pair[0]) > 128 or len(pair[1]) > 256:
        raise S3Error("InvalidTag", 400, "a tag key is 1-128 characters, its value up to 256")
    return pair


def _size(node: Element) -> int:
    value = _integer(node, INT64_MAX)
    if value < 0 or (value == 0 and node.tag == "ObjectSizeLessThan"):
        raise _invalid(f"'{node.tag}' must be a positive integer")
    return value


def _predicates(found: Mapping[str, list[Element]], and_: bool) -> Filter:
    prefix = _one(found, "Prefix")
    gt, lt = _one(found, "ObjectSizeGreaterThan"), _one(found, "ObjectSizeLessThan")
    result = Filter(
        _text(prefix) if prefix is not None else None,
        tuple(_tag(t) for t in found.get("Tag", [])),
        _size(gt) if gt is not None else None,
        _size(lt) if lt is not None else None,
        and_=and_,
    )
    if len({name for name, _ in result.tags}) < len(result.tags):
        raise _refused("Duplicate Tag Keys are not allowed.")
    low, high = result.size_gt, result.size_lt
    if low is not None and high is not None and high <= low:
        raise _refused("ObjectSizeLessThan must be greater than ObjectSizeGreaterThan")
    return result


def _filter(node: Element) -> Filter:
    found = _children(node, FILTER_ELEMENTS, repeatable=("Tag",))
    if sum(len(nodes) for nodes in found.values()) > 1:
        raise _malformed(
            "a Filter has one of Prefix, Tag, ObjectSizeGreaterThan, ObjectSizeLessThan or And "
            "(combine them inside And)"
        )
    conjunction = _one(found, "And")
    if conjunction is None:
        return _predicates(found, and_=False)
    inner = _children(conjunction, FILTER_ELEMENTS[:-1], repeatable=("Tag",))
    if not inner:
        raise _malformed("And needs a Prefix, Tags or object sizes")
    return _predicates(inner, and_=True)


def _expiration(node: Element) -> Expiration:
    found = _children(node, ("Days", "Date", "ExpiredObjectDeleteMarker"))
    days_node, date_node = _one(found, "Days"), _one(found, "Date")
    marker_node = _one(found, "ExpiredObjectDeleteMarker")
    if days_node is not None and date_node is not None:
        raise _malformed("Expiration has Days or Date, not both")
    if marker_node is not None and (days_node is not None or date_node is not None):
        raise _refused(
            "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle "
            "Expiration Policy."
        )
    if days_node is not None:
        return Expiration(days=_positive(days_node, "Expiration"))
    if date_node is not None:
        date = parse_timestamp(_text(date_node))
        if date is None:
            raise _malformed("Date must be an ISO 8601 date")
        if date % 86400 != 0:  # S3's midnight, whatever length tests give a day
            raise _invalid("'Date' must be at midnight GMT")
        return Expiration(date=date)
    if marker_node is not None:
        flag = _text(marker_node).strip().lower()
        if flag not in ("true", "false"):
            raise _malformed("ExpiredObjectDeleteMarker must be true or false")
        return Expiration(expired_object_delete_marker=flag == "true")
    raise _malformed("Expiration needs Days, Date or ExpiredObjectDeleteMarker")


def _noncurrent(node: Element) -> NoncurrentExpiration:
    found = _children(node, ("NoncurrentDays", "NewerNoncurrentVersions"))
    days = _one(found, "NoncurrentDays")
    if days is None:
        raise _malformed("NoncurrentVersionExpiration needs NoncurrentDays")
    newer = _one(found, "NewerNoncurrentVersions")
    kept = _positive(newer, "NoncurrentVersionExpiration") if newer is not None else None
    if kept is not None and kept > MAX_NEWER_NONCURRENT:
        raise _invalid(f"'NewerNoncurrentVersions' must be at most {MAX_NEWER_NONCURRENT}")
    return NoncurrentExpiration(_positive(days, "NoncurrentVersionExpiration"), kept)


def _abort_days(node: Element) -> int:
    days = _one(_children(node, ("DaysAfterInitiation",)), "DaysAfterInitiation")
    if days is None:
        raise _malformed("AbortIncompleteMultipartUpload needs DaysAfterInitiation")
    return _positive(days, "AbortIncompleteMultipartUpload")


def _rule(node: Element) -> Rule:
    found = _children(node, RULE_ELEMENTS)
    if any(name in found for name in TRANSITIONS):
        raise S3Error(
            "NotImplemented",
            501,
            "lifecycle transitions are not implemented: this store has one storage class",
        )
    id_node, status_node = _one(found, "ID"), _one(found, "Status")
    rule_id = _text(id_node) if id_node is not None else ""
    if len(rule_id) > MAX_ID_CHARS:
        raise _invalid(f"ID length should not exceed allowed limit of {MAX_ID_CHARS}")
    status = _text(status_node).strip() if status_node is not None else ""
    if status not in (ENABLED, DISABLED):
        raise _malformed("a Rule needs a Status of Enabled or Disabled")
    legacy, filter_node = _one(found, "Prefix"), _one(found, "Filter")
    if legacy is not None and filter_node is not None:
        raise _malformed("a Rule has a Prefix or a Filter, not both")
    if legacy is not None:
        selector = Filter(_text(legacy), legacy=True)
    else:
        selector = _filter(filter_node) if filter_node is not None else Filter()
    expiration, noncurrent, abort = (
        _one(found, "Expiration"),
        _one(found, "NoncurrentVersionExpiration"),
        _one(found, "AbortIncompleteMultipartUpload"),
    )
    rule = Rule(
        status,
        selector,
        rule_id,
        _expiration(expiration) if expiration is not None else None,
        _noncurrent(noncurrent) if noncurrent is not None else None,
        _abort_days(abort) if abort is not None else None,
    )
    if rule.expiration is None and rule.noncurrent is None and rule.abort_days is None:
        raise _refused("At least one action needs to be specified in a rule")
    if rule.abort_days is not None and selector.tags:
        raise _refused("AbortIncompleteMultipartUpload cannot be specified with Tags.")
    if rule.abort_days is not None and selector.by_size:
        raise _refused("AbortIncompleteMultipartUpload cannot be specified with Object Size.")
    marker = rule.expiration is not None and rule.expiration.expired_object_delete_marker
    if marker and selector.tags:  # delete markers have no tags: the rule could never act
        raise _refused("ExpiredObjectDeleteMarker cannot be specified with Tags.")
    return rule


def parse(body: bytes) -> list[Rule]:
    """A PutBucketLifecycleConfiguration body.

    >>> parse(b"<LifecycleConfiguration><Rule><ID>tmp</ID><Filter><Prefix>tmp/</Prefix>"
    ...       b"</Filter><Status>Enabled</Status><Expiration><Days>7</Days></Expiration>"
    ...       b"</Rule></LifecycleConfiguration>")  # doctest: +NORMALIZE_WHITESPACE
    [Rule(status='Enabled', filter=Filter(prefix='tmp/', tags=(), size_gt=None, size_lt=None,
          and_=False, legacy=False), rule_id='tmp', expiration=Expiration(days=7, date=None,
          expired_object_delete_marker=None), noncurrent=None, abort_days=None)]
    """
    root = xml.parse(body, "LifecycleConfiguration")
    nodes = _children(root, ("Rule",), repeatable=("Rule",)).get("Rule", [])
    if not 1 <= len(nodes) <= MAX_RULES:
        raise _malformed(f"a lifecycle configuration has 1 to {MAX_RULES} rules")
    rules = [_rule(node) for node in nodes]
    ids = [rule.rule_id for rule in rules if rule.rule_id]
    if len(set(ids)) < len(ids):
        raise _invalid("Rule ID must be unique. Found same ID for more than one rule")
    return rules


# -- rendering -----------------------------------------------------------------------------------


def _string(name: str, value: str) -> str:
    # A carriage return would come back as a newline (XML normalises line ends): escape it.
    return f"<{name}>{escape(value, {chr(13): '&#13;'})}</{name}>"


def _render_filter(selector: Filter) -> str:
    if selector.legacy:
        return _string("Prefix", selector.prefix or "")
    parts = [_string("Prefix", selector.prefix)] if selector.prefix is not None else []
    parts += [
        xml.element("Tag", [_string("Key", key), _string("Value", value)])
        for key, value in selector.tags
    ]
    if selector.size_gt is not None:
        parts.append(xml.field("ObjectSizeGreaterThan", selector.size_gt))
    if selector.size_lt is not None:
        parts.append(xml.field("ObjectSizeLessThan", selector.size_lt))
    return xml.element("Filter", [xml.element("And", parts)] if selector.and_ else parts)


def _render_rule(rule: Rule) -> str:
    children = [_string("ID", rule.rule_id)] if rule.rule_id else []
    children += [_render_filter(rule.filter), xml.field("Status", rule.status)]
    expiration = rule.expiration
    if expiration is not None:
        if expiration.days is not None:
            inner = xml.field("Days", expiration.days)
        elif expiration.date is not None:
            inner = xml.field("Date", xml.iso8601(expiration.date))
        else:
            inner = xml.field(
                "ExpiredObjectDeleteMarker", bool(expiration.expired_object_delete_marker)
            )
        children.append(xml.element("Expiration", [inner]))
    if rule.noncurrent is not None:
        inner_parts = [xml.field("NoncurrentDays", rule.noncurrent.days)]
        if rule.noncurrent.newer_versions is not None:
            inner_parts.append(xml.field("NewerNoncurrentVersions", rule.noncurrent.newer_versions))
        children.append(xml.element("NoncurrentVersionExpiration", inner_parts))
    if rule.abort_days is not None:
        days = xml.field("DaysAfterInitiation", rule.abort_days)
        children.append(xml.element("AbortIncompleteMultipartUpload", [days]))
    return xml.element("Rule", children)


def render(rules: Sequence[Rule]) -> bytes:
    """The GetBucketLifecycleConfiguration answer (and the stored form)."""
    return xml.document("LifecycleConfiguration", [_render_rule(rule) for rule in rules])


def to_setting(rules: Sequence[Rule]) -> str:
    """The value kept in the bucket's (JSON) settings: the normalised document as text."""
    return render(rules).decode()


def from_setting(value: str) -> list[Rule]:
    return parse(value.encode())
