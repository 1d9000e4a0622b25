"""The local drive against the drive seam's conformance suite, on a disk and on tmpfs (where
the page-cache fast path works differently)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.chunk.drive import Drive
from store.testing.drive_conformance import DRIVE_CHECKS, DriveCheck


@pytest.fixture(params=["disk", "tmpfs"])
def drive_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    if request.param == "disk":
        yield tmp_path
        return
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here: the tmpfs variant needs it (the disk variant still runs)")
    root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="store-drive-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("check", DRIVE_CHECKS, ids=lambda c: c.__name__)
async def test_local_drive(check: DriveCheck, drive_root: Path) -> None:
    drive = Drive(drive_root / "drive")
    await check(drive)
    await drive.extent_release()


def test_the_suite_is_not_empty() -> None:
    assert len(DRIVE_CHECKS) >= 15
