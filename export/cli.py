"""`prelu-deploy export`: checkpoint → model directory."""

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from prelu_deploy.errors import UsageError

console = Console()


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("build")(build)
    app.command("quantize")(quantize)


def export(
    ckpt: Path = typer.Argument(..., help="Checkpoint (.safetensors or PyTorch file)."),
    name: str = typer.Option(..., "--name", help="Model name: the folder under --repo and the served name."),
    repo: Path = typer.Option(Path("model_repository"), "--repo", help="Model repository (Triton layout)."),
    prelu_mode: str = typer.Option(
        "leaky",
        "--prelu-mode",
        help="leaky (LeakyRelu: the same function, fused into the conv by "
        "runtimes; the fast default) | native (PRelu) | plugin "
        "(ChannelSharedPReLU custom op).",
    ),
    opset: int = typer.Option(18, "--opset", min=18, help="ONNX opset of the graph."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Triton max_batch_size; the graph's batch stays dynamic."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model directory (with --version: that version)."),
    version: Optional[str] = typer.Option(
        None,
        "--version",
        help="Write this version of the model (N, or 'next': one past its "
        "newest) beside its others, in N/ (Triton's version folders).",
    ),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="Architecture of a bare state dict (checkpoints made here record it)."
    ),
    fit: Optional[str] = typer.Option(
        None,
        "--fit",
        help="How an image becomes the input: stretch | center_crop | ink_box (default: the checkpoint's record, else stretch).",
    ),
    mean: Optional[str] = typer.Option(
        None,
        "--mean",
        help="Per-channel mean, comma-separated, pixels in 0..1 (default: the checkpoint's record, else the architecture's).",
    ),
    std: Optional[str] = typer.Option(None, "--std", help="Per-channel std, comma-separated (default: as --mean)."),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Class names, comma-separated, in output order (default: the checkpoint's, else 0, 1, …)."
    ),
) -> None:
    """Export a checkpoint to <repo>/<name>/: ONNX graph, manifest with golden I/O, Triton config."""
    from prelu_deploy.export.model_dir import export_model_dir

    preprocess = {
        k: v for k, v in {"fit": fit, "mean": _floats("--mean", mean), "std": _floats("--std", std)}.items() if v is not None
    }
    dest = export_model_dir(
        ckpt, name, repo, prelu_mode, opset, max_batch, force, version, arch, preprocess, labels.split(",") if labels else None
    )
    e = _written(dest, version)
    console.print(
        f"exported {e.source.arch} → [bold]{dest}[/] version {e.number} (lowering {prelu_mode}: "
        f"{e.shared_prelu_count} channel-shared "
        f"of {len(e.prelu_layers)} PReLU layers, {e.golden_count} golden inputs)",
        highlight=False,
    )
    if why := e.golden.get("no_held_out"):
        console.print(
            f"note: no held-out images in the golden I/O ({why}): its rows are crafted inputs only, so "
            "`quantize` refuses this entry (INT8 is judged on real images)",
            highlight=False,
        )


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} {text!r}: comma-separated numbers, e.g. 0.5 or 0.485,0.456,0.406") from None


def build(
    model_dir: Path = typer.Argument(..., help="Model directory made by `prelu-deploy export`."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16"),
    min_batch: int = typer.Option(1, "--min-batch", min=1),
    opt_batch: Optional[int] = typer.Option(None, "--opt-batch", min=1, help="Default: min(8, max)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="Default: the manifest's max_batch_size."),
    workspace: Optional[int] = typer.Option(None, "--workspace", min=1, help="Workspace memory limit in MB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Read and update this timing cache file."),
    target_cc: Optional[list[str]] = typer.Option(None, "--target-cc", help="Target compute capability, e.g. 8.6 (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing <name>_trt entry (with --version: that version)."),
    version: Optional[str] = typer.Option(
        None, "--version", help="Write this version of <name>_trt (N, or 'next') beside its others."
    ),
) -> None:
    """Build a TensorRT plan from the model directory's ONNX graph into a sibling <name>_trt/ entry."""
    from prelu_deploy.export.build import build_plan

    dest = build_plan(
        model_dir, precision, min_batch, opt_batch, max_batch, workspace, timing_cache, target_cc, force, version=version
    )
    t = _written(dest, version).tensorrt
    plugin = f"; ChannelSharedPReLU via {t.plugin_path}" if t.plugin else ""
    console.print(
        f"built {t.flavour} {t.version} {t.precision} plan → [bold]{dest}[/] "
        f"(batch {t.profile.min}/{t.profile.opt}/{t.profile.max}, "
        f"targets {', '.join(t.target_compute_capabilities)}, {t.build_seconds:.2f} s{plugin})",
        highlight=False,
    )


def quantize(
    model_dir: Path = typer.Argument(..., help="An fp32 ONNX model directory made by `prelu-deploy export`."),
    calibration: Optional[str] = typer.Option(
        None,
        "--calibration",
        help="'digits' or an image folder (default: the checkpoint's dataset); its training images calibrate.",
    ),
    n: int = typer.Option(512, "--n", min=1, help="Calibration images."),
    method: str = typer.Option("minmax", "--method", help="minmax | entropy | percentile"),
    per_channel: bool = typer.Option(
        False, "--per-channel", help="Per-channel weight scales (per-tensor by default: faster on this CPU)."
    ),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="An ONNX node to keep in float (repeatable)."),
    tensorrt: bool = typer.Option(
        False,
        "--tensorrt",
        help="A graph TensorRT can build (int8 symmetric activations, float biases) for `prelu-deploy build`.",
    ),
    auto_exclude: bool = typer.Option(
        False,
        "--auto-exclude",
        help="Keep the modules that drift most from fp32 in float until the INT8 tolerance holds on the held-out split.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing <name>_int8 entry (with --version: that version)."),
    version: Optional[str] = typer.Option(
        None, "--version", help="Write this version of <name>_int8 (N, or 'next') beside its others."
    ),
) -> None:
    """INT8 with calibration on real images: a QDQ graph from onnxruntime.quantization in a sibling <name>_int8/ entry."""
    from prelu_deploy.export.quantize import quantize_entry

    dest = quantize_entry(
        model_dir,
        calibration,
        n,
        method,
        per_channel,
        exclude,
        force,
        auto_exclude=auto_exclude,
        tensorrt=tensorrt,
        version=version,
    )
    q = _written(dest, version).int8
    scores = q["held_out"]
    acc = f"; held-out accuracy {scores['accuracy_fp32']:.2%} → {scores['accuracy_int8']:.2%} on {scores['n']}" if scores else ""
    kept = f"; kept in float: {', '.join(q['auto_excluded_modules'])}" if q["auto_excluded_modules"] else ""
    console.print(
        f"quantized → [bold]{dest}[/] ({q['method']}, {q['calibration']['count']} calibration images from "
        f"{q['calibration']['source']}, {'per-channel' if per_channel else 'per-tensor'} "
        f"weights{acc}{kept})",
        highlight=False,
    )


def _written(dest: Path, version: str | None):
    """The version just written: the one named, or the newest (none named, or 'next')."""
    from prelu_deploy.manifest import read_entry

    return read_entry(dest, None if version in (None, "next") else int(version))
