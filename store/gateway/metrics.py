"""Prometheus metrics of a gateway process (prometheus-client, one registry per service).

S3 requests by operation and status, latency histograms, bytes in and out, requests in flight;
and the engine's and chunk store's counters (degraded and corrupt reads, shard write failures,
garbage collected, orphans removed) read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from store.engine.objects import ObjectEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineCollector(Collector):
    def __init__(self, engine: ObjectEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        chunk = self.engine.chunks.stats
        for name, value, text in [
            ("store_chunks_written", chunk.chunks_written, "chunks written"),
            ("store_chunk_bytes_written", chunk.bytes_written, "data bytes written to chunks"),
            ("store_shard_write_failures", chunk.shard_write_failures, "shard writes that failed"),
            ("store_degraded_reads", chunk.degraded_reads, "reads decoded from parity"),
            ("store_corrupt_reads", chunk.corrupt_reads, "shard reads failing a checksum"),
            ("store_missing_shard_reads", chunk.missing_reads, "reads of missing shards"),
            ("store_shards_repaired", chunk.shards_repaired, "shards rewritten by repair"),
            (
                "store_garbage_chunks_collected",
                self.engine.stats.garbage_collected,
                "chunks removed by garbage collection",
            ),
            (
                "store_orphan_shards_removed",
                self.engine.stats.orphans_removed,
                "orphan shards removed",
            ),
            ("store_txn_retries", self.engine.stats.txn_retries, "metadata transactions retried"),
        ]:
            family = CounterMetricFamily(name, text)
            family.add_metric([], value)
            yield family
        damaged = GaugeMetricFamily("store_chunks_awaiting_repair", "chunks queued for healing")
        damaged.add_metric([], len(self.engine.damaged))
        yield damaged


class GatewayMetrics:
    def __init__(self, engine: ObjectEngine) -> None:
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
            "s3_requests_in_flight", "S3 requests being handled", registry=self.registry
        )
        self.registry.register(_EngineCollector(engine))

    def observe(
        self, operation: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        self.requests.labels(operation, str(status)).inc()
        self.latency.labels(operation).observe(seconds)
        self.bytes_in.inc(bytes_in)
        self.bytes_out.inc(bytes_out)

    def render(self) -> bytes:
        return generate_latest(self.registry)
