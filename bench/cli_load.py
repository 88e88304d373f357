"""bench's load commands, which drive servers over the network: `bench http URL` (a running server, over
HTTP or gRPC) and `bench serving REPO` (`prelu-deploy serve` beside the hand-written baseline, both started
here). Registered by bench.cli."""

from pathlib import Path
from typing import Optional

import typer

from prelu_deploy.bench.cli_common import (
    ConcurrencyOpt,
    DataOpt,
    JsonOpt,
    OutOpt,
    PlotOpt,
    comma_list,
    console,
    error_cell,
    error_counts,
    finish,
    log,
    report_dir,
    table,
)
from prelu_deploy.errors import BenchError, UsageError


def http(
    url: str = typer.Argument(
        ...,
        help="Server base URL, e.g. http://127.0.0.1:8000 (--protocol grpc: host:port, e.g. "
        "127.0.0.1:8001); loopback only unless --allow-remote.",
    ),
    model: str = typer.Option(..., "--model", help="Model name on the server."),
    protocol: str = typer.Option(
        "http", "--protocol", help="http (Open Inference Protocol v2 REST) | grpc (KServe v2 gRPC: ModelInfer, raw tensors)."
    ),
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

    cfg = bench_http.HttpBench(
        model=model,
        concurrency=tuple(comma_list("--concurrency", concurrency, int)),
        duration_s=duration,
        warmup_s=warmup,
        max_requests=max_requests,
        batch=batch,
        data=data,
        encoding=encoding,
        timeout_s=timeout,
        allow_remote=allow_remote,
    )
    cfg.check()
    if protocol not in ("http", "grpc"):
        raise UsageError(f"--protocol {protocol!r}: http or grpc")
    out = report_dir(out, plot)
    if protocol == "grpc":
        from prelu_deploy.bench import grpc_load as bench_http  # noqa: F811 (the same run(), over gRPC)
    report, raw = bench_http.run(url, cfg, log=log)
    t = table(
        f"{model} at {url}: {report['workload']}",
        (
            "concurrency",
            "requests",
            "ok",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "requests/s",
            "images/s",
            "thr. CV",
            "gen. CPU",
        ),
    )
    for lv in report["levels"]:
        lat = lv["latency"]
        t.add_row(
            str(lv["concurrency"]),
            str(lv["requests"]),
            str(lv["ok"]),
            error_cell(lv["errors"]),
            *(f"{lat[k]:.2f}" if k in lat else "–" for k in ("median_ms", "p90_ms", "p99_ms")),
            f"{lv['throughput_rps']:.0f}",
            f"{lv['images_per_s']:.0f}",
            "–"
            if lv["throughput_cv"] is None
            else f"{lv['throughput_cv']:.2f}" + ("" if lv["stable"] else " [yellow]unstable[/]"),
            f"{lv['client_cpu']:.2f}",
        )
    finish(report, raw, out, plot, as_json, t)
    if failed := [lv["concurrency"] for lv in report["levels"] if lv["ok"] == 0]:
        first = next(lv for lv in report["levels"] if lv["ok"] == 0)
        raise BenchError(
            f"no request succeeded at concurrency {', '.join(map(str, failed))} "
            f"({error_counts(first['errors'], 'none sent')}); report written"
        )


def serving(
    repo: Path = typer.Argument(..., help="Model repository (from export) holding the model directory to serve."),
    model: str = typer.Option(..., "--model", help="Model name (its folder in REPO); an ONNX entry."),
    concurrency: str = ConcurrencyOpt,
    duration: float = typer.Option(5.0, "--duration", help="Measured seconds per level and server (at most)."),
    warmup: float = typer.Option(1.0, "--warmup", help="Unmeasured seconds of load before each measurement."),
    max_requests: int = typer.Option(100_000, "--max-requests", help="Measured requests per level and server (at most)."),
    data: str = DataOpt,
    serve_args: str = typer.Option(
        "", "--serve-args", help="Extra `prelu-deploy serve` options for our server, e.g. '--workers 1'."
    ),
    baseline_threads: Optional[int] = typer.Option(
        None,
        "--baseline-threads",
        min=1,
        help="ONNX Runtime threads of the baseline (default: ONNX Runtime's, within the cores this process may use).",
    ),
    rounds: int = typer.Option(
        1,
        "--rounds",
        min=1,
        help="Rounds per level, the servers alternating (ours, baseline, ours, …); requests/s is the median round's.",
    ),
    reference: float = typer.Option(
        3.0,
        "--reference",
        min=0.0,
        help="Seconds of in-process timing of the graph per batch size (1 and 32), before the servers start and "
        "after they stop (at least 50 calls): the rates the goals are judged against.",
    ),
    out: Path = OutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """`prelu-deploy serve` beside a hand-written FastAPI + ONNX Runtime server (bench/baseline_server.py),
    both started here on loopback ports, the same requests at each level, with the in-process rates of
    the graph and the serving goals checked. Exits 8 if a server does not start or a level had no success."""
    import shlex

    from prelu_deploy.bench import http_load
    from prelu_deploy.bench import serving as bench_serving
    from prelu_deploy.bench import serving_report

    cfg = bench_serving.ServingBench(
        http_load.HttpBench(
            model=model,
            concurrency=tuple(comma_list("--concurrency", concurrency, int)),
            duration_s=duration,
            warmup_s=warmup,
            max_requests=max_requests,
            data=data,
        ),
        serve_args=shlex.split(serve_args),
        baseline_threads=baseline_threads,
        rounds=rounds,
        reference_s=reference,
    )
    cfg.http.check()
    out = report_dir(out, False)
    report, raw = bench_serving.run(repo, cfg, log=log)
    t = table(
        f"{model}: prelu-deploy serve {serve_args} beside the hand-written baseline",
        ("concurrency", "server", "errors", "p50 ms", "p99 ms", "requests/s", "ours / baseline", "CPU", "CPU ms/req", "gen. CPU"),
    )
    for lv in report["levels"]:
        for name in serving_report.SERVERS:
            s = lv[name]
            t.add_row(
                str(lv["concurrency"]),
                name,
                error_cell(s["errors"]),
                *(f"{s['latency'][k]:.2f}" if k in s["latency"] else "–" for k in ("median_ms", "p99_ms")),
                f"{s['throughput_rps']:.0f}",
                "" if name == "ours" else f"{lv['ratio']:.2f}×",
                *(serving_report.two_decimals(s.get(k)) for k in ("server_cpu", "server_cpu_ms")),
                f"{s['client_cpu']:.2f}",
            )
    finish(report, raw, out, False, as_json, t, serving_report.markdown)
    for g in report["goals"]:
        console.print(
            f"concurrency {g['concurrency']}: {'[green]met[/]' if g['met'] else '[yellow]not met[/]'} — {g['goal']}: "
            f"{g['numbers']}",
            highlight=False,
        )
    if failed := [lv["concurrency"] for lv in report["levels"] if not all(lv[n]["ok"] for n in serving_report.SERVERS)]:
        raise BenchError(f"a server answered no request at concurrency {', '.join(map(str, failed))}; report written")
