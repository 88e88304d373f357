"""`prelu-deploy bench MODEL_DIR|ARCH` (runners in this process) and `prelu-deploy bench http URL`
(a running server). Both print a table and write JSON + Markdown (+ PNG with --plot) reports."""

import json
import os
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from prelu_deploy.errors import BenchError, UsageError

console = Console()
err_console = Console(stderr=True)


class _RunnersByDefault(TyperGroup):
    """`bench X` means `bench runners X` unless X is a subcommand: the common case stays short."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["runners", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(cls=_RunnersByDefault, no_args_is_help=True, add_completion=False,
                        help="Latency and throughput: runners in this process (bench MODEL_DIR|ARCH), a running server (bench "
                             "http URL), or our server beside a hand-written one (bench serving REPO).")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    app.command("gpu-check")(gpu_check)


def gpu_check(
    out: Path = typer.Option(Path("gpu-check"), "--out", help="Folder for gpu-check.md and gpu-check.json."),
    only: str = typer.Option(",".join(("tests", "sweep", "kernel", "http")), "--only", help="Comma list of phases: tests | "
                                                                                            "sweep | kernel | http."),
    layouts: str = typer.Option("1,2,4,default", "--layouts", help="HTTP phase: comma list of --workers counts, and 'default' "
                                                                   "(serve's own choice)."),
    budget: float = typer.Option(345.0, "--budget", min=30.0, help="Seconds for the whole check; each phase gets what is left."),
) -> None:
    """Is this toolkit right and fast on this GPU host? Runs every gpu-marked test, the in-process sweep
    (backends × precisions × batch 1/32/256 and the settings they offer), the PReLU kernel against a
    device-to-device copy, and HTTP against the floor model for several worker layouts; writes one
    Markdown report and its JSON with the goals met or missed. Without an NVIDIA GPU: says so, exits 0.
    Exits 8 when a GPU test failed."""
    from prelu_deploy.bench import gpu_check as check

    cfg = check.GpuCheck(out=out, phases=tuple(_list("--only", only)), layouts=tuple(_list("--layouts", layouts)),
                         budget_s=budget)
    cfg.check()
    if not check.gpu_present():
        console.print(check.no_gpu_message(), highlight=False, markup=False)
        return
    out = _out_dir(out, False)
    report, paths = check.run(cfg, log=lambda msg: err_console.print(msg, highlight=False))
    for key, goal in report["goals"].items():
        if key != "fastest":
            console.print(f"{'[green]met[/]' if goal['met'] else '[yellow]not met[/]'} {key}: {goal['numbers']}", highlight=False)
    for p in paths:
        console.print(f"wrote {p}", highlight=False)
    if report["goals"].get("tests", {}).get("met") is False:
        raise BenchError("a GPU test failed (see the report)")


def _list(option: str, value: str, kind=str) -> list:
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a comma-separated list of {kind.__name__}s") from None
    if not items:
        raise UsageError(f"{option}: give at least one value")
    return list(dict.fromkeys(items))


def _out_dir(out: Path, plot: bool) -> Path:
    """Refuse before the run, not after it: an unwritable report folder, or --plot without matplotlib."""
    from prelu_deploy.bench.report import check_plotting

    existing = next(p for p in [out, *out.absolute().parents] if p.exists())  # made when the reports are written
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--out {out}: cannot create the report folder ({existing} is not a writable folder)")
    if plot:
        check_plotting()
    return out


def _finish(report: dict, raw: dict, out: Path, plot: bool, as_json: bool, table: Table, markdown=None) -> None:
    from prelu_deploy.bench.report import environment, write

    report.update(environment())
    paths = write(report, raw, out, plot, markdown)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(table)
        for p in paths:
            console.print(f"wrote {p}", highlight=False)


OutOpt = typer.Option(Path("bench-reports"), "--out", help="Folder for the JSON, Markdown and PNG reports.")
PlotOpt = typer.Option(False, "--plot", help="Also write PNG charts (needs matplotlib: the 'bench' extra).")
JsonOpt = typer.Option(False, "--json", help="Print the JSON report instead of the table.")
# the load options `bench http` and `bench serving` share
ConcurrencyOpt = typer.Option("1,8,64", "--concurrency", help="Comma list of concurrent clients per level.")
DataOpt = typer.Option("random", "--data", help="random | a .npy/.npz of input tensors (e.g. a model directory's golden.npz) "
                                                "| a folder of images (sent one per request to /v1/models/NAME/classify).")


@bench_app.command("runners")
def runners(
    target: str = typer.Argument(..., help="A model directory (from export or build), or an architecture name (built "
                                           "He-initialised)."),
    backend: str = typer.Option("torch,onnxruntime", "--backend", help="Comma list of torch | torch-compile | onnxruntime | "
                                                                       "tensorrt (needs a GPU)."),
    prelu_mode: Optional[str] = typer.Option(None, "--prelu-mode", help="Comma list of native | plugin | leaky (default: the "
                                                                        "directory's own; native for an architecture). Others "
                                                                        "are re-exported from the source checkpoint."),
    precision: str = typer.Option("fp32", "--precision", help="Comma list of fp32 (TF32 off on a GPU) | tf32 (--device cuda: "
                                                              "ONNX Runtime, torch) | fp16 (TensorRT; ONNX Runtime on --device "
                                                              "cuda) | int8 (ONNX Runtime: a QDQ graph, quantized on demand)."),
    batch: str = typer.Option("1,8,32", "--batch", help="Comma list of batch sizes."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Candidate (e.g. onnxruntime:native) or backend the ratios "
                                                                    "are against (default: torch, else the first)."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Warm-up calls per candidate (at least)."),
    warmup_s: float = typer.Option(0.5, "--warmup-s", min=0.0, help="Warm-up seconds (at least)."),
    runs: int = typer.Option(50, "--runs", min=1, help="Measured calls per candidate (at least)."),
    duration: float = typer.Option(2.0, "--duration", min=0.0, help="Measured seconds per batch size (at least)."),
    max_runs: int = typer.Option(100_000, "--max-runs", min=1, help="Measured calls per candidate (at most)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads of ONNX Runtime and torch (default: theirs)."),
    device: str = typer.Option("cpu", "--device", help="Where the torch and ONNX Runtime candidates run: cpu | cuda[:N] (ONNX "
                                                       "Runtime's CUDA provider: the gpu extra)."),
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
        backends=_list("--backend", backend), lowerings=_list("--prelu-mode", prelu_mode) if prelu_mode else None,
        precisions=tuple(_list("--precision", precision)), batches=tuple(_list("--batch", batch, int)), baseline=baseline,
        warmup=warmup, warmup_s=warmup_s, runs=runs, duration_s=duration, max_runs=max_runs, threads=threads, device=device,
        act=act, width=width, input_size=input_size)
    cfg.check()
    out = _out_dir(out, plot)
    report, raw = bench_runners.run(target, cfg, log=lambda msg: err_console.print(msg, highlight=False))
    t = Table(title=f"{report['model']}: speed-up vs {report['baseline']}")
    for col in ("batch", "candidate", "median ms", "p99 ms", "images/s", "speed-up", "GFLOP/s", "of GEMM", "max abs diff", "CV"):
        t.add_column(col, justify="left" if col == "candidate" else "right")
    for r in report["results"]:
        t.add_row(str(r["batch"]), r["label"], f"{r['median_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['throughput']:.0f}",
                  f"{r['speedup_vs_baseline']:.2f}×", f"{r['gflops']:.2f}" if "gflops" in r else "–",
                  f"{r['gemm_fraction']:.1%}" if "gflops" in r else "–", f"{r['max_abs_diff_vs_baseline']:.1e}",
                  f"[yellow]{r['cv']:.2f} high[/]" if r["high_cv"] else f"{r['cv']:.2f}")
    _finish(report, raw, out, plot, as_json, t)


@bench_app.command("http")
def http(
    url: str = typer.Argument(..., help="Server base URL, e.g. http://127.0.0.1:8000 (--protocol grpc: host:port, e.g. "
                                        "127.0.0.1:8001); loopback only unless --allow-remote."),
    model: str = typer.Option(..., "--model", help="Model name on the server."),
    protocol: str = typer.Option("http", "--protocol", help="http (Open Inference Protocol v2 REST) | grpc (KServe v2 gRPC: "
                                                            "ModelInfer, raw tensors)."),
    concurrency: str = ConcurrencyOpt,
    duration: float = typer.Option(5.0, "--duration", help="Measured seconds per level (at most)."),
    warmup: float = typer.Option(1.0, "--warmup", help="Unmeasured seconds of load before each level."),
    max_requests: int = typer.Option(100_000, "--max-requests", help="Measured requests per level (at most)."),
    batch: int = typer.Option(1, "--batch", help="Rows per request (tensors)."),
    data: str = DataOpt,
    encoding: str = typer.Option("binary", "--encoding", help="binary (binary tensor extension) | json."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds before a request counts as a timeout."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a server that is not on this machine."),
    out: Path = OutOpt,
    plot: bool = PlotOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Drive an Open Inference Protocol v2 server at each concurrency level: p50/p90/p99 latency,
    throughput and errors by status code. Exits 8 if the server is unreachable or a level had no success."""
    from prelu_deploy.bench import http_load as bench_http

    cfg = bench_http.HttpBench(model=model, concurrency=tuple(_list("--concurrency", concurrency, int)), duration_s=duration,
                               warmup_s=warmup, max_requests=max_requests, batch=batch, data=data, encoding=encoding,
                               timeout_s=timeout, allow_remote=allow_remote)
    cfg.check()
    if protocol not in ("http", "grpc"):
        raise UsageError(f"--protocol {protocol!r}: http or grpc")
    out = _out_dir(out, plot)
    if protocol == "grpc":
        from prelu_deploy.bench import grpc_load as bench_http  # noqa: F811 (the same run(), over gRPC)
    report, raw = bench_http.run(url, cfg, log=lambda msg: err_console.print(msg, highlight=False))
    t = Table(title=f"{model} at {url}: {report['workload']}")
    for col in ("concurrency", "requests", "ok", "errors", "p50 ms", "p90 ms", "p99 ms", "requests/s", "images/s", "thr. CV",
                "gen. CPU"):
        t.add_column(col, justify="right")
    for lv in report["levels"]:
        lat = lv["latency"]
        errors = ", ".join(f"{k} ×{v}" for k, v in lv["errors"].items()) or "0"
        t.add_row(str(lv["concurrency"]), str(lv["requests"]), str(lv["ok"]), f"[red]{errors}[/]" if lv["errors"] else errors,
                  *(f"{lat[k]:.2f}" if k in lat else "–" for k in ("median_ms", "p90_ms", "p99_ms")),
                  f"{lv['throughput_rps']:.0f}", f"{lv['images_per_s']:.0f}",
                  "–" if lv["throughput_cv"] is None
                  else f"{lv['throughput_cv']:.2f}" + ("" if lv["stable"] else " [yellow]unstable[/]"),
                  f"{lv['client_cpu']:.2f}")
    _finish(report, raw, out, plot, as_json, t)
    if failed := [lv["concurrency"] for lv in report["levels"] if lv["ok"] == 0]:
        first = next(lv for lv in report["levels"] if lv["ok"] == 0)
        raise BenchError(f"no request succeeded at concurrency {', '.join(map(str, failed))} "
                         f"({', '.join(f'{k} ×{v}' for k, v in first['errors'].items()) or 'none sent'}); report written")


