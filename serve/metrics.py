"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("prelu_requests", "Requests by model, endpoint and outcome (HTTP status)",
                                ["model", "endpoint", "status"], registry=self.registry)
        self.queue_seconds = Histogram("prelu_queue_seconds", "Time a request waited for its batch", ["model"],
                                       buckets=_LATENCY, registry=self.registry)
        self.compute_seconds = Histogram("prelu_compute_seconds", "Runner time per batch", ["model"],
                                         buckets=_LATENCY, registry=self.registry)
        self.batch_size = Histogram("prelu_batch_size", "Rows per runner call", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.in_flight = Gauge("prelu_in_flight_requests", "Requests being handled", registry=self.registry)

    def batch_observer(self, model: str):
        def observe(rows: int, queued: list[float], compute: float) -> None:
            self.batch_size.labels(model).observe(rows)
            self.compute_seconds.labels(model).observe(compute)
            for q in queued:
                self.queue_seconds.labels(model).observe(q)

        return observe
