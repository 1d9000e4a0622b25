"""Lifecycle configurations: AWS's documented examples parse, every refusal carries AWS's code,
rules act exactly when S3 would, and what we render parses back to the same rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.s3 import lifecycle as lc
from store.s3 import lifecycle_due as lcd
from store.s3 import xml
from store.s3.errors import S3Error
from store.s3.lifecycle import DISABLED, ENABLED, Expiration, Filter, NoncurrentExpiration, Rule
from store.s3.objectlock import parse_timestamp

DAY = 86400.0
DAYS = "<Expiration><Days>1</Days></Expiration>"
ABORT = "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
ABORT += "</AbortIncompleteMultipartUpload>"
TAG = "<Tag><Key>k</Key><Value>v</Value></Tag>"
MALFORMED = ("MalformedXML", 400)
ARGUMENT = ("InvalidArgument", 400)
REQUEST = ("InvalidRequest", 400)


def ts(value: str) -> float:
    seconds = parse_timestamp(value)
    assert seconds is not None
    return seconds


def config(*rules: str) -> bytes:
    return ("<LifecycleConfiguration>" + "".join(rules) + "</LifecycleConfiguration>").encode()


def rule(inner: str, *, status: str = "Enabled", filter_: str = "<Filter></Filter>") -> str:
    return f"<Rule>{filter_}<Status>{status}</Status>{inner}</Rule>"


def error_of(body: bytes) -> tuple[str, int, str]:
    with pytest.raises(S3Error) as e:
        lc.parse(body)
    return e.value.code.code, e.value.code.status, e.value.message


# -- AWS's examples (user guide, "Examples of S3 Lifecycle configurations") ----------------------

EXAMPLE_EMPTY_FILTER = b"""<LifecycleConfiguration>
  <Rule>
    <ID>Rule 1</ID>
    <Filter>
    </Filter>
    <Status>Enabled</Status>
    <Expiration>
      <Days>365</Days>
    </Expiration>
  </Rule>
</LifecycleConfiguration>"""

EXAMPLE_TAG = b"""<LifecycleConfiguration>
  <Rule>
    <ID>Rule 2</ID>
    <Filter>
      <Tag>
         <Key>tag2</Key>
         <Value>value2</Value>
      </Tag>
    </Filter>
    <Status>Enabled</Status>
    <Expiration>
      <Days>14</Days>
    </Expiration>
   </Rule>
</LifecycleConfiguration>"""

EXAMPLE_DELETE_MARKERS = b"""<LifecycleConfiguration>
    <Rule>
       <ID>Rule 1</ID>
        <Filter>
          <Prefix>logs/</Prefix>
        </Filter>
        <Status>Enabled</Status>
        <Expiration>
           <ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>
        </Expiration>
        <NoncurrentVersionExpiration>
            <NewerNoncurrentVersions>10</NewerNoncurrentVersions>
            <NoncurrentDays>30</NoncurrentDays>
        </NoncurrentVersionExpiration>
    </Rule>
</LifecycleConfiguration>"""

EXAMPLE_ABORT = b"""<LifecycleConfiguration>
    <Rule>
        <ID>sample-rule</ID>
        <Filter>
           <Prefix>SomeKeyPrefix/</Prefix>
        </Filter>
        <Status>Enabled</Status>
        <AbortIncompleteMultipartUpload>
          <DaysAfterInitiation>7</DaysAfterInitiation>
        </AbortIncompleteMultipartUpload>
    </Rule>
</LifecycleConfiguration>"""

# Example 9's size range and Example 2's legacy Prefix, with an expiration for their transition.
EXAMPLE_SIZES_AND_LEGACY = b"""<LifecycleConfiguration
    xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Rule>
    <ID>Expire a size range</ID>
    <Filter>
      <And>
        <ObjectSizeGreaterThan>500</ObjectSizeGreaterThan>
        <ObjectSizeLessThan>64000</ObjectSizeLessThan>
      </And>
    </Filter>
    <Status>Enabled</Status>
    <Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>
  </Rule>
  <Rule>
    <ID>Rule2</ID>
    <Prefix>documents/</Prefix>
    <Status>Disabled</Status>
    <Expiration><Days>30</Days></Expiration>
  </Rule>
  <Rule>
    <Filter>
       <And>
          <Prefix>tax/</Prefix>
          <Tag><Key>key1</Key><Value>value1</Value></Tag>
          <Tag><Key>key2</Key><Value>value2</Value></Tag>
       </And>
    </Filter>
    <Status>Enabled</Status>
    <Expiration><Days>3650</Days></Expiration>
  </Rule>
