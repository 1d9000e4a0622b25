"""Bucket lifecycle rules through real clients: the configuration API (boto3, the aws CLI, raw
signed requests) and the background runner, on a server whose "day" is one second."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import (
    Server,
    make_client,
    start_server,
    stop_server,
)
from tests.integration.test_bad_input import signed
from tests.integration.test_clients import BIN, aws_env, run

ARGS = ["--lifecycle-day-seconds", "1", "--workers", "1"]
DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("lc"), ARGS)
    yield running
    stop_server(running)


@pytest.fixture
def s3(lc: Server) -> Any:
    return make_client(lc.endpoint)


def new_bucket(s3: Any, **options: Any) -> str:
    name = f"lc{time.monotonic_ns() % 10**10}"
    s3.create_bucket(Bucket=name, **options)
    return name


def code_of(e: ClientError) -> str:
    return str(e.response["Error"]["Code"])


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return False


def keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o["Key"] for o in page.get("Contents", [])]
    return found


def versions(s3: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, version id, is a delete marker): the versions newest first per key, then markers."""
    got = s3.list_object_versions(Bucket=bucket)
    listed = [(v["Key"], v["VersionId"], False) for v in got.get("Versions", [])]
    return listed + [(d["Key"], d["VersionId"], True) for d in got.get("DeleteMarkers", [])]


def metric(server: Server, name: str) -> float:
    text = urllib.request.urlopen(server.endpoint + "/metrics", timeout=10).read().decode()
    found = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def rule(rule_id: str, prefix: str = "", **actions: Any) -> dict[str, Any]:
    return {"ID": rule_id, "Filter": {"Prefix": prefix}, "Status": "Enabled", **actions}


def put_rules(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)}
    )


ROUND_TRIP = [
    rule("logs", "logs/", Expiration={"Days": 30}),
    {
        "ID": "tagged",
        "Filter": {"Tag": {"Key": "class", "Value": "tmp"}},
        "Status": "Disabled",
        "Expiration": {"Days": 7},
    },
    {
        "ID": "big",
        "Filter": {"And": {"Prefix": "big/", "ObjectSizeGreaterThan": 1048576}},
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 10, "NewerNoncurrentVersions": 3},
    },
    rule("uploads", "uploads/", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2}),
]


def test_configuration_round_trip_and_cli(lc: Server, s3: Any, tmp_path: Path) -> None:
    bucket = new_bucket(s3)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code_of(e.value) == "NoSuchLifecycleConfiguration"
    put_rules(s3, bucket, *ROUND_TRIP)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == ROUND_TRIP
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code_of(e.value) == "NoSuchLifecycleConfiguration"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # the aws CLI, from a file
    env = aws_env(lc, tmp_path)
    aws = [str(BIN / "aws"), "--endpoint-url", lc.endpoint, "s3api"]
    config = {"Rules": [rule("cli", "cli/", Expiration={"Days": 5}), ROUND_TRIP[2]]}
    (tmp_path / "lc.json").write_text(json.dumps(config))
    run([*aws, "put-bucket-lifecycle-configuration", "--bucket", bucket,
         "--lifecycle-configuration", f"file://{tmp_path / 'lc.json'}"], env)  # fmt: skip
    got = json.loads(run([*aws, "get-bucket-lifecycle-configuration", "--bucket", bucket], env))
    assert got["Rules"] == config["Rules"]
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == config["Rules"]


def _doc(rule_xml: str) -> bytes:
    return f"<LifecycleConfiguration>{rule_xml}</LifecycleConfiguration>".encode()


