"""ACLs, ownership controls, the public access block and bucket policies, through real clients:
boto3 (signed and anonymous), the aws CLI, s3cmd and rclone."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import Server, add_user, make_client
from tests.integration.test_clients import BIN, aws_env, rclone_env, run, s3cmd_command

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def code_of(e: ClientError) -> str:
    return str(e.response["Error"]["Code"])


def anon_get(server: Server, path: str) -> int:
    try:
        with urllib.request.urlopen(server.endpoint + path, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.fixture(scope="module")
def carol(server: Server) -> tuple[Any, dict[str, str]]:
    key = add_user(server, "carol")
    return make_client(server.endpoint, key["access_key"], key["secret_key"]), key


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"acl{time.monotonic_ns() % 10**10}"
    s3.create_bucket(Bucket=name)
    return name


def test_bucket_acls_and_public_access_block(server: Server, s3: Any, bucket: str) -> None:
    import boto3

    anon = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises(ClientError) as e:
        anon.list_objects_v2(Bucket=bucket)
    assert code_of(e.value) == "AccessDenied"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert {"Type": "Group", "URI": ALL_USERS} in [g["Grantee"] for g in grants]
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    with pytest.raises(ClientError):  # bucket READ lists; the object is still private
        anon.get_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError):
        anon.put_object(Bucket=bucket, Key="x", Body=b"x")
    # IgnorePublicAcls makes the public grant count for nothing; removing the block restores it
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True}
    )
    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {
        "BlockPublicAcls": False,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }
    with pytest.raises(ClientError) as e:
        anon.list_objects_v2(Bucket=bucket)
    assert code_of(e.value) == "AccessDenied"
    s3.delete_public_access_block(Bucket=bucket)
    anon.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_public_access_block(Bucket=bucket)
    assert code_of(e.value) == "NoSuchPublicAccessBlockConfiguration"
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True}
    )
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert code_of(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="p", Body=b"x", ACL="public-read")
    assert code_of(e.value) == "AccessDenied"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")  # not public: allowed
    with pytest.raises(ClientError):
        anon.list_objects_v2(Bucket=bucket)


def test_object_acls_and_grants(
    server: Server, s3: Any, bucket: str, carol: tuple[Any, dict[str, str]]
) -> None:
    client, _ = carol
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    assert anon_get(server, f"/{bucket}/pub") == 200
    s3.put_object(Bucket=bucket, Key="priv", Body=b"private")
    assert anon_get(server, f"/{bucket}/priv") == 403
    assert anon_get(server, f"/{bucket}/missing") == 403  # no listing right: no 404
    acl = s3.get_object_acl(Bucket=bucket, Key="pub")
    assert acl["Owner"]["ID"] == "root"
    grantees = [
        (g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]
    ]
    permissions = set(grantees)
    assert permissions == {("root", "FULL_CONTROL"), (ALL_USERS, "READ")}
    s3.put_object_acl(Bucket=bucket, Key="pub", ACL="private")
    assert anon_get(server, f"/{bucket}/pub") == 403
    # a grant to another user by id, in a header and in an AccessControlPolicy body
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="priv")
    s3.put_object_acl(Bucket=bucket, Key="priv", GrantRead='id="carol"')
    assert client.get_object(Bucket=bucket, Key="priv")["Body"].read() == b"private"
    with pytest.raises(ClientError):  # READ, not READ_ACP
        client.get_object_acl(Bucket=bucket, Key="priv")
    s3.put_object_acl(
        Bucket=bucket,
        Key="priv",
        AccessControlPolicy={
            "Owner": {"ID": "root"},
            "Grants": [
                {"Grantee": {"Type": "CanonicalUser", "ID": "root"}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"Type": "CanonicalUser", "ID": "carol"}, "Permission": "READ_ACP"},
            ],
        },
    )
    assert len(client.get_object_acl(Bucket=bucket, Key="priv")["Grants"]) == 2
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="priv")
    for bad in ('id="nobody-here"', 'emailAddress="x@example.com"', "garbage"):
        with pytest.raises(ClientError) as e:
            s3.put_object_acl(Bucket=bucket, Key="priv", GrantRead=bad)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="both", Body=b"x", ACL="private", GrantRead='id="carol"')
    assert code_of(e.value) == "InvalidRequest"
    # carol writes into the bucket through a bucket grant, and owns what she writes
    s3.put_bucket_acl(Bucket=bucket, GrantWrite='id="carol"', GrantFullControl='id="root"')
    client.put_object(Bucket=bucket, Key="by-carol", Body=b"c", ACL="bucket-owner-read")
    assert s3.get_object_acl(Bucket=bucket, Key="by-carol")["Owner"]["ID"] == "carol"
    assert s3.get_object(Bucket=bucket, Key="by-carol")["Body"].read() == b"c"


def test_ownership_controls(server: Server, s3: Any, bucket: str) -> None:
    # new buckets have the configured default (ObjectWriter: ACLs enabled), as AWS's have theirs
    default = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert default == {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert code_of(e.value) == "OwnershipControlsNotFoundError"
    rules = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=rules)
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"] == rules
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert code_of(e.value) == "AccessControlListNotSupported"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    assert anon_get(server, f"/{bucket}/k") == 403
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code_of(e.value) == "AccessControlListNotSupported"
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    # a bucket created with ownership enforced
    name = bucket + "-e"
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"] == rules
    with pytest.raises(ClientError) as e:
        s3.create_bucket(
            Bucket=name + "x", ObjectOwnership="BucketOwnerEnforced", ACL="public-read"
        )
    assert code_of(e.value) == "InvalidBucketAclWithObjectOwnership"


def test_policies_conditions_and_status(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")

    def put_policy(condition: dict[str, object] | None) -> None:
        statement: dict[str, object] = {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
        if condition:
            statement["Condition"] = condition
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [statement]}))

    put_policy({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})
    assert anon_get(server, f"/{bucket}/k") == 200
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    put_policy({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    assert anon_get(server, f"/{bucket}/k") == 403
    put_policy({"Bool": {"aws:SecureTransport": "true"}})
    assert anon_get(server, f"/{bucket}/k") == 403  # plain HTTP here
    put_policy(None)
    assert anon_get(server, f"/{bucket}/k") == 200
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}
    )
    assert anon_get(server, f"/{bucket}/k") == 403
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True}
    )
    with pytest.raises(ClientError) as e:
        put_policy(None)
    assert code_of(e.value) == "AccessDenied"


def test_delete_objects_is_authorized_per_key(s3: Any, bucket: str) -> None:
    for key in ("protected/a", "open/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{bucket}/protected/*",
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [deny]}))
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key="protected/a")
    result = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "protected/a"}, {"Key": "open/b"}]}
    )
    assert [d["Key"] for d in result["Deleted"]] == ["open/b"]
    assert [(x["Key"], x["Code"]) for x in result["Errors"]] == [("protected/a", "AccessDenied")]
    assert s3.get_object(Bucket=bucket, Key="protected/a")["Body"].read() == b"x"


def test_anonymous_cannot_create_buckets(server: Server, s3: Any) -> None:
    request = urllib.request.Request(f"{server.endpoint}/squatted", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 403
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "squatted" not in names


def test_aws_cli_acl_commands(server: Server, bucket: str, tmp_path: Path) -> None:
    env = aws_env(server, tmp_path)
    aws = [str(BIN / "aws"), "--endpoint-url", server.endpoint, "s3api"]
    src = tmp_path / "f"
    src.write_bytes(b"cli")
    run([*aws, "put-object", "--bucket", bucket, "--key", "f", "--body", str(src)], env)
    run([*aws, "put-object-acl", "--bucket", bucket, "--key", "f", "--acl", "public-read"], env)
    got = json.loads(run([*aws, "get-object-acl", "--bucket", bucket, "--key", "f"], env))
    assert any(g["Grantee"].get("URI") == ALL_USERS for g in got["Grants"])
    assert anon_get(server, f"/{bucket}/f") == 200
    names = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    config = ",".join(f"{n}=true" for n in names)
    run([*aws, "put-public-access-block", "--bucket", bucket,
         "--public-access-block-configuration", config], env)  # fmt: skip
    assert anon_get(server, f"/{bucket}/f") == 403
    got = json.loads(run([*aws, "get-public-access-block", "--bucket", bucket], env))
    assert all(got["PublicAccessBlockConfiguration"].values())
    run([*aws, "put-bucket-ownership-controls", "--bucket", bucket, "--ownership-controls",
         "Rules=[{ObjectOwnership=BucketOwnerPreferred}]"], env)  # fmt: skip
    got = json.loads(run([*aws, "get-bucket-ownership-controls", "--bucket", bucket], env))
    assert got["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]


def test_s3cmd_info_and_setacl(server: Server, s3: Any, bucket: str, tmp_path: Path) -> None:
    cmd = s3cmd_command(server, tmp_path)
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"info")
    info = run([*cmd, "info", f"s3://{bucket}/doc.txt"])
    assert "MD5 sum" in info and "root: FULL_CONTROL" in info, info
    run([*cmd, "setacl", "--acl-public", f"s3://{bucket}/doc.txt"])
    assert "*anon*: READ" in run([*cmd, "info", f"s3://{bucket}/doc.txt"])
    assert anon_get(server, f"/{bucket}/doc.txt") == 200
    run([*cmd, "setacl", "--acl-private", f"s3://{bucket}/doc.txt"])
    assert anon_get(server, f"/{bucket}/doc.txt") == 403
    assert s3.get_object(Bucket=bucket, Key="doc.txt")["Body"].read() == b"info"


def test_rclone_public_read_acl(server: Server, bucket: str, tmp_path: Path) -> None:
    rclone = shutil.which("rclone")
    assert rclone, "rclone is installed by make test"
    env = rclone_env(server, tmp_path, acl="public-read")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "shared.bin").write_bytes(os.urandom(1000))
    run([rclone, "copy", str(tmp_path / "src"), f"store:{bucket}/r"], env)
    assert anon_get(server, f"/{bucket}/r/shared.bin") == 200


def test_s3cmd_expire_and_aws_cli_encryption(
    server: Server, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Two more areas through the clients users script them with: s3cmd's `expire` (a
    lifecycle rule) and the aws CLI's bucket default encryption."""
    cmd = s3cmd_command(server, tmp_path)
    run([*cmd, "expire", f"s3://{bucket}", "--expiry-days=3", "--expiry-prefix=logs/"])
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["Expiration"]["Days"] == 3 and rules[0]["Status"] == "Enabled"
    assert "logs/" in json.dumps(rules[0])
    assert "3" in run([*cmd, "getlifecycle", f"s3://{bucket}"])
    env = aws_env(server, tmp_path)
    aws = [str(BIN / "aws"), "--endpoint-url", server.endpoint, "s3api"]
    rules_json = '{"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}'
    run([*aws, "put-bucket-encryption", "--bucket", bucket,
         "--server-side-encryption-configuration", rules_json], env)  # fmt: skip
    got = json.loads(run([*aws, "get-bucket-encryption", "--bucket", bucket], env))
    rule = got["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.put_object(Bucket=bucket, Key="sealed", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="sealed")["ServerSideEncryption"] == "AES256"
    run([*aws, "delete-bucket-encryption", "--bucket", bucket], env)
