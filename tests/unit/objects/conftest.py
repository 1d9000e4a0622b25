"""The ``engine`` fixture: a fresh single-node engine with one bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.node import open_local_engine
from store.objects.engine import ObjectEngine
from tests.unit.objects.helpers import BUCKET, INLINE, MIN_PART


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[ObjectEngine]:
    async with open_local_engine(
        tmp_path, drives=6, inline_bytes=INLINE, min_part_bytes=MIN_PART
    ) as e:
        await e.create_bucket(BUCKET, "alice")
        yield e
