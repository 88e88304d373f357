"""`prelu-deploy serve --ray`: the same FastAPI app (every route, the parity gate, dynamic batching,
/metrics) as a Ray Serve application. Each replica is one process holding its own copy of the model
repository, its runners and one dynamic batcher per model. Imported only under --ray: the plain server
never imports ray.

- The ingress (serve/ray/options.py, docs/scale-out.md): by default Ray Serve's HAProxy mode (HAProxy on
  --port balancing over each replica's own HTTP server); `direct` (each replica's port, for an external
  load balancer) and `proxy` (Ray's Python proxy actor) are selectable. Replicas run the app on their
  main event loop, and log each request only at --log-level info or debug. Ray's own error answers come
  as JSON, as the app's (serve/ray/ingress.py).
- The repository reaches the replicas through Ray's object store, not a shared filesystem: the driver
  packs it (serve/ray/packing.py) and `ray.put`s the bytes; each replica checks their sha256 before it
  unpacks them into a temporary folder of its own.
- A replica is ready once its app's lifespan ran the parity gate of every model; its health check
  fails while no model of its passed (so Ray neither routes to it nor counts it) or a batcher died.
- Back-pressure keeps its meaning: a replica's full queue answers 503 + Retry-After as before, and
  requests beyond `max_ongoing_requests` per replica wait (in the replica, or at Ray's proxy), answered
  503 with `Retry-After: 1` (Ray's BackpressureConfig) once `max_queued_requests` of them wait.
- Every response carries `x-replica` (which replica answered); readiness answers add the number of
  ready replicas (`x-ready-replicas`, and `ready_replicas` in their JSON)."""

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import ray
from ray import serve
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from prelu_deploy.serve.api.app import create_app
from prelu_deploy.serve.ray.packing import pack_repository, unpack_repository
from prelu_deploy.serve.ray.options import REPLICA_ENV, RayOptions
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")
APP_NAME, DEPLOYMENT = "prelu-deploy", "PreluDeploy"
STATUS_TTL_S = 1.0  # readiness answers ask Ray's controller at most this often per replica
GRACE_S = 30.0  # a stopping replica finishes its requests within this, or Ray kills it


class _ReplicaHeaders:
    """ASGI wrapper of the app: `x-replica` on every answer; on readiness answers the number of ready
    replicas as `x-ready-replicas` and `ready_replicas` in the JSON body (its status code unchanged)."""

    def __init__(self, app, replica: str, ready_replicas):
        self.app, self.replica, self.ready_replicas = app, replica.encode(), ready_replicas

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        readiness = scope["path"].endswith("/ready")
        count = str(await self.ready_replicas()).encode() if readiness else b""
        start: dict | None = None

        async def send_with_headers(message):
            nonlocal start
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-replica", self.replica)]
                if not readiness:
                    return await send(message)
                message["headers"].append((b"x-ready-replicas", count))
                start = message  # held until the body is known: its length changes
                return
            if start is not None and message["type"] == "http.response.body":
                body = message.get("body", b"")
                try:
                    body = json.dumps({**json.loads(body), "ready_replicas": int(count)}).encode()
                except (ValueError, TypeError):
                    pass
                start["headers"] = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                start = None
                return await send({**message, "body": body})
            await send(message)

        await self.app(scope, receive, send_with_headers)


@serve.ingress()
class PreluDeploy:
    """One replica: its own copy of the repository, its runners, its batchers, the whole app."""

    async def __init__(self, blob: dict, settings: dict):
        data = blob["data"] if "data" in blob else await blob["ref"]  # inline, or from the object store
        self.workdir = Path(tempfile.mkdtemp(prefix="prelu-deploy-replica-"))
        unpack_repository(data, blob["sha256"], self.workdir)
        self.settings = Settings(**{**settings, "repo": self.workdir})
        context = serve.get_replica_context()
        self.replica, self.deployment, self.app_name = context.replica_id.unique_id, context.deployment, context.app_name
        self._ready_count, self._ready_at = 0, 0.0

    def __serve_build_asgi_app__(self):
        self.fastapi = create_app(self.settings)
        return _ReplicaHeaders(self.fastapi, self.replica, self._ready_replicas)

    async def _ready_replicas(self) -> int:
        """RUNNING replicas of this deployment, as Ray's controller sees them (cached for a second)."""
        if time.monotonic() - self._ready_at > STATUS_TTL_S:
            from starlette.concurrency import run_in_threadpool

            try:
                status = await run_in_threadpool(serve.status)
                states = status.applications[self.app_name].deployments[self.deployment].replica_states
                self._ready_count = int(states.get("RUNNING", 0))
            except Exception as err:  # readiness still answers, with the last count known
                log.warning("replica %s: cannot read the replica count from Ray: %s", self.replica, err)
            self._ready_at = time.monotonic()
        return self._ready_count

    def check_health(self) -> None:
        """Raises (Ray then restarts this replica, or never routes to it) while it cannot serve."""
        models = getattr(getattr(self, "fastapi", None) and self.fastapi.state, "models", None)
        if models is None:
            raise RuntimeError("the model repository is not loaded")
        if not any(m.ready for m in models.values()):
            reasons = "; ".join(f"{m.name}: {m.reason}" for m in models.values()) or "the repository holds no model"
            raise RuntimeError(f"no model passed its parity gate: {reasons}")
        for m in models.values():
            if m.ready and not m.engine.alive():
                raise RuntimeError(f"model {m.name}: its dynamic batcher stopped")

    def __del__(self):
        shutil.rmtree(getattr(self, "workdir", ""), ignore_errors=True)


