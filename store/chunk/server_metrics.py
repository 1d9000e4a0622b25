"""Prometheus metrics of a chunk server: calls by drive, method and outcome, their latency, and
the bytes each drive took in and gave out (prometheus-client; served on ``--metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DriveServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.calls = Counter(
            "store_chunkserver_calls",
            "drive calls answered, by drive, method and outcome (ok or the error's kind)",
            ["drive", "method", "outcome"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "store_chunkserver_call_seconds",
            "time to answer a drive call, by method",
            ["method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "store_chunkserver_bytes_received",
            "payload bytes received for a drive (shard appends, extent writes)",
            ["drive"],
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "store_chunkserver_bytes_sent",
            "payload bytes sent from a drive (reads, images)",
            ["drive"],
            registry=self.registry,
        )

    def record(
        self, drive: str, method: str, outcome: str, seconds: float, received: int, sent: int
    ) -> None:
        self.calls.labels(drive, method, outcome).inc()
        self.seconds.labels(method).observe(seconds)
        if received:
            self.bytes_in.labels(drive).inc(received)
        if sent:
            self.bytes_out.labels(drive).inc(sent)
