"""S3 Object Lock through real clients (boto3, the aws CLI, raw signed requests): the bucket
configuration, retention and legal hold of versions, and the deletions they refuse."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import Server, add_user, make_client
from tests.integration.test_acl import code_of
from tests.integration.test_bad_input import signed
from tests.integration.test_clients import BIN, aws_env, run

GOV, COMP = "GOVERNANCE", "COMPLIANCE"


def ahead(**delta: float) -> datetime:
    """A whole-second UTC time ahead of now (S3 answers in milliseconds)."""
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)


def refused(call: Any, code: str, status: int | None = None, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    assert code_of(e.value) == code, e.value.response
    if status is not None:
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def new_name(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**10}"


@pytest.fixture
def bucket(s3: Any) -> str:
    name = new_name("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def put(s3: Any, bucket: str, key: str, **lock: Any) -> str:
    return str(s3.put_object(Bucket=bucket, Key=key, Body=b"data", **lock)["VersionId"])


def versions(s3: Any, bucket: str, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


def test_lock_bucket_needs_and_keeps_versioning(s3: Any, bucket: str) -> None:
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    got = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}
    refused(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=bucket,
            VersioningConfiguration={"Status": "Suspended"})  # fmt: skip
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    plain = new_name("plain")
    s3.create_bucket(Bucket=plain)
    refused(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", 404,
            Bucket=plain)  # fmt: skip
    refused(s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=plain,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})  # fmt: skip
    refused(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", Bucket=plain)


def test_default_and_explicit_retention(server: Server, s3: Any, bucket: str) -> None:
    rule = {"DefaultRetention": {"Mode": GOV, "Days": 1}}
    config = {"ObjectLockEnabled": "Enabled", "Rule": rule}
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config)
    got = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert got == config
    put(s3, bucket, "default")
    head = s3.head_object(Bucket=bucket, Key="default")
    assert head["ObjectLockMode"] == GOV
    until = head["ObjectLockRetainUntilDate"] - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < until <= timedelta(days=1)
    when = ahead(days=3)
    put(s3, bucket, "explicit", ObjectLockMode=COMP, ObjectLockRetainUntilDate=when)
    head = s3.head_object(Bucket=bucket, Key="explicit")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == (COMP, when)
    refused(put, "InvalidArgument", 400, s3=s3, bucket=bucket, key="past",
            ObjectLockMode=GOV, ObjectLockRetainUntilDate=ahead(days=-1))  # fmt: skip
    refused(put, "InvalidArgument", 400, s3=s3, bucket=bucket, key="mode", ObjectLockMode=GOV)
    refused(put, "InvalidArgument", 400, s3=s3, bucket=bucket, key="date",
            ObjectLockRetainUntilDate=when)  # fmt: skip
    assert versions(s3, bucket, "past") + versions(s3, bucket, "mode") == []
    plain = new_name("plain")
    s3.create_bucket(Bucket=plain)
    refused(put, "InvalidRequest", 400, s3=s3, bucket=plain, key="k",
            ObjectLockMode=GOV, ObjectLockRetainUntilDate=when)  # fmt: skip
    # boto3 sends a checksum with PutObject; a raw PUT with lock headers and none is refused
    headers = {
        "x-amz-object-lock-mode": GOV,
        "x-amz-object-lock-retain-until-date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    status, body = signed(server, "PUT", f"/{bucket}/raw", b"raw", headers)
    assert (status, error_code(body)) == (400, "InvalidRequest"), body
    assert versions(s3, bucket, "raw") == []
    headers["content-md5"] = base64.b64encode(hashlib.md5(b"raw").digest()).decode()
    assert signed(server, "PUT", f"/{bucket}/raw", b"raw", headers)[0] == 200
    assert s3.head_object(Bucket=bucket, Key="raw")["ObjectLockMode"] == GOV


def test_locked_versions_refuse_deletion(s3: Any, bucket: str) -> None:
    gov = put(s3, bucket, "gov", ObjectLockMode=GOV, ObjectLockRetainUntilDate=ahead(days=1))
    refused(s3.delete_object, "AccessDenied", 403, Bucket=bucket, Key="gov", VersionId=gov)
    assert versions(s3, bucket, "gov") == [gov]
    s3.delete_object(Bucket=bucket, Key="gov", VersionId=gov, BypassGovernanceRetention=True)
    assert versions(s3, bucket, "gov") == []
    comp = put(s3, bucket, "comp", ObjectLockMode=COMP, ObjectLockRetainUntilDate=ahead(days=1))
    refused(s3.delete_object, "AccessDenied", 403, Bucket=bucket, Key="comp", VersionId=comp,
            BypassGovernanceRetention=True)  # fmt: skip
    marker = s3.delete_object(Bucket=bucket, Key="comp")  # no version id: a delete marker
    assert marker["DeleteMarker"] is True
    assert versions(s3, bucket, "comp") == [comp]
    got = s3.get_object(Bucket=bucket, Key="comp", VersionId=comp)["Body"].read()
    assert got == b"data"
    free = put(s3, bucket, "free")
    result = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [{"Key": "comp", "VersionId": comp}, {"Key": "free", "VersionId": free}]
        },
    )
    assert [(d["Key"], d["VersionId"]) for d in result["Deleted"]] == [("free", free)]
    assert [(x["Key"], x["Code"]) for x in result["Errors"]] == [("comp", "AccessDenied")]
    assert versions(s3, bucket, "comp") == [comp] and versions(s3, bucket, "free") == []


def test_retention_changes(s3: Any, bucket: str) -> None:
    gov = put(s3, bucket, "gov", ObjectLockMode=GOV, ObjectLockRetainUntilDate=ahead(days=1))

    def retention(key: str, version: str) -> tuple[str, datetime]:
        got = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
        return got["Mode"], got["RetainUntilDate"]

    def set_retention(key: str, version: str, mode: str, until: datetime, **kw: Any) -> None:
        retention = {"Mode": mode, "RetainUntilDate": until}
        s3.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version, Retention=retention, **kw
        )

    later = ahead(days=2)
    set_retention("gov", gov, GOV, later)
    assert retention("gov", gov) == (GOV, later)
    refused(set_retention, "AccessDenied", 403, key="gov", version=gov, mode=GOV,
            until=ahead(hours=1))  # fmt: skip
    assert retention("gov", gov) == (GOV, later)
    sooner = ahead(hours=1)
    set_retention("gov", gov, GOV, sooner, BypassGovernanceRetention=True)
    assert retention("gov", gov) == (GOV, sooner)
    refused(set_retention, "InvalidArgument", 400, key="gov", version=gov, mode=GOV,
            until=ahead(days=-1))  # fmt: skip
    comp = put(s3, bucket, "comp", ObjectLockMode=COMP, ObjectLockRetainUntilDate=ahead(days=1))
    until = retention("comp", comp)[1]
    refused(set_retention, "AccessDenied", 403, key="comp", version=comp, mode=COMP,
            until=ahead(hours=1), BypassGovernanceRetention=True)  # fmt: skip
    refused(set_retention, "AccessDenied", 403, key="comp", version=comp, mode=GOV,
            until=ahead(days=5), BypassGovernanceRetention=True)  # fmt: skip
    assert retention("comp", comp) == (COMP, until)
    set_retention("comp", comp, COMP, later)
    assert retention("comp", comp) == (COMP, later)
    free = put(s3, bucket, "free")
    refused(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=bucket,
            Key="free", VersionId=free)  # fmt: skip


def test_legal_hold(s3: Any, bucket: str) -> None:
    v = put(s3, bucket, "held")
    s3.put_object_legal_hold(Bucket=bucket, Key="held", VersionId=v, LegalHold={"Status": "ON"})
    got = s3.get_object_legal_hold(Bucket=bucket, Key="held", VersionId=v)["LegalHold"]
    assert got == {"Status": "ON"}
    assert s3.head_object(Bucket=bucket, Key="held")["ObjectLockLegalHoldStatus"] == "ON"
    refused(s3.delete_object, "AccessDenied", 403, Bucket=bucket, Key="held", VersionId=v,
            BypassGovernanceRetention=True)  # fmt: skip
    s3.put_object_legal_hold(Bucket=bucket, Key="held", VersionId=v, LegalHold={"Status": "OFF"})
    got = s3.get_object_legal_hold(Bucket=bucket, Key="held", VersionId=v)["LegalHold"]
    assert got == {"Status": "OFF"}
    s3.delete_object(Bucket=bucket, Key="held", VersionId=v)
    assert versions(s3, bucket, "held") == []
    at_put = put(s3, bucket, "at-put", ObjectLockLegalHoldStatus="ON")
    assert s3.head_object(Bucket=bucket, Key="at-put")["ObjectLockLegalHoldStatus"] == "ON"
    refused(s3.delete_object, "AccessDenied", Bucket=bucket, Key="at-put", VersionId=at_put)


def test_other_user_cannot_lock_or_bypass(server: Server, s3: Any, bucket: str) -> None:
    name = new_name("locker")
    key = add_user(server, name)
    other = make_client(server.endpoint, key["access_key"], key["secret_key"])
    until = ahead(days=1)
    v = put(s3, bucket, "k", ObjectLockMode=GOV, ObjectLockRetainUntilDate=until)
    target = {"Bucket": bucket, "Key": "k", "VersionId": v}
    refused(other.put_object_retention, "AccessDenied", 403, **target,
            Retention={"Mode": GOV, "RetainUntilDate": ahead(days=2)})  # fmt: skip
    refused(other.put_object_legal_hold, "AccessDenied", 403, **target,
            LegalHold={"Status": "ON"})  # fmt: skip
    # allowed to delete and to set retention, but not to bypass governance
    actions = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention"]
    statement = {"Effect": "Allow", "Principal": {"AWS": name}, "Action": actions,
                 "Resource": f"arn:aws:s3:::{bucket}/*"}  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [statement]}))
    free = put(s3, bucket, "free")
    other.delete_object(Bucket=bucket, Key="free", VersionId=free)  # the grant works
    assert versions(s3, bucket, "free") == []
    refused(other.delete_object, "AccessDenied", 403, **target)
    refused(other.delete_object, "AccessDenied", 403, **target, BypassGovernanceRetention=True)
    refused(other.put_object_retention, "AccessDenied", 403, **target,
            Retention={"Mode": GOV, "RetainUntilDate": ahead(hours=1)},
            BypassGovernanceRetention=True)  # fmt: skip
    assert versions(s3, bucket, "k") == [v]
    got = s3.get_object_retention(**target)["Retention"]
    assert (got["Mode"], got["RetainUntilDate"]) == (GOV, until)
    later = ahead(days=2)  # extending needs no bypass
    other.put_object_retention(**target, Retention={"Mode": GOV, "RetainUntilDate": later})
    assert s3.get_object_retention(**target)["Retention"]["RetainUntilDate"] == later


def error_code(body: bytes) -> str:
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    return found.group(1).decode() if found else ""


def raw_put(server: Server, path: str, body: bytes) -> tuple[int, str]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    status, answer = signed(server, "PUT", path, body, {"content-md5": md5})
    return status, error_code(answer)


ENABLED = "<ObjectLockEnabled>Enabled</ObjectLockEnabled>"


def lock_body(retention: str) -> bytes:
    rule = f"<Rule><DefaultRetention>{retention}</DefaultRetention></Rule>"
    return f"<ObjectLockConfiguration>{ENABLED}{rule}</ObjectLockConfiguration>".encode()


BAD_CONFIGURATIONS = [
    (b"not xml at all", "MalformedXML"),
    (f"<Retention>{ENABLED}</Retention>".encode(), "MalformedXML"),
    (lock_body("<Mode>FOREVER</Mode><Days>1</Days>"), "MalformedXML"),
    (lock_body("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>"), "MalformedXML"),
    (lock_body("<Mode>GOVERNANCE</Mode><Days>0</Days>"), "InvalidArgument"),
]
UNTIL = "<RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate>"
BAD_RETENTIONS = [
    b"<Retention><Mode>GOVERNANCE",
    f"<LegalHold><Mode>GOVERNANCE</Mode>{UNTIL}</LegalHold>".encode(),
    f"<Retention><Mode>FOREVER</Mode>{UNTIL}</Retention>".encode(),
]
BAD_HOLDS = [
    b"{}",
    b"<Retention><Status>ON</Status></Retention>",
    b"<LegalHold><Status>MAYBE</Status></LegalHold>",
]


def test_malformed_bodies_change_nothing(server: Server, s3: Any, bucket: str) -> None:
    config = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": GOV, "Days": 2}},
    }
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config)
    for body, code in BAD_CONFIGURATIONS:
        assert raw_put(server, f"/{bucket}?object-lock", body) == (400, code), body
        got = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert got == config
    v = put(s3, bucket, "k")
    retention = s3.get_object_retention(Bucket=bucket, Key="k", VersionId=v)["Retention"]
    for body in BAD_RETENTIONS:
        path = f"/{bucket}/k?retention&versionId={v}"
        assert raw_put(server, path, body) == (400, "MalformedXML"), body
        got = s3.get_object_retention(Bucket=bucket, Key="k", VersionId=v)["Retention"]
        assert got == retention
    for body in BAD_HOLDS:
        assert raw_put(server, f"/{bucket}/k?legal-hold&versionId={v}", body) == (
            400,
            "MalformedXML",
        ), body
        hold = s3.get_object_legal_hold(Bucket=bucket, Key="k", VersionId=v)["LegalHold"]
        assert hold == {"Status": "OFF"}


def test_aws_cli_lock_commands(server: Server, s3: Any, bucket: str, tmp_path: Path) -> None:
    env = aws_env(server, tmp_path)
    aws = [str(BIN / "aws"), "--endpoint-url", server.endpoint, "s3api"]
    config = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": GOV, "Years": 1}},
    }
    run([*aws, "put-object-lock-configuration", "--bucket", bucket,
         "--object-lock-configuration", json.dumps(config)], env)  # fmt: skip
    got = json.loads(run([*aws, "get-object-lock-configuration", "--bucket", bucket], env))
    assert got["ObjectLockConfiguration"] == config
    src = tmp_path / "f"
    src.write_bytes(b"cli")
    made = json.loads(run([*aws, "put-object", "--bucket", bucket, "--key", "f",
                           "--body", str(src)], env))  # fmt: skip
    target = ["--bucket", bucket, "--key", "f", "--version-id", made["VersionId"]]
    got = json.loads(run([*aws, "get-object-retention", *target], env))["Retention"]
    assert got["Mode"] == GOV
    assert datetime.fromisoformat(got["RetainUntilDate"]) > ahead(days=364)
    until = ahead(days=400)
    stamp = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    run([*aws, "put-object-retention", *target, "--retention",
         f"Mode={GOV},RetainUntilDate={stamp}"], env)  # fmt: skip
    got = json.loads(run([*aws, "get-object-retention", *target], env))["Retention"]
    assert (got["Mode"], datetime.fromisoformat(got["RetainUntilDate"])) == (GOV, until)
    run([*aws, "put-object-legal-hold", *target, "--legal-hold", "Status=ON"], env)
    got = json.loads(run([*aws, "get-object-legal-hold", *target], env))
    assert got["LegalHold"] == {"Status": "ON"}
    head = s3.head_object(Bucket=bucket, Key="f")
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == (GOV, "ON")


def test_multipart_upload_is_locked(s3: Any, bucket: str) -> None:
    until = ahead(days=1)
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="mp", ObjectLockMode=GOV, ObjectLockRetainUntilDate=until
    )["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == (GOV, until)
    refused(s3.delete_object, "AccessDenied", 403, Bucket=bucket, Key="mp",
            VersionId=done["VersionId"])  # fmt: skip
    assert versions(s3, bucket, "mp") == [done["VersionId"]]