def build(repo: Path, settings: Settings, options: RayOptions, inline: bool = False, log_level: str = "info"):
    """The bound application: the repository packed into Ray's object store (owned by this process,
    which must outlive the application), or `inline` in the deployment's arguments (kept by Ray's
    controller: for config files, whose builder task ends), the deployment configured. Replicas log
    at `log_level`, each request only at info or debug (as uvicorn's access log in the plain server)."""
    if settings.threads is None:  # runner threads within the CPUs Ray reserves: replicas do not oversubscribe a node
        settings = settings.model_copy(update={"threads": max(1, round(options.cpus_per_replica))})
    data, digest = pack_repository(repo)
    blob = {"data": data} if inline else {"ref": ray.put(data)}
    blob.update(sha256=digest, bytes=len(data))
    scaling = {"num_replicas": options.replicas}
    if options.autoscale:
        low, high = options.autoscale
        scaling = {
            "num_replicas": "auto",
            "autoscaling_config": AutoscalingConfig(
                min_replicas=low,
                initial_replicas=low,
                max_replicas=high,
                target_ongoing_requests=options.target_ongoing_requests,
                upscale_delay_s=options.upscale_delay_s,
                downscale_delay_s=options.downscale_delay_s,
                metrics_interval_s=options.metrics_interval_s,
                look_back_period_s=options.look_back_period_s,
            ),
        }
    deployment = serve.deployment(PreluDeploy, name=DEPLOYMENT).options(
        **scaling,
        max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
        ray_actor_options={
            "num_cpus": options.cpus_per_replica,
            "num_gpus": options.gpus_per_replica,
            "resources": dict(options.resources or {}),
            "runtime_env": {"env_vars": dict(REPLICA_ENV)},
        },
        logging_config={"log_level": log_level.upper(), "enable_access_log": log_level in ("info", "debug")},
        health_check_period_s=options.health_check_period_s,
        health_check_timeout_s=30,
        max_constructor_retry_count=options.start_attempts,
        graceful_shutdown_timeout_s=GRACE_S,
    )
    return deployment.bind(blob, settings.model_dump(mode="json", exclude={"repo"}))


def app_builder(args: dict):
    """For Ray Serve config files (`serve run`, `serve deploy`, KubeRay's RayService):
    `import_path: prelu_deploy.serve.ray.app:app_builder` with `args`: `repo` (a path on the node that
    builds the application, e.g. inside the image; default the bundled model), `log_level` (info: each
    request logged) and any Settings field (threads, max_batch_size, max_queue, …). Replicas,
    autoscaling and resources come from the config file's `deployments:` section, which overrides what
    is set here (docs/scale-out-serve.yaml)."""
    from prelu_deploy.serve.repository.bundled import bundled_repository

    args = dict(args)
    repo = Path(args.pop("repo", None) or bundled_repository())
    log_level = args.pop("log_level", "info")
    return build(repo, Settings(**args), RayOptions(), inline=True, log_level=log_level)


def deploy(
    repo: Path, settings: Settings, options: RayOptions, name: str = APP_NAME, blocking: bool = False, log_level: str = "info"
):
    """Deploy (or update) the application on the connected Ray cluster; returns once every replica is ready."""
    serve.run(build(repo, settings, options, log_level=log_level), name=name, route_prefix="/", blocking=blocking)
