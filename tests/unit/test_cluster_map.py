"""The cluster map in the metadata: registrations, operator changes and their epochs."""

from __future__ import annotations

import pytest
import trio

from store.cluster_map import (
    DriveRecord,
    change_drive,
    degraded_pgs,
    read_cluster,
    register_drives,
)
from store.errors import InvalidArgument, NotFound
from store.meta.memory import MemoryKV
from store.placement.hrw import drives_for_pg


def server(host: str, drives: int = 2, port: int = 7000, rack: str = "") -> list[DriveRecord]:
    return [DriveRecord(f"{host}.d{i}", f"127.0.0.1:{port}", host, rack) for i in range(drives)]


async def test_registration_makes_an_epoch_only_when_placement_moves() -> None:
    kv = MemoryKV()
    state = await register_drives(kv, server("a"))
    assert state.epoch == 1 and state.history is not None
    assert [d.drive_id for d in state.history.current.drives] == ["a.d0", "a.d1"]
    again = await register_drives(kv, server("a"))
    assert again.epoch == 1  # a restart changes nothing
    moved = await register_drives(kv, server("a", port=7001))
    assert moved.epoch == 1 and moved.drives["a.d0"].address == "127.0.0.1:7001"
    racked = await register_drives(kv, server("a", port=7001, rack="r1"))
    assert racked.epoch == 2 and racked.history is not None
    assert racked.history.current.drives[0].rack == "r1"
    assert racked.history.at(1).drives[0].rack == ""  # the old map is kept as it was
    both = await register_drives(kv, server("b"))
    assert both.epoch == 3 and len(both.drives) == 4


async def test_operator_changes_keep_their_state_across_restarts() -> None:
    kv = MemoryKV()
    await register_drives(kv, server("a") + server("b", port=7001))
    drained = await change_drive(kv, "a.d0", state="draining")
    assert drained["epoch"] == 2 and drained["drive"]["state"] == "draining"
    state = await register_drives(kv, server("a"))  # its server restarts
    assert state.drives["a.d0"].state == "draining" and state.epoch == 2
    assert state.history is not None
    placeable = {d.drive_id for d in state.history.current.drives if d.placeable}
    assert "a.d0" not in placeable and "a.d1" in placeable
    weighted = await change_drive(kv, "b.d1", weight=2.5)
    assert weighted["epoch"] == 3
    same = await change_drive(kv, "b.d1", weight=2.5)
    assert same["epoch"] == 3  # no change, no epoch
    back = await change_drive(kv, "a.d0", state="up")
    assert back["epoch"] == 4
    with pytest.raises(NotFound):
        await change_drive(kv, "c.d0", state="out")
    with pytest.raises(InvalidArgument):
        await change_drive(kv, "a.d0", state="gone")
    with pytest.raises(InvalidArgument):
        await change_drive(kv, "a.d0", weight=-1)
    with pytest.raises(InvalidArgument, match="leave 3 drives"):
        await change_drive(kv, "a.d0", state="out", min_drives=4)
    assert (await read_cluster(kv)).epoch == 4  # refused: nothing written


async def test_concurrent_changes_make_distinct_epochs() -> None:
    kv = MemoryKV()
    await register_drives(kv, [d for h in "abcdef" for d in server(h, 1)])
    async with trio.open_nursery() as nursery:
        for h in "abcdef":
            nursery.start_soon(lambda h=h: change_drive(kv, f"{h}.d0", weight=3.0))
    state = await read_cluster(kv)
    assert state.epoch == 7 and state.history is not None
    assert state.history.epochs == list(range(1, 8))
    assert all(d.weight == 3.0 for d in state.history.current.drives)


async def test_degraded_placement_groups() -> None:
    kv = MemoryKV()
    state = await register_drives(kv, [d for h in "abcdef" for d in server(h, 1)])
    assert state.history is not None
    cmap = state.history.current
    assert degraded_pgs(cmap, 6, set()) == 0
    assert degraded_pgs(cmap, 6, {"a.d0"}) == cmap.pg_count  # every PG has a shard on each
    assert 0 < degraded_pgs(cmap, 3, {"a.d0"}) < cmap.pg_count


async def test_misplaced_placement_groups_until_they_move() -> None:
    from store.cluster_map import misplaced_pgs

    kv = MemoryKV()
    await register_drives(kv, [d for h in "abcdefgh" for d in server(h, 1)])
    state = await read_cluster(kv)
    assert state.history is not None and misplaced_pgs(state.history, 6) == 0
    await change_drive(kv, "a.d0", state="out", min_drives=6)
    state = await read_cluster(kv)
    assert state.history is not None
    held = sum(
        "a.d0" in drives_for_pg(state.history.at(state.epoch - 1), pg, 6) for pg in range(256)
    )
    assert misplaced_pgs(state.history, 6) == held > 0
    state.history.moved.update(dict.fromkeys(range(256), state.epoch))
    assert misplaced_pgs(state.history, 6) == 0


async def test_a_cluster_grown_one_server_at_a_time_has_nothing_misplaced() -> None:
    """Its first maps had too few drives to hold a chunk: nothing can be placed by them."""
    from store.cluster_map import misplaced_pgs

    kv = MemoryKV()
    for h in "abcdef":
        state = await register_drives(kv, server(h, 1))
    assert state.history is not None and state.epoch == 6
    assert misplaced_pgs(state.history, 6) == 0
