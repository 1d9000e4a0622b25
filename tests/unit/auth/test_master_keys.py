"""SSE-S3 master keys shared by a cluster's gateways through the metadata, wrapped by the
cluster secret: one set however many gateways start at once, never stored in the clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from store.auth.master_keys import (
    FILE,
    SHARED_CURRENT,
    SHARED_KEYS,
    MasterKeys,
    ensure_master_keys,
    ensure_shared_master_keys,
)
from store.errors import Corrupt
from store.meta.api import prefix_end
from store.meta.memory import MemoryKV

SECRET = b"the cluster's secret, 32 bytes at least!"


async def test_gateways_share_one_set_made_once(tmp_path: Path) -> None:
    kv = MemoryKV()
    found: list[MasterKeys] = []

    async def gateway(i: int) -> None:
        (tmp_path / f"g{i}").mkdir()
        found.append(await ensure_shared_master_keys(kv, SECRET, tmp_path / f"g{i}", env={}))

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(gateway, i)
    assert len({(k.current, tuple(sorted(k.keys.items()))) for k in found}) == 1
    keys = found[0]
    stored = await kv.range(SHARED_KEYS, prefix_end(SHARED_KEYS))
    assert len(stored.kvs) == 1
    assert keys.keys[keys.current] not in stored.kvs[0].value  # wrapped, not in the clear
    assert not [p for i in range(4) if (p := tmp_path / f"g{i}" / FILE).exists()]  # no files


async def test_another_clusters_secret_opens_nothing(tmp_path: Path) -> None:
    kv = MemoryKV()
    await ensure_shared_master_keys(kv, SECRET, tmp_path, env={})
    with pytest.raises(Corrupt, match="does not open"):
        await ensure_shared_master_keys(kv, b"x" * 40, tmp_path, env={})


async def test_a_gateways_own_file_seeds_the_shared_keys(tmp_path: Path) -> None:
    own = await ensure_master_keys(tmp_path, env={})  # what it encrypted with before
    kv = MemoryKV()
    shared = await ensure_shared_master_keys(kv, SECRET, tmp_path, env={})
    assert shared.current == own.current and shared.keys == own.keys
    other = tmp_path / "other"
    other.mkdir()
    assert (await ensure_shared_master_keys(kv, SECRET, other, env={})).keys == own.keys
    current = await kv.get(SHARED_CURRENT)
    assert current is not None and current.value.decode() == own.current
    doc = json.loads((tmp_path / FILE).read_text())
    assert doc["current"] == own.current  # the file is left as it was


async def test_a_later_gateways_own_keys_are_shared_too(tmp_path: Path) -> None:
    kv = MemoryKV()
    first = await ensure_shared_master_keys(kv, SECRET, tmp_path, env={})
    late = tmp_path / "late"
    late.mkdir()
    own = await ensure_master_keys(late, env={})  # it encrypted alone before joining
    joined = await ensure_shared_master_keys(kv, SECRET, late, env={})
    assert joined.current == first.current  # the cluster's current key wraps new objects
    assert joined.keys[own.current] == own.keys[own.current]
    other = tmp_path / "other"
    other.mkdir()
    everyone = await ensure_shared_master_keys(kv, SECRET, other, env={})
    assert set(everyone.keys) == {first.current, own.current}  # readable on every gateway