</LifecycleConfiguration>"""

# Example 1 (transition then expiration) and Example 6 (versioned bucket): transitions.
EXAMPLE_TRANSITION = b"""<LifecycleConfiguration>
  <Rule>
    <ID>Transition and Expiration Rule</ID>
    <Filter>
       <Prefix>tax/</Prefix>
    </Filter>
    <Status>Enabled</Status>
    <Transition>
      <Days>365</Days>
      <StorageClass>S3 Glacier Flexible Retrieval</StorageClass>
    </Transition>
    <Expiration>
      <Days>3650</Days>
    </Expiration>
  </Rule>
</LifecycleConfiguration>"""

EXAMPLE_NONCURRENT_TRANSITION = b"""<LifecycleConfiguration>
    <Rule>
        <ID>sample-rule</ID>
        <Filter>
           <Prefix></Prefix>
        </Filter>
        <Status>Enabled</Status>
        <NoncurrentVersionTransition>
            <NoncurrentDays>30</NoncurrentDays>
            <StorageClass>S3 Glacier Flexible Retrieval</StorageClass>
        </NoncurrentVersionTransition>
       <NoncurrentVersionExpiration>
            <NewerNoncurrentVersions>5</NewerNoncurrentVersions>
            <NoncurrentDays>365</NoncurrentDays>
       </NoncurrentVersionExpiration>
    </Rule>
</LifecycleConfiguration>"""


def test_aws_examples_parse() -> None:
    assert lc.parse(EXAMPLE_EMPTY_FILTER) == [
        Rule(ENABLED, Filter(), "Rule 1", Expiration(days=365))
    ]
    assert lc.parse(EXAMPLE_TAG) == [
        Rule(ENABLED, Filter(tags=(("tag2", "value2"),)), "Rule 2", Expiration(days=14))
    ]
    assert lc.parse(EXAMPLE_DELETE_MARKERS) == [
        Rule(
            ENABLED,
            Filter("logs/"),
            "Rule 1",
            Expiration(expired_object_delete_marker=True),
            NoncurrentExpiration(30, newer_versions=10),
        )
    ]
    assert lc.parse(EXAMPLE_ABORT) == [
        Rule(ENABLED, Filter("SomeKeyPrefix/"), "sample-rule", abort_days=7)
    ]
    sizes, legacy, anded = lc.parse(EXAMPLE_SIZES_AND_LEGACY)
    assert sizes.filter == Filter(size_gt=500, size_lt=64000, and_=True)
    assert sizes.expiration == Expiration(date=ts("2030-01-01"))
    assert legacy == Rule(DISABLED, Filter("documents/", legacy=True), "Rule2", Expiration(days=30))
    assert anded.rule_id == "" and anded.filter == Filter(
        "tax/", (("key1", "value1"), ("key2", "value2")), and_=True
    )


@pytest.mark.parametrize("body", [EXAMPLE_TRANSITION, EXAMPLE_NONCURRENT_TRANSITION])
def test_transitions_are_not_implemented(body: bytes) -> None:
    code, status, message = error_of(body)
    assert (code, status) == ("NotImplemented", 501) and "storage class" in message


@pytest.mark.parametrize(
    "body",
    [
        EXAMPLE_EMPTY_FILTER,
        EXAMPLE_TAG,
        EXAMPLE_DELETE_MARKERS,
        EXAMPLE_ABORT,
        EXAMPLE_SIZES_AND_LEGACY,
    ],
)
def test_examples_render_and_parse_back(body: bytes) -> None:
    rules = lc.parse(body)
    rendered = lc.render(rules)
    assert rendered.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<LifecycleConfiguration')
    assert lc.parse(rendered) == rules
    assert lc.from_setting(lc.to_setting(rules)) == rules


def test_render_keeps_how_the_filter_was_written() -> None:
    rendered = lc.render(lc.parse(EXAMPLE_SIZES_AND_LEGACY)).decode()
    assert "<Rule><ID>Rule2</ID><Prefix>documents/</Prefix><Status>Disabled</Status>" in rendered
    assert (
        "<Filter><And><ObjectSizeGreaterThan>500</ObjectSizeGreaterThan>"
        "<ObjectSizeLessThan>64000</ObjectSizeLessThan></And></Filter>" in rendered
    )
    assert "<Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>" in rendered
    assert "<Filter></Filter>" in lc.render(lc.parse(EXAMPLE_EMPTY_FILTER)).decode()


# -- what parses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "seconds"),
    [
        ("2030-01-01", 1893456000.0),
        ("2030-01-01T00:00:00Z", 1893456000.0),
        ("2030-01-01T00:00:00.000Z", 1893456000.0),
        ("2030-01-01T02:00:00+02:00", 1893456000.0),
        ("2029-12-31T19:00:00-05:00", 1893456000.0),
        ("2017-09-27T00:00:00Z", ts("2017-09-27")),  # a past date is fine
    ],
)
def test_expiration_dates_at_midnight_utc(date: str, seconds: float) -> None:
    rules = lc.parse(config(rule(f"<Expiration><Date>{date}</Date></Expiration>")))
    assert rules[0].expiration == Expiration(date=seconds)


def test_values_parse_leniently_where_s3_does() -> None:
    (found,) = lc.parse(
        config(
            "<Rule><ID> spaced id </ID><Filter><Tag><Key>k</Key></Tag></Filter>"
            "<Status> Enabled </Status><Expiration><Days> 7 </Days></Expiration>"
            "<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays>"
            "</NoncurrentVersionExpiration></Rule>"
        )
    )
    # IDs, prefixes and tags are kept exactly; numbers and keywords may be padded.
    assert found == Rule(
        ENABLED,
        Filter(tags=(("k", ""),)),
        " spaced id ",
        Expiration(days=7),
        NoncurrentExpiration(3),
    )
    (no_filter,) = lc.parse(config("<Rule><Status>Enabled</Status>" + DAYS + "</Rule>"))
    assert no_filter.filter == Filter()
    (marker_off,) = lc.parse(
        config(
            rule(
                "<Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker>"
                "</Expiration>"
            )
        )
    )
    assert marker_off.expiration == Expiration(expired_object_delete_marker=False)


def test_limits_are_inclusive() -> None:
    many = [
        f"<Rule><ID>r{i}</ID><Filter><Prefix>p{i}/</Prefix></Filter>"
        "<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
        for i in range(lc.MAX_RULES)
    ]
    assert len(lc.parse(config(*many))) == lc.MAX_RULES
    long_id = "x" * lc.MAX_ID_CHARS
    (found,) = lc.parse(config(f"<Rule><ID>{long_id}</ID><Status>Enabled</Status>{DAYS}</Rule>"))
    assert found.rule_id == long_id
    (kept,) = lc.parse(
        config(
            rule(
                "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                "<NewerNoncurrentVersions>100</NewerNoncurrentVersions>"
                "</NoncurrentVersionExpiration>"
            )
        )
    )
    assert kept.noncurrent == NoncurrentExpiration(1, 100)


# -- what is refused -----------------------------------------------------------------------------


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<LifecycleConfiguration><Rule><ID>&lol2;</ID><Status>Enabled</Status></Rule>
</LifecycleConfiguration>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<LifecycleConfiguration><Rule><ID>&xxe;</ID></Rule></LifecycleConfiguration>"""


