"""The aws CLI, rclone and s3cmd against `store serve`, each as its users run it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, Server

BIN = Path(sys.executable).parent


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    # A CA bundle set for other tools makes rclone refuse plain-HTTP transports.
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    done = subprocess.run(
        cmd, env={**base, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


def tree(root: Path, sizes: list[int]) -> dict[str, bytes]:
    files = {}
    for i, size in enumerate(sizes):
        rel = f"d{i % 3}/sub dir/file {i}+é.bin" if i % 2 else f"top{i}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        files[rel] = data
    return files


def same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in root.rglob("*")
            if p.is_file()
        }

    return listing(a) == listing(b)


def aws_env(server: Server, tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }


def test_aws_cli(server: Server, tmp_path: Path) -> None:
    env = aws_env(server, tmp_path)
    aws = [str(BIN / "aws"), "--endpoint-url", server.endpoint]
    src = tmp_path / "src"
    files = tree(src, [0, 1, 1000, 70_000, 9 << 20, 3])
    run([*aws, "s3", "mb", "s3://awscli"], env)
    run([*aws, "s3", "cp", str(src / "top4.bin"), "s3://awscli/big.bin"], env)  # multipart
    run([*aws, "s3", "sync", str(src), "s3://awscli/tree"], env)
    listed = run([*aws, "s3", "ls", "--recursive", "s3://awscli/tree/"], env)
    assert len(listed.strip().splitlines()) == len(files)
    back = tmp_path / "back"
    run([*aws, "s3", "sync", "s3://awscli/tree", str(back)], env)
    assert same_tree(src, back)
    run([*aws, "s3", "cp", "s3://awscli/big.bin", str(tmp_path / "big.out")], env)
    assert (tmp_path / "big.out").read_bytes() == files["top4.bin"]
    head = json.loads(
        run([*aws, "s3api", "head-object", "--bucket", "awscli", "--key", "big.bin"], env)
    )
    assert head["ContentLength"] == 9 << 20
    run([*aws, "s3", "rm", "--recursive", "s3://awscli"], env)
    run([*aws, "s3", "rb", "s3://awscli"], env)


def rclone_env(server: Server, tmp_path: Path, **options: str) -> dict[str, str]:
    """rclone's environment for a remote "store:" on the server (options: RCLONE_CONFIG_STORE_*)."""
    return {
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_STORE_TYPE": "s3",
        "RCLONE_CONFIG_STORE_PROVIDER": "Other",
        "RCLONE_CONFIG_STORE_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_STORE_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_STORE_REGION": "us-east-1",
        **{f"RCLONE_CONFIG_STORE_{k.upper()}": v for k, v in options.items()},
    }


def s3cmd_command(server: Server, tmp_path: Path) -> list[str]:
    """s3cmd with a configuration file for the server."""
    s3cmd = shutil.which("s3cmd")
    assert s3cmd, "s3cmd is installed by make test"
    host = server.endpoint.removeprefix("http://")
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
    )
    return [s3cmd, "-c", str(config)]


def test_rclone(server: Server, tmp_path: Path) -> None:
    rclone = shutil.which("rclone")
    assert rclone, "rclone is installed by make test"
    env = rclone_env(server, tmp_path)
    src = tmp_path / "src"
    tree(src, [0, 5, 100_000, 12 << 20, 64])
    rc = [rclone, "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    run([*rc, "mkdir", "store:rclone"], env)
    run([*rc, "copy", str(src), "store:rclone/copy"], env)
    run([*rc, "check", str(src), "store:rclone/copy"], env)  # sizes and MD5s must agree
    (src / "top0.bin").unlink()
    run([*rc, "sync", str(src), "store:rclone/copy"], env)
    entries = json.loads(run([*rc, "lsjson", "-R", "--hash", "store:rclone/copy"], env))
    files = [e for e in entries if not e["IsDir"]]
    assert len(files) == 4 and all("md5" in e.get("Hashes", {}) for e in files)
    back = tmp_path / "back"
    run([*rc, "copy", "store:rclone/copy", str(back)], env)
    assert same_tree(src, back)
    run([*rc, "delete", "store:rclone/copy"], env)
    left = json.loads(run([*rc, "lsjson", "-R", "store:rclone"], env))
    assert [e for e in left if not e["IsDir"]] == []


def test_s3cmd(server: Server, tmp_path: Path) -> None:
    cmd = [*s3cmd_command(server, tmp_path), "--multipart-chunk-size-mb=5"]
    src = tmp_path / "src"
    files = tree(src, [10, 12 << 20, 2000])
    run([*cmd, "mb", "s3://s3cmd"])
    run([*cmd, "put", str(src / "d1/sub dir/file 1+é.bin"), "s3://s3cmd/multi.bin"])
    run([*cmd, "get", "s3://s3cmd/multi.bin", str(tmp_path / "multi.out")])
    assert (tmp_path / "multi.out").read_bytes() == files["d1/sub dir/file 1+é.bin"]
    assert "multi.bin" in run([*cmd, "ls", "s3://s3cmd"])
    run([*cmd, "sync", str(src) + "/", "s3://s3cmd/tree/"])
    back = tmp_path / "back"
    back.mkdir()
    run([*cmd, "sync", "s3://s3cmd/tree/", str(back) + "/"])
    assert same_tree(src, back)
    run([*cmd, "del", "s3://s3cmd/multi.bin"])
    assert "multi.bin" not in run([*cmd, "ls", "s3://s3cmd"])
