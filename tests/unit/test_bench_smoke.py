"""bench/ec.py keeps running: a --quick pass prints well-formed JSON lines (peers may be absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ec.py"


def test_ec_bench_quick_prints_json_lines() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json-only"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    cases = {line.get("case") for line in lines}
    assert {"encode", "reconstruct", "crc32c"} <= cases, cases
    for line in lines:
        if "skipped" not in line:
            assert line["gbps"] is None or line["gbps"] > 0, line
