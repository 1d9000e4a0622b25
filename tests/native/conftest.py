from __future__ import annotations

import os

import pytest

from store import native


def pytest_report_header() -> str:
    return f"native library: {native._native.__file__} (default kernel {native.active_isa()})"


@pytest.fixture(scope="session", autouse=True)
def _sanitized_build_is_loaded() -> None:
    """Under `make asan` the suite must really run against the sanitized build."""
    if os.environ.get("STORE_EXPECT_SANITIZED"):
        assert "build/asan" in native._native.__file__, native._native.__file__


ISAS = native.supported_isas()
FAST_ISAS = [isa for isa in ISAS if isa != "ref"]
CRC_KERNELS = native.supported_crc_kernels()
