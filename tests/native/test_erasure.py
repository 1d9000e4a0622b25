"""Erasure coding: every kernel against the reference kernel, reconstruction, misuse, threads."""

from __future__ import annotations

import itertools
import os
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import native
from store.errors import TooFewShards
from store.native import ErasureCode, Stripe

from .conftest import FAST_ISAS, ISAS

LENGTHS = [1, 15, 31, 32, 33, 63, 64, 65, 127, 4095, 4096, 4097, (1 << 20) + 3]


@st.composite
def geometry(draw: st.DrawFn, max_total: int = native.MAX_SHARDS) -> tuple[int, int]:
    k = draw(st.integers(1, max_total - 1))
    m = draw(st.integers(1, max_total - k))
    return k, m


def shards_of(rng: np.random.Generator, k: int, length: int, offset: int) -> list[memoryview]:
    """k random shards, each an unaligned slice (offset) ending exactly at its allocation."""
    return [memoryview(bytearray(rng.bytes(length + offset)))[offset:] for _ in range(k)]


def test_parity_matches_isa_l_known_answer() -> None:
    # ISA-L 2.32 ec_encode_data with gf_gen_cauchy1_matrix(6, 4) on these inputs gives these bytes:
    # parity is bit-compatible with ISA-L, so shards written by either can be decoded by the other.
    data = [bytes((i * 16 + j * 7 + 1) & 255 for j in range(16)) for i in range(4)]
    expected = ["c8f515344956ab99e400e0dde3decaf7", "f2cf2f304d6c9175083adae7734ef0cd"]
    for isa in ISAS:
        assert [p.hex() for p in ErasureCode(4, 2, isa).encode(data)] == expected, isa


