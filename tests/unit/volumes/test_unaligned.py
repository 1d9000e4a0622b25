"""I/O at any offset and length on a 4 KiB-block volume: reads, writes, zeroing, trim and block
status against a byte-granular model; partial-block writes to one block in parallel all land."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.node import local_volumes, open_local_engine

BLOCK = 4096
EXTENT = 4 * BLOCK  # small extents: requests cross them
SIZE = 6 * EXTENT


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["write", "zero", "punch", "trim", "read", "status"]),
            st.integers(0, SIZE - 1),
            st.integers(0, 3 * BLOCK),
            st.integers(0, 255),
        ),
        max_size=14,
    )
)
async def test_any_offset_and_length_match_a_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list
) -> None:
    root = tmp_path_factory.mktemp("unaligned")
    async with open_local_engine(root, drives=2) as engine:
        volumes = local_volumes(engine)
        await volumes.create("v", SIZE, extent_bytes=EXTENT)
        model = bytearray(SIZE)
        async with volumes.open("v") as vol:
            for op, offset, length, byte in ops:
                length = min(length, SIZE - offset)
                end = offset + length
                if op == "write":
                    data = bytes([byte]) * length
                    await vol.write(offset, data, fua=byte % 2 == 0)
                    model[offset:end] = data
                elif op in ("zero", "punch"):
                    await vol.write_zeroes(offset, length, punch=op == "punch")
                    model[offset:end] = bytes(length)
                elif op == "trim":
                    # Only the whole blocks inside may be discarded; the model zeroes them
                    # (this volume has no parent, so discarded blocks read as zeros).
                    await vol.trim(offset, length)
                    lo, hi = -(-offset // BLOCK) * BLOCK, end - end % BLOCK
                    if lo < hi:
                        model[lo:hi] = bytes(hi - lo)
                elif op == "read":
                    assert await vol.read(offset, length) == model[offset:end]
                else:
                    runs = await vol.block_status(offset, length)
                    assert sum(n for n, _ in runs) == length
                    at = offset
                    for n, flags in runs:
                        if flags & 2:  # reported zero: reads as zeros
                            assert model[at : at + n] == bytes(n)
                        at += n
            assert await vol.read(0, SIZE) == model
            assert vol.try_read(1, 512) is None  # unaligned: never the synchronous path
            assert vol.try_write(512, b"x" * 512) is False


async def test_partial_writes_to_one_block_in_parallel_all_land(tmp_path: Path) -> None:
    async with open_local_engine(tmp_path, drives=2) as engine:
        volumes = local_volumes(engine)
        await volumes.create("v", SIZE, extent_bytes=EXTENT)
        pieces = {at: os.urandom(512) for at in range(BLOCK, 3 * BLOCK, 512)}  # two blocks
        async with volumes.open("v") as vol:
            await vol.write(0, b"\xee" * (4 * BLOCK))
            async with trio.open_nursery() as nursery:
                for at, data in pieces.items():
                    nursery.start_soon(vol.write, at, data)
            await vol.flush()
        async with volumes.open("v", writable=False) as vol:
            got = await vol.read(0, 4 * BLOCK)
    assert got[:BLOCK] == b"\xee" * BLOCK and got[3 * BLOCK :] == b"\xee" * BLOCK
    assert got[BLOCK : 3 * BLOCK] == b"".join(pieces[at] for at in sorted(pieces))