@bench_app.command("serving")
def serving(
    repo: Path = typer.Argument(..., help="Model repository (from export) holding the model directory to serve."),
    model: str = typer.Option(..., "--model", help="Model name (its folder in REPO); an ONNX entry."),
    concurrency: str = ConcurrencyOpt,
    duration: float = typer.Option(5.0, "--duration", help="Measured seconds per level and server (at most)."),
    warmup: float = typer.Option(1.0, "--warmup", help="Unmeasured seconds of load before each measurement."),
    max_requests: int = typer.Option(100_000, "--max-requests", help="Measured requests per level and server (at most)."),
    data: str = DataOpt,
    serve_args: str = typer.Option("", "--serve-args", help="Extra `prelu-deploy serve` options for our server, e.g. '--workers "
                                                            "1'."),
    baseline_threads: Optional[int] = typer.Option(None, "--baseline-threads", min=1, help="ONNX Runtime threads of the "
                                                                                           "baseline (default: ONNX Runtime's, "
                                                                                           "within the cores this process may "
                                                                                           "use)."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Rounds per level, the servers alternating (ours, baseline, ours, …); "
                                                          "requests/s is the median round's."),
    out: Path = OutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """`prelu-deploy serve` beside a hand-written FastAPI + ONNX Runtime server (bench/baseline_server.py),
    both started here on loopback ports, the same requests at each level, with the in-process rates of
    the graph and the serving goals checked. Exits 8 if a server does not start or a level had no success."""
    import shlex

    from prelu_deploy.bench import http_load
    from prelu_deploy.bench import serving as bench_serving

    cfg = bench_serving.ServingBench(
        http_load.HttpBench(model=model, concurrency=tuple(_list("--concurrency", concurrency, int)), duration_s=duration,
                            warmup_s=warmup, max_requests=max_requests, data=data),
        serve_args=shlex.split(serve_args), baseline_threads=baseline_threads, rounds=rounds)
    cfg.http.check()
    out = _out_dir(out, False)
    report, raw = bench_serving.run(repo, cfg, log=lambda msg: err_console.print(msg, highlight=False))
    t = Table(title=f"{model}: prelu-deploy serve {serve_args} beside the hand-written baseline")
    for col in ("concurrency", "server", "errors", "p50 ms", "p99 ms", "requests/s", "ours / baseline", "CPU",
                "CPU ms/req", "gen. CPU"):
        t.add_column(col, justify="right")
    for lv in report["levels"]:
        for name in bench_serving.SERVERS:
            s = lv[name]
            errors = ", ".join(f"{k} ×{v}" for k, v in s["errors"].items()) or "0"
            t.add_row(str(lv["concurrency"]), name, f"[red]{errors}[/]" if s["errors"] else errors,
                      *(f"{s['latency'][k]:.2f}" if k in s["latency"] else "–" for k in ("median_ms", "p99_ms")),
                      f"{s['throughput_rps']:.0f}",
                      "" if name == "ours" else f"{lv['ratio']:.2f}×",
                      *(bench_serving.two_decimals(s.get(k)) for k in ("server_cpu", "server_cpu_ms")), f"{s['client_cpu']:.2f}")
    _finish(report, raw, out, False, as_json, t, bench_serving.markdown)
    for g in report["goals"]:
        console.print(f"concurrency {g['concurrency']}: {'[green]met[/]' if g['met'] else '[yellow]not met[/]'} — {g['goal']}: "
                      f"{g['numbers']}", highlight=False)
    if failed := [lv["concurrency"] for lv in report["levels"] if not all(lv[n]["ok"] for n in bench_serving.SERVERS)]:
        raise BenchError(f"a server answered no request at concurrency {', '.join(map(str, failed))}; report written")