def _rule_xml(actions: str, extra: str = "") -> str:
    return (
        f"<Rule><ID>bad</ID><Filter><Prefix>x/</Prefix></Filter><Status>Enabled</Status>"
        f"{extra}{actions}</Rule>"
    )


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b"<LifecycleConfiguration><Rule><ID>&c;</ID><Filter><Prefix>&c;</Prefix></Filter>"
    b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
    b"</LifecycleConfiguration>"
)
DAYS_1 = "<Expiration><Days>1</Days></Expiration>"
BAD_INPUT = {
    "junk": (b"this is not xml <<<", 400, {"MalformedXML"}),
    "wrong-root": (
        b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
        400,
        {"MalformedXML"},
    ),
    "entity-bomb": (BOMB, 400, {"MalformedXML"}),
    # S3 documents MaxMessageLengthExceeded for a request too big; MalformedXML is what some
    # S3 endpoints answer for an oversized XML document.
    "over-1-MiB": (
        _doc(_rule_xml(DAYS_1) + " " * (1 << 20)),
        400,
        {"MaxMessageLengthExceeded", "MalformedXML"},
    ),
    "unknown-element": (_doc(_rule_xml(DAYS_1, "<Colour>red</Colour>")), 400, {"MalformedXML"}),
    "days-zero": (
        _doc(_rule_xml("<Expiration><Days>0</Days></Expiration>")),
        400,
        {"InvalidArgument"},
    ),  # fmt: skip
    "marker-with-days": (
        _doc(
            _rule_xml(
                "<Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true"
                "</ExpiredObjectDeleteMarker></Expiration>"
            )
        ),
        400,
        {"InvalidRequest"},
    ),  # fmt: skip
    "transition": (
        _doc(
            _rule_xml(
                "<Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"
            )
        ),
        501,
        {"NotImplemented"},
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def configured(lc: Server) -> str:
    s3 = make_client(lc.endpoint)
    bucket = new_bucket(s3)
    put_rules(s3, bucket, ROUND_TRIP[0])
    return bucket


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_configurations_are_refused(lc: Server, s3: Any, configured: str, case: str) -> None:
    body, status, codes = BAD_INPUT[case]
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    got_status, data = signed(lc, "PUT", f"/{configured}?lifecycle", body, {"Content-MD5": md5})
    found = re.search(rb"<Code>([^<]*)</Code>", data)
    code = found.group(1).decode() if found else ""
    assert (got_status, code in codes) == (status, True), (got_status, data[:300])
    assert s3.get_bucket_lifecycle_configuration(Bucket=configured)["Rules"] == [ROUND_TRIP[0]]


def test_expiration_of_current_versions(s3: Any) -> None:
    bucket = new_bucket(s3)
    put_rules(s3, bucket, rule("tmp-rule", "tmp/", Expiration={"Days": 1}))
    put = s3.put_object(Bucket=bucket, Key="tmp/a", Body=b"short-lived")
    assert 'rule-id="tmp-rule"' in put.get("Expiration", ""), put
    assert "expiry-date=" in put["Expiration"]
    head = s3.head_object(Bucket=bucket, Key="tmp/a")
    assert 'rule-id="tmp-rule"' in head.get("Expiration", ""), head
    kept = s3.put_object(Bucket=bucket, Key="keep/b", Body=b"stays")
    assert "Expiration" not in kept
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="keep/b")
    got = s3.get_object(Bucket=bucket, Key="tmp/a")
    assert 'rule-id="tmp-rule"' in got.get("Expiration", "")
    got["Body"].read()
    wait_for(lambda: not exists(s3, bucket, "tmp/a"), "tmp/a to expire")
    assert keys(s3, bucket) == ["keep/b"]
    assert s3.get_object(Bucket=bucket, Key="keep/b")["Body"].read() == b"stays"
    assert versions(s3, bucket) == [("keep/b", "null", False)]  # no marker when unversioned


def test_versioned_expiration_noncurrent_and_delete_markers(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"v1")["VersionId"]
    put_rules(s3, bucket, rule("expire", Expiration={"Days": 1}))
    # expiring the current version of a versioned key adds a delete marker
    wait_for(lambda: len(versions(s3, bucket)) == 2, "a delete marker")
    listed = versions(s3, bucket)
    assert sorted(marker for _, _, marker in listed) == [False, True]
    assert ("doc", v1, False) in listed
    assert not exists(s3, bucket, "doc")
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)["Body"].read() == b"v1"
    # the noncurrent version goes after NoncurrentDays; the marker stays (not this rule's)
    put_rules(s3, bucket, rule("noncurrent", NoncurrentVersionExpiration={"NoncurrentDays": 1}))
    wait_for(lambda: [m for _, _, m in versions(s3, bucket)] == [True], "v1 to go")
    # a lone delete marker goes under ExpiredObjectDeleteMarker
    put_rules(s3, bucket, rule("markers", Expiration={"ExpiredObjectDeleteMarker": True}))
    wait_for(lambda: versions(s3, bucket) == [], "the lone delete marker to go")


