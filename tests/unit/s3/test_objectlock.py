"""Object lock: configuration, retention and legal hold documents and headers parse as S3 parses
them, and the retention rules allow exactly what S3 allows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.s3 import objectlock as ol
from store.s3 import xml
from store.s3.errors import S3Error
from store.s3.objectlock import (
    COMPLIANCE,
    GOVERNANCE,
    DefaultRetention,
    LockConfiguration,
    Retention,
)

MALFORMED = ("MalformedXML", 400)
ARGUMENT = ("InvalidArgument", 400)
DENIED = ("AccessDenied", 403)
Y2030 = 1893456000.0


def code_of(error: pytest.ExceptionInfo[S3Error]) -> tuple[str, int]:
    return error.value.code.code, error.value.code.status


def lock_config(
    inner: str, enabled: str = "<ObjectLockEnabled>Enabled</ObjectLockEnabled>"
) -> bytes:
    return f"<ObjectLockConfiguration>{enabled}{inner}</ObjectLockConfiguration>".encode()


def default(inner: str) -> bytes:
    return lock_config(f"<Rule><DefaultRetention>{inner}</DefaultRetention></Rule>")


# -- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2030-01-01T00:00:00Z", Y2030),
        ("2030-01-01T00:00:00.000Z", Y2030),
        ("2030-01-01T00:00:00.25Z", Y2030 + 0.25),
        ("2030-01-01T00:00:00.123456789Z", Y2030 + 0.123456789),
        ("2030-01-01T00:00:00,5Z", Y2030 + 0.5),
        ("2030-01-01t00:00:00z", Y2030),
        ("2030-01-01T00:00:00", Y2030),  # no zone: UTC
        ("2030-01-01T00:00Z", Y2030),  # no seconds
        ("2030-01-01", Y2030),
        ("2030-01-01T02:00:00+02:00", Y2030),
        ("2030-01-01T05:30:00+0530", Y2030),
        ("2029-12-31T23:00:00-01", Y2030),
        ("2029-12-31T19:00:00.5-05:00", Y2030 + 0.5),
        (" 2030-01-01T00:00:00Z\n", Y2030),
        ("1970-01-01T00:00:00Z", 0.0),
        ("2028-02-29T00:00:00Z", 1835395200.0),
    ],
)
def test_timestamps(text: str, seconds: float) -> None:
    assert ol.parse_timestamp(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "20300101",
        "20300101T000000Z",
        "2030-1-1",
        "2030-13-01T00:00:00Z",
        "2029-02-29T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T00:60:00Z",
        "2030-01-01T00:00:60Z",
        "2030-01-01T00:00:00+24:00",
        "2030-01-01T00:00:00+01:60",
        "2030-01-01T00:00:00.Z",
        "2030-01-01T00:00:00.1234567890Z",
        "2030-01-01T00:00:00 UTC",
        "2030-01-01Z",
        "0000-01-01T00:00:00Z",
        "Wed, 01 Jan 2030 00:00:00 GMT",
    ],
)
def test_not_timestamps(text: str) -> None:
    assert ol.parse_timestamp(text) is None


@given(st.integers(0, 253402300799 * 1000))
def test_timestamps_read_back_what_s3_writes(millis: int) -> None:
    assert ol.parse_timestamp(xml.iso8601(millis / 1000)) == pytest.approx(millis / 1000)


# -- configuration -------------------------------------------------------------------------------

AWS_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <ObjectLockEnabled>Enabled</ObjectLockEnabled>
   <Rule>
      <DefaultRetention>
         <Mode>GOVERNANCE</Mode>
         <Days>30</Days>
      </DefaultRetention>
   </Rule>
</ObjectLockConfiguration>"""


