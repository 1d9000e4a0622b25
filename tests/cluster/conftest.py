"""Fixtures of the cluster tests: real etcd members as child processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store.lab.etcd import EtcdCluster


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh 3-member etcd cluster on loopback ports, its data under the test's directory."""
    cluster = EtcdCluster(tmp_path / "etcd", log_path=tmp_path / "etcd.log")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(graceful=False)
