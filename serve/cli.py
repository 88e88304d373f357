"""`prelu-deploy serve`: every model directory of a repository over HTTP."""

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer

from prelu_deploy import usable_cores
from prelu_deploy.errors import UsageError
from prelu_deploy.runners.registry import backends
from prelu_deploy.serve.option_fields import EnvironmentDefaults, field_value

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
BACKENDS = ("auto", *backends())  # the registry's, every one (its import is light: no numpy)


def register(app: typer.Typer) -> None:
    app.command("serve", context_settings={"default_map": EnvironmentDefaults()})(serve)


def serve(
    repo: Optional[Path] = typer.Argument(
        None, help="Model repository (default: the bundled digits model, exported into a cache on first use)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    grpc_port: Optional[int] = typer.Option(
        None, "--grpc-port", min=0, max=65535, help="KServe v2 gRPC port (default 8001, Triton's; 0: no gRPC; not with --ray)."
    ),
    api_token_file: Optional[Path] = typer.Option(
        None,
        "--api-token-file",
        help="A file holding the API token (or the environment variable PRELU_DEPLOY_API_TOKEN): requests to the "
        "management API (and with --auth all, to everything but health) need 'Authorization: Bearer TOKEN'.",
    ),
    api_token: Optional[str] = typer.Option(
        None, "--api-token", help="The API token itself (visible in ps: prefer --api-token-file)."
    ),
    auth: str = typer.Option(
        "management",
        "--auth",
        help="What needs the token: management (the repository API) | all (inference, metadata, the page and "
        "/metrics too; health stays open).",
    ),
    model_control: str = typer.Option(
        "none",
        "--model-control",
        help="none (serve what REPO holds at start; the repository API's load and unload are refused) | explicit "
        "(only the --load-model models at start, then what the repository API loads and unloads, each after "
        "its parity gate) | poll (what REPO holds, followed as it changes: new and changed versions load "
        "beside those that serve, each after its parity gate; a removed model unloads).",
    ),
    poll_interval: Optional[float] = typer.Option(
        None, "--poll-interval", help="--model-control poll: seconds between two looks at REPO (default 15, Triton's)."
    ),
    load_model: Optional[list[str]] = typer.Option(
        None, "--load-model", help="--model-control explicit: a model (its folder in REPO) to load at start; repeat for more."
    ),
    backend: str = typer.Option(
        "auto", "--backend", help=f"auto (tensorrt for plan entries, else onnxruntime) | {' | '.join(BACKENDS[1:])}"
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (ONNX Runtime's CUDA provider: the gpu extra)."),
    max_batch_size: int = typer.Option(
        32, "--max-batch-size", min=1, help="Rows gathered into one runner call (never more than the entry accepts)."
    ),
    max_queue_delay_ms: float = typer.Option(
        0.0,
        "--max-queue-delay-ms",
        min=0.0,
        help="Under load only: the longest a batch waits for more rows after its oldest request was queued (0: "
        "never wait; an idle server never waits).",
    ),
    max_queue: int = typer.Option(512, "--max-queue", min=1, help="Queued rows per model before 503 + Retry-After."),
    workers: Optional[int] = typer.Option(
        None,
        "--workers",
        min=1,
        help="Server processes sharing the port, each loading every model (default on cpu: one per core, each "
        "runner single-threaded; on cuda: one).",
    ),
    instances: int = typer.Option(
        1,
        "--instances",
        min=1,
        help="Runner instances per model in each worker (each its own session/engine and thread): concurrent runner calls.",
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="Threads per runner instance (default: the cores left to each after --workers and --instances).",
    ),
    max_images: int = typer.Option(64, "--max-images", min=1, help="Images in one classify request."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", min=0.001, help="Request body limit (413 beyond)."),
    max_pixels: int = typer.Option(4096 * 4096, "--max-pixels", min=1, help="Pixels per decoded image (413 beyond)."),
    max_request_pixels: int = typer.Option(
        64 << 20,
        "--max-request-pixels",
        min=1,
        help="Pixels over all images of one classify request (413 beyond; default 4 × 4096²): each costs decoding time.",
    ),
    max_decodes: Optional[int] = typer.Option(
        None,
        "--max-decodes",
        min=1,
        help="Images one worker decodes at once (default: its share of the cores, so a server decodes one image "
        "per core, within half the memory available at start); each holds up to 16 bytes a pixel while "
        "decoded (a 4096² WebP: ~260 MB).",
    ),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", min=0.001, help="Seconds for a request's head to arrive (the connection is closed beyond)."
    ),
    body_timeout: float = typer.Option(
        30.0, "--body-timeout", min=0.001, help="Seconds for a request's body to arrive (408 beyond)."
    ),
    max_header_kb: float = typer.Option(
        16.0,
        "--max-header-kb",
        min=0.25,
        help="Size of a request's head: request line and headers (431 beyond, counted as it arrives).",
    ),
    max_header_line_kb: float = typer.Option(
        8.0, "--max-header-line-kb", min=0.0625, help="Size of one line of a request's head (431 beyond)."
    ),
    limit_concurrency: int = typer.Option(
        1024,
        "--limit-concurrency",
        min=1,
        help="Per worker process: open connections (the new one included) or requests in flight beyond which a "
        "request is answered 503 at once.",
    ),
    shutdown_timeout: float = typer.Option(
        30.0,
        "--shutdown-timeout",
        min=0.001,
        help="SIGTERM: seconds in-flight requests get to finish; a worker process still alive 2 s later is killed (SIGKILL).",
    ),
    log_level: str = typer.Option("info", "--log-level", help=" | ".join(LOG_LEVELS)),
    ray: bool = typer.Option(
        False,
        "--ray",
        help="Serve as a Ray Serve application (the ray extra): replicas behind Ray's HTTP proxy (docs/scale-out.md).",
    ),
    replicas: Optional[int] = typer.Option(None, "--replicas", min=1, help="--ray: a fixed number of replicas (default 1)."),
    autoscale: Optional[str] = typer.Option(
        None, "--autoscale", help="--ray: MIN,MAX replicas, scaled by Ray on load (instead of --replicas)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="--ray: join this Ray cluster (e.g. auto, or HEAD:6379) instead of starting a local one."
    ),
    max_ongoing_requests: Optional[int] = typer.Option(
        None,
        "--max-ongoing-requests",
        min=1,
        help="--ray: requests one replica's app holds at once (default 128); more wait in the replica (or at Ray's"
        " proxy), up to --max-queue, then 503.",
    ),
    ray_cpus: Optional[float] = typer.Option(
        None, "--ray-cpus-per-replica", min=0.0, help="--ray: CPUs Ray reserves per replica (default 1)."
    ),
    ray_gpus: Optional[float] = typer.Option(
        None, "--ray-gpus-per-replica", min=0.0, help="--ray: GPUs Ray reserves per replica (default 0; 1 for a GPU backend)."
    ),
    ray_ingress: Optional[str] = typer.Option(
        None,
        "--ray-ingress",
        help="--ray: haproxy (default: HAProxy on --port in front of the replicas' own HTTP servers) | direct "
        "(each replica's own port, for an external load balancer) | proxy (Ray's Python proxy); "
        "docs/scale-out.md.",
    ),
) -> None:
    """Serve every model directory in REPO over the Open Inference Protocol v2 and /v1/classify.
    torch is never imported unless --backend torch or torch-compile is chosen."""
    if ray and ray_address is None:  # a local cluster, on loopback when the server is: set before ray is imported
        from prelu_deploy.serve.ray.options import local_cluster_env

        os.environ.update(local_cluster_env(host))
    if ray and grpc_port:
        raise UsageError("--grpc-port: not with --ray (Ray's proxy serves HTTP only); leave it out or give 0")
    grpc_port = (0 if ray else 8001) if grpc_port is None else grpc_port
    from prelu_deploy.serve.ray.options import from_cli as ray_cli_options
    from prelu_deploy.serve.repository.control import options as control_options

    control_settings = control_options(model_control, load_model or [], ray, poll_interval=poll_interval)
    ray_options = ray_cli_options(
        ray, replicas, autoscale, ray_address, max_ongoing_requests, ray_cpus, ray_gpus, max_queue, ray_ingress
    )
    if ray_options is not None and workers is not None:
        raise UsageError("--workers: not with --ray (each replica is one process; choose --replicas or --autoscale)")
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if log_level not in LOG_LEVELS:
        raise UsageError(f"--log-level {log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
    if repo is not None and not repo.is_dir():
        raise UsageError(f"{repo}: no such model repository (make one with `prelu-deploy export`)")
    from prelu_deploy.runners.device import check_device

    check_device(backend, device)
    from prelu_deploy.serve.workers import processes as procs

    layout = None
    if ray_options is None:
        if workers is None and device != "cpu":
            workers = 1  # one process per GPU: a CUDA context (and its memory) per worker would buy nothing
        layout = procs.plan(usable_cores(), workers, instances, threads)
    procs.configure_logging(log_level)
    from prelu_deploy.serve.addresses import exposure_warning
    from prelu_deploy.serve.api import auth as tokens

    token_settings = tokens.resolve(api_token, api_token_file, auth, host, model_control)  # exit 2 before listening
    if warning := exposure_warning(host, auth, bool(token_settings["api_token_sha256"])):
        logging.getLogger("prelu_deploy.serve").warning(warning)
    if ray_address is None:
        socks = procs.listen(host, port, layout.workers if layout else 1)  # before any model loads: a taken port fails at once
        if ray_options is not None:
            socks[0].close()  # the local cluster's proxy will listen there: only checked free
    if grpc_port:
        from prelu_deploy.serve.api.services import check_grpc_port

        check_grpc_port(host, grpc_port)  # each worker binds it once its models are loaded

    from prelu_deploy.serve.repository.bundled import bundled_repository
    from prelu_deploy.serve.api.images import default_decodes
    from prelu_deploy.serve.settings import Settings

    common = dict(
        repo=repo or bundled_repository(),
        backend=backend,
        device=device,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue=max_queue,
        max_images=max_images,
        max_body_bytes=field_value("max_body_mb", max_body_mb),
        max_pixels=max_pixels,
        header_timeout_s=header_timeout,
        max_request_pixels=max_request_pixels,
        max_decodes=max_decodes or (default_decodes(usable_cores(), layout.workers, max_pixels) if layout else 1),
        body_timeout_s=body_timeout,
        max_header_bytes=field_value("max_header_kb", max_header_kb),
        max_header_line_bytes=field_value("max_header_line_kb", max_header_line_kb),
        limit_concurrency=limit_concurrency,
        shutdown_timeout_s=shutdown_timeout,
        host=host,
        grpc_port=grpc_port,
        **token_settings,
        **control_settings,
    )
    control_options(model_control, load_model or [], ray, common["repo"])  # each --load-model is there
    if ray_options is not None:  # each replica is one process: its threads default to the CPUs Ray reserves for it
        from prelu_deploy.serve.ray.driver import serve_on_ray

        settings = Settings(**common, instances=instances, threads=threads)
        return serve_on_ray(settings.repo, settings, ray_options, host, port, ray_address, log_level)
    shared = tempfile.mkdtemp(prefix="prelu-deploy-control-") if model_control == "explicit" and layout.workers > 1 else None
    settings = Settings(
        **common,
        instances=layout.instances,
        threads=layout.threads,
        lone_threads=layout.lone_threads,
        workers=layout.workers,
        control_dir=shared,
    )  # shared: loads reach every worker (serve.repository.relay)
    logging.getLogger("prelu_deploy.serve").info(
        "http://%s:%d%s: %s (--workers, --instances, --threads)",
        host,
        socks[0].getsockname()[1],
        f", gRPC on :{grpc_port}" if grpc_port else "",
        layout,
    )
    try:
        procs.run(settings, socks, layout.workers, log_level)
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
