"""The `store` command, run as a user would (a subprocess of the installed entry point)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store import __version__, native

STORE = shutil.which("store", path=os.path.dirname(sys.executable)) or "store"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([STORE, *args], capture_output=True, text=True, env=full_env, timeout=60)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"store {__version__}"


def test_native_info_reports_best_kernel() -> None:
    out = run("native-info", "--json", env={"STORE_NATIVE_ISA": ""})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    # The documented order (docs/native.md): GFNI wide then narrow, then the pshufb kernels.
    best = next(
        i for i in ("gfni", "avx2gfni", "avx512", "avx2", "ref") if i in info["supported_isas"]
    )
    assert info["isa"] == best
    assert info["supported_isas"] == native.supported_isas()
    assert info["crc32c"] in info["supported_crc32c"]


@pytest.mark.parametrize("isa", native.supported_isas())
def test_forced_kernel(isa: str) -> None:
    out = run("native-info", "--json", env={"STORE_NATIVE_ISA": isa})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["isa"] == isa
    if isa == "ref":
        assert info["crc32c"] == "sw"


@pytest.mark.parametrize("isa", ["sse9", *sorted(set(native.ISAS) - set(native.supported_isas()))])
def test_bad_forced_kernel_is_a_clear_error(isa: str) -> None:
    out = run("native-info", env={"STORE_NATIVE_ISA": isa})
    assert out.returncode == 2
    assert "STORE_NATIVE_ISA" in out.stderr and isa in out.stderr
    assert "Traceback" not in out.stderr


def test_no_command_prints_help() -> None:
    out = run()
    assert out.returncode == 2
    assert "native-info" in out.stdout


def test_cluster_status_of_a_data_directory(tmp_path: Path) -> None:
    """The embedded node's drives, as `store cluster status` shows them: all up, local."""
    done = run("cluster", "status", "--data", str(tmp_path / "data"), "--drives", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = "epoch 1, scheme ec:2+2, 1 hosts, 4 of 4 drives up, "
    assert lines[0] == head + "0 of 256 placement groups degraded, 0 to rebalance"
    assert [line.split()[0] for line in lines[3:]] == ["d0", "d1", "d2", "d3"]
    assert all(" up " in line and " local " in line for line in lines[3:])
