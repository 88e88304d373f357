"""The `prelu-deploy bench` group and `prelu-deploy gpu-check`: `bench MODEL_DIR|ARCH` (runners in this
process) here, `bench http URL` and `bench serving REPO` in bench.cli_load. Each prints a table and
writes JSON + Markdown (+ PNG with --plot) reports."""

from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from prelu_deploy.bench.cli_common import JsonOpt, OutOpt, PlotOpt, comma_list, console, finish, log, report_dir, table
from prelu_deploy.bench.cli_load import http, serving
from prelu_deploy.errors import BenchError
from prelu_deploy.runners.registry import backends


class _RunnersByDefault(TyperGroup):
    """`bench X` means `bench runners X` unless X is a subcommand: the common case stays short."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["runners", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_RunnersByDefault,
    no_args_is_help=True,
    add_completion=False,
    help="Latency and throughput: runners in this process (bench MODEL_DIR|ARCH), a running server (bench "
    "http URL), or our server beside a hand-written one (bench serving REPO).",
)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    app.command("gpu-check")(gpu_check)


def gpu_check(
    out: Path = typer.Option(Path("gpu-check"), "--out", help="Folder for gpu-check.md and gpu-check.json."),
    only: str = typer.Option(
        ",".join(("tests", "sweep", "kernel", "http")), "--only", help="Comma list of phases: tests | sweep | kernel | http."
    ),
    layouts: str = typer.Option(
        "1,2,4,default", "--layouts", help="HTTP phase: comma list of --workers counts, and 'default' (serve's own choice)."
    ),
    budget: float = typer.Option(345.0, "--budget", min=30.0, help="Seconds for the whole check; each phase gets what is left."),
) -> None:
    """Is this toolkit right and fast on this GPU host? Runs every gpu-marked test, the in-process sweep
    (backends × precisions × batch 1/32/256 and the settings they offer), the PReLU kernel against a
    device-to-device copy, and HTTP against the floor model for several worker layouts; writes one
    Markdown report and its JSON with the goals met or missed. Without an NVIDIA GPU: says so, exits 0.
    Exits 8 when a GPU test failed."""
    from prelu_deploy.bench import gpu_check as check

    cfg = check.GpuCheck(
        out=out, phases=tuple(comma_list("--only", only)), layouts=tuple(comma_list("--layouts", layouts)), budget_s=budget
    )
    cfg.check()
    if not check.gpu_present():
        console.print(check.no_gpu_message(), highlight=False, markup=False)
        return
    out = report_dir(out, False)
    report, paths = check.run(cfg, log=log)
    for key, goal in report["goals"].items():
        if key != "fastest":
            console.print(f"{'[green]met[/]' if goal['met'] else '[yellow]not met[/]'} {key}: {goal['numbers']}", highlight=False)
    for p in paths:
        console.print(f"wrote {p}", highlight=False)
    if report["goals"].get("tests", {}).get("met") is False:
        raise BenchError("a GPU test failed (see the report)")


def runners(
    target: str = typer.Argument(
        ..., help="A model directory (from export or build), or an architecture name (built He-initialised)."
    ),
    backend: str = typer.Option(
        "torch,onnxruntime", "--backend", help=f"Comma list of {' | '.join(backends())} (tensorrt needs a GPU)."
    ),
    prelu_mode: Optional[str] = typer.Option(
        None,
        "--prelu-mode",
        help="Comma list of native | plugin | leaky (default: the "
        "directory's own; native for an architecture). Others "
        "are re-exported from the source checkpoint.",
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="Comma list of fp32 (TF32 off on a GPU) | tf32 (--device cuda: "
        "ONNX Runtime, torch) | fp16 (TensorRT; ONNX Runtime on --device "
        "cuda) | int8 (ONNX Runtime: a QDQ graph, quantized on demand).",
    ),
    batch: str = typer.Option("1,8,32", "--batch", help="Comma list of batch sizes."),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="Candidate (e.g. onnxruntime:native) or backend the ratios are against (default: torch, else the first).",
    ),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Warm-up calls per candidate (at least)."),
    warmup_s: float = typer.Option(0.5, "--warmup-s", min=0.0, help="Warm-up seconds (at least)."),
    runs: int = typer.Option(50, "--runs", min=1, help="Measured calls per candidate (at least)."),
    duration: float = typer.Option(2.0, "--duration", min=0.0, help="Measured seconds per batch size (at least)."),
    max_runs: int = typer.Option(100_000, "--max-runs", min=1, help="Measured calls per candidate (at most)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads of ONNX Runtime and torch (default: theirs)."),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="Where the torch and ONNX Runtime candidates run: cpu | cuda[:N] (ONNX Runtime's CUDA provider: the gpu extra).",
    ),
    act: str = typer.Option("prelu_shared", "--act", help="For an architecture: prelu_shared | prelu_channel | relu | leaky."),
    width: Optional[float] = typer.Option(None, "--width", min=0.01, help="For an architecture: scale every layer's width."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="For an architecture: square input side."),
    out: Path = OutOpt,
    plot: bool = PlotOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Backends × PReLU lowerings × batch sizes, interleaved in one process: latency percentiles,
    throughput, speed-ups against a baseline, output agreement, and a roofline against a dense GEMM."""
    from prelu_deploy.bench import runners as bench_runners

    cfg = bench_runners.RunnerBench(
        backends=comma_list("--backend", backend),
        lowerings=comma_list("--prelu-mode", prelu_mode) if prelu_mode else None,
        precisions=tuple(comma_list("--precision", precision)),
        batches=tuple(comma_list("--batch", batch, int)),
        baseline=baseline,
        warmup=warmup,
        warmup_s=warmup_s,
        runs=runs,
        duration_s=duration,
        max_runs=max_runs,
        threads=threads,
        device=device,
        act=act,
        width=width,
        input_size=input_size,
    )
    cfg.check()
    out = report_dir(out, plot)
    report, raw = bench_runners.run(target, cfg, log=log)
    columns = ("batch", "candidate", "median ms", "p99 ms", "images/s", "speed-up", "GFLOP/s", "of GEMM", "max abs diff", "CV")
    t = table(f"{report['model']}: speed-up vs {report['baseline']}", columns, left=("candidate",))
    for r in report["results"]:
        t.add_row(
            str(r["batch"]),
            r["label"],
            f"{r['median_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['throughput']:.0f}",
            f"{r['speedup_vs_baseline']:.2f}×",
            f"{r['gflops']:.2f}" if "gflops" in r else "–",
            f"{r['gemm_fraction']:.1%}" if "gflops" in r else "–",
            f"{r['max_abs_diff_vs_baseline']:.1e}",
            f"[yellow]{r['cv']:.2f} high[/]" if r["high_cv"] else f"{r['cv']:.2f}",
        )
    finish(report, raw, out, plot, as_json, t)


# the subcommands, in the order `bench --help` lists them
bench_app.command("runners")(runners)
bench_app.command("http")(http)
bench_app.command("serving")(serving)
