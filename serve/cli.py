"""`prelu-deploy parity`: a runner against PyTorch on the same inputs."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from prelu_deploy.errors import ParityError

console = Console()


def register(app: typer.Typer) -> None:
    app.command("parity")(parity)
    app.command("serve")(serve)


def serve(
    repo: Optional[Path] = typer.Argument(None, help="Model repository (default: the bundled digits model, exported into a cache on first use)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    backend: str = typer.Option("auto", "--backend", help="auto (tensorrt for plan entries, else onnxruntime) | onnxruntime | tensorrt | torch"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="Rows gathered into one runner call."),
    max_queue_delay_ms: float = typer.Option(2.0, "--max-queue-delay-ms", min=0.0, help="How long a request waits for company."),
    max_queue: int = typer.Option(512, "--max-queue", min=1, help="Queued rows per model before 503 + Retry-After."),
    instances: int = typer.Option(1, "--instances", min=1, help="Concurrent runner calls per model."),
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


def parity(
    model_dir: Path = typer.Argument(..., help="Model directory made by `prelu-deploy export`."),
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime | tensorrt (a <name>_trt entry, GPU) | torch"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="'digits' or an image folder (default: the checkpoint's)."),
    n: int = typer.Option(256, "--n", min=0, help="Held-out images to compare, besides the golden inputs."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The source checkpoint, if it moved since export."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runner threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Max/mean abs error, max rel error, cosine, top-1/top-5 agreement and accuracies vs PyTorch
    (float32 and float64); exits 7 when a tolerance is exceeded."""
    from prelu_deploy.serve.parity import run_parity

    report = run_parity(model_dir, backend, dataset, n, checkpoint, threads=threads)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    if not report["passed"]:
        failures = [f for o in report["outputs"].values() for f in o["failures"]]
        raise ParityError(f"{report['backend']} disagrees with PyTorch: " + "; ".join(failures))


def _print(report: dict) -> None:
    console.print(f"parity of [bold]{report['backend']}[/] on {report['model_dir']} (lowering {report['lowering']}): "
                  f"{report['inputs']['held_out']} held-out + {report['inputs']['golden']} golden inputs", highlight=False)
    neg = ", ".join(f"{k} {v:.0%}" for k, v in report["negative_fraction"].items())
    console.print(f"negative pre-activations per PReLU layer: {neg or 'no PReLU layers'}", highlight=False)
    for name, o in report["outputs"].items():
        console.print(f"{name}, {o['precision']} tolerance: max abs ≤ {o['tolerance']['max_abs_of_scale']:g} × scale "
                      f"{o['logit_scale']:.3g}; cosine ≥ {o['tolerance']['min_cosine']}; no top-1 flip where "
                      f"PyTorch's margin > {o['tolerance']['margin_eps']:g} × scale", highlight=False, soft_wrap=True)
        t = Table(show_header=False)
        for key in ("max_abs", "mean_abs", "max_rel", "max_abs_vs_torch_fp32", "torch_fp32_noise", "min_cosine",
                    "top1_agreement", "top1_flips", "top1_flips_beyond_margin", "top5_overlap"):
            t.add_row(key + (" (vs float64)" if key in ("max_abs", "mean_abs", "max_rel") else ""),
                      f"{o[key]:.9f}" if key == "min_cosine" else f"{o[key]:.3g}" if isinstance(o[key], float) else str(o[key]))
        console.print(t)
    if acc := report.get("accuracy"):
        console.print(f"accuracy: runner {acc['runner']:.2%}, torch {acc['torch']:.2%}")
    console.print("[bold green]PASS[/]" if report["passed"] else "[bold red]FAIL[/]")
