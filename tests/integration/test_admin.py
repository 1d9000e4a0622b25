"""The admin API on the S3 port, through the `store` CLI as a user elsewhere runs it: from another
directory and another Unix account, with only an endpoint and credentials."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, Server, make_client

CLI = [sys.executable, "-m", "store.cli"]


def cli(
    server: Server,
    *argv: str,
    cwd: Path | str,
    access: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    user: int | None = None,
    expect: int = 0,
) -> Any:
    env = {
        "PATH": os.environ["PATH"],
        "STORE_ACCESS_KEY": access,
        "STORE_SECRET_KEY": secret,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "HOME": str(cwd),
    }
    prefix = []
    if user is not None:  # another account: setpriv drops to it (the tests run as root in CI)
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    done = subprocess.run(
        [*prefix, *CLI, *argv, "--endpoint", server.endpoint],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == expect, f"{argv}: {done.stdout}\n{done.stderr}"
    return (
        json.loads(done.stdout)
        if expect == 0 and done.stdout.strip().startswith(("{", "["))
        else done
    )


def test_volumes_users_and_maintenance_from_elsewhere(server: Server, tmp_path: Path) -> None:
    status = cli(server, "status", "--json", cwd=tmp_path)
    drives = status["drives"]  # d0.. here; <host>.d0 on a cluster's chunk servers
    assert status["version"] and any(d == "d0" or d.endswith(".d0") for d in drives)
    name = f"adm{time.monotonic_ns() % 10**8}"
    created = cli(server, "volume", "create", name, "--size", "64M", cwd=tmp_path)
    assert created["size"] == 64 << 20
    assert name in {v["name"] for v in cli(server, "volume", "list", cwd=tmp_path)}
    assert cli(server, "volume", "info", name, cwd=tmp_path)["attached"] is False
    cli(server, "volume", "snapshot", f"{name}@s1", cwd=tmp_path)
    cli(server, "volume", "clone", f"{name}@s1", f"{name}c", cwd=tmp_path)
    cli(server, "volume", "resize", f"{name}c", "--size", "128M", cwd=tmp_path)
    reports = cli(server, "volume", "scrub", name, cwd=tmp_path)  # a job, followed to its end
    assert reports[0]["clean"] is True
    cli(server, "volume", "delete", f"{name}c", cwd=tmp_path)
    # import and export through the service (jobs), with an object written over S3
    s3 = make_client(server.endpoint)
    bucket = f"adm{time.monotonic_ns() % 10**8}"
    s3.create_bucket(Bucket=bucket)
    image = os.urandom(1 << 20) + bytes(3 << 20)
    s3.put_object(Bucket=bucket, Key="disk.raw", Body=image)
    cli(server, "volume", "import", f"{name}i", "--from", f"{bucket}/disk.raw", cwd=tmp_path)
    cli(server, "volume", "export", f"{name}i", "--to", f"{bucket}/back.raw", cwd=tmp_path)
    assert s3.get_object(Bucket=bucket, Key="back.raw")["Body"].read() == image
    cli(server, "bucket", "set", bucket, "--compression", "zstd", cwd=tmp_path)
    assert cli(server, "bucket", "info", bucket, cwd=tmp_path)["compression"] == "zstd"
    summary = cli(server, "scrub", "--json", cwd=tmp_path)
    assert summary["clean"] is True and summary["chunks"] > 0
    cli(server, "gc", "--json", cwd=tmp_path)
    # users: one added here has no admin right unless given
    alice = cli(server, "user", "add", "alice-admin-test", cwd=tmp_path)
    refused = cli(server, "status", cwd=tmp_path, access=alice["access_key"],
                  secret=alice["secret_key"], expect=1)  # fmt: skip
    assert "AccessDenied" in refused.stderr
    boss = cli(server, "user", "add", "boss-admin-test", "--admin", cwd=tmp_path)
    cli(server, "status", cwd=tmp_path, access=boss["access_key"], secret=boss["secret_key"])
    keys = {k["access_key"] for k in cli(server, "user", "list", cwd=tmp_path)}
    assert {alice["access_key"], boss["access_key"]} <= keys
    cli(server, "user", "remove", "--access-key", alice["access_key"], cwd=tmp_path)
    # errors come back as the command's error
    missing = cli(server, "volume", "info", "no-such-volume", cwd=tmp_path, expect=1)
    assert "no-such-volume" in missing.stderr


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="setpriv to the nobody account needs root; CI and make test as root run it",
)
def test_another_account_with_only_endpoint_and_credentials(server: Server) -> None:
    """As `nobody`, in `/`: no access to the data directory, its files or the test's."""
    status = cli(server, "status", "--json", cwd="/", user=65534)
    assert status["version"]
    wrong = cli(server, "status", cwd="/", user=65534, secret="not-the-secret", expect=1)
    assert "SignatureDoesNotMatch" in wrong.stderr


def test_the_admin_path_refuses_what_it_must(server: Server) -> None:
    host = server.endpoint.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("POST", "/_store/admin/v1/status", body=b"{}")
    answer = conn.getresponse()
    body = json.loads(answer.read())
    assert answer.status == 403 and body["error"] == "AccessDenied"
    from tests.integration.test_bad_input import signed

    for path, payload, status, code in [
        ("/_store/admin/v1/status", b"not json", 400, b"MalformedJSON"),
        ("/_store/admin/v1/no.such", b"{}", 501, b"NotImplemented"),
        ("/_store/admin/v1/volume.create", b'{"args": {"name": "x"}}', 400, b"InvalidArgument"),
    ]:
        got, answer_body = signed(server, "POST", path, payload)
        assert got == status and code in answer_body, (path, got, answer_body)
    got, answer_body = signed(server, "GET", "/_store/admin/v1/jobs/feedfacefeedface")
    assert got == 404
