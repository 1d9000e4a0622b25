"""Prometheus metrics of a gateway process (prometheus-client, one registry per service).

S3 requests by operation and status, latency histograms, bytes in and out, requests in flight;
and the engine's and chunk store's counters (degraded and corrupt reads, shard write failures,
garbage collected, orphans removed), copied from the engine's own counters by ``sync``.

With several worker processes the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before they start:
prometheus-client then keeps every value in a per-process file there, and a scrape answered by any
worker sums them all. Each worker syncs its engine counters every few seconds and at each scrape
it answers, so the other workers' engine figures are at most ``SYNC_INTERVAL_S`` old.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from store.nbd.constants import Command, Errno
from store.objects.engine import ObjectEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SYNC_INTERVAL_S = 5.0

# (metric name, help, where the engine counts it: "chunks.<ChunkStats field>" or "<EngineStats
# field>")
_ENGINE_COUNTERS = [
    ("store_chunks_written", "chunks written", "chunks.chunks_written"),
    ("store_chunk_bytes_written", "data bytes written to chunks", "chunks.bytes_written"),
    ("store_shard_write_failures", "shard writes that failed", "chunks.shard_write_failures"),
    ("store_degraded_reads", "reads decoded from parity", "chunks.degraded_reads"),
    ("store_hedged_reads", "reads that decoded around a slow shard", "chunks.hedged_reads"),
    ("store_corrupt_reads", "shard reads failing a checksum", "chunks.corrupt_reads"),
    ("store_missing_shard_reads", "reads of missing shards", "chunks.missing_reads"),
    ("store_shards_repaired", "shards rewritten by repair", "chunks.shards_repaired"),
    ("store_garbage_chunks_collected", "chunks removed by GC", "garbage_collected"),
    ("store_orphan_shards_removed", "orphan shards removed", "orphans_removed"),
    ("store_txn_retries", "metadata transactions retried", "txn_retries"),
    ("store_lifecycle_expired", "current versions expired by lifecycle", "lifecycle_expired"),
    (
        "store_lifecycle_noncurrent_expired",
        "noncurrent versions expired by lifecycle",
        "lifecycle_noncurrent_expired",
    ),
    (
        "store_lifecycle_delete_markers_removed",
        "expired delete markers removed by lifecycle",
        "lifecycle_markers_removed",
    ),
    (
        "store_lifecycle_uploads_aborted",
        "uploads aborted by lifecycle",
        "lifecycle_uploads_aborted",
    ),
    (
        "store_lifecycle_locked_skipped",
        "versions lifecycle left alone under object lock",
        "lifecycle_locked_skipped",
    ),
]


def _engine_count(engine: ObjectEngine, where: str) -> int:
    stats, _, name = where.rpartition(".")
    return int(getattr(engine.chunks.stats if stats else engine.stats, name))


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class GatewayMetrics:
    def __init__(self, engine: ObjectEngine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "s3_requests", "S3 requests", ["operation", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "s3_request_seconds",
            "S3 request latency (to the end of the response head)",
            ["operation"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.bytes_in = Counter("s3_bytes_in", "request body bytes", registry=self.registry)
        self.bytes_out = Counter("s3_bytes_out", "response body bytes", registry=self.registry)
        self.inflight = Gauge(
            "s3_requests_in_flight",
            "S3 requests being handled",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._engine_counters = [
            (Counter(name, text, registry=self.registry), where, [0])
            for name, text, where in _ENGINE_COUNTERS
        ]
        self.damaged = Gauge(
            "store_chunks_awaiting_repair",
            "chunks queued for healing",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # Label children are cached: looking one up in prometheus-client costs a lock and a
        # tuple build on every request.
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(
        self, operation: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        children = self._children.get((operation, status))
        if children is None:
            children = self.requests.labels(operation, str(status)), self.latency.labels(operation)
            self._children[(operation, status)] = children
        children[0].inc()
        children[1].observe(seconds)
        if bytes_in:
            self.bytes_in.inc(bytes_in)
        if bytes_out:
            self.bytes_out.inc(bytes_out)

    def sync(self) -> None:
        """Copy the engine's counters into the metrics."""
        for counter, where, last in self._engine_counters:
            value = _engine_count(self.engine, where)
            if value > last[0]:
                counter.inc(value - last[0])
            last[0] = value
        self.damaged.set(len(self.engine.damaged))

    async def run_sync(self) -> None:
        while True:
            self.sync()
            await trio.sleep(SYNC_INTERVAL_S)

    def render(self) -> bytes:
        self.sync()
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)
        return generate_latest(registry)


class NbdMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "nbd_requests", "NBD requests", ["command", "status"], registry=registry
        )
        self.latency = Histogram(
            "nbd_request_seconds",
            "NBD request latency",
            ["command"],
            registry=registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5),
        )
        self.bytes_read = Counter("nbd_bytes_read", "bytes read by NBD clients", registry=registry)
        self.bytes_written = Counter(
            "nbd_bytes_written", "bytes written by NBD clients", registry=registry
        )
        self.inflight = Gauge(
            "nbd_requests_in_flight",
            "NBD requests being served",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "nbd_connections",
            "open NBD connections",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.handoffs = Counter(
            "nbd_connections_handed_off",
            "NBD connections passed to the worker that owns their export",
            ["result"],  # sent | received | failed
            registry=registry,
        )
        self._children: dict[tuple[int, int], tuple[Any, Any]] = {}

    def _child(self, command: int, error: int) -> tuple[Any, Any]:
        found = self._children.get((command, error))
        if found is None:
            name = Command(command).name if command in Command._value2member_map_ else "UNKNOWN"
            status = Errno(error).name if error in Errno._value2member_map_ else str(error)
            found = self.requests.labels(name, status), self.latency.labels(name)
            self._children[(command, error)] = found
        return found

    def observe(self, command: int, error: int, seconds: float) -> None:
        counter, histogram = self._child(command, error)
        counter.inc()
        histogram.observe(seconds)

    def observe_inline(self, counts: list[int], sizes: list[int], seconds: float) -> None:
        """A batch answered inline: ``counts`` and ``sizes`` (bytes) of [reads, writes], all
        taking ``seconds``. Once per batch, not per request: every prometheus update costs a
        microsecond or more (a lock, and an mmap write in multiprocess mode)."""
        for command, bytes_metric in (
            (Command.READ, self.bytes_read),
            (Command.WRITE, self.bytes_written),
        ):
            count = counts[command]
            if not count:
                continue
            bytes_metric.inc(sizes[command])
            counter, histogram = self._child(command, Errno.OK)
            counter.inc(count)
            # Histogram has no bulk observe: add to the bucket and the sum as observe() does
            # (its _upper_bounds, _buckets and _sum)
            histogram._buckets[bisect_left(histogram._upper_bounds, seconds)].inc(count)
            histogram._sum.inc(seconds * count)
