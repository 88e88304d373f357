"""`bench serving`'s verdict and report: each level judged by the goals below, and the Markdown report
(as bench/gpu_report.py is gpu-check's). Apart from bench.serving, which starts the servers and measures."""

from prelu_deploy.bench.report import machine_line, ms

SERVERS = ("ours", "baseline")  # the report's rows at each level, in this order


# What a `bench serving` run is judged by, named once (README and docs/benchmarks.md point here): a lone
# client must not pay for the server's batching, and under load the server must beat the hand-written
# baseline and keep most of what the runtime does in process.
LONE_P50_SLACK_MS = 0.5  # at 1 client: p50 within in-process batch-1 latency plus this
LOADED_VS_BASELINE = 1.15  # above 1 client: requests/s at least this × the baseline's
LOADED_VS_IN_PROCESS = 0.85  # above 1 client: at least this share of in-process batched images/s
GOALS = {
    "lone": f"req/s ≥ baseline; p50 ≤ in-process batch 1 + {LONE_P50_SLACK_MS} ms; 0 errors",
    "loaded": f"req/s ≥ {LOADED_VS_BASELINE}× baseline and ≥ {LOADED_VS_IN_PROCESS} of in-process batch-32 images/s; "
    "p99 ≤ baseline's; 0 errors",
}


def goals(levels: list[dict], ref: dict) -> list[dict]:
    """Each level judged by GOALS, with its numbers and whether this run met it."""
    batch1 = ref["batch_1"]["median_ms"]
    batched = max((v["throughput"] for k, v in ref.items() if k != "batch_1"), default=ref["batch_1"]["throughput"])
    out = []
    for lv in levels:
        ours, base, c = lv["ours"], lv["baseline"], lv["concurrency"]
        ok = not ours["errors"]
        ratio = lv["ratio"]
        if c == 1:
            p50 = ours["latency"].get("median_ms", float("inf"))
            out.append(
                {
                    "concurrency": c,
                    "goal": GOALS["lone"],
                    "numbers": f"{ratio:.2f}× baseline; p50 {p50:.2f} ms vs {batch1:.2f} + {LONE_P50_SLACK_MS} ms",
                    "met": ok and ratio >= 1 and p50 <= batch1 + LONE_P50_SLACK_MS,
                }
            )
        else:
            share = ours["throughput_rps"] / batched
            p99, base99 = ours["latency"].get("p99_ms", float("inf")), base["latency"].get("p99_ms", float("inf"))
            out.append(
                {
                    "concurrency": c,
                    "goal": GOALS["loaded"],
                    "numbers": f"{ratio:.2f}× baseline; {share:.2f} of {batched:.0f} images/s; p99 {p99:.1f} vs {base99:.1f} ms",
                    "met": ok and ratio >= LOADED_VS_BASELINE and share >= LOADED_VS_IN_PROCESS and p99 <= base99,
                }
            )
    return out


def markdown(r: dict) -> str:
    ref = r["in_process"]
    rows = [
        f"## `prelu-deploy bench serving`: {r['model']} in {r['target']}",
        "",
        machine_line(r) + " Servers and load generator share the machine; each one's CPU use is a column "
        "(1.0 = one core; a server's counts its worker processes).",
        "",
        f"Command: `{r['command']}`",
        "",
        *(f"- {n}: `{cmd} --port PORT`" for n, cmd in r["servers"].items()),
        "",
        "In process (ONNX Runtime defaults, nothing else running; the faster of a measurement before and one "
        f"after the servers ran{_seconds(r)}): "
        + "; ".join(f"{k.replace('_', ' ')}: p50 {ms(v['median_ms'])} ms, {v['throughput']:.0f} images/s" for k, v in ref.items())
        + ".",
        "",
        f"Workload: POST {r['endpoint']}, {r['workload']}; {r['settings']['warmup_s']:g} s warm-up, then "
        f"{r['settings']['duration_s']:g} s per server and level"
        + (
            f", in {r['settings']['rounds']} alternating rounds (requests/s: the median round's; ours / baseline: "
            "the median of the rounds' ratios)"
            if r["settings"].get("rounds", 1) > 1
            else ""
        )
        + ".",
        "",
        "| concurrency | server | ok | errors | p50 ms | p99 ms | requests/s | ours / baseline | server CPU | "
        "server CPU ms / request | generator CPU |",
        "|" + "---|" * 11,
    ]
    for lv in r["levels"]:
        ratio = f"{lv['ratio']:.2f}×"
        for name in SERVERS:
            s = lv[name]
            errors = ", ".join(f"{k} ×{v}" for k, v in s["errors"].items()) or "0"
            rows.append(
                f"| {lv['concurrency']} | {name} | {s['ok']} | {errors} | {ms(s['latency'].get('median_ms'))} | "
                f"{ms(s['latency'].get('p99_ms'))} | {s['throughput_rps']:.0f} | "
                f"{'' if name == 'ours' else ratio} | {two_decimals(s.get('server_cpu'))} | "
                f"{two_decimals(s.get('server_cpu_ms'))} | {s['client_cpu']:.2f} |"
            )
    rows += [
        "",
        "| concurrency | goal | this run | met |",
        "|---|---|---|---|",
        *(f"| {g['concurrency']} | {g['goal']} | {g['numbers']} | {'yes' if g['met'] else '**no**'} |" for g in r["goals"]),
    ]
    return "\n".join(rows) + "\n"


def _seconds(r: dict) -> str:
    """How long each in-process measurement ran (reports before --reference do not say)."""
    return f", {s:g} s per batch size each" if (s := r["settings"].get("reference_s")) is not None else ""


def two_decimals(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
