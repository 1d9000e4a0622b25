"""The etcd backend when members die: failover for calls and watches, clean errors without a
quorum, recovery when members return. Real members, killed with SIGKILL or paused."""

from __future__ import annotations

import signal

import pytest
import trio

from store.errors import Unavailable
from store.lab.etcd import EtcdCluster, EtcdMember
from store.meta.etcd import EtcdKV, open_etcd_kv
from store.testing.kv_support import next_batch


def follower_first(etcd: EtcdCluster) -> tuple[EtcdMember, str]:
    """A follower, and endpoints that try it first (killing it costs no election)."""
    leader = etcd.leader()
    follower = next(m for m in etcd.members if m is not leader)
    return follower, etcd.endpoints_of([follower] + [m for m in etcd.members if m is not follower])


async def put_eventually(kv: EtcdKV, key: bytes, value: bytes, within_s: float) -> int:
    """Retry a put through Unavailable (an election in progress) for up to ``within_s``."""
    with trio.fail_after(within_s):
        while True:
            try:
                return await kv.put(key, value)
            except Unavailable:
                await trio.sleep(0.2)


async def test_calls_fail_over_when_the_member_in_use_dies(etcd: EtcdCluster) -> None:
    follower, endpoints = follower_first(etcd)
    async with open_etcd_kv(endpoints) as kv:
        await kv.put(b"k", b"1")  # a pooled connection to the follower
        etcd.kill_member(follower)
        with trio.fail_after(3):
            await kv.put(b"k", b"2")  # on the next member, no error
            got = await kv.get(b"k")
        assert got is not None and got.value == b"2"


async def test_a_watch_resumes_on_another_member_without_gaps(etcd: EtcdCluster) -> None:
    follower, endpoints = follower_first(etcd)
    async with open_etcd_kv(endpoints) as kv:
        start = await kv.put(b"w/0", b"0")
        async with kv.watch(b"w/", start) as watch:
            assert (await next_batch(watch)).revision == start
            etcd.kill_member(follower)
            revisions = [await kv.put(f"w/{i}".encode(), str(i).encode()) for i in range(1, 6)]
            seen = [(await next_batch(watch)).revision for _ in revisions]
        assert seen == revisions


async def test_the_leader_dying_stalls_writes_then_they_go_on(etcd: EtcdCluster) -> None:
    """A write in flight when the leader dies may time out (Unavailable: etcd drops proposals
    while it elects); once a new leader is elected, writes succeed, and a watch sees each."""
    async with open_etcd_kv(etcd.endpoints, timeout_s=3.0) as kv:
        start = await kv.put(b"l/0", b"0")
        async with kv.watch(b"l/", start + 1) as watch:
            etcd.kill_member(etcd.leader())
            done = [await put_eventually(kv, f"l/{i}".encode(), b"x", 30) for i in range(1, 4)]
            seen: list[int] = []
            while not seen or seen[-1] < done[-1]:
                seen.append((await next_batch(watch)).revision)
        assert set(done) <= set(seen) and seen == sorted(set(seen))


async def test_without_a_quorum_calls_fail_cleanly_then_recover(etcd: EtcdCluster) -> None:
    async with open_etcd_kv(etcd.endpoints, timeout_s=3.0) as kv:
        await kv.put(b"q", b"before")
        for member in etcd.members[:2]:
            etcd.kill_member(member)
        with trio.fail_after(10):  # within the deadline, not hung
            with pytest.raises(Unavailable):
                await kv.put(b"q", b"lost")
            with pytest.raises(Unavailable):
                await kv.get(b"q")
        etcd.start_member(etcd.members[0])  # a quorum again
        await put_eventually(kv, b"q", b"after", 30)
        got = await kv.get(b"q")
        assert got is not None and got.value == b"after"


async def test_a_paused_member_costs_an_idempotent_call_only_its_share(
    etcd: EtcdCluster,
) -> None:
    """SIGSTOP: the connection stays open and silent. Reads move on to another member within
    their share of the deadline."""
    follower, endpoints = follower_first(etcd)
    async with open_etcd_kv(endpoints, timeout_s=6.0) as kv:
        await kv.put(b"p", b"1")
        etcd.signal_member(follower, signal.SIGSTOP)
        try:
            with trio.fail_after(5):
                got = await kv.get(b"p")
            assert got is not None and got.value == b"1"
        finally:
            etcd.signal_member(follower, signal.SIGCONT)
