"""IAM policy ``Condition`` blocks, as S3 bucket policies use them (sans-IO, pure).

A block maps operators to ``{key: value-or-values}``::

    "Condition": {
        "StringLike": {"s3:prefix": ["home/${aws:username}/*"]},
        "IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}
    }

``parse_condition`` validates a block once (``S3Error`` MalformedPolicy) and ``Condition.matches``
evaluates it against a request context: a mapping from condition key to a string (single-valued
key) or a sequence of strings (multivalued key, such as ``aws:TagKeys``). A key missing from the
mapping, or mapped to an empty sequence, is *absent*.

Evaluation, as AWS IAM documents it:

* Every operator in the block must hold (AND); within an operator every key must hold (AND);
  within a key, the policy's values are alternatives (OR).
* Condition key names are case-insensitive, values are case-sensitive (except for the
  ``...IgnoreCase`` operators and ``Bool``). Operator names are matched case-insensitively too.
* Negated operators (``StringNotEquals``, ``StringNotEqualsIgnoreCase``, ``StringNotLike``,
  ``NumericNotEquals``, ``DateNotEquals``, ``NotIpAddress``, ``ArnNotEquals``, ``ArnNotLike``)
  hold when the context value matches *none* of the policy values. An absent key makes a positive
  operator false and a negated operator **true** (that is AWS's rule, and the reason
  ``StringNotEquals`` in a Deny also denies requests that lack the key).
* ``...IfExists`` (every operator but ``Null``): an absent key makes the test true; a present key
  is tested as without the suffix.
* ``Null``: ``"true"`` holds when the key is absent, ``"false"`` when it is present.
* Set operators for multivalued keys: ``ForAnyValue:`` holds when at least one context value
  passes the test (false when the key is absent); ``ForAllValues:`` holds when every context value
  passes (true when the key is absent or empty -- AWS's caveat: in an Allow, ``ForAllValues`` alone
  also lets through requests that carry no values at all, so pair it with ``Null: false``). A
  "test" here is the single-value test, so ``ForAllValues:StringNotEquals`` means "no context
  value is any of the policy values". When the key is absent, ``IfExists`` makes any form true.
* Without a set operator a list-valued context key is treated as ``ForAnyValue`` for positive
  operators, and as its complement for negated ones (no context value matches any policy value),
  so a negated operator is always exactly the negation of its positive form on a present key.
* Typed operators (Numeric, Date, IpAddress, Binary, Bool, Arn) compare parsed values; a context
  value that does not parse matches no policy value (so the positive form is false and the
  negated form true). Dates are ISO 8601 (``2026-12-01``, ``2026-12-01T00:00:00Z``, fractions and
  offsets allowed, no zone means UTC) or epoch seconds (digits only), compared to the second.
* ``ArnEquals`` and ``ArnLike`` are the same operator in AWS: both split the ARN into its six
  colon-separated parts (the resource part keeps any further colons) and match each part with
  ``*``/``?`` wildcards that do not cross a colon; case-sensitive.
* Policy values may be JSON strings, numbers or booleans (compared as their JSON text: ``true``
  is ``"true"``), or lists of those. String and Arn operators substitute policy variables
  (``${aws:username}``, any context key, ``${key, 'default'}``, ``${*}``, ``${?}``, ``${$}``) in
  policy values, see ``substitute``. When a test's key is present and one of its values has a
  variable naming an absent key, ``matches`` returns False for the whole block: the statement
  does not apply, whatever its operator or Effect. When the key is absent the test is decided by
  the rules above without reading its values (so ``IfExists`` keeps such a variable harmless).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol, TypeAlias

from store.s3.errors import S3Error
from store.s3.variables import (
    Context,
    Ctx,
    MissingVariable,
    arn_parts,
    expand,
    glob_match,
    normalize,
    substitute_in,
    tokens,
    values_of,
)

# Limits against huge or hostile policies (the whole policy is already capped at 20 KB).
MAX_VALUES_PER_KEY = 100
MAX_KEYS_PER_BLOCK = 100
MAX_KEY_CHARS = 256
# A CIDR broader than this does not restrict "who" for the Block Public Access rule: a /8 is the
# largest block one organisation holds; 0.0.0.0/1 restricts nothing useful.
MIN_FIXED_PREFIX = {4: 8, 6: 32}

_ANY = "ForAnyValue"
_ALL = "ForAllValues"
_QUALIFIERS = {_ANY.lower(): _ANY, _ALL.lower(): _ALL}
_IF_EXISTS = "ifexists"

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*:[^\x00-\x20\x7f][^\x00-\x1f\x7f]*")
# ``${name}`` or ``${name, 'default'}``; inside a default, '' stands for one quote.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_EPOCH_RE = re.compile(r"-?\d{1,12}(?:\.\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedPolicy", 400, message)


# --- matchers: one per operator family ----------------------------------------------------------

_Predicate: TypeAlias = Callable[[str], bool]


class _Matcher(Protocol):
    def bind(self, ctx: Ctx) -> _Predicate:
        """A predicate: does a context value match at least one policy value?"""
        ...

    def fixed(self) -> bool:
        """Do the policy values name a fixed set (no wildcards, variables or ranges)?"""
        ...


@dataclass(frozen=True, slots=True)
class _StringEquals:
    values: tuple[str, ...]
    fold: bool

    def bind(self, ctx: Ctx) -> _Predicate:
        wanted = {substitute_in(v, ctx) for v in self.values}
        if self.fold:
            wanted = {v.casefold() for v in wanted}
            return lambda actual: actual.casefold() in wanted
        return lambda actual: actual in wanted

    def fixed(self) -> bool:
        return not any("${" in v for v in self.values)


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value or "${" in value


@dataclass(frozen=True, slots=True)
class _StringLike:
    values: tuple[str, ...]

    def bind(self, ctx: Ctx) -> _Predicate:
        patterns = [tokens(expand(v, ctx)) for v in self.values]
        return lambda actual: any(glob_match(p, actual) for p in patterns)

    def fixed(self) -> bool:
        return not any(_has_wildcard(v) for v in self.values)


@dataclass(frozen=True, slots=True)
class _Arn:
    values: tuple[str, ...]

    def bind(self, ctx: Ctx) -> _Predicate:
        patterns = [arn_parts(tokens(expand(v, ctx))) for v in self.values]

        def test(actual: str) -> bool:
            parts = actual.split(":", 5)
            if len(parts) != 6:
                return False
            return any(
                p is not None and all(glob_match(g, s) for g, s in zip(p, parts, strict=True))
                for p in patterns
            )

        return test

    def fixed(self) -> bool:
        return not any(_has_wildcard(v) for v in self.values)


def _parse_number(text: str) -> Decimal | None:
    # The regex, not Decimal, decides: Decimal also takes "NaN", "Infinity" and "1_000".
    if len(text) > 100 or not _NUMBER_RE.fullmatch(text):
        return None
    return Decimal(text)


@dataclass(frozen=True, slots=True)
class _Numeric:
    values: tuple[Decimal, ...]
    compare: Callable[[Decimal, Decimal], bool]  # (context value, policy value)

    def bind(self, ctx: Ctx) -> _Predicate:
        def test(actual: str) -> bool:
            number = _parse_number(actual)
            return number is not None and any(self.compare(number, v) for v in self.values)

        return test

    def fixed(self) -> bool:
        return self.compare is operator.eq


def _parse_date(text: str) -> datetime | None:
    """ISO 8601 or epoch seconds, as an aware UTC datetime truncated to the second."""
    try:
        if _EPOCH_RE.fullmatch(text):
            # Digits only are epoch seconds, even "20261201" (which ISO would read as a date).
            return _EPOCH + timedelta(seconds=math.floor(Decimal(text)))
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).replace(microsecond=0)
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class _Date:
    values: tuple[datetime, ...]
    compare: Callable[[datetime, datetime], bool]  # (context value, policy value)

    def bind(self, ctx: Ctx) -> _Predicate:
        def test(actual: str) -> bool:
            when = _parse_date(actual)
            return when is not None and any(self.compare(when, v) for v in self.values)

        return test

    def fixed(self) -> bool:
        return self.compare is operator.eq


@dataclass(frozen=True, slots=True)
class _Bool:
    values: frozenset[str]  # "true" and/or "false"

    def bind(self, ctx: Ctx) -> _Predicate:
        return lambda actual: actual.lower() in self.values

    def fixed(self) -> bool:
        return True


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Binary:
    values: frozenset[bytes]

    def bind(self, ctx: Ctx) -> _Predicate:
        # The context carries binary values base64-encoded, as the policy does.
        return lambda actual: _decode_base64(actual) in self.values

    def fixed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Ip:
    networks: tuple[_Network, ...]

    def bind(self, ctx: Ctx) -> _Predicate:
        def test(actual: str) -> bool:
            try:
                address = ipaddress.ip_address(actual)
            except ValueError:
                return False
            candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
            # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                candidates.append(address.ipv4_mapped)
            return any(a in n for a in candidates for n in self.networks)

        return test

    def fixed(self) -> bool:
        return all(n.prefixlen >= MIN_FIXED_PREFIX[n.version] for n in self.networks)


# --- building matchers from policy values -------------------------------------------------------

_Build: TypeAlias = Callable[[str, tuple[str, ...]], _Matcher]


def _numeric(compare: Callable[[Decimal, Decimal], bool]) -> _Build:
    def build(op: str, values: tuple[str, ...]) -> _Matcher:
        parsed = []
        for v in values:
            number = _parse_number(v)
            if number is None:
                raise _malformed(f"{op}: {v!r} is not a number")
            parsed.append(number)
        return _Numeric(tuple(parsed), compare)

    return build


def _date(compare: Callable[[datetime, datetime], bool]) -> _Build:
    def build(op: str, values: tuple[str, ...]) -> _Matcher:
        parsed = []
        for v in values:
            when = _parse_date(v)
            if when is None:
                raise _malformed(f"{op}: {v!r} is not an ISO 8601 date or epoch seconds")
            parsed.append(when)
        return _Date(tuple(parsed), compare)

    return build


def _true_false(op: str, values: tuple[str, ...]) -> frozenset[str]:
    lowered = frozenset(v.lower() for v in values)
    if not lowered <= {"true", "false"}:
        raise _malformed(f"{op} values must be true or false")
    return lowered


def _bool(op: str, values: tuple[str, ...]) -> _Matcher:
    return _Bool(_true_false(op, values))


def _binary(op: str, values: tuple[str, ...]) -> _Matcher:
    decoded = set()
    for v in values:
        raw = _decode_base64(v)
        if raw is None:
            raise _malformed(f"{op}: {v!r} is not base64")
        decoded.add(raw)
    return _Binary(frozenset(decoded))


def _ip(op: str, values: tuple[str, ...]) -> _Matcher:
    networks = []
    for v in values:
        try:
            # Host bits set (203.0.113.7/24) are accepted, as AWS does.
            networks.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise _malformed(f"{op}: {v!r} is not an IP address or CIDR block") from None
    return _Ip(tuple(networks))


def _arn(op: str, values: tuple[str, ...]) -> _Matcher:
    for v in values:
        # With a variable the parts are only known after substitution (it may hold colons).
        if "${" not in v and arn_parts(list(v)) is None:
            raise _malformed(f"{op}: {v!r} is not an ARN (arn:partition:service:region:account:id)")
    return _Arn(values)


@dataclass(frozen=True, slots=True)
class _Spec:
    build: _Build
    negated: bool = False


_SPECS: dict[str, _Spec] = {
    "StringEquals": _Spec(lambda op, v: _StringEquals(v, fold=False)),
    "StringNotEquals": _Spec(lambda op, v: _StringEquals(v, fold=False), negated=True),
    "StringEqualsIgnoreCase": _Spec(lambda op, v: _StringEquals(v, fold=True)),
    "StringNotEqualsIgnoreCase": _Spec(lambda op, v: _StringEquals(v, fold=True), negated=True),
    "StringLike": _Spec(lambda op, v: _StringLike(v)),
    "StringNotLike": _Spec(lambda op, v: _StringLike(v), negated=True),
    "NumericEquals": _Spec(_numeric(operator.eq)),
    "NumericNotEquals": _Spec(_numeric(operator.eq), negated=True),
    "NumericLessThan": _Spec(_numeric(operator.lt)),
    "NumericLessThanEquals": _Spec(_numeric(operator.le)),
    "NumericGreaterThan": _Spec(_numeric(operator.gt)),
    "NumericGreaterThanEquals": _Spec(_numeric(operator.ge)),
    "DateEquals": _Spec(_date(operator.eq)),
    "DateNotEquals": _Spec(_date(operator.eq), negated=True),
    "DateLessThan": _Spec(_date(operator.lt)),
    "DateLessThanEquals": _Spec(_date(operator.le)),
    "DateGreaterThan": _Spec(_date(operator.gt)),
    "DateGreaterThanEquals": _Spec(_date(operator.ge)),
    "Bool": _Spec(_bool),
    "BinaryEquals": _Spec(_binary),
    "IpAddress": _Spec(_ip),
    "NotIpAddress": _Spec(_ip, negated=True),
    "ArnEquals": _Spec(_arn),
    "ArnLike": _Spec(_arn),
    "ArnNotEquals": _Spec(_arn, negated=True),
    "ArnNotLike": _Spec(_arn, negated=True),
}
_SPECS_BY_LOWER = {name.lower(): spec for name, spec in _SPECS.items()}


# --- tests and the block ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyTest:
    """One (operator, key) pair of a block, e.g. ``ForAnyValue:StringLike`` on ``aws:TagKeys``."""

    operator: str  # as written in the policy, for messages
    key: str  # lowercased
    matcher: _Matcher
    negated: bool
    if_exists: bool
    qualifier: str  # "", _ANY or _ALL

    def evaluate(self, ctx: Ctx) -> bool:
        actual = values_of(ctx, self.key)
        if not actual:
            # Decided by absence alone: the policy values (and their variables) are not read,
            # which is how AWS lets IfExists keep an unresolvable variable harmless.
            if self.if_exists:
                return True
            if self.qualifier:
                return self.qualifier == _ALL
            return self.negated
        # Substitute every value before comparing any, so an unresolvable variable fails the
        # block whichever value would have matched first.
        matches_any = self.matcher.bind(ctx)
        if self.qualifier == _ALL:
            return all(matches_any(v) != self.negated for v in actual)
        if self.qualifier == _ANY:
            return any(matches_any(v) != self.negated for v in actual)
        return any(matches_any(v) for v in actual) != self.negated


@dataclass(frozen=True, slots=True)
class NullTest:
    """``Null`` on one key: holds when the key's absence is one of the policy's true/false."""

    key: str  # lowercased
    absent: frozenset[bool]

    def evaluate(self, ctx: Ctx) -> bool:
        return (not values_of(ctx, self.key)) in self.absent


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``Condition`` block: the AND of its tests (an empty block always holds)."""

    tests: tuple[KeyTest | NullTest, ...]
    keys: frozenset[str]  # lowercased condition keys the block names

    def matches(self, context: Context) -> bool:
        """Does the request ``context`` satisfy every test? False on an unresolvable variable."""
        ctx = normalize(context)
        try:
            return all(test.evaluate(ctx) for test in self.tests)
        except MissingVariable:
            return False


