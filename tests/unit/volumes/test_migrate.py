"""One extent's move (store/volumes/migrate.py): copied, switched, the old replicas deleted; a
writer that lost its volume switches nothing; a switch whose answer is lost is looked up, and
when even that fails the move's outcome is reported unknown."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from store.chunk.api import ExtentGeometry
from store.chunk.drive import Drive
from store.errors import Conflict, Unavailable
from store.meta.memory import MemoryKV
from store.volumes import records as V
from store.volumes.migrate import SwitchUnknown, move_extent

GEOMETRY = ExtentGeometry(1 << 20, 4096)
LAYER = "0123456789abcdef"
EID = f"{LAYER}.0"
PLACES = {1: ["a", "b"], 2: ["b", "c"]}  # epoch -> the extent's replica drives


def place(eid: str, epoch: int) -> list[str]:
    return PLACES[epoch]


async def setup(
    tmp_path: Path, kv: MemoryKV | None = None
) -> tuple[MemoryKV, dict[str, Drive], bytes]:
    kv = kv if kv is not None else MemoryKV()
    drives = {d: Drive(tmp_path / d) for d in "abc"}
    data = os.urandom(GEOMETRY.extent_bytes)
    for d in PLACES[1]:
        await drives[d].extent_create(EID, GEOMETRY)
        await drives[d].extent_write(EID, GEOMETRY, 0, data)
    await kv.put(V.extent_key(LAYER, 0), V.extent_value(1))
    return kv, drives, data


async def test_a_move_copies_switches_then_deletes(tmp_path: Path) -> None:
    kv, drives, data = await setup(tmp_path)
    seen: list[int] = []

    def switched() -> None:  # runs before the old replicas go
        seen.append(len(list((tmp_path / "a").rglob("*.ext"))))

    copied, moved = await move_extent(kv, drives, place, LAYER, 0, GEOMETRY, 2, switched=switched)
    assert (copied, moved, seen) == (GEOMETRY.extent_bytes, True, [1])
    record = await kv.get(V.extent_key(LAYER, 0))
    assert record is not None and V.extent_epoch(record.value) == 2
    assert await drives["c"].extent_read(EID, GEOMETRY, 0, 4096) == data[:4096]
    assert not list((tmp_path / "a").rglob("*.ext"))
    assert await move_extent(kv, drives, place, LAYER, 0, GEOMETRY, 2) == (0, False)


async def test_a_writer_that_lost_its_volume_switches_nothing(tmp_path: Path) -> None:
    kv, drives, _ = await setup(tmp_path)
    owner = V.owner_key("vol")
    await kv.put(owner, b"the new owner")  # created after ours: a newer token
    mine = (await kv.get(owner)).create_revision - 1  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        await move_extent(kv, drives, place, LAYER, 0, GEOMETRY, 2, fence=mine, owner=owner)
    record = await kv.get(V.extent_key(LAYER, 0))
    assert record is not None and V.extent_epoch(record.value) == 1
    assert list((tmp_path / "a").rglob("*.ext"))  # nothing deleted


class LosesAnswers(MemoryKV):
    """Transactions apply, then lose their answer (once ``lose`` is set); after ``reads_left``
    more reads (when set), reads fail too."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = False
        self.reads_left: int | None = None

    async def txn(self, *args: Any, **kw: Any) -> Any:
        result = await super().txn(*args, **kw)
        if self.lose:
            raise Unavailable("etcd: no answer")
        return result

    async def get(self, key: bytes) -> Any:
        if self.reads_left is not None:
            if not self.reads_left:
                raise Unavailable("etcd: no answer")
            self.reads_left -= 1
        return await super().get(key)


async def test_a_lost_answer_is_looked_up(tmp_path: Path) -> None:
    kv = LosesAnswers()
    _, drives, _ = await setup(tmp_path, kv)
    kv.lose = True
    assert (await move_extent(kv, drives, place, LAYER, 0, GEOMETRY, 2))[1]  # applied, found so
    assert not list((tmp_path / "a").rglob("*.ext"))  # and the old replicas went


async def test_a_switch_nobody_can_look_up_is_reported_unknown(tmp_path: Path) -> None:
    kv = LosesAnswers()
    _, drives, _ = await setup(tmp_path, kv)
    kv.lose, kv.reads_left = True, 2  # the record and its stale marks read; then nothing
    with pytest.raises(SwitchUnknown):
        await move_extent(kv, drives, place, LAYER, 0, GEOMETRY, 2)
    assert list((tmp_path / "a").rglob("*.ext"))  # unknown: nothing deleted
