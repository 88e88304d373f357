"""Prometheus metrics of one app (its own registry, so several apps can live in one process). Under
several worker processes (serve.workers.processes) prometheus_client's multiprocess mode is on: every process
writes its values to files, and /metrics sums them over the workers."""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch to multiprocess mode
_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "prelu_requests",
            "Requests by model, endpoint and outcome (HTTP status)",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "prelu_queue_seconds", "Time a request waited for its batch", ["model"], buckets=_LATENCY, registry=self.registry
        )
        self.compute_seconds = Histogram(
            "prelu_compute_seconds", "Runner time per batch", ["model"], buckets=_LATENCY, registry=self.registry
        )
        self.batch_size = Histogram(
            "prelu_batch_size", "Rows per runner call", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry
        )
        self.auth_refused = Counter(
            "prelu_auth_refused",
            "Requests refused by token authentication (serve.api.auth), by "
            "protocol (http, grpc) and reason (missing, wrong, in_url, no_token)",
            ["protocol", "reason"],
            registry=self.registry,
        )
        self.loads = Counter(
            "prelu_model_loads",
            "Loads through the repository API (serve.repository.control) by model and "
            "result: serving (passed its parity gate), refused (failed it or could not load: no traffic)",
            ["model", "result"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "prelu_in_flight_requests", "Requests being handled", registry=self.registry, multiprocess_mode="livesum"
        )  # summed over live workers

    def batch_observer(self, model: str):
        rows_seen, compute, queued_for = (m.labels(model) for m in (self.batch_size, self.compute_seconds, self.queue_seconds))

        def observe(rows: int, queued: list[float], seconds: float) -> None:
            rows_seen.observe(rows)
            compute.observe(seconds)
            for q in queued:
                queued_for.observe(q)

        return observe

    def exposition(self) -> tuple[bytes, str]:
        """The text /metrics answers: this app's registry, or the sum over every worker process."""
        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