def padded(size: int) -> bytes:
    body = config(rule(DAYS))
    return body.replace(b"<Rule>", b"<Rule>" + b" " * (size - len(body)), 1)


REFUSALS: list[tuple[str, bytes, tuple[str, int], str]] = [
    # structure
    ("bomb", BOMB, MALFORMED, ""),
    ("external entity", EXTERNAL, MALFORMED, ""),
    ("too large", padded(xml.PARSE_LIMIT_BYTES + 1), MALFORMED, "too large"),
    ("not xml", b"<LifecycleConfiguration><Rule>", MALFORMED, ""),
    ("empty body", b"", MALFORMED, ""),
    ("wrong root", b"<CORSConfiguration/>", MALFORMED, ""),
    ("no rules", config(), MALFORMED, "1 to 1000"),
    ("1001 rules", config(*[rule(DAYS)] * 1001), MALFORMED, "1 to 1000"),
    ("unknown at root", config(rule(DAYS), "<Other/>"), MALFORMED, "Other"),
    ("unknown in rule", config(rule(DAYS + "<Foo/>")), MALFORMED, "Foo"),
    ("text in a rule", config(rule(DAYS).replace("<Status>", "junk<Status>")), MALFORMED, ""),
    ("two expirations", config(rule(DAYS + DAYS)), MALFORMED, "more than one"),
    ("no status", config(f"<Rule><Filter/>{DAYS}</Rule>"), MALFORMED, "Status"),
    ("lower-case status", config(rule(DAYS, status="enabled")), MALFORMED, "Status"),
    ("status invalid", config(rule(DAYS, status="invalid")), MALFORMED, "Status"),
    (
        "prefix and filter",
        config(rule(DAYS, filter_="<Prefix>a/</Prefix><Filter><Prefix>a/</Prefix></Filter>")),
        MALFORMED,
        "not both",
    ),
    (
        "filter with two predicates",
        config(rule(DAYS, filter_=f"<Filter><Prefix>a/</Prefix>{TAG}</Filter>")),
        MALFORMED,
        "inside And",
    ),
    (
        "filter with two tags",
        config(rule(DAYS, filter_=f"<Filter>{TAG}{TAG.replace('k', 'j')}</Filter>")),
        MALFORMED,
        "inside And",
    ),
    ("empty And", config(rule(DAYS, filter_="<Filter><And></And></Filter>")), MALFORMED, "And"),
    (
        "And in And",
        config(rule(DAYS, filter_=f"<Filter><And><And>{TAG}</And></And></Filter>")),
        MALFORMED,
        "And",
    ),
    (
        "two prefixes in And",
        config(rule(DAYS, filter_="<Filter><And><Prefix/><Prefix/></And></Filter>")),
        MALFORMED,
        "more than one",
    ),
    (
        "tag without key",
        config(rule(DAYS, filter_="<Filter><Tag><Value>v</Value></Tag></Filter>")),
        MALFORMED,
        "Key",
    ),
    (
        "size not a number",
        config(rule(DAYS, filter_="<Filter><ObjectSizeLessThan>big</ObjectSizeLessThan></Filter>")),
        MALFORMED,
        "integer",
    ),
    ("empty expiration", config(rule("<Expiration></Expiration>")), MALFORMED, "Days, Date"),
    ("days not a number", config(rule("<Expiration><Days>1.5</Days></Expiration>")), MALFORMED, ""),
    (
        "days too large",
        config(rule("<Expiration><Days>2147483648</Days></Expiration>")),
        MALFORMED,
        "",
    ),
    (
        "days holding elements",
        config(rule("<Expiration><Days><x/>1</Days></Expiration>")),
        MALFORMED,
        "text",
    ),
    (
        "days and date",
        config(rule("<Expiration><Days>1</Days><Date>2030-01-01</Date></Expiration>")),
        MALFORMED,
        "not both",
    ),
    (
        "date not ISO 8601",
        config(rule("<Expiration><Date>20200101</Date></Expiration>")),
        MALFORMED,
        "",
    ),
    (
        "marker not a boolean",
        config(
            rule(
                "<Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker>"
                "</Expiration>"
            )
        ),
        MALFORMED,
        "true or false",
    ),
    (
        "noncurrent without days",
        config(
            rule(
                "<NoncurrentVersionExpiration><NewerNoncurrentVersions>1"
                "</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
            )
        ),
        MALFORMED,
        "NoncurrentDays",
    ),
    (
        "abort without days",
        config(rule("<AbortIncompleteMultipartUpload></AbortIncompleteMultipartUpload>")),
        MALFORMED,
        "DaysAfterInitiation",
    ),
    # values
    (
        "id too long",
        config(f"<Rule><ID>{'a' * 256}</ID><Status>Enabled</Status>{DAYS}</Rule>"),
        ARGUMENT,
        "ID length should not exceed allowed limit of 255",
    ),
    (
        "same id twice",
        config(*[f"<Rule><ID>rule1</ID><Status>Enabled</Status>{DAYS}</Rule>"] * 2),
        ARGUMENT,
        "Rule ID must be unique. Found same ID for more than one rule",
    ),
    (
        "zero days",
        config(rule("<Expiration><Days>0</Days></Expiration>")),
        ARGUMENT,
        "'Days' for Expiration action must be a positive integer",
    ),
    (
        "negative days",
        config(rule("<Expiration><Days>-1</Days></Expiration>")),
        ARGUMENT,
        "'Days' for Expiration action must be a positive integer",
    ),
    (
        "date at noon",
        config(rule("<Expiration><Date>2030-01-01T12:00:00Z</Date></Expiration>")),
        ARGUMENT,
        "'Date' must be at midnight GMT",
    ),
    (
        "local midnight",
        config(rule("<Expiration><Date>2030-01-01T00:00:00+01:00</Date></Expiration>")),
        ARGUMENT,
        "'Date' must be at midnight GMT",
    ),
    (
        "date with a fraction",
        config(rule("<Expiration><Date>2030-01-01T00:00:00.5Z</Date></Expiration>")),
        ARGUMENT,
        "midnight",
    ),
    (
        "zero noncurrent days",
        config(
            rule(
                "<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays>"
                "</NoncurrentVersionExpiration>"
            )
        ),
        ARGUMENT,
        "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer",
    ),
    (
        "keep no versions",
        config(
            rule(
                "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                "<NewerNoncurrentVersions>0</NewerNoncurrentVersions>"
                "</NoncurrentVersionExpiration>"
            )
        ),
        ARGUMENT,
        "NewerNoncurrentVersions",
    ),
    (
        "keep 101 versions",
        config(
            rule(
                "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                "<NewerNoncurrentVersions>101</NewerNoncurrentVersions>"
                "</NoncurrentVersionExpiration>"
            )
        ),
        ARGUMENT,
        "at most 100",
    ),
    (
        "zero days after initiation",
        config(rule(ABORT.replace(">1<", ">0<"))),
        ARGUMENT,
        "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive "
        "integer",
    ),
    (
        "negative size",
        config(
            rule(DAYS, filter_="<Filter><ObjectSizeGreaterThan>-1</ObjectSizeGreaterThan></Filter>")
        ),
        ARGUMENT,
        "ObjectSizeGreaterThan",
    ),
    (
        "less than nothing",
        config(rule(DAYS, filter_="<Filter><ObjectSizeLessThan>0</ObjectSizeLessThan></Filter>")),
        ARGUMENT,
        "ObjectSizeLessThan",
    ),
    (
        "tag key too long",
        config(rule(DAYS, filter_=f"<Filter>{TAG.replace('>k<', '>' + 'k' * 129 + '<')}</Filter>")),
        ("InvalidTag", 400),
        "",
    ),
    # combinations
    ("no action", config(rule("")), REQUEST, "At least one action needs to be specified in a rule"),
    (
        "marker with days",
        config(
            rule(
                "<Expiration><Days>1</Days>"
                "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
            )
        ),
        REQUEST,
        "ExpiredObjectDeleteMarker cannot be specified with Days or Date",
    ),
    (
        "marker with a tag filter",
        config(
            rule(
                "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
                "</Expiration>",
                filter_=f"<Filter>{TAG}</Filter>",
            )
        ),
        REQUEST,
        "ExpiredObjectDeleteMarker cannot be specified with Tags.",
    ),
    (
        "abort with a tag",
        config(rule(ABORT, filter_=f"<Filter>{TAG}</Filter>")),
        REQUEST,
        "AbortIncompleteMultipartUpload cannot be specified with Tags.",
    ),
    (
        "abort with tags in And",
        config(rule(ABORT, filter_=f"<Filter><And><Prefix>a/</Prefix>{TAG}</And></Filter>")),
        REQUEST,
        "AbortIncompleteMultipartUpload cannot be specified with Tags.",
    ),
    (
        "abort with a size",
        config(
            rule(ABORT, filter_="<Filter><ObjectSizeGreaterThan>1</ObjectSizeGreaterThan></Filter>")
        ),
        REQUEST,
        "AbortIncompleteMultipartUpload cannot be specified with Object Size.",
    ),
    (
        "duplicate tag keys",
        config(rule(DAYS, filter_=f"<Filter><And>{TAG}{TAG}</And></Filter>")),
        REQUEST,
        "Duplicate Tag Keys",
    ),
    (
        "empty size range",
        config(
            rule(
                DAYS,
                filter_="<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>",
            )
        ),
        REQUEST,
        "ObjectSizeLessThan must be greater than ObjectSizeGreaterThan",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(body: bytes, code: tuple[str, int], message: str) -> None:
    got_code, got_status, got_message = error_of(body)
    assert (got_code, got_status) == code
    assert message in got_message


def test_disabled_rules_are_validated_too() -> None:
    assert (
        error_of(config(rule("<Expiration><Days>0</Days></Expiration>", status="Disabled")))[:2]
        == ARGUMENT
    )


# -- evaluation ----------------------------------------------------------------------------------


def expiring(selector: Filter, *, days: int = 1, rule_id: str = "r", status: str = ENABLED) -> Rule:
    return Rule(status, selector, rule_id, Expiration(days=days))


@pytest.mark.parametrize(
    ("selector", "key", "size", "tags", "expected"),
    [
        (Filter(), "anything", 0, {}, True),
        (Filter(""), "anything", 0, {}, True),
        (Filter("logs/"), "logs/a", 1, {}, True),
        (Filter("logs/"), "log/a", 1, {}, False),
        (Filter("logs/", legacy=True), "logs/x", 1, {}, True),
        (Filter(tags=(("k", "v"),)), "a", 1, {"k": "v", "other": "x"}, True),
        (Filter(tags=(("k", "v"),)), "a", 1, {"k": "w"}, False),
        (Filter(tags=(("k", "v"),)), "a", 1, {}, False),
        (Filter(tags=(("k", ""),)), "a", 1, {"k": ""}, True),  # Key without Value
        (Filter(tags=(("k", ""),)), "a", 1, {"k": "v"}, False),
        (Filter(size_gt=100), "a", 101, {}, True),
        (Filter(size_gt=100), "a", 100, {}, False),  # strictly greater
        (Filter(size_lt=100), "a", 99, {}, True),
        (Filter(size_lt=100), "a", 100, {}, False),  # strictly less
        (Filter(size_gt=10, size_lt=20, and_=True), "a", 15, {}, True),
        (Filter(size_gt=10, size_lt=20, and_=True), "a", 20, {}, False),
        (Filter("t/", (("a", "1"), ("b", "2")), and_=True), "t/x", 0, {"a": "1", "b": "2"}, True),
        (Filter("t/", (("a", "1"), ("b", "2")), and_=True), "t/x", 0, {"a": "1"}, False),
        (Filter("t/", (("a", "1"),), and_=True), "u/x", 0, {"a": "1"}, False),
        (Filter("t/", size_gt=5, and_=True), "t/x", 6, {}, True),
        (Filter("t/", size_gt=5, and_=True), "t/x", 5, {}, False),
    ],
)
def test_filters(
    selector: Filter, key: str, size: int, tags: dict[str, str], expected: bool
) -> None:
    assert lcd.matches(expiring(selector), key, size, tags) is expected
    assert lcd.matches(expiring(selector, status=DISABLED), key, size, tags) is False


@pytest.mark.parametrize(
    ("mtime", "days", "due"),
    [
        (10.0, 1, 12.0),  # exactly on a "midnight": counts from the next one
        (10.3, 1, 12.0),
        (10.999, 1, 12.0),
        (11.0, 1, 13.0),
        (10.5, 3, 14.0),
    ],
)
def test_days_round_up_to_the_next_midnight(mtime: float, days: int, due: float) -> None:
    rules = [expiring(Filter(), days=days)]
    assert lcd.expiration_due(rules, "k", 1, {}, mtime, due - 0.001, day_s=1.0) is None
    assert lcd.expiration_due(rules, "k", 1, {}, mtime, due, day_s=1.0) == rules[0]
    assert lcd.expiration_due(rules, "k", 1, {}, mtime, due + 100, day_s=1.0) == rules[0]


def test_days_with_real_days_match_aws_example() -> None:
    # "an object created 1/15/2014 10:30 AM UTC, 3 days: 1/19/2014 00:00 UTC"
    rules = [expiring(Filter(), days=3)]
    created = ts("2014-01-15T10:30:00Z")
    assert lcd.expiration_due(rules, "k", 1, {}, created, ts("2014-01-18T23:59:59Z")) is None
    assert lcd.expiration_due(rules, "k", 1, {}, created, ts("2014-01-19T00:00:00Z")) == rules[0]
    header = lcd.expiration_header(rules, "k", 1, {}, created)
    assert header == 'expiry-date="Sun, 19 Jan 2014 00:00:00 GMT", rule-id="r"'


def test_date_rules_expire_everything_matching_from_the_date() -> None:
    date = ts("2030-01-01")
    rules = [Rule(ENABLED, Filter("old/"), "d", Expiration(date=date))]
    assert lcd.expiration_due(rules, "old/a", 1, {}, 0.0, date - 1) is None
    assert lcd.expiration_due(rules, "old/a", 1, {}, 0.0, date) == rules[0]
    # Created after the date: due at once; the day length does not move a Date.
    assert lcd.expiration_due(rules, "old/a", 1, {}, date + 50, date + 60, day_s=1.0) == rules[0]
    assert lcd.expiration_due(rules, "new/a", 1, {}, 0.0, date + 1) is None
    header = lcd.expiration_header(rules, "old/a", 1, {}, date + 50)
    assert header == 'expiry-date="Tue, 01 Jan 2030 00:00:00 GMT", rule-id="d"'


def test_the_rule_due_first_wins() -> None:
    rules = [
        expiring(Filter(), days=30, rule_id="month"),
        expiring(Filter("tmp/"), days=2, rule_id="tmp"),
        Rule(ENABLED, Filter("tmp/"), "marker", Expiration(expired_object_delete_marker=True)),
        expiring(Filter("tmp/"), days=1, rule_id="off", status=DISABLED),
    ]
    assert lcd.expiration_due(rules, "tmp/a", 1, {}, 0.5, 3.0, day_s=1.0) == rules[1]
    assert lcd.expiration_due(rules, "doc", 1, {}, 0.5, 3.0, day_s=1.0) is None
    assert lcd.expiration_due(rules, "doc", 1, {}, 0.5, 31.0, day_s=1.0) == rules[0]
    assert lcd.expiration_header(rules, "tmp/a", 1, {}, 0.5, day_s=1.0) == (
        'expiry-date="Thu, 01 Jan 1970 00:00:03 GMT", rule-id="tmp"'
    )
    assert lcd.expiration_header(rules[2:], "tmp/a", 1, {}, 0.5) is None


@pytest.mark.parametrize(
    ("keep", "newer", "now", "due"),
    [
        (None, 0, 12.999, False),
        (None, 0, 13.0, True),  # noncurrent since 10.2, 2 days: from midnight 11, due at 13
        (None, 7, 13.0, True),
        (2, 0, 100.0, False),  # among the 2 newest noncurrent versions: kept whatever its age
        (2, 1, 100.0, False),
        (2, 2, 12.999, False),  # beyond them, still needs its days
        (2, 2, 13.0, True),
        (2, 9, 13.0, True),
    ],
)
def test_noncurrent_versions(keep: int | None, newer: int, now: float, due: bool) -> None:
    rules = [Rule(ENABLED, Filter("v/"), "nc", noncurrent=NoncurrentExpiration(2, keep))]
    found = lcd.noncurrent_due(rules, "v/a", 5, {}, 10.2, newer, now, day_s=1.0)
    assert found == (rules[0] if due else None)
    assert lcd.noncurrent_due(rules, "w/a", 5, {}, 10.2, newer, now, day_s=1.0) is None


def test_noncurrent_rules_do_not_expire_current_versions_and_vice_versa() -> None:
    current = [expiring(Filter(), days=1)]
    noncurrent = [Rule(ENABLED, noncurrent=NoncurrentExpiration(1))]
    assert lcd.noncurrent_due(current, "k", 1, {}, 0.0, 5, 1e9) is None
    assert lcd.expiration_due(noncurrent, "k", 1, {}, 0.0, 1e9) is None
    assert lcd.expiration_header(noncurrent, "k", 1, {}, 0.0) is None


def test_abort_incomplete_uploads() -> None:
    rules = [
        Rule(ENABLED, Filter("big/"), "abort-big", abort_days=3),
        Rule(ENABLED, Filter(""), "abort-all", abort_days=7),
        Rule(DISABLED, Filter("big/"), "off", abort_days=1),
    ]
    assert lcd.abort_due(rules, "big/a", 10.5, 13.999, day_s=1.0) is None
    assert lcd.abort_due(rules, "big/a", 10.5, 14.0, day_s=1.0) == rules[0]
    assert lcd.abort_due(rules, "small", 10.5, 14.0, day_s=1.0) is None
    assert lcd.abort_due(rules, "small", 10.5, 18.0, day_s=1.0) == rules[1]
    assert lcd.abort_headers(rules, "big/a", ts("2022-12-19T10:00:00Z")) == [
        ("x-amz-abort-date", "Fri, 23 Dec 2022 00:00:00 GMT"),
        ("x-amz-abort-rule-id", "abort-big"),
    ]
    assert lcd.abort_headers(rules[2:], "big/a", 0.0) == []


def test_expired_object_delete_markers() -> None:
    marker = [Rule(ENABLED, Filter("logs/"), "m", Expiration(expired_object_delete_marker=True))]
    assert lcd.delete_marker_expired(marker, "logs/a", only_version_left=True)
    assert not lcd.delete_marker_expired(marker, "logs/a", only_version_left=False)
    assert not lcd.delete_marker_expired(marker, "other", only_version_left=True)
    off = [Rule(ENABLED, Filter(), "m", Expiration(expired_object_delete_marker=False))]
    assert not lcd.delete_marker_expired(off, "logs/a", only_version_left=True)
    # Days rules clean up lone markers once they are old enough, given their age.
    days = [expiring(Filter("logs/"), days=2)]
    assert not lcd.delete_marker_expired(days, "logs/a", True)
    assert not lcd.delete_marker_expired(days, "logs/a", True, mtime=10.5, now=12.9, day_s=1.0)
    assert lcd.delete_marker_expired(days, "logs/a", True, mtime=10.5, now=13.0, day_s=1.0)
    assert not lcd.delete_marker_expired(days, "logs/a", False, mtime=10.5, now=99.0, day_s=1.0)
    # A marker has no tags: tag rules never touch it.
    tagged = [expiring(Filter(tags=(("k", "v"),)))]
    assert not lcd.delete_marker_expired(tagged, "a", True, mtime=0.0, now=1e9)


def test_disabled_rules_never_apply() -> None:
    rules = [
        Rule(
            DISABLED,
            Filter(),
            "off",
            Expiration(days=1),
            NoncurrentExpiration(1),
            abort_days=1,
        ),
        Rule(DISABLED, Filter(), "off-marker", Expiration(expired_object_delete_marker=True)),
    ]
    assert lcd.expiration_due(rules, "k", 1, {}, 0.0, 1e12) is None
    assert lcd.noncurrent_due(rules, "k", 1, {}, 0.0, 50, 1e12) is None
    assert lcd.abort_due(rules, "k", 0.0, 1e12) is None
    assert not lcd.delete_marker_expired(rules, "k", True, mtime=0.0, now=1e12)
    assert lcd.expiration_header(rules, "k", 1, {}, 0.0) is None
    assert lcd.abort_headers(rules, "k", 0.0) == []


def test_header_rule_ids_cannot_break_the_header() -> None:
    rules = [expiring(Filter(), rule_id='a "quoted"\r\nX-Evil: 1 ünï')]
    header = lcd.expiration_header(rules, "k", 1, {}, 0.0)
    assert header is not None and header.isascii() and "\r" not in header and "\n" not in header
    assert header.endswith('rule-id="a %22quoted%22%0D%0AX-Evil: 1 %C3%BCn%C3%AF"')


# -- render/parse round trip ---------------------------------------------------------------------

# Text XML 1.0 can carry: no control characters but tab, newline and carriage return.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from("\t\n\r"),
    max_size=12,
)
TAG_PAIR = st.tuples(TEXT.filter(bool), TEXT)
SIZES = st.integers(0, 10**12)


@st.composite
def filters(draw: st.DrawFn, *, tags: bool = True, sizes: bool = True) -> Filter:
    """Any filter S3 accepts; without tag or size predicates when the rule can't have them."""
    kinds = ["empty", "legacy", "prefix", "and"] + ["tag"] * tags + ["gt", "lt"] * sizes
    kind = draw(st.sampled_from(kinds))
    if kind == "empty":
        return Filter()
    if kind in ("legacy", "prefix"):
        return Filter(draw(TEXT), legacy=kind == "legacy")
    if kind == "tag":
        return Filter(tags=(draw(TAG_PAIR),))
    if kind == "gt":
        return Filter(size_gt=draw(SIZES))
    if kind == "lt":
        return Filter(size_lt=draw(SIZES) + 1)
    low = draw(st.none() | SIZES) if sizes else None
    high = draw(st.none() | st.integers((low or 0) + 1, 10**13)) if sizes else None
    pairs = draw(st.lists(TAG_PAIR, max_size=3, unique_by=lambda pair: pair[0])) if tags else []
    found = Filter(draw(st.none() | TEXT), tuple(pairs), low, high, and_=True)
    if found == Filter(and_=True):  # And needs something inside
        return Filter("", and_=True)
    return found


EXPIRATIONS = st.one_of(
    st.builds(Expiration, days=st.integers(1, 2**31 - 1)),
    st.builds(Expiration, date=st.integers(0, 30000).map(lambda d: d * DAY)),
    st.builds(Expiration, expired_object_delete_marker=st.booleans()),
)
NONCURRENT = st.builds(
    NoncurrentExpiration, st.integers(1, 2**31 - 1), st.none() | st.integers(1, 100)
)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    expiration = draw(st.none() | EXPIRATIONS)
    noncurrent = draw(st.none() | NONCURRENT)
    abort = draw(st.none() | st.integers(1, 2**31 - 1))
    if expiration is None and noncurrent is None and abort is None:
        abort = 1
    marker = expiration is not None and bool(expiration.expired_object_delete_marker)
    selector = draw(filters(tags=abort is None and not marker, sizes=abort is None))
    return Rule(
        draw(st.sampled_from([ENABLED, DISABLED])),
        selector,
        draw(TEXT),
        expiration,
        noncurrent,
        abort,
    )


CONFIGURATIONS = st.lists(rules(), min_size=1, max_size=5).filter(
    lambda found: (
        len({r.rule_id for r in found if r.rule_id}) == len([r for r in found if r.rule_id])
    )
)


@settings(max_examples=150, deadline=None)
@given(CONFIGURATIONS)
def test_render_then_parse_gives_the_same_rules(found: list[Rule]) -> None:
    assert lc.parse(lc.render(found)) == found
    assert lc.from_setting(lc.to_setting(found)) == found
