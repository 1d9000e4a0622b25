"""The etcd backend against the metadata conformance suite, on a real 3-member etcd cluster."""

from __future__ import annotations

import pytest
import trio

from store.lab.etcd import EtcdCluster
from store.meta.etcd import open_etcd_kv
from store.testing.kv_conformance import CHECKS, SHARED_CHECKS, Check, SharedCheck


async def real_wait(seconds: float) -> None:
    await trio.sleep(seconds)


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
async def test_conformance(check: Check, etcd: EtcdCluster) -> None:
    async with open_etcd_kv(etcd.endpoints) as kv:
        await check(kv, real_wait)


@pytest.mark.parametrize("check", SHARED_CHECKS, ids=[c.__name__ for c in SHARED_CHECKS])
async def test_shared_conformance(check: SharedCheck, etcd: EtcdCluster) -> None:
    """Two clients, each on a different member: a watch through one sees writes through the
    other."""
    members = etcd.endpoints.removeprefix("etcd://").split(",")
    async with (
        open_etcd_kv(",".join(members)) as one,
        open_etcd_kv(",".join(members[1:] + members[:1])) as two,
    ):
        await check(one, two, real_wait)
