"""Stripe geometry: pieces reassemble exactly the requested bytes, spans cover what decode needs."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.codec.stripe import ChunkLayout, split_stripe
from store.errors import InvalidArgument
from store.native import ErasureCode


def shards_of(data: bytes, layout: ChunkLayout, m: int = 0) -> list[bytearray]:
    """Lay a chunk out into k data (+ m parity) shards the way the engine writes them."""
    shards = [bytearray() for _ in range(layout.k + m)]
    ec = ErasureCode(layout.k, m) if m else None
    for s in range(layout.stripes):
        start = s * layout.stripe_bytes
        blocks = split_stripe(
            data[start : start + layout.stripe_data_len(s)], layout.k, layout.block_len(s)
        )
        if ec:
            blocks += [bytes(p) for p in ec.encode(blocks)]
        for j, block in enumerate(blocks):
            shards[j] += block
    return shards


@given(
    k=st.integers(1, 12),
    block=st.integers(1, 64),
    length=st.integers(1, 3000),
    data=st.data(),
)
def test_pieces_reassemble_the_range(k: int, block: int, length: int, data: st.DataObject) -> None:
    layout = ChunkLayout(k, block, length)
    chunk = os.urandom(length)
    shards = shards_of(chunk, layout)
    assert all(len(s) == layout.shard_length for s in shards)
    offset = data.draw(st.integers(0, length - 1))
    size = data.draw(st.integers(1, length - offset))
    out = bytearray(size)
    for p in layout.data_pieces(offset, size):
        out[p.out_offset : p.out_offset + p.length] = shards[p.shard][
            p.shard_offset : p.shard_offset + p.length
        ]
    assert bytes(out) == chunk[offset : offset + size]


@given(
    k=st.integers(2, 8),
    m=st.integers(1, 3),
    block=st.integers(1, 40),
    length=st.integers(1, 2000),
    data=st.data(),
)
def test_stripe_span_is_enough_to_decode(
    k: int, m: int, block: int, length: int, data: st.DataObject
) -> None:
    """Any k shards' span rebuilds the stripes, and the range is then a slice of them."""
    layout = ChunkLayout(k, block, length)
    chunk = os.urandom(length)
    shards = shards_of(chunk, layout, m)
    offset = data.draw(st.integers(0, length - 1))
    size = data.draw(st.integers(1, length - offset))
    first, last, start, count = layout.stripe_span(offset, size)
    lost = set(data.draw(st.lists(st.integers(0, k + m - 1), max_size=m, unique=True)))
    ec = ErasureCode(k, m)
    rebuilt = bytearray()
    pos = start
    for s in range(first, last + 1):
        blen = layout.block_len(s)
        present = [
            None if i in lost else bytes(sh[pos : pos + blen]) for i, sh in enumerate(shards)
        ]
        full = ec.reconstruct(present)
        rebuilt += b"".join(bytes(b) for b in full[:k])[: layout.stripe_data_len(s)]
        pos += blen
    assert pos == start + count
    base = first * layout.stripe_bytes
    assert bytes(rebuilt[offset - base : offset - base + size]) == chunk[offset : offset + size]


def test_empty_chunk_and_bad_ranges() -> None:
    assert ChunkLayout(4, 1024, 0).shard_length == 0
    layout = ChunkLayout(4, 1024, 100)
    for offset, length in [(-1, 1), (0, 0), (99, 2), (100, 1)]:
        with pytest.raises(InvalidArgument):
            layout.data_pieces(offset, length)
    with pytest.raises(InvalidArgument):
        ChunkLayout(0, 1, 1)