@pytest.mark.parametrize("isa", FAST_ISAS)
@given(
    geo=geometry(),
    length=st.one_of(st.sampled_from(LENGTHS[:-1]), st.integers(1, 3000)),
    offset=st.integers(0, 63),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_encode_equals_reference(
    isa: str, geo: tuple[int, int], length: int, offset: int, seed: int
) -> None:
    k, m = geo
    data = shards_of(np.random.default_rng(seed), k, length, offset)
    expected = ErasureCode(k, m, "ref").encode(data)
    parity = [memoryview(bytearray(length + offset))[offset:] for _ in range(m)]
    ErasureCode(k, m, isa).encode_into(data, parity)
    assert [bytes(p) for p in parity] == [bytes(p) for p in expected]


@pytest.mark.parametrize("isa", ISAS)
@given(
    geo=geometry(max_total=20),
    length=st.sampled_from(LENGTHS[:-1]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_reconstruct_any_erasures(
    isa: str, geo: tuple[int, int], length: int, seed: int, data: st.DataObject
) -> None:
    k, m = geo
    ec = ErasureCode(k, m, isa)
    shards = shards_of(np.random.default_rng(seed), k, length, 1)
    full: list[bytes] = [bytes(s) for s in shards] + [bytes(p) for p in ec.encode(shards)]
    lost = data.draw(st.sets(st.integers(0, k + m - 1), min_size=1, max_size=m))
    present = [None if i in lost else full[i] for i in range(k + m)]
    rebuilt = ec.reconstruct(present)
    assert [bytes(s) for s in rebuilt] == full
    # The same through reconstruct_into, into unaligned caller buffers.
    out = {i: memoryview(bytearray(length + 3))[3:] for i in sorted(lost, reverse=True)}
    ec.reconstruct_into(present, out)
    assert all(bytes(buf) == full[i] for i, buf in out.items())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("length", LENGTHS)
def test_every_erasure_pattern_rs_4_2(isa: str, length: int) -> None:
    """Exhaustive: every loss of up to m shards, on lengths around vector widths."""
    if isa == "ref" and length > 1 << 16:
        length = 4097
    ec = ErasureCode(4, 2, isa)
    data = [os.urandom(length) for _ in range(4)]
    full = data + [bytes(p) for p in ec.encode(data)]
    for lost_count in (1, 2):
        for lost in itertools.combinations(range(6), lost_count):
            present = [None if i in lost else full[i] for i in range(6)]
            assert [bytes(s) for s in ec.reconstruct(present)] == full, lost


def test_large_geometries_roundtrip() -> None:
    for k, m in [(1, 31), (31, 1), (16, 16), (12, 4)]:
        ec = ErasureCode(k, m)
        data = [os.urandom(257) for _ in range(k)]
        full = data + [bytes(p) for p in ec.encode(data)]
        lost = list(range(max(0, k - m), k)) + list(range(k, k + m))[: m - min(m, k)]
        present = [None if i in lost[:m] else full[i] for i in range(k + m)]
        assert [bytes(s) for s in ec.reconstruct(present)] == full


def test_accepts_bytes_bytearray_memoryview_numpy() -> None:
    ec = ErasureCode(3, 2)
    raw = [os.urandom(100) for _ in range(3)]
    expected = [bytes(p) for p in ec.encode(raw)]
    forms = [
        [bytearray(r) for r in raw],
        [memoryview(r) for r in raw],
        [np.frombuffer(r, dtype=np.uint8).copy() for r in raw],
        [np.frombuffer(r, dtype=np.uint32) for r in [r[:100] for r in raw]],
    ]
    for shards in forms:
        assert [bytes(p) for p in ec.encode(shards)] == expected
    out = [np.zeros(100, dtype=np.uint8) for _ in range(2)]
    ec.encode_into(raw, out)
    assert [o.tobytes() for o in out] == expected


def test_too_few_shards_is_a_clear_error() -> None:
    ec = ErasureCode(4, 2)
    data = [os.urandom(64) for _ in range(4)]
    full = data + ec.encode(data)
    with pytest.raises(TooFewShards, match="3 of 6 shards present"):
        ec.reconstruct([None, None, None, *full[3:]])
    stripe = Stripe(ec, 64)
    with pytest.raises(TooFewShards):
        stripe.reconstruct([0, 1, 5])


@pytest.mark.parametrize(
    "call",
    [
        lambda: ErasureCode(0, 2),
        lambda: ErasureCode(2, 0),
        lambda: ErasureCode(30, 3),
        lambda: ErasureCode(4, 2, "sse9"),
        lambda: ErasureCode(4, 2).encode([b"a" * 4] * 3),
        lambda: ErasureCode(4, 2).encode([b"a" * 4, b"a" * 4, b"a" * 4, b"a" * 5]),
        lambda: ErasureCode(4, 2).encode_into([b"a" * 4] * 4, [bytearray(4), bytearray(5)]),
        lambda: ErasureCode(4, 2).encode_into([b"a" * 4] * 4, [bytearray(4), b"read-only"[:4]]),
        lambda: ErasureCode(4, 2).encode_into([b"a" * 4] * 4, [bytearray(4)]),
        lambda: ErasureCode(4, 2).encode([memoryview(b"abcdefgh")[::2]] * 4),
        lambda: ErasureCode(4, 2).encode([object()] * 4),
        lambda: ErasureCode(4, 2).reconstruct([b"a" * 4] * 5),
        lambda: ErasureCode(4, 2).reconstruct_into([None] + [b"a" * 4] * 5, {0: b"ro!!"}),
        lambda: ErasureCode(4, 2).reconstruct_into([None] + [b"a" * 4] * 5, {6: bytearray(4)}),
        lambda: ErasureCode(4, 2).reconstruct_into([None] + [b"a" * 4] * 5, {0: bytearray(3)}),
        lambda: ErasureCode(4, 2).reconstruct([None, b"a" * 4, b"a" * 4, b"a" * 3, None, b"a" * 4]),
        lambda: ErasureCode(4, 2).encode_into_with_crcs([b"a" * 4] * 4, [bytearray(4)] * 2, 0),
        lambda: Stripe(ErasureCode(4, 2), 64).encode(65),
        lambda: Stripe(ErasureCode(4, 2), 64).reconstruct([6]),
    ],
)
def test_misuse_raises_value_error(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


def test_overlapping_outputs_are_refused() -> None:
    ec = ErasureCode(4, 2)
    data = [os.urandom(64) for _ in range(4)]
    shared = bytearray(96)
    with pytest.raises(ValueError, match="overlap"):
        ec.encode_into(data, [memoryview(shared)[:64], memoryview(shared)[32:]])
    buf = bytearray(os.urandom(64))
    with pytest.raises(ValueError, match="overlap"):
        ec.encode_into([buf, *data[1:]], [buf, bytearray(64)])


@pytest.mark.parametrize("isa", FAST_ISAS)
def test_prepared_calls_match_the_plain_ones(isa: str) -> None:
    ec = ErasureCode(5, 3, isa)
    data = [bytearray(os.urandom(3000)) for _ in range(5)]
    parity = [bytearray(3000) for _ in range(3)]
    encode = ec.prepared_encode(data, parity)
    for _ in range(2):  # each call sees the buffers' current contents
        data[1][:] = os.urandom(3000)
        assert encode() == 0
        assert [bytes(p) for p in parity] == [bytes(p) for p in ec.encode(data)]
    with pytest.raises(BufferError):  # pinned: a resize would leave a dangling pointer
        data[0].extend(b"x")
    shards: list[bytearray | None] = [None, data[1], None, data[3], data[4], *parity[:2], None]
    out = {0: bytearray(3000), 2: bytearray(3000), 7: bytearray(3000)}
    reconstruct = ec.prepared_reconstruct(shards, out)
    out[0][:] = bytes(3000)
    assert reconstruct() == 0
    assert (out[0], out[2], out[7]) == (data[0], data[2], parity[2])
    with pytest.raises(ValueError, match="overlap"):
        ec.prepared_encode(data, [data[0], bytearray(3000), bytearray(3000)])
    with pytest.raises(TooFewShards):
        ec.prepared_reconstruct([None] * 4 + data[4:] + parity, {0: bytearray(3000)})
    assert ec.prepared_reconstruct(shards, {})() == 0


def test_unsupported_forced_isa_is_refused() -> None:
    missing = [isa for isa in native.ISAS if isa not in ISAS]
    for isa in missing:
        with pytest.raises(ValueError, match="not supported"):
            ErasureCode(4, 2, isa)


def test_stripe_encode_reconstruct_and_crcs() -> None:
    ec = ErasureCode(6, 3)
    stripe = Stripe(ec, 10_000)
    for i in range(6):
        stripe.shards[i][:] = os.urandom(10_000)
    crcs = stripe.encode_with_crcs(4096)
    full = [bytes(s) for s in stripe.shards]
    assert full[6:] == [bytes(p) for p in ec.encode(full[:6])]
    nblocks = 3
    for s in range(9):
        for b in range(nblocks):
            block = full[s][b * 4096 : (b + 1) * 4096]
            assert crcs[s * nblocks + b] == native.crc32c(block)
    for i in (0, 4, 7):
        stripe.shards[i][:] = bytes(10_000)
    stripe.reconstruct([7, 0, 4])
    assert [bytes(s) for s in stripe.shards] == full
    # A short last stripe: only the first `length` bytes take part.
    stripe.encode(length=100)
    assert bytes(stripe.shards[6][:100]) == bytes(ec.encode([f[:100] for f in full[:6]])[0])


def test_encode_with_crcs_matches_separate_calls() -> None:
    ec = ErasureCode(4, 2)
    data = [os.urandom(5000) for _ in range(4)]
    parity = [bytearray(5000) for _ in range(2)]
    crcs = ec.encode_into_with_crcs(data, parity, 1024)
    assert [bytes(p) for p in parity] == [bytes(p) for p in ec.encode(data)]
    shards = [*data, *parity]
    expected = [native.crc32c(s[b : b + 1024]) for s in shards for b in range(0, 5000, 1024)]
    assert list(crcs) == expected


def test_decode_matrices_are_cached_per_pattern() -> None:
    ec = ErasureCode(8, 3)
    data = [os.urandom(256) for _ in range(8)]
    full = data + ec.encode(data)
    present = [None, None, *full[2:]]
    for _ in range(5):
        ec.reconstruct(present)
    hits, misses = ec.cache_stats()
    assert (hits, misses) == (4, 1)
    ec.reconstruct([None, *full[1:]])
    assert ec.cache_stats() == (4, 2)


def test_threads_share_one_codec() -> None:
    ec = ErasureCode(8, 3)
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for round_ in range(40):
            data = [rng.bytes(70_000) for _ in range(8)]
            parity = ec.encode(data)
            full = data + [bytes(p) for p in parity]
            lost = rng.choice(11, size=3, replace=False)
            present = [None if i in lost else full[i] for i in range(11)]
            if [bytes(s) for s in ec.reconstruct(present)] != full:
                errors.append(f"seed {seed} round {round_} lost {sorted(lost)}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
