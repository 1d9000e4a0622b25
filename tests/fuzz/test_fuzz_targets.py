"""The fuzz targets (fuzz/): every committed seed replays clean, and each target fuzzes for a few
seconds without a crash, so a parser change that breaks a property shows here, not only in a
long ``make fuzz`` run."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import atheris
import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = (
    "s3_router",
    "s3_sigv4",
    "s3_chunked",
    "s3_xml",
    "s3_policy",
    "s3_postform",
    "nbd_handshake",
    "nbd_transmission",
    "rpc_wire",
)
FUZZ_SECONDS = 3
MAX_SEED_BYTES = 16 << 10  # per target: seeds are examples, not a grown corpus


def seeds(target: str) -> list[Path]:
    return sorted((FUZZ / "corpus" / target).iterdir())


def test_every_target_is_listed_and_has_seeds() -> None:
    files = {p.stem for p in FUZZ.glob("*.py")} - {"__init__", "_harness", "make_seeds"}
    assert files == set(TARGETS)
    for target in TARGETS:
        found = seeds(target)
        assert found, target
        assert sum(p.stat().st_size for p in found) <= MAX_SEED_BYTES, target


@pytest.fixture(scope="module")
def load() -> Iterator[dict[str, ModuleType]]:
    """The targets imported without atheris's instrumentation, which would otherwise also apply
    to any store module first imported here (and slow every later test that uses it)."""
    sys.path.insert(0, str(FUZZ))
    instrument = atheris.instrument_imports
    atheris.instrument_imports = contextlib.nullcontext
    try:
        yield {t: importlib.import_module(t) for t in TARGETS}
    finally:
        atheris.instrument_imports = instrument
        sys.path.remove(str(FUZZ))


@pytest.mark.parametrize(
    "target,seed",
    [(t, p.name) for t in TARGETS for p in seeds(t)],
)
def test_seed_replays(load: dict[str, ModuleType], target: str, seed: str) -> None:
    load[target].TestOneInput((FUZZ / "corpus" / target / seed).read_bytes())


@pytest.fixture(scope="module")
def fuzz_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.Popen[bytes]]:
    """Every target fuzzing at once (each for FUZZ_SECONDS of wall time), on a scratch corpus
    directory in front of the committed seeds, which libFuzzer reads but never writes."""
    runs = {}
    for target in TARGETS:
        scratch = tmp_path_factory.mktemp(target)
        runs[target] = subprocess.Popen(
            [
                sys.executable,
                str(FUZZ / f"{target}.py"),
                f"-max_total_time={FUZZ_SECONDS}",
                "-timeout=10",
                "-rss_limit_mb=1024",
                f"-artifact_prefix={scratch}/",
                str(scratch),
                str(FUZZ / "corpus" / target),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    return runs


@pytest.mark.parametrize("target", TARGETS)
def test_target_fuzzes_clean(fuzz_runs: dict[str, subprocess.Popen[bytes]], target: str) -> None:
    run = fuzz_runs[target]
    try:
        output, _ = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        output, _ = run.communicate()
    tail = output.decode(errors="replace")[-4000:]
    assert run.returncode == 0, f"{target} crashed:\n{tail}"
    assert "Done " in tail, tail