def test_newer_noncurrent_versions_are_kept(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b"%d" % i)["VersionId"] for i in range(5)]
    keep = {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}
    put_rules(s3, bucket, rule("keep-two", NoncurrentVersionExpiration=keep))
    wait_for(lambda: len(versions(s3, bucket)) <= 3, "the oldest two noncurrent versions to go")
    time.sleep(1.5)  # several more passes: the two newest noncurrent ones stay
    assert versions(s3, bucket) == [("k", v, False) for v in reversed(ids[2:])]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"4"


def test_abort_incomplete_multipart_uploads(s3: Any) -> None:
    bucket = new_bucket(s3)
    put_rules(s3, bucket, rule("abort", "mp/", AbortIncompleteMultipartUpload={
        "DaysAfterInitiation": 1}))  # fmt: skip
    doomed = s3.create_multipart_upload(Bucket=bucket, Key="mp/big")
    assert doomed.get("AbortRuleId") == "abort", doomed
    assert isinstance(doomed.get("AbortDate"), datetime.datetime)
    assert doomed["AbortDate"] > datetime.datetime.now(datetime.UTC)
    s3.upload_part(
        Bucket=bucket, Key="mp/big", UploadId=doomed["UploadId"], PartNumber=1, Body=b"p" * 1000
    )
    other = s3.create_multipart_upload(Bucket=bucket, Key="other/big")
    assert "AbortRuleId" not in other and "AbortDate" not in other

    def uploads() -> list[str]:
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    wait_for(lambda: doomed["UploadId"] not in uploads(), "the upload to be aborted")
    assert uploads() == [other["UploadId"]]
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="mp/big", UploadId=doomed["UploadId"])
    assert code_of(e.value) == "NoSuchUpload"


def test_object_lock_is_respected(lc: Server, s3: Any) -> None:
    bucket = new_bucket(s3, ObjectLockEnabledForBucket=True)
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    body = b"locked"
    locked = s3.put_object(
        Bucket=bucket,
        Key="locked",
        Body=body,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
    )["VersionId"]
    s3.put_object(Bucket=bucket, Key="locked", Body=b"newer")
    free = [s3.put_object(Bucket=bucket, Key="free", Body=b"%d" % i)["VersionId"] for i in range(3)]
    skipped_before = metric(lc, "store_lifecycle_locked_skipped")
    put_rules(s3, bucket, rule("noncurrent", NoncurrentVersionExpiration={"NoncurrentDays": 1}))

    def free_versions() -> list[str]:
        return [v for k, v, _ in versions(s3, bucket) if k == "free"]

    wait_for(lambda: free_versions() == [free[-1]], "the unlocked noncurrent versions to go")
    wait_for(
        lambda: metric(lc, "store_lifecycle_locked_skipped") > skipped_before,
        "store_lifecycle_locked_skipped to count",
    )
    time.sleep(1.0)  # more passes
    assert locked in [v for k, v, _ in versions(s3, bucket) if k == "locked"]
    assert s3.get_object(Bucket=bucket, Key="locked", VersionId=locked)["Body"].read() == body
    assert metric(lc, "store_lifecycle_noncurrent_expired") > 0


def test_restart_in_the_middle_resumes(tmp_path: Path) -> None:
    server = start_server(tmp_path, ARGS)
    try:
        s3 = make_client(server.endpoint)
        bucket = new_bucket(s3)
        bulk = [f"bulk/{i:05d}" for i in range(1200)]
        stay = {f"stay/{i:03d}": b"stay-%d" % i for i in range(50)}

        def put(key: str) -> None:  # boto3 clients are thread-safe: one for all threads
            s3.put_object(Bucket=bucket, Key=key, Body=stay.get(key, b"bulk"))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, [*bulk, *stay]))
        assert len(keys(s3, bucket)) == 1250
        put_rules(s3, bucket, rule("bulk", "bulk/", Expiration={"Days": 1}))
        wait_for(lambda: not exists(s3, bucket, bulk[0]), "the first bulk/ keys to go")
        expired_before = metric(server, "store_lifecycle_expired")
        assert expired_before > 0
        stop_server(server)
        server = start_server(tmp_path, ARGS, name="restarted")
        s3 = make_client(server.endpoint)
        left = len(keys(s3, bucket, "bulk/"))
        wait_for(lambda: keys(s3, bucket, "bulk/") == [], "every bulk/ key to go")
        assert keys(s3, bucket, "stay/") == sorted(stay)
        for key, data in stay.items():
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        if left:  # the restarted process did the rest
            assert metric(server, "store_lifecycle_expired") > 0
    finally:
        if server.process.poll() is None:
            stop_server(server)
