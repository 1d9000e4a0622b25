"""IAM Condition blocks: each operator family against AWS's documented semantics, validation,
policy variables, the Block Public Access "fixed value" rule, and properties tying the negated,
IfExists and set-operator forms to the plain ones."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.s3.conditions import (
    MAX_KEYS_PER_BLOCK,
    MAX_VALUES_PER_KEY,
    Condition,
    fixed_values_only,
    parse_condition,
)
from store.s3.errors import S3Error
from store.s3.variables import Context, MissingVariable, like, substitute

NOW = "2026-12-01T00:00:00Z"
NOW_EPOCH = "1796083200"


def holds(block: dict[str, Any], context: Context) -> bool:
    return parse_condition(block).matches(context)


def cases(*rows: tuple[str, dict[str, Any], dict[str, Any], bool]) -> list[Any]:
    return [pytest.param(block, ctx, expected, id=name) for name, block, ctx, expected in rows]


STRING_CASES = cases(
    ("equals", {"StringEquals": {"aws:username": "alice"}}, {"aws:username": "alice"}, True),
    (
        "equals-case-sensitive-value",
        {"StringEquals": {"aws:username": "alice"}},
        {"aws:username": "Alice"},
        False,
    ),
    ("equals-absent", {"StringEquals": {"aws:username": "alice"}}, {}, False),
    (
        "key-case-insensitive-policy",
        {"StringEquals": {"AWS:UserName": "alice"}},
        {"aws:username": "alice"},
        True,
    ),
    (
        "key-case-insensitive-context",
        {"StringEquals": {"aws:username": "alice"}},
        {"AWS:USERNAME": "alice"},
        True,
    ),
    (
        "values-ored",
        {"StringEquals": {"aws:username": ["bob", "alice"]}},
        {"aws:username": "alice"},
        True,
    ),
    ("number-as-json-text", {"StringEquals": {"s3:max-keys": 10}}, {"s3:max-keys": "10"}, True),
    (
        "bool-as-json-text",
        {"StringEquals": {"aws:SecureTransport": True}},
        {"aws:SecureTransport": "true"},
        True,
    ),
    ("empty-string-value", {"StringEquals": {"s3:prefix": ""}}, {"s3:prefix": ""}, True),
    ("not-equals-absent-is-true", {"StringNotEquals": {"aws:username": "alice"}}, {}, True),
    (
        "not-equals-same",
        {"StringNotEquals": {"aws:username": "alice"}},
        {"aws:username": "alice"},
        False,
    ),
    (
        "not-equals-other",
        {"StringNotEquals": {"aws:username": ["alice", "bob"]}},
        {"aws:username": "carol"},
        True,
    ),
    (
        "not-equals-matches-one",
        {"StringNotEquals": {"aws:username": ["alice", "bob"]}},
        {"aws:username": "bob"},
        False,
    ),
    (
        "ignore-case",
        {"StringEqualsIgnoreCase": {"aws:username": "ALICE"}},
        {"aws:username": "alice"},
        True,
    ),
    (
        "ignore-case-other",
        {"StringEqualsIgnoreCase": {"aws:username": "ALICE"}},
        {"aws:username": "bob"},
        False,
    ),
    (
        "not-ignore-case",
        {"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}},
        {"aws:username": "Alice"},
        False,
    ),
    ("not-ignore-case-absent", {"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}}, {}, True),
    (
        "like-star-crosses-slash",
        {"StringLike": {"s3:prefix": "home/*"}},
        {"s3:prefix": "home/a/b/c.txt"},
        True,
    ),
    ("like-star-empty", {"StringLike": {"s3:prefix": "home/*"}}, {"s3:prefix": "home/"}, True),
    ("like-needs-prefix", {"StringLike": {"s3:prefix": "home/*"}}, {"s3:prefix": "home"}, False),
    ("like-question-one-char", {"StringLike": {"s3:prefix": "h?me"}}, {"s3:prefix": "home"}, True),
    ("like-question-not-zero", {"StringLike": {"s3:prefix": "h?me"}}, {"s3:prefix": "hme"}, False),
    (
        "like-case-sensitive",
        {"StringLike": {"s3:prefix": "Home/*"}},
        {"s3:prefix": "home/x"},
        False,
    ),
    ("like-brackets-literal", {"StringLike": {"s3:prefix": "[ab]*"}}, {"s3:prefix": "a1"}, False),
    (
        "like-brackets-literal-match",
        {"StringLike": {"s3:prefix": "[ab]*"}},
        {"s3:prefix": "[ab]1"},
        True,
    ),
    ("like-absent", {"StringLike": {"s3:prefix": "*"}}, {}, False),
    (
        "not-like",
        {"StringNotLike": {"s3:prefix": ["home/*", "tmp/*"]}},
        {"s3:prefix": "etc/x"},
        True,
    ),
    (
        "not-like-matches",
        {"StringNotLike": {"s3:prefix": ["home/*", "tmp/*"]}},
        {"s3:prefix": "tmp/x"},
        False,
    ),
    ("not-like-absent", {"StringNotLike": {"s3:prefix": "home/*"}}, {}, True),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), STRING_CASES)
def test_string_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


HOME = {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}}

VARIABLE_CASES = cases(
    ("home-own", HOME, {"s3:prefix": "home/alice/a.txt", "aws:username": "alice"}, True),
    ("home-other", HOME, {"s3:prefix": "home/bob/a.txt", "aws:username": "alice"}, False),
    ("home-no-username", HOME, {"s3:prefix": "home/alice/a.txt"}, False),
    # A substituted value is literal: a user named "a*" does not get home/ab/.
    ("value-literal", HOME, {"s3:prefix": "home/ab/x", "aws:username": "a*"}, False),
    ("value-literal-own", HOME, {"s3:prefix": "home/a*/x", "aws:username": "a*"}, True),
    (
        "escape-star-literal-in-like",
        {"StringLike": {"s3:prefix": "a${*}"}},
        {"s3:prefix": "ab"},
        False,
    ),
    ("escape-star-matches-star", {"StringLike": {"s3:prefix": "a${*}"}}, {"s3:prefix": "a*"}, True),
    (
        "escape-in-equals",
        {"StringEquals": {"s3:prefix": "${$}{x}${?}"}},
        {"s3:prefix": "${x}?"},
        True,
    ),
    (
        "equals-variable",
        {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}},
        {"aws:principaltag/team": "alice", "aws:username": "alice"},
        True,
    ),
    (
        "default-used",
        {"StringEquals": {"s3:prefix": "${aws:PrincipalTag/team, 'shared'}/"}},
        {"s3:prefix": "shared/"},
        True,
    ),
    (
        "ignore-case-substitutes",
        {"StringEqualsIgnoreCase": {"s3:prefix": "${aws:username}"}},
        {"s3:prefix": "ALICE", "aws:username": "alice"},
        True,
    ),
    # An unresolvable variable makes the statement not apply, even for a negated operator.
    (
        "missing-in-negated",
        {"StringNotEquals": {"s3:prefix": "${aws:username}"}},
        {"s3:prefix": "x"},
        False,
    ),
    # With the key absent the values are not read: the absent-key rules decide.
    ("missing-with-key-absent", {"StringNotEquals": {"s3:prefix": "${aws:username}"}}, {}, True),
    (
        "missing-if-exists-absent",
        {"StringEqualsIfExists": {"s3:prefix": "${aws:username}"}},
        {},
        True,
    ),
    (
        "missing-if-exists-present",
        {"StringEqualsIfExists": {"s3:prefix": "${aws:username}"}},
        {"s3:prefix": "x"},
        False,
    ),
    ("missing-positive-absent", {"StringEquals": {"s3:prefix": "${aws:username}"}}, {}, False),
    (
        "missing-in-any-value",
        {"StringEquals": {"s3:prefix": ["x", "${aws:username}"]}},
        {"s3:prefix": "x"},
        False,
    ),
    (
        "multivalued-variable",
        {"StringEquals": {"s3:prefix": "${aws:TagKeys}"}},
        {"s3:prefix": "a", "aws:TagKeys": ["a"]},
        False,
    ),
    (
        "arn-variable-with-colons",
        {"ArnEquals": {"aws:SourceArn": "${aws:PrincipalArn}"}},
        {"aws:SourceArn": "arn:aws:iam::1:user/a", "aws:PrincipalArn": "arn:aws:iam::1:user/a"},
        True,
    ),
    (
        "arn-variable-in-part",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::${aws:username}-*"}},
        {"aws:SourceArn": "arn:aws:s3:::alice-logs", "aws:username": "alice"},
        True,
    ),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), VARIABLE_CASES)
def test_policy_variables_in_conditions(
    block: dict[str, Any], ctx: Context, expected: bool
) -> None:
    assert holds(block, ctx) is expected


def test_variables_are_not_substituted_in_numeric_values() -> None:
    with pytest.raises(S3Error):
        parse_condition({"NumericLessThan": {"s3:max-keys": "${aws:EpochTime}"}})


NUMERIC_CASES = cases(
    ("less", {"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"}, True),
    ("less-not-equal", {"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, False),
    ("less-equals", {"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
    ("greater", {"NumericGreaterThan": {"s3:max-keys": 10}}, {"s3:max-keys": "11"}, True),
    (
        "greater-equals",
        {"NumericGreaterThanEquals": {"s3:max-keys": 10}},
        {"s3:max-keys": "9"},
        False,
    ),
    ("equals-decimal", {"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"}, True),
    ("equals-float-policy", {"NumericEquals": {"s3:max-keys": 2.5}}, {"s3:max-keys": "2.50"}, True),
    ("negative", {"NumericLessThan": {"s3:max-keys": "0"}}, {"s3:max-keys": "-1"}, True),
    ("values-ored", {"NumericEquals": {"s3:max-keys": [1, 2, 3]}}, {"s3:max-keys": "3"}, True),
    ("not-equals", {"NumericNotEquals": {"s3:max-keys": [1, 2]}}, {"s3:max-keys": "3"}, True),
    (
        "not-equals-match",
        {"NumericNotEquals": {"s3:max-keys": [1, 2]}},
        {"s3:max-keys": "2"},
        False,
    ),
    ("not-equals-absent", {"NumericNotEquals": {"s3:max-keys": 1}}, {}, True),
    (
        "context-not-a-number",
        {"NumericLessThan": {"s3:max-keys": "10"}},
        {"s3:max-keys": "five"},
        False,
    ),
    (
        "context-nan-not-a-number",
        {"NumericNotEquals": {"s3:max-keys": "10"}},
        {"s3:max-keys": "NaN"},
        True,
    ),
    ("absent", {"NumericLessThan": {"s3:max-keys": "10"}}, {}, False),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), NUMERIC_CASES)
def test_numeric_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


BEFORE_NOW = {"DateLessThan": {"aws:CurrentTime": NOW}}

DATE_CASES = cases(
    ("doc-before", BEFORE_NOW, {"aws:CurrentTime": "2026-11-30T23:59:59Z"}, True),
    ("doc-at", BEFORE_NOW, {"aws:CurrentTime": NOW}, False),
    ("doc-after", BEFORE_NOW, {"aws:CurrentTime": "2027-01-01T00:00:00Z"}, False),
    ("doc-absent", BEFORE_NOW, {}, False),
    ("context-epoch", BEFORE_NOW, {"aws:CurrentTime": str(int(NOW_EPOCH) - 1)}, True),
    ("context-offset", BEFORE_NOW, {"aws:CurrentTime": "2026-12-01T00:59:59+01:00"}, True),
    ("context-no-zone-is-utc", BEFORE_NOW, {"aws:CurrentTime": "2026-11-30T23:59:59"}, True),
    ("context-date-only", BEFORE_NOW, {"aws:CurrentTime": "2026-11-30"}, True),
    ("context-garbage", BEFORE_NOW, {"aws:CurrentTime": "yesterday"}, False),
    (
        "less-equals",
        {"DateLessThanEquals": {"aws:CurrentTime": NOW}},
        {"aws:CurrentTime": NOW},
        True,
    ),
    (
        "greater-epoch-policy",
        {"DateGreaterThan": {"aws:EpochTime": int(NOW_EPOCH)}},
        {"aws:EpochTime": str(int(NOW_EPOCH) + 1)},
        True,
    ),
    (
        "greater-equals",
        {"DateGreaterThanEquals": {"aws:CurrentTime": "2026-12-01"}},
        {"aws:CurrentTime": NOW},
        True,
    ),
    (
        "equals-iso-vs-epoch",
        {"DateEquals": {"aws:CurrentTime": NOW_EPOCH}},
        {"aws:CurrentTime": NOW},
        True,
    ),
    (
        "equals-to-the-second",
        {"DateEquals": {"aws:CurrentTime": NOW}},
        {"aws:CurrentTime": "2026-12-01T00:00:00.999Z"},
        True,
    ),
    (
        "equals-fraction-policy",
        {"DateEquals": {"aws:CurrentTime": "2026-12-01T00:00:00.5Z"}},
        {"aws:CurrentTime": NOW},
        True,
    ),
    (
        "not-equals",
        {"DateNotEquals": {"aws:CurrentTime": NOW}},
        {"aws:CurrentTime": "2026-12-01T00:00:01Z"},
        True,
    ),
    ("not-equals-absent", {"DateNotEquals": {"aws:CurrentTime": NOW}}, {}, True),
    (
        "not-equals-same-instant",
        {"DateNotEquals": {"aws:CurrentTime": NOW}},
        {"aws:CurrentTime": "2026-12-01T02:00:00+02:00"},
        False,
    ),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), DATE_CASES)
def test_date_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


BINARY = "QmluYXJ5VmFsdWVJbkJhc2U2NA=="  # b"BinaryValueInBase64", AWS's example

BOOL_BINARY_NULL_CASES = cases(
    ("bool-true", {"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "true"}, True),
    (
        "bool-false",
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": "false"},
        False,
    ),
    (
        "bool-case-insensitive",
        {"Bool": {"aws:SecureTransport": "True"}},
        {"aws:SecureTransport": "TRUE"},
        True,
    ),
    (
        "bool-json-false",
        {"Bool": {"aws:SecureTransport": False}},
        {"aws:SecureTransport": "false"},
        True,
    ),
    ("bool-absent", {"Bool": {"aws:SecureTransport": "false"}}, {}, False),
    (
        "bool-context-garbage",
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": "yes"},
        False,
    ),
    ("binary-equal", {"BinaryEquals": {"aws:Key": BINARY}}, {"aws:Key": BINARY}, True),
    ("binary-other", {"BinaryEquals": {"aws:Key": BINARY}}, {"aws:Key": "b3RoZXI="}, False),
    ("binary-context-not-base64", {"BinaryEquals": {"aws:Key": BINARY}}, {"aws:Key": "!!"}, False),
    ("binary-absent", {"BinaryEquals": {"aws:Key": BINARY}}, {}, False),
    ("null-true-absent", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    (
        "null-true-present",
        {"Null": {"aws:TokenIssueTime": "true"}},
        {"aws:TokenIssueTime": NOW},
        False,
    ),
    (
        "null-false-present",
        {"Null": {"aws:TokenIssueTime": "false"}},
        {"aws:TokenIssueTime": NOW},
        True,
    ),
    ("null-false-absent", {"Null": {"aws:TokenIssueTime": False}}, {}, False),
    ("null-empty-list-is-absent", {"Null": {"aws:TagKeys": "true"}}, {"aws:TagKeys": []}, True),
    ("null-empty-string-is-present", {"Null": {"s3:prefix": "false"}}, {"s3:prefix": ""}, True),
    ("null-key-case", {"Null": {"AWS:TokenIssueTime": "false"}}, {"aws:tokenissuetime": NOW}, True),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), BOOL_BINARY_NULL_CASES)
def test_bool_binary_null(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


V4 = {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}
V6 = {"IpAddress": {"aws:SourceIp": "2001:DB8:1234:5678::/64"}}
# AWS's S3 example: the 54.240.143.* range except 54.240.143.188.
RANGE_EXCEPT = {
    "IpAddress": {"aws:SourceIp": "54.240.143.0/24"},
    "NotIpAddress": {"aws:SourceIp": "54.240.143.188/32"},
}

IP_CASES = cases(
    ("v4-in", V4, {"aws:SourceIp": "203.0.113.7"}, True),
    ("v4-out", V4, {"aws:SourceIp": "203.0.114.7"}, False),
    ("v4-absent", V4, {}, False),
    ("v4-mapped-v6", V4, {"aws:SourceIp": "::ffff:203.0.113.7"}, True),
    ("v4-range-v6-client", V4, {"aws:SourceIp": "2001:db8::1"}, False),
    ("v4-context-garbage", V4, {"aws:SourceIp": "localhost"}, False),
    ("v6-in", V6, {"aws:SourceIp": "2001:db8:1234:5678::1"}, True),
    ("v6-out", V6, {"aws:SourceIp": "2001:db8:1234:5679::1"}, False),
    ("v6-range-v4-client", V6, {"aws:SourceIp": "203.0.113.7"}, False),
    (
        "plain-address",
        {"IpAddress": {"aws:SourceIp": "203.0.113.7"}},
        {"aws:SourceIp": "203.0.113.7"},
        True,
    ),
    (
        "plain-address-other",
        {"IpAddress": {"aws:SourceIp": "203.0.113.7"}},
        {"aws:SourceIp": "203.0.113.8"},
        False,
    ),
    (
        "host-bits-set",
        {"IpAddress": {"aws:SourceIp": "203.0.113.9/24"}},
        {"aws:SourceIp": "203.0.113.200"},
        True,
    ),
    (
        "mixed-families-ored",
        {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}},
        {"aws:SourceIp": "2001:db8::5"},
        True,
    ),
    ("range-except-in", RANGE_EXCEPT, {"aws:SourceIp": "54.240.143.1"}, True),
    ("range-except-excluded", RANGE_EXCEPT, {"aws:SourceIp": "54.240.143.188"}, False),
    ("range-except-outside", RANGE_EXCEPT, {"aws:SourceIp": "54.240.144.1"}, False),
    ("not-ip-absent", {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {}, True),
    (
        "not-ip-garbage",
        {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "x"},
        True,
    ),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), IP_CASES)
def test_ip_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


TOPIC = "arn:aws:sns:us-east-1:123456789012:my_topic"

ARN_CASES = cases(
    ("equals", {"ArnEquals": {"aws:SourceArn": TOPIC}}, {"aws:SourceArn": TOPIC}, True),
    (
        "equals-other",
        {"ArnEquals": {"aws:SourceArn": TOPIC}},
        {"aws:SourceArn": TOPIC + "2"},
        False,
    ),
    (
        "equals-case-sensitive",
        {"ArnEquals": {"aws:SourceArn": TOPIC}},
        {"aws:SourceArn": TOPIC.upper()},
        False,
    ),
    # ArnEquals takes wildcards too, exactly like ArnLike (AWS treats them the same).
    (
        "equals-wildcards",
        {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:123456789012:*"}},
        {"aws:SourceArn": TOPIC},
        True,
    ),
    (
        "like-region",
        {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:my_topic"}},
        {"aws:SourceArn": TOPIC},
        True,
    ),
    (
        "like-question",
        {"ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-?:*:my_topic"}},
        {"aws:SourceArn": TOPIC},
        True,
    ),
    (
        "like-account-mismatch",
        {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:111111111111:*"}},
        {"aws:SourceArn": TOPIC},
        False,
    ),
    # A star matches within one part: it cannot swallow the colon after the account.
    (
        "star-stays-in-part",
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/x"}},
        {"aws:PrincipalArn": "arn:aws:iam::1:2:user/x"},
        False,
    ),
    (
        "resource-keeps-colons",
        {"ArnLike": {"aws:SourceArn": "arn:aws:logs:*:*:log-group:*"}},
        {"aws:SourceArn": "arn:aws:logs:us-east-1:1:log-group:g:log-stream:s"},
        True,
    ),
    (
        "empty-region-account",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::logs-*"}},
        {"aws:SourceArn": "arn:aws:s3:::logs-2026/a"},
        True,
    ),
    (
        "empty-part-vs-star",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:*:*:b"}},
        {"aws:SourceArn": "arn:aws:s3:::b"},
        True,
    ),
    (
        "context-not-an-arn",
        {"ArnLike": {"aws:SourceArn": "arn:*:*:*:*:*"}},
        {"aws:SourceArn": "not:an:arn"},
        False,
    ),
    ("absent", {"ArnLike": {"aws:SourceArn": "arn:*:*:*:*:*"}}, {}, False),
    (
        "not-like",
        {"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:111111111111:*"}},
        {"aws:SourceArn": TOPIC},
        True,
    ),
    (
        "not-like-match",
        {"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:*"}},
        {"aws:SourceArn": TOPIC},
        False,
    ),
    ("not-equals-absent", {"ArnNotEquals": {"aws:SourceArn": TOPIC}}, {}, True),
    (
        "not-like-context-not-an-arn",
        {"ArnNotLike": {"aws:SourceArn": TOPIC}},
        {"aws:SourceArn": "x"},
        True,
    ),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), ARN_CASES)
def test_arn_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


def test_string_like_crosses_colons_where_arn_like_does_not() -> None:
    pattern = "arn:aws:iam::*:user/x"
    ctx = {"aws:PrincipalArn": "arn:aws:iam::1:2:user/x"}
    assert holds({"StringLike": {"aws:PrincipalArn": pattern}}, ctx)
    assert not holds({"ArnLike": {"aws:PrincipalArn": pattern}}, ctx)


IF_EXISTS_CASES = cases(
    ("string-absent", {"StringEqualsIfExists": {"aws:username": "alice"}}, {}, True),
    (
        "string-present-match",
        {"StringEqualsIfExists": {"aws:username": "alice"}},
        {"aws:username": "alice"},
        True,
    ),
    (
        "string-present-other",
        {"StringEqualsIfExists": {"aws:username": "alice"}},
        {"aws:username": "bob"},
        False,
    ),
    ("not-equals-absent", {"StringNotEqualsIfExists": {"aws:username": "alice"}}, {}, True),
    (
        "not-equals-present",
        {"StringNotEqualsIfExists": {"aws:username": "alice"}},
        {"aws:username": "alice"},
        False,
    ),
    ("like-absent", {"StringLikeIfExists": {"s3:prefix": "home/*"}}, {}, True),
    ("numeric-absent", {"NumericLessThanIfExists": {"s3:max-keys": 10}}, {}, True),
    (
        "numeric-present",
        {"NumericLessThanIfExists": {"s3:max-keys": 10}},
        {"s3:max-keys": "11"},
        False,
    ),
    ("date-absent", {"DateLessThanIfExists": {"aws:CurrentTime": NOW}}, {}, True),
    ("bool-absent", {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}, {}, True),
    (
        "bool-present",
        {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}},
        {"aws:MultiFactorAuthPresent": "false"},
        False,
    ),
    ("binary-absent", {"BinaryEqualsIfExists": {"aws:Key": BINARY}}, {}, True),
    ("ip-absent", {"IpAddressIfExists": {"aws:SourceIp": "203.0.113.0/24"}}, {}, True),
    (
        "ip-present",
        {"IpAddressIfExists": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "198.51.100.1"},
        False,
    ),
    ("arn-absent", {"ArnLikeIfExists": {"aws:SourceArn": "arn:*:*:*:*:*"}}, {}, True),
    ("operator-name-case", {"stringequalsifexists": {"aws:username": "alice"}}, {}, True),
    ("any-value-absent", {"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "a"}}, {}, True),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), IF_EXISTS_CASES)
def test_if_exists(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


ALL_TAGS = {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
ANY_TAGS = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}

SET_CASES = cases(
    ("all-subset", ALL_TAGS, {"aws:TagKeys": ["environment"]}, True),
    ("all-every", ALL_TAGS, {"aws:TagKeys": ["cost-center", "environment"]}, True),
    ("all-one-outside", ALL_TAGS, {"aws:TagKeys": ["environment", "owner"]}, False),
    # AWS's caveat: ForAllValues holds when there is nothing to check.
    ("all-empty-set", ALL_TAGS, {"aws:TagKeys": []}, True),
    ("all-absent", ALL_TAGS, {}, True),
    ("all-single-string", ALL_TAGS, {"aws:TagKeys": "environment"}, True),
    ("any-one", ANY_TAGS, {"aws:TagKeys": ["owner", "environment"]}, True),
    ("any-none", ANY_TAGS, {"aws:TagKeys": ["owner"]}, False),
    ("any-empty-set", ANY_TAGS, {"aws:TagKeys": []}, False),
    ("any-absent", ANY_TAGS, {}, False),
    (
        "all-not-equals",
        {"ForAllValues:StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["a", "b"]},
        True,
    ),
    (
        "all-not-equals-one-hit",
        {"ForAllValues:StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["a", "secret"]},
        False,
    ),
    (
        "any-not-equals",
        {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["secret", "a"]},
        True,
    ),
    (
        "any-not-equals-only-hits",
        {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["secret"]},
        False,
    ),
    (
        "any-not-equals-absent",
        {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "secret"}},
        {},
        False,
    ),
    (
        "any-like",
        {"ForAnyValue:StringLike": {"aws:TagKeys": "env*"}},
        {"aws:TagKeys": ["owner", "environment"]},
        True,
    ),
    (
        "all-like",
        {"ForAllValues:StringLike": {"aws:TagKeys": ["env*", "cost-*"]}},
        {"aws:TagKeys": ["environment", "cost-center"]},
        True,
    ),
    (
        "all-ignore-case",
        {"forallvalues:StringEqualsIgnoreCase": {"aws:TagKeys": "ENV"}},
        {"aws:TagKeys": ["env", "Env"]},
        True,
    ),
    (
        "any-arn",
        {"ForAnyValue:ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:*"}},
        {"aws:SourceArn": ["x", TOPIC]},
        True,
    ),
    # Without a set operator, a list is read as ForAnyValue (positive) / none-match (negated).
    (
        "plain-list-any",
        {"StringEquals": {"aws:TagKeys": "environment"}},
        {"aws:TagKeys": ["owner", "environment"]},
        True,
    ),
    (
        "plain-list-empty",
        {"StringEquals": {"aws:TagKeys": "environment"}},
        {"aws:TagKeys": []},
        False,
    ),
    (
        "plain-negated-list-none",
        {"StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["a", "b"]},
        True,
    ),
    (
        "plain-negated-list-one",
        {"StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": ["a", "secret"]},
        False,
    ),
    (
        "plain-negated-list-empty",
        {"StringNotEquals": {"aws:TagKeys": "secret"}},
        {"aws:TagKeys": []},
        True,
    ),
)


@pytest.mark.parametrize(("block", "ctx", "expected"), SET_CASES)
def test_set_operators(block: dict[str, Any], ctx: Context, expected: bool) -> None:
    assert holds(block, ctx) is expected


# AWS's example of AND across operators and keys, OR within a key's values.
COMBINED = {
    "StringEquals": {"aws:PrincipalTag/department": ["finance", "hr"], "aws:username": "alice"},
    "IpAddress": {"aws:SourceIp": "203.0.113.0/24"},
}
COMBINED_OK = {
    "aws:PrincipalTag/department": "hr",
    "aws:username": "alice",
    "aws:SourceIp": "203.0.113.5",
}


def test_and_across_operators_and_keys_or_within_values() -> None:
    cond = parse_condition(COMBINED)
    assert cond.matches(COMBINED_OK)
    for key, wrong in [
        ("aws:PrincipalTag/department", "legal"),
        ("aws:username", "bob"),
        ("aws:SourceIp", "198.51.100.5"),
    ]:
        assert not cond.matches({**COMBINED_OK, key: wrong}), key
        without = {k: v for k, v in COMBINED_OK.items() if k != key}
        assert not cond.matches(without), key


def test_keys_and_empty_block() -> None:
    cond = parse_condition(COMBINED | {"Null": {"aws:TokenIssueTime": "true"}})
    assert cond.keys == {
        "aws:principaltag/department",
        "aws:username",
        "aws:sourceip",
        "aws:tokenissuetime",
    }
    empty = parse_condition({})
    assert empty == Condition((), frozenset())
    assert empty.matches({})


def test_parsed_conditions_are_values() -> None:
    assert parse_condition(COMBINED) == parse_condition(COMBINED)
    assert hash(parse_condition({"Null": {"aws:x": "true"}})) is not None


# --- validation -----------------------------------------------------------------------------------

BAD_BLOCKS = [
    pytest.param([], id="block-list"),
    pytest.param("StringEquals", id="block-string"),
    pytest.param(None, id="block-null"),
    pytest.param({"StringEqual": {"aws:username": "a"}}, id="unknown-operator"),
    pytest.param({"ForSomeValues:StringEquals": {"aws:username": "a"}}, id="unknown-qualifier"),
    pytest.param({"IfExists": {"aws:username": "a"}}, id="bare-ifexists"),
    pytest.param({"StringEquals": "aws:username"}, id="operator-value-string"),
    pytest.param({"StringEquals": ["aws:username"]}, id="operator-value-list"),
    pytest.param({"StringEquals": {}}, id="operator-value-empty"),
    pytest.param({"StringEquals": {"aws:username": []}}, id="empty-values"),
    pytest.param({"StringEquals": {"aws:username": None}}, id="null-value"),
    pytest.param({"StringEquals": {"aws:username": {"a": "b"}}}, id="object-value"),
    pytest.param({"StringEquals": {"aws:username": [["a"]]}}, id="nested-list"),
    pytest.param({"StringEquals": {"username": "a"}}, id="key-without-service"),
    pytest.param({"StringEquals": {":username": "a"}}, id="key-empty-service"),
    pytest.param({"StringEquals": {"aws:": "a"}}, id="key-empty-name"),
    pytest.param({"StringEquals": {"aws: x": "a"}}, id="key-name-starts-blank"),
    pytest.param({"StringEquals": {"a b:c": "a"}}, id="key-service-blank"),
    pytest.param({"StringEquals": {"aws:x\n": "a"}}, id="key-control-char"),
    pytest.param({"StringEquals": {"aws:" + "x" * 300: "a"}}, id="key-too-long"),
    pytest.param({"NumericLessThan": {"s3:max-keys": "ten"}}, id="numeric-word"),
    pytest.param({"NumericLessThan": {"s3:max-keys": "NaN"}}, id="numeric-nan"),
    pytest.param({"NumericLessThan": {"s3:max-keys": "1_000"}}, id="numeric-underscore"),
    pytest.param({"NumericEquals": {"s3:max-keys": ""}}, id="numeric-empty"),
    pytest.param({"NumericEquals": {"s3:max-keys": True}}, id="numeric-bool"),
    pytest.param({"DateLessThan": {"aws:CurrentTime": "yesterday"}}, id="date-word"),
    pytest.param({"DateLessThan": {"aws:CurrentTime": "2026-13-01T00:00:00Z"}}, id="date-month"),
    pytest.param({"DateLessThan": {"aws:CurrentTime": "${aws:CurrentTime}"}}, id="date-var"),
    pytest.param({"IpAddress": {"aws:SourceIp": "203.0.113.0/33"}}, id="cidr-prefix"),
    pytest.param({"IpAddress": {"aws:SourceIp": "203.0.113"}}, id="cidr-short"),
    pytest.param({"NotIpAddress": {"aws:SourceIp": "example.com"}}, id="cidr-name"),
    pytest.param({"Bool": {"aws:SecureTransport": "yes"}}, id="bool-yes"),
    pytest.param({"Bool": {"aws:SecureTransport": 1}}, id="bool-one"),
    pytest.param({"Null": {"aws:TokenIssueTime": "maybe"}}, id="null-maybe"),
    pytest.param({"ForAnyValue:Null": {"aws:TagKeys": "true"}}, id="any-null"),
    pytest.param({"ForAllValues:Null": {"aws:TagKeys": "true"}}, id="all-null"),
    pytest.param({"NullIfExists": {"aws:TagKeys": "true"}}, id="null-ifexists"),
    pytest.param({"BinaryEquals": {"aws:Key": "not base64!"}}, id="binary-not-base64"),
    pytest.param({"ArnLike": {"aws:SourceArn": "arn:aws:s3"}}, id="arn-too-few-parts"),
    pytest.param({"ArnEquals": {"aws:SourceArn": "*"}}, id="arn-star-only"),
    pytest.param(
        {"StringEquals": {"aws:username": [str(i) for i in range(MAX_VALUES_PER_KEY + 1)]}},
        id="too-many-values",
    ),
    pytest.param(
        {"StringEquals": {f"aws:k{i}": "v" for i in range(MAX_KEYS_PER_BLOCK + 1)}},
        id="too-many-keys",
    ),
]


@pytest.mark.parametrize("block", BAD_BLOCKS)
def test_malformed_blocks(block: object) -> None:
    with pytest.raises(S3Error) as raised:
        parse_condition(block)
    assert raised.value.code.code == "MalformedPolicy"
    assert raised.value.code.status == 400
    assert raised.value.message


def test_limits_are_inclusive() -> None:
    values = [str(i) for i in range(MAX_VALUES_PER_KEY)]
    parse_condition({"StringEquals": {"aws:username": values}})
    half = MAX_KEYS_PER_BLOCK // 2
    parse_condition(
        {
            "StringEquals": {f"aws:a{i}": "v" for i in range(half)},
            "StringLike": {f"aws:b{i}": "v" for i in range(MAX_KEYS_PER_BLOCK - half)},
        }
    )
    with pytest.raises(S3Error):
        parse_condition(
            {
                "StringEquals": {f"aws:a{i}": "v" for i in range(half)},
                "StringLike": {f"aws:b{i}": "v" for i in range(MAX_KEYS_PER_BLOCK - half + 1)},
            }
        )


def test_unknown_operator_is_named() -> None:
    with pytest.raises(S3Error, match="StringEqualz"):
        parse_condition({"StringEqualz": {"aws:username": "a"}})


@pytest.mark.parametrize(
    "key", ["aws:SourceIp", "s3:ExistingObjectTag/Project Name", "aws:RequestTag/a:b=c@d", "ec2:x"]
)
def test_key_shapes_accepted(key: str) -> None:
    assert parse_condition({"StringEquals": {key: "v"}}).keys == {key.lower()}


@pytest.mark.parametrize(
    "name",
    [
        "StringEquals",
        "stringequals",
        "ForAnyValue:StringLike",
        "FORALLVALUES:NumericEqualsIfExists",
        "ArnNotLikeIfExists",
        "Null",
        "null",
    ],
)
def test_operator_names_are_case_insensitive(name: str) -> None:
    value = {"null": "true", "arnnotlikeifexists": TOPIC}.get(name.lower(), "1")
    parse_condition({name: {"aws:x": value}})


# --- substitute and like --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ctx", "expected"),
    [
        ("home/${aws:username}/", {"aws:username": "alice"}, "home/alice/"),
        ("${AWS:USERNAME}", {"aws:UserName": "alice"}, "alice"),
        (
            "${aws:userid}:${aws:SourceIp}",
            {"aws:userid": "AIDA1", "aws:sourceip": "::1"},
            "AIDA1:::1",
        ),
        ("${aws:PrincipalTag/team, 'company-wide'}", {}, "company-wide"),
        ("${aws:PrincipalTag/team, 'company-wide'}", {"aws:PrincipalTag/team": "a"}, "a"),
        ("${ aws:username , 'it''s' }", {}, "it's"),
        ("${aws:username, ''}x", {}, "x"),
        ("${*}${?}${$}", {}, "*?$"),
        ("no variables * ?", {}, "no variables * ?"),
        ("${", {}, "${"),
        ("${aws:username", {"aws:username": "a"}, "${aws:username"),
        ("$aws:username}", {}, "$aws:username}"),
        ("${}", {}, "${}"),
        # One pass only: a substituted value is not expanded again.
        ("${aws:username}", {"aws:username": "${aws:userid}"}, "${aws:userid}"),
        ("${aws:TagKeys, 'multi'}", {"aws:TagKeys": ["a", "b"]}, "multi"),
    ],
)
def test_substitute(text: str, ctx: Context, expected: str) -> None:
    assert substitute(text, ctx) == expected


@pytest.mark.parametrize(
    ("text", "ctx"),
    [
        ("home/${aws:username}", {}),
        ("${aws:TagKeys}", {"aws:TagKeys": ["a"]}),
        ("${aws:TagKeys}", {"aws:TagKeys": []}),
    ],
)
def test_substitute_missing_variable(text: str, ctx: Context) -> None:
    with pytest.raises(MissingVariable) as raised:
        substitute(text, ctx)
    assert raised.value.key.lower() in ("aws:username", "aws:tagkeys")


def test_like_keeps_substitutions_literal() -> None:
    resource = "arn:aws:s3:::b/home/${aws:username}/*"
    assert like(resource, "arn:aws:s3:::b/home/alice/a/b", {"aws:username": "alice"})
    assert not like(resource, "arn:aws:s3:::b/home/alice", {"aws:username": "alice"})
    assert not like(resource, "arn:aws:s3:::b/home/bob/x", {"aws:username": "?ob"})
    assert like("b/${?}", "b/?", {}) and not like("b/${?}", "b/x", {})
    with pytest.raises(MissingVariable):
        like(resource, "x", {})


def test_glob_is_not_exponential() -> None:
    # A backtracking regex needs ~2**20 steps here; the matcher is linear-ish.
    pattern = "*a" * 20 + "b"
    assert not like(pattern, "a" * 2000, {})
    assert like(pattern, "a" * 2000 + "b", {})


# --- fixed values (Block Public Access) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "key", "expected"),
    [
        ({"StringEquals": {"aws:SourceVpc": "vpc-111bbb22"}}, "aws:SourceVpc", True),
        ({"StringEquals": {"aws:SourceVpc": "vpc-111bbb22"}}, "AWS:SOURCEVPC", True),
        ({"StringEquals": {"aws:SourceVpc": "vpc-111bbb22"}}, "aws:SourceVpce", False),
        ({"StringEquals": {"aws:SourceVpc": "*"}}, "aws:SourceVpc", True),  # literal "*"
        ({"StringEqualsIgnoreCase": {"aws:SourceVpc": "VPC-1"}}, "aws:SourceVpc", True),
        ({"StringEquals": {"aws:userid": "${aws:username}"}}, "aws:userid", False),
        ({"StringLike": {"aws:SourceAccount": "123456789012"}}, "aws:SourceAccount", True),
        ({"StringLike": {"aws:SourceAccount": "1234*"}}, "aws:SourceAccount", False),
        ({"StringLike": {"aws:SourceAccount": "12345678901?"}}, "aws:SourceAccount", False),
        ({"ArnLike": {"aws:SourceArn": TOPIC}}, "aws:SourceArn", True),
        ({"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:1:t"}}, "aws:SourceArn", False),
        ({"ArnEquals": {"aws:PrincipalArn": "${aws:userid}"}}, "aws:PrincipalArn", False),
        (
            {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}},
            "aws:SourceIp",
            True,
        ),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "aws:SourceIp", True),
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, "aws:SourceIp", False),
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/1"}}, "aws:SourceIp", False),
        ({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "::/0"]}}, "aws:SourceIp", False),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, "aws:SourceIp", False),
        ({"StringNotEquals": {"aws:SourceVpc": "vpc-1"}}, "aws:SourceVpc", False),
        ({"ArnNotLike": {"aws:SourceArn": TOPIC}}, "aws:SourceArn", False),
        ({"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}}, "aws:SourceVpc", False),
        ({"ForAllValues:StringEquals": {"aws:SourceVpc": "vpc-1"}}, "aws:SourceVpc", False),
        ({"ForAnyValue:StringEquals": {"aws:SourceVpc": "vpc-1"}}, "aws:SourceVpc", True),
        ({"Null": {"aws:SourceVpc": "false"}}, "aws:SourceVpc", False),
        ({"NumericEquals": {"aws:x": 1}}, "aws:x", True),
        ({"NumericLessThan": {"aws:x": 1}}, "aws:x", False),
        ({"DateGreaterThan": {"aws:CurrentTime": NOW}}, "aws:CurrentTime", False),
        # ANDed tests: one fixed constraint pins the key even beside a loose one.
        (
            {
                "StringLike": {"aws:SourceVpc": "vpc-*"},
                "StringEquals": {"aws:SourceVpc": "vpc-1"},
            },
            "aws:SourceVpc",
            True,
        ),
    ],
)
def test_fixed_values_only(block: dict[str, Any], key: str, expected: bool) -> None:
    assert fixed_values_only(parse_condition(block), key) is expected


# --- properties -----------------------------------------------------------------------------------

# No "$", so no policy variables; "*" and "?" exercise the Like operators.
words = st.text(alphabet="abAB*?/:", max_size=6)
value_lists = st.lists(words, min_size=1, max_size=5)
context_values = st.one_of(words, st.lists(words, min_size=1, max_size=4))

PAIRS = [
    ("StringEquals", "StringNotEquals"),
    ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"),
    ("StringLike", "StringNotLike"),
]


@pytest.mark.parametrize(("positive", "negated"), PAIRS)
@given(values=value_lists, actual=context_values)
def test_negated_is_complement_when_present(
    positive: str, negated: str, values: list[str], actual: str | list[str]
) -> None:
    ctx = {"aws:k": actual}
    assert holds({positive: {"aws:k": values}}, ctx) != holds({negated: {"aws:k": values}}, ctx)


@given(
    values=st.lists(st.integers(-50, 50), min_size=1, max_size=5),
    actual=st.integers(-60, 60),
)
def test_numeric_and_date_negated_are_complements(values: list[int], actual: int) -> None:
    num = {"aws:k": str(actual)}
    assert holds({"NumericEquals": {"aws:k": values}}, num) != holds(
        {"NumericNotEquals": {"aws:k": values}}, num
    )
    epochs = [int(NOW_EPOCH) + v for v in values]
    date = {"aws:k": str(int(NOW_EPOCH) + actual)}
    assert holds({"DateEquals": {"aws:k": epochs}}, date) != holds(
        {"DateNotEquals": {"aws:k": epochs}}, date
    )


@given(
    prefix=st.integers(16, 32),
    network=st.ip_addresses(v=4),
    address=st.ip_addresses(v=4),
)
def test_ip_negated_is_complement(prefix: int, network: Any, address: Any) -> None:
    cidr = f"{network}/{prefix}"
    ctx = {"aws:SourceIp": str(address)}
    inside = holds({"IpAddress": {"aws:SourceIp": cidr}}, ctx)
    assert inside != holds({"NotIpAddress": {"aws:SourceIp": cidr}}, ctx)
    assert inside == (int(address) >> (32 - prefix) == int(network) >> (32 - prefix))


IF_EXISTS_OPERATORS = [
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "StringEqualsIgnoreCase",
    "ForAnyValue:StringLike",
    "ForAllValues:StringEquals",
    "ForAllValues:StringNotLike",
]


@pytest.mark.parametrize("name", IF_EXISTS_OPERATORS)
@given(values=value_lists, actual=context_values)
def test_if_exists_equals_plain_when_present(
    name: str, values: list[str], actual: str | list[str]
) -> None:
    ctx = {"aws:k": actual}
    plain = holds({name: {"aws:k": values}}, ctx)
    assert holds({name + "IfExists": {"aws:k": values}}, ctx) == plain


@given(values=value_lists, actual=st.lists(words, min_size=1, max_size=4))
def test_set_operators_de_morgan(values: list[str], actual: list[str]) -> None:
    ctx = {"aws:k": actual}
    any_equal = holds({"ForAnyValue:StringEquals": {"aws:k": values}}, ctx)
    all_not_equal = holds({"ForAllValues:StringNotEquals": {"aws:k": values}}, ctx)
    assert any_equal != all_not_equal
    # Without a set operator a list behaves as ForAnyValue.
    assert holds({"StringEquals": {"aws:k": values}}, ctx) == any_equal


def oracle(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


@given(
    pattern=st.text(alphabet="ab*?/\n", max_size=8), text=st.text(alphabet="ab*?/\n", max_size=10)
)
def test_like_agrees_with_regex_oracle(pattern: str, text: str) -> None:
    expected = oracle(pattern).fullmatch(text) is not None
    assert like(pattern, text, {}) == expected
    assert holds({"StringLike": {"aws:k": pattern}}, {"aws:k": text}) == expected


@given(text=st.text().filter(lambda s: "$" not in s))
def test_substitute_without_dollar_is_identity(text: str) -> None:
    assert substitute(text, {}) == text
