"""`store serve --meta etcd://...`: the service with its metadata in a real 3-member etcd cluster,
driven by boto3, the admin CLI and nbdcopy; it keeps serving when an etcd follower is killed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from store.lab.etcd import EtcdCluster
from store.meta.api import prefix_end
from store.meta.etcd import open_etcd_kv
from tests.cluster.load import Load
from tests.integration.conftest import (
    Server,
    admin_json,
    make_client,
    nbd_round_trip,
    start_server,
    stop_server,
)


@pytest.fixture
def served(etcd: EtcdCluster, tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    data.mkdir()
    server = start_server(data, ["--meta", etcd.endpoints, "--workers", "2"])
    try:
        yield server
    finally:
        stop_server(server)


admin = admin_json  # a `store` admin command through the admin API: the JSON it printed


def test_objects_on_etcd_metadata(served: Server, etcd: EtcdCluster) -> None:
    s3 = make_client(served.endpoint)
    s3.create_bucket(Bucket="bkt")
    small, large = b"small object", os.urandom(9 << 20)
    s3.put_object(Bucket="bkt", Key="small", Body=small)
    s3.put_object(Bucket="bkt", Key="dir/large", Body=large)
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    parts = [os.urandom(5 << 20), os.urandom(5 << 20), b"tail"]
    done = []
    for n, body in enumerate(parts, 1):
        etag = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=n, Body=body)
        done.append({"PartNumber": n, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(
        Bucket="bkt", Key="mp", UploadId=upload, MultipartUpload={"Parts": done}
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert keys == ["dir/large", "mp", "small"]
    assert s3.get_object(Bucket="bkt", Key="small")["Body"].read() == small
    got = s3.get_object(Bucket="bkt", Key="dir/large")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(large).digest()
    assert s3.get_object(Bucket="bkt", Key="mp")["Body"].read() == b"".join(parts)

    leader = etcd.leader()
    etcd.kill_member(next(m for m in etcd.members if m is not leader))  # a follower dies
    s3.put_object(Bucket="bkt", Key="after", Body=b"written with two members")
    assert s3.get_object(Bucket="bkt", Key="small")["Body"].read() == small
    s3.delete_object(Bucket="bkt", Key="dir/large")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
    assert keys == ["after", "mp", "small"]
    assert not (served.data / "meta.sqlite").exists()  # the metadata is in etcd, not here
    assert trio.run(etcd_keys, etcd.endpoints, b"O/bkt/") == [
        b"O/bkt/after",
        b"O/bkt/mp",
        b"O/bkt/small",
    ]


async def etcd_keys(endpoints: str, prefix: bytes) -> list[bytes]:
    async with open_etcd_kv(endpoints) as kv:
        found = await kv.range(prefix, prefix_end(prefix), keys_only=True)
    return [item.key for item in found.kvs]


def test_volumes_on_etcd_metadata(served: Server, tmp_path: Path) -> None:
    admin(served, "volume", "create", "v", "--size", "16M")
    listed = admin(served, "volume", "list")
    assert "v" in json.dumps(listed)
    nbd_round_trip(f"{served.nbd}/v", tmp_path, 16 << 20)


@pytest.mark.slow
def test_etcd_members_die_under_load(served: Server, etcd: EtcdCluster) -> None:
    """One member killed (the leader) under S3 load: the service goes on. A second killed: clean
    503s within the deadline, no hang, no 500. One back: writes succeed again, and every write
    acknowledged at any point reads back intact."""
    s3 = make_client(served.endpoint)
    s3.create_bucket(Bucket="load")
    with Load(served.endpoint).running() as load:
        time.sleep(2)
        first = etcd.leader()
        etcd.kill_member(first)
        mark = len(load.outcomes)
        time.sleep(8)
        after_one = load.since(mark)
        assert after_one.count("ok") > 10, after_one
        assert set(after_one) <= {"ok", "ServiceUnavailable"}, after_one  # an election at most

        second = next(m for m in etcd.members if m is not first)
        etcd.kill_member(second)
        time.sleep(2)
        mark = len(load.outcomes)
        time.sleep(12)
        without_quorum = load.outcomes[mark:]
        assert without_quorum and {o for _, o, _ in without_quorum} == {"ServiceUnavailable"}
        assert max(t for _, _, t in without_quorum) < 15  # refused within the deadline

        etcd.start_member(second)
        deadline = time.monotonic() + 30
        mark = len(load.outcomes)
        while load.since(mark, "put").count("ok") < 5:
            assert time.monotonic() < deadline, load.since(mark)
            time.sleep(0.5)
    assert set(load.since(0)) <= {"ok", "ServiceUnavailable"}
    load.check_all_written()