def _policy_values(op: str, key: str, raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _malformed(f"{op}: {key} has an empty list of values")
    if len(items) > MAX_VALUES_PER_KEY:
        raise _malformed(f"{op}: {key} has more than {MAX_VALUES_PER_KEY} values")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, bool | int | float):
            out.append(json.dumps(item))  # true -> "true", 10 -> "10"
        else:
            raise _malformed(f"{op}: {key} values must be strings, numbers or booleans")
    return tuple(out)


def _split_operator(name: str) -> tuple[str, str, bool]:
    """``ForAnyValue:StringLikeIfExists`` -> (qualifier, base name lowercased, if_exists)."""
    qualifier = ""
    base = name
    prefix, colon, rest = name.partition(":")
    if colon:
        if prefix.lower() not in _QUALIFIERS:
            raise _malformed(f"unknown condition operator {name!r}")
        qualifier, base = _QUALIFIERS[prefix.lower()], rest
    lowered = base.lower()
    if_exists = lowered.endswith(_IF_EXISTS) and lowered != _IF_EXISTS
    if if_exists:
        lowered = lowered[: -len(_IF_EXISTS)]
    return qualifier, lowered, if_exists


def parse_condition(block: object) -> Condition:
    """Validate a ``Condition`` block (decoded JSON); raises S3Error MalformedPolicy.

    >>> cond = parse_condition({"StringLike": {"s3:prefix": "home/${aws:username}/*"}})
    >>> cond.matches({"s3:prefix": "home/alice/notes.txt", "aws:username": "alice"})
    True
    >>> cond.matches({"s3:prefix": "home/bob/notes.txt", "aws:username": "alice"})
    False
    >>> cond.matches({"s3:prefix": "home/alice/notes.txt"})  # no aws:username to substitute
    False
    >>> parse_condition({"StringEqual": {"aws:username": "alice"}})
    Traceback (most recent call last):
    ...
    store.s3.errors.S3Error: unknown condition operator 'StringEqual'
    """
    if not isinstance(block, dict):
        raise _malformed("Condition must be an object of operators")
    tests: list[KeyTest | NullTest] = []
    for name, entries in block.items():
        if not isinstance(name, str):
            raise _malformed("a condition operator must be a string")
        qualifier, base, if_exists = _split_operator(name)
        spec = _SPECS_BY_LOWER.get(base)
        if spec is None and base != "null":
            raise _malformed(f"unknown condition operator {name!r}")
        if spec is None and (qualifier or if_exists):
            raise _malformed(f"{name}: Null takes no ForAnyValue/ForAllValues or IfExists")
        if not isinstance(entries, dict) or not entries:
            raise _malformed(f"{name} must map condition keys to values")
        for key, raw in entries.items():
            if len(tests) >= MAX_KEYS_PER_BLOCK:
                raise _malformed(f"a Condition block may test at most {MAX_KEYS_PER_BLOCK} keys")
            if not isinstance(key, str) or len(key) > MAX_KEY_CHARS or not _KEY_RE.fullmatch(key):
                raise _malformed(f"{name}: {key!r} is not a condition key (service:Name)")
            values = _policy_values(name, key, raw)
            if spec is None:
                absent = frozenset(v == "true" for v in _true_false(name, values))
                tests.append(NullTest(key.lower(), absent))
            else:
                matcher = spec.build(name, values)
                tests.append(
                    KeyTest(name, key.lower(), matcher, spec.negated, if_exists, qualifier)
                )
    return Condition(tuple(tests), frozenset(t.key for t in tests))


def fixed_values_only(cond: Condition, key: str) -> bool:
    """Does ``cond`` restrict ``key`` to a fixed set of values?

    True when some test on ``key`` is positive, cannot hold when the key is absent (no
    ``IfExists``, no ``ForAllValues``) and names fixed values: no ``*``/``?`` wildcard in a Like
    or Arn value, no policy variable, no Numeric/Date range, no CIDR broader than
    ``MIN_FIXED_PREFIX``. This is the "fixed value" of S3 Block Public Access: a block that only
    lets such values through does not make its statement public. Because the tests are ANDed,
    one such test is enough.

    >>> cond = parse_condition({"StringEquals": {"aws:SourceVpc": "vpc-111bbb22"}})
    >>> fixed_values_only(cond, "AWS:SourceVpc"), fixed_values_only(cond, "aws:SourceIp")
    (True, False)
    >>> fixed_values_only(parse_condition({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:1:t"}}),
    ...                   "aws:SourceArn")
    False
    """
    wanted = key.lower()
    return any(
        isinstance(test, KeyTest)
        and test.key == wanted
        and not test.negated
        and not test.if_exists
        and test.qualifier != _ALL
        and test.matcher.fixed()
        for test in cond.tests
    )
