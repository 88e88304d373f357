"""`prelu-deploy parity`: a runner against PyTorch on the same inputs."""

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from prelu_deploy.errors import ParityError, UsageError
from prelu_deploy.runners.registry import backends

CHOICES = " | ".join(backends())  # the registry's (cheap to import: the runners load when asked for)

console = Console()


def register(app: typer.Typer) -> None:
    app.command("parity")(parity)
    app.command("classify")(classify)


def classify(
    images: list[Path] = typer.Argument(..., help="Image files or folders of images."),
    model: str = typer.Option(
        "digits",
        "--model",
        help="A model directory (ONNX Runtime, or TensorRT for a plan), a "
        "checkpoint (torch), or the name of a bundled model, as `serve` "
        "serves it (default: digits, the bundled trained digits model).",
    ),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Labels per image."),
    backend: str = typer.Option("auto", "--backend", help=f"For a model directory: auto | {CHOICES}."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runner threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's /classify answer as JSON."),
) -> None:
    """Classify images without a server: the same preprocessing and answer as POST /v1/classify."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from prelu_deploy.models.data import IMAGE_SUFFIXES
    from prelu_deploy.runners.answers import classify_files

    files = []
    for p in images:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"{p}: no such image file or folder")
    if not files:
        raise UsageError(f"no images in {', '.join(map(str, images))} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    with Progress(
        TextColumn("classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=len(files) < 64 or as_json,
    ) as bar:
        task = bar.add_task("images", total=len(files))
        answer = classify_files(files, model, top_k, backend, threads, on_batch=lambda n: bar.advance(task, n))
    if as_json:
        typer.echo(json.dumps({"model": str(model), "predictions": answer}, indent=2))
        return
    t = Table("image", "label", "probability", "top-k")
    for p in answer:
        best = p["top_k"][0]
        t.add_row(
            p["filename"],
            best["label"],
            f"{best['probability']:.2%}",
            ", ".join(f"{c['label']} {c['probability']:.1%}" for c in p["top_k"][1:]),
        )
    console.print(t)


def parity(
    model_dir: Path = typer.Argument(..., help="Model directory made by `prelu-deploy export`."),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help=f"auto (the entry's own: tensorrt for a <name>_trt plan entry, else onnxruntime) | {CHOICES} (tensorrt: a GPU)",
    ),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="'digits' or an image folder (default: the checkpoint's)."),
    n: int = typer.Option(256, "--n", min=0, help="Held-out images to compare, besides the golden inputs."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="The source checkpoint, if it moved since export."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runner threads."),
    device: str = typer.Option(
        "cpu", "--device", help="cpu | cuda | cuda:N (ONNX Runtime's CUDA provider: the gpu extra; torch on CUDA)."
    ),
    precision: Optional[str] = typer.Option(
        None,
        "--precision",
        help="Default: the entry's own. On --device cuda: fp32 (TF32 off) | tf32 | fp16 (ONNX Runtime), fp32 | tf32 (torch).",
    ),
    per_layer: bool = typer.Option(
        False, "--per-layer", help="Also compare every layer's tensor with PyTorch's and name the first beyond tolerance."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Max/mean abs error, max rel error, cosine, top-1/top-5 agreement and accuracies vs PyTorch
    (float32 and float64); exits 7 when a tolerance is exceeded."""
    from prelu_deploy.precisions import RUN_PRECISIONS
    from prelu_deploy.runners.device import check_device
    from prelu_deploy.runners.parity import run_parity

    check_device(backend, device)  # before anything is loaded: a bad --device, or CUDA that is not here
    if precision is not None and precision not in RUN_PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(RUN_PRECISIONS)}")
    options = {"threads": threads, "device": device} | ({"precision": precision} if precision else {})
    report = run_parity(model_dir, backend, dataset, n, checkpoint, per_layer, **options)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    if not report["passed"]:
        failures = [f for o in report["outputs"].values() for f in o["failures"]]
        raise ParityError(f"{report['backend']} disagrees with PyTorch: " + "; ".join(failures))


def _print(report: dict) -> None:
    from prelu_deploy.runners.parity import TOLERANCES

    console.print(
        f"parity of [bold]{report['backend']}[/] on {report['model_dir']} (lowering {report['lowering']}): "
        f"{report['inputs']['held_out']} held-out + {report['inputs']['golden']} golden inputs",
        highlight=False,
    )
    neg = ", ".join(f"{k} {v:.0%}" for k, v in report["negative_fraction"].items())
    console.print(f"negative pre-activations per PReLU layer: {neg or 'no PReLU layers'}", highlight=False)
    for name, o in report["outputs"].items():
        console.print(
            f"{name}, {o['precision']} tolerance (logit scale {o['logit_scale']:.3g}): {TOLERANCES[o['precision']].describe()}",
            highlight=False,
            soft_wrap=True,
        )
        t = Table(show_header=False)
        for key in (
            "max_abs",
            "mean_abs",
            "max_rel",
            "max_abs_vs_torch_fp32",
            "torch_fp32_noise",
            "min_cosine",
            "top1_agreement",
            "top1_flips",
            "top1_flips_beyond_margin",
            "top5_overlap",
        ):
            t.add_row(
                key + (" (vs float64)" if key in ("max_abs", "mean_abs", "max_rel") else ""),
                f"{o[key]:.9f}" if key == "min_cosine" else f"{o[key]:.3g}" if isinstance(o[key], float) else str(o[key]),
            )
        console.print(t)
    if layers := report.get("per_layer"):
        t = Table("layer", "compared with", "shape", "max abs", "of scale", "min cosine", "")
        for r in layers["layers"]:
            t.add_row(
                r["layer"],
                r["compared_with"],
                "×".join(map(str, r["shape"])),
                f"{r['max_abs']:.3g}",
                f"{r['max_abs'] / r['scale']:.2e}",
                f"{r['min_cosine']:.6f}",
                "[red]beyond[/]" if r["beyond"] else "",
            )
        console.print(t)
        first = layers["first_beyond_tolerance"]
        console.print(
            f"first layer beyond tolerance: [bold]{first}[/]" if first else "every layer within tolerance", highlight=False
        )
    if acc := report.get("accuracy"):
        console.print(f"accuracy: runner {acc['runner']:.2%}, torch {acc['torch']:.2%}")
    console.print("[bold green]PASS[/]" if report["passed"] else "[bold red]FAIL[/]")
