"""The settings of `serve --ray` (replicas, autoscaling, per-replica resources and back-pressure), kept
apart from serve/ray_app.py so that the CLI checks them without importing ray."""

from dataclasses import dataclass


@dataclass
class RayOptions:
    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas; None: a fixed number
    max_ongoing_requests: int = 32  # requests in one replica at once (its batcher forms batches from them)
    max_queued_requests: int = 512  # requests waiting at Ray's proxy beyond those; then 503 + Retry-After
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    target_ongoing_requests: float = 4.0  # autoscaling: per replica
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    metrics_interval_s: float = 1.0  # autoscaling: how often replicas report their load (Ray: deprecated field)
    look_back_period_s: float = 5.0
    health_check_period_s: float = 2.0
