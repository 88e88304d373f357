"""`prelu-deploy serve`: every model directory of a repository over HTTP."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    repo: Optional[Path] = typer.Argument(None, help="Model repository (default: the bundled digits model, exported into a cache on first use)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    backend: str = typer.Option("auto", "--backend", help="auto (tensorrt for plan entries, else onnxruntime) | onnxruntime | tensorrt | torch"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="Rows gathered into one runner call."),
    max_queue_delay_ms: float = typer.Option(2.0, "--max-queue-delay-ms", min=0.0, help="How long a request waits for company."),
    max_queue: int = typer.Option(512, "--max-queue", min=1, help="Queued rows per model before 503 + Retry-After."),
    instances: int = typer.Option(1, "--instances", min=1, help="Runner instances per model (each its own session/engine and thread): concurrent runner calls."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runner threads."),
    max_images: int = typer.Option(64, "--max-images", min=1, help="Images in one classify request."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", min=0.001, help="Request body limit (413 beyond)."),
    max_pixels: int = typer.Option(4096 * 4096, "--max-pixels", min=1, help="Pixels per decoded image (413 beyond)."),
    log_level: str = typer.Option("info", "--log-level", help="critical | error | warning | info | debug"),
) -> None:
    """Serve every model directory in REPO over the Open Inference Protocol v2 and /v1/classify.
    torch is never imported unless --backend torch is chosen."""
    import logging

    import uvicorn

    from prelu_deploy.serve.app import create_app
    from prelu_deploy.serve.bundled import bundled_repository
    from prelu_deploy.serve.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    settings = Settings(repo=repo or bundled_repository(), backend=backend, max_batch_size=max_batch_size,
                        max_queue_delay_ms=max_queue_delay_ms, max_queue=max_queue, instances=instances, threads=threads,
                        max_images=max_images, max_body_bytes=int(max_body_mb * (1 << 20)), max_pixels=max_pixels)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
