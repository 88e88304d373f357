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



def local_cluster_env(host: str) -> dict[str, str]:
    """The environment for a Ray cluster that `serve --ray` starts itself (no --ray-address) while the
    server listens on `host`: for a loopback host, Ray's own switch that makes a local-only cluster
    (made for macOS and Windows, read when ray is imported). Ray then takes 127.0.0.1 as the node's
    address and binds its GCS, raylet, object manager, workers, agents and metrics exporters there
    (measured: without it they listen on every interface or the node's address; docs/reliability.md)."""
    from prelu_deploy.serve.workers import is_loopback

    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if is_loopback(host) else {}