def test_configurations_parse_and_render() -> None:
    parsed = ol.parse_configuration(AWS_EXAMPLE)
    assert parsed == LockConfiguration(DefaultRetention(GOVERNANCE, days=30))
    assert ol.render_configuration(parsed) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
        b"<Mode>GOVERNANCE</Mode><Days>30</Days></DefaultRetention></Rule>"
        b"</ObjectLockConfiguration>"
    )
    for found in (
        LockConfiguration(),
        LockConfiguration(DefaultRetention(COMPLIANCE, years=ol.MAX_YEARS)),
        LockConfiguration(DefaultRetention(GOVERNANCE, days=ol.MAX_DAYS)),
    ):
        assert ol.parse_configuration(ol.render_configuration(found)) == found
        assert ol.from_setting(ol.to_setting(found)) == found
    assert ol.parse_configuration(lock_config("")) == LockConfiguration()


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ObjectLockConfiguration><ObjectLockEnabled>&lol2;</ObjectLockEnabled></ObjectLockConfiguration>"""

CONFIG_REFUSALS = [
    ("bomb", BOMB, MALFORMED, ""),
    ("oversized", b" " * (xml.PARSE_LIMIT_BYTES + 1), MALFORMED, "too large"),
    ("wrong root", b"<Retention/>", MALFORMED, ""),
    ("disabled", lock_config("", "<ObjectLockEnabled>Disabled</ObjectLockEnabled>"), MALFORMED, ""),
    ("not enabled", lock_config("", ""), MALFORMED, "Enabled"),
    ("empty enabled", lock_config("", "<ObjectLockEnabled/>"), MALFORMED, "Enabled"),
    ("unknown element", lock_config("<Foo/>"), MALFORMED, "Foo"),
    ("empty rule", lock_config("<Rule></Rule>"), MALFORMED, "DefaultRetention"),
    ("two rules", lock_config("<Rule/><Rule/>"), MALFORMED, "repeated"),
    ("no mode", default("<Days>1</Days>"), MALFORMED, "Mode"),
    ("invalid mode", default("<Mode>invalid</Mode><Years>1</Years>"), MALFORMED, "Mode"),
    ("lower-case mode", default("<Mode>governance</Mode><Days>1</Days>"), MALFORMED, "Mode"),
    (
        "days and years",
        default("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>"),
        MALFORMED,
        "",
    ),
    ("no period", default("<Mode>GOVERNANCE</Mode>"), MALFORMED, "Days or Years"),
    ("days not a number", default("<Mode>GOVERNANCE</Mode><Days>x</Days>"), MALFORMED, "integer"),
    (
        "zero days",
        default("<Mode>GOVERNANCE</Mode><Days>0</Days>"),
        ARGUMENT,
        "Default retention period must be a positive integer value.",
    ),
    (
        "negative years",
        default("<Mode>GOVERNANCE</Mode><Years>-1</Years>"),
        ARGUMENT,
        "Default retention period must be a positive integer value.",
    ),
    ("36501 days", default("<Mode>COMPLIANCE</Mode><Days>36501</Days>"), ARGUMENT, "too long"),
    ("101 years", default("<Mode>COMPLIANCE</Mode><Years>101</Years>"), ARGUMENT, "too long"),
]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [r[1:] for r in CONFIG_REFUSALS],
    ids=[r[0] for r in CONFIG_REFUSALS],
)
def test_configuration_refusals(body: bytes, code: tuple[str, int], message: str) -> None:
    with pytest.raises(S3Error) as e:
        ol.parse_configuration(body)
    assert code_of(e) == code and message in e.value.message


def test_default_retention() -> None:
    now = ol.parse_timestamp("2030-06-15T12:34:56.5Z") or 0.0
    days = LockConfiguration(DefaultRetention(GOVERNANCE, days=30))
    assert ol.default_retention(days, now) == Retention(GOVERNANCE, now + 30 * 86400)
    assert ol.default_retention(days, 100.0, day_s=1.0) == Retention(GOVERNANCE, 130.0)
    years = LockConfiguration(DefaultRetention(COMPLIANCE, years=2))
    found = ol.default_retention(years, now)
    assert found is not None and xml.iso8601(found.until) == "2032-06-15T12:34:56.500Z"
    assert ol.default_retention(years, 100.0, day_s=1.0) == Retention(COMPLIANCE, 830.0)
    assert ol.default_retention(LockConfiguration(), now) is None
    assert ol.default_retention(None, now) is None
    with pytest.raises(ValueError):
        DefaultRetention(GOVERNANCE, days=1, years=1)


def test_retention_needs_a_locked_bucket() -> None:
    config = LockConfiguration()
    assert ol.require_configuration(config) is config
    with pytest.raises(S3Error) as e:
        ol.require_configuration(None)
    assert code_of(e) == ("InvalidRequest", 400)


# -- retention and legal hold documents ----------------------------------------------------------


def retention_body(inner: str) -> bytes:
    return (
        f'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</Retention>'.encode()
    )


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (
            "<Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate>",
            Retention(GOVERNANCE, Y2030),
        ),
        (
            "<Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-01T01:00:00.5+01:00</RetainUntilDate>",
            Retention(COMPLIANCE, Y2030 + 0.5),
        ),
        ("", None),  # boto3's Retention={}: remove it
    ],
)
def test_retention_documents(inner: str, expected: Retention | None) -> None:
    assert ol.parse_retention(retention_body(inner)) == expected
    if expected is not None:
        assert ol.parse_retention(ol.render_retention(expected)) == expected


def test_retention_rendering() -> None:
    assert ol.render_retention(Retention(COMPLIANCE, Y2030)) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>COMPLIANCE</Mode>'
        b"<RetainUntilDate>2030-01-01T00:00:00.000Z</RetainUntilDate></Retention>"
    )


@pytest.mark.parametrize(
    "inner",
    [
        "<Mode>invalid</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate>",
        "<RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate>",
        "<Mode>GOVERNANCE</Mode>",
        "<Mode>GOVERNANCE</Mode><RetainUntilDate>next year</RetainUntilDate>",
        "<Mode>GOVERNANCE</Mode><RetainUntilDate>20300101</RetainUntilDate>",
        "<Mode>GOVERNANCE</Mode><Mode>GOVERNANCE</Mode>",
        "<Status>ON</Status>",
    ],
)
def test_retention_document_refusals(inner: str) -> None:
    with pytest.raises(S3Error) as e:
        ol.parse_retention(retention_body(inner))
    assert code_of(e) == MALFORMED


def test_legal_hold_documents() -> None:
    for on in (True, False):
        assert ol.parse_legal_hold(ol.render_legal_hold(on)) is on
    assert ol.render_legal_hold(True).endswith(
        b"<LegalHold "
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>ON</Status></LegalHold>'
    )
    assert ol.parse_legal_hold(b"<LegalHold><Status>OFF</Status></LegalHold>") is False
    for body in (
        b"<LegalHold><Status>on</Status></LegalHold>",
        b"<LegalHold><Status>MAYBE</Status></LegalHold>",
        b"<LegalHold></LegalHold>",
        b"<LegalHold><Status>ON</Status><Other/></LegalHold>",
        b"<Retention/>",
    ):
        with pytest.raises(S3Error) as e:
            ol.parse_legal_hold(body)
        assert code_of(e) == MALFORMED


# -- headers -------------------------------------------------------------------------------------


def test_retention_headers() -> None:
    headers = {
        "x-amz-object-lock-mode": "COMPLIANCE",
        "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00.000Z",
    }
    assert ol.retention_from_headers(headers) == Retention(COMPLIANCE, Y2030)
    upper = {name.title(): value for name, value in headers.items()}
    assert ol.retention_from_headers(upper) == Retention(COMPLIANCE, Y2030)
    assert ol.retention_from_headers({"content-type": "text/plain"}) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-amz-object-lock-mode": "GOVERNANCE"}, "must both be supplied"),
        ({"x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z"}, "must both be supplied"),
        (
            {
                "x-amz-object-lock-mode": "FOREVER",
                "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z",
            },
            "wormMode",
        ),
        (
            {
                "x-amz-object-lock-mode": "GOVERNANCE",
                "x-amz-object-lock-retain-until-date": "Wed, 01 Jan 2030 00:00:00 GMT",
            },
            "ISO 8601",
        ),
    ],
)
def test_retention_header_refusals(headers: dict[str, str], message: str) -> None:
    with pytest.raises(S3Error) as e:
        ol.retention_from_headers(headers)
    assert code_of(e) == ARGUMENT and message in e.value.message


def test_legal_hold_and_bypass_headers() -> None:
    assert ol.legal_hold_from_headers({"x-amz-object-lock-legal-hold": "ON"}) is True
    assert ol.legal_hold_from_headers({"X-Amz-Object-Lock-Legal-Hold": "OFF"}) is False
    assert ol.legal_hold_from_headers({}) is None
    for value in ("on", "true", ""):
        with pytest.raises(S3Error) as e:
            ol.legal_hold_from_headers({"x-amz-object-lock-legal-hold": value})
        assert code_of(e) == ARGUMENT
    assert ol.bypass_from_headers({"X-Amz-Bypass-Governance-Retention": "True"})
    assert not ol.bypass_from_headers({"x-amz-bypass-governance-retention": "false"})
    assert not ol.bypass_from_headers({})


def test_lock_headers() -> None:
    assert ol.lock_headers(Retention(GOVERNANCE, Y2030), False) == [
        ("x-amz-object-lock-mode", "GOVERNANCE"),
        ("x-amz-object-lock-retain-until-date", "2030-01-01T00:00:00.000Z"),
        ("x-amz-object-lock-legal-hold", "OFF"),
    ]
    assert ol.lock_headers(None, None) == []


# -- the rules -----------------------------------------------------------------------------------

NOW = 100.0
G200, G150, G300 = (
    Retention(GOVERNANCE, 200),
    Retention(GOVERNANCE, 150),
    Retention(GOVERNANCE, 300),
)
C200, C150, C300 = (
    Retention(COMPLIANCE, 200),
    Retention(COMPLIANCE, 150),
    Retention(COMPLIANCE, 300),
)
OK = None
PAST = ARGUMENT

RETENTION_CHANGES: list[
    tuple[str, Retention | None, Retention | None, bool, tuple[str, int] | None]
] = [
    ("new, no bypass", None, G200, False, OK),
    ("new in the past", None, Retention(GOVERNANCE, 50), False, PAST),
    ("new ending now", None, Retention(COMPLIANCE, NOW), True, PAST),
    ("governance extended", G200, G300, False, OK),
    ("governance kept", G200, G200, False, OK),
    ("governance shortened", G200, G150, False, DENIED),
    ("governance shortened, bypass", G200, G150, True, OK),
    ("governance removed", G200, None, False, DENIED),
    ("governance removed, bypass", G200, None, True, OK),
    ("governance to compliance", G200, C300, False, DENIED),
    ("governance to compliance, bypass", G200, C300, True, OK),
    ("governance shortened to the past, bypass", G200, Retention(GOVERNANCE, 60), True, PAST),
    ("compliance extended", C200, C300, False, OK),
    ("compliance kept", C200, C200, False, OK),
    ("compliance shortened", C200, C150, True, DENIED),
    ("compliance to governance", C200, G300, True, DENIED),
    ("compliance removed", C200, None, True, DENIED),
    ("compliance shortened to the past", C200, Retention(COMPLIANCE, 60), True, PAST),
    ("expired compliance removed", Retention(COMPLIANCE, 50), None, False, OK),
    ("expired compliance to governance", Retention(COMPLIANCE, NOW), G150, False, OK),
    ("expired governance shortened", Retention(GOVERNANCE, 50), G150, False, OK),
]


@pytest.mark.parametrize(
    ("old", "new", "bypass", "refusal"),
    [r[1:] for r in RETENTION_CHANGES],
    ids=[r[0] for r in RETENTION_CHANGES],
)
def test_retention_changes(
    old: Retention | None, new: Retention | None, bypass: bool, refusal: tuple[str, int] | None
) -> None:
    if refusal is None:
        ol.check_new_retention(old, new, NOW, bypass)
        return
    with pytest.raises(S3Error) as e:
        ol.check_new_retention(old, new, NOW, bypass)
    assert code_of(e) == refusal
    if refusal == PAST:
        assert e.value.message == "The retain until date must be in the future!"


DELETES: list[tuple[str, Retention | None, bool, bool, str | None]] = [
    ("unlocked", None, False, False, None),
    ("legal hold", None, True, True, "legal hold"),
    ("legal hold on an expired retention", Retention(COMPLIANCE, 50), True, True, "legal hold"),
    ("governance", G200, False, False, "GOVERNANCE mode until 1970-01-01T00:03:20.000Z"),
    ("governance, bypass", G200, False, True, None),
    ("governance and a legal hold, bypass", G200, True, True, "legal hold"),
    ("compliance", C200, False, False, "COMPLIANCE"),
    ("compliance, bypass", C200, False, True, "COMPLIANCE"),
    ("expired compliance", Retention(COMPLIANCE, 50), False, False, None),
    ("compliance ending now", Retention(COMPLIANCE, NOW), False, False, None),
]


@pytest.mark.parametrize(
    ("retention", "hold", "bypass", "reason"),
    [r[1:] for r in DELETES],
    ids=[r[0] for r in DELETES],
)
def test_may_delete(
    retention: Retention | None, hold: bool, bypass: bool, reason: str | None
) -> None:
    found = ol.may_delete(retention, hold, NOW, bypass)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


RETENTIONS = st.builds(Retention, st.sampled_from([GOVERNANCE, COMPLIANCE]), st.floats(0, 1000))


@given(old=RETENTIONS, new=st.none() | RETENTIONS, now=st.floats(0, 1000), bypass=st.booleans())
def test_a_lock_in_effect_only_gets_longer_unless_governance_is_bypassed(
    old: Retention, new: Retention | None, now: float, bypass: bool
) -> None:
    try:
        ol.check_new_retention(old, new, now, bypass)
    except S3Error:
        return
    assert new is None or new.active(now)
    if old.active(now) and not (old.mode == GOVERNANCE and bypass):
        assert new is not None and new.mode == old.mode and new.until >= old.until


def test_retention_records() -> None:
    found = Retention(GOVERNANCE, Y2030 + 0.5)
    assert Retention.from_json(found.to_json()) == found
    assert Retention.from_json({"mode": "COMPLIANCE", "until": 5}) == Retention(COMPLIANCE, 5.0)
    assert found.active(Y2030) and not found.active(Y2030 + 0.5)
    for data in ({"mode": "FOREVER", "until": 1.0}, {"mode": "GOVERNANCE", "until": "soon"}):
        with pytest.raises(ValueError):
            Retention.from_json(data)
    with pytest.raises(KeyError):
        Retention.from_json({"mode": "GOVERNANCE"})
