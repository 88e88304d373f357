"""gpu-check's report: one Markdown file and its JSON, with every number the check measured and which
goals hold. The goals live here, named once (GOALS), so the next GPU measurement is judged from the
same place the README and docs/gpu.md point at."""

import json
from pathlib import Path

from prelu_deploy.atomic import write_bytes
from prelu_deploy.bench.report import machine_line
from prelu_deploy.tolerances import TOLERANCES

GOALS = {
    "tests": "every gpu-marked test passes (a skip says what it needs)",
    "batch1": "batch 1, host array in → host logits out: ≤ 0.12 ms median on the best correct backend",
    "fp32_256": "batch 256, fp32 (TF32 off): ≥ 1.0× torch eager fp32's images/s",
    "tf32_256": "batch 256, tf32: ≥ 2.5× torch eager fp32's images/s",
    "fp16_256": "batch 256, fp16: ≥ 3.0× torch eager fp32's images/s",
    "no_cliff_32": "batch 32: each lower precision's best at least as fast as the higher one's (fp16 ≥ tf32 ≥ fp32)",
    "kernel": "the PReLU kernel moves ≥ 0.85× the bytes/s of a device-to-device copy at 256 MiB, exactly",
    "http_floor": "HTTP: the model's requests/s ≥ 0.8× the floor model's, at every concurrency, on every layout",
    "http_default": "HTTP: the default layout within 10 % of the best layout's requests/s at every concurrency",
    "grpc_http": "gRPC: the model's requests/s ≥ HTTP binary's (1.0×), at every concurrency, on every layout",
}
BASELINE = "torch:cuda"


def _correct(row: dict) -> bool:
    tol = TOLERANCES[row["precision"]].max_abs_of_scale
    return row["logit_scale"] == 0 or row["max_abs_diff_vs_baseline"] <= 2 * tol * row["logit_scale"]


def sweep_goals(sweep: dict) -> dict:
    """Each speed goal: met or not, with the numbers; the fastest correct candidate per precision and batch."""
    rows = [r for r in sweep.get("results", []) if _correct(r)]
    by = {(r["batch"], r["label"]): r for r in sweep.get("results", [])}
    best = {}
    for r in rows:
        key = (r["batch"], r["precision"])
        if key not in best or r["throughput"] > best[key]["throughput"]:
            best[key] = r
    out = {"fastest": {f"batch {b} {p}": r["label"] for (b, p), r in sorted(best.items())}}
    one = [r for r in rows if r["batch"] == 1]
    if one:
        top = min(one, key=lambda r: r["median_ms"])
        out["batch1"] = {"met": top["median_ms"] <= 0.12, "numbers": f"{top['label']}: {top['median_ms']:.3f} ms"}
    base = by.get((256, BASELINE))
    for precision, need in (("fp32", 1.0), ("tf32", 2.5), ("fp16", 3.0)):
        if base and (r := best.get((256, precision))):
            ratio = r["throughput"] / base["throughput"]
            out[f"{precision}_256"] = {
                "met": ratio >= need,
                "numbers": f"{r['label']}: {r['throughput']:,.0f} img/s, {ratio:.2f}× {BASELINE}",
            }
    if all((32, p) in best for p in ("fp32", "tf32", "fp16")):
        rate = {p: best[(32, p)]["throughput"] for p in ("fp32", "tf32", "fp16")}
        out["no_cliff_32"] = {
            "met": rate["fp16"] >= rate["tf32"] >= rate["fp32"],
            "numbers": ", ".join(f"{p} {v:,.0f}" for p, v in rate.items()) + " img/s",
        }
    return out


def http_goals(http: dict) -> dict:
    runs = [x for x in http.get("layouts", []) if x.get("ran")]
    if not runs:
        return {}
    ratios = [
        (x["layout"], m["concurrency"], m["throughput_rps"] / f["throughput_rps"] if f["throughput_rps"] else 0.0)
        for x in runs
        for m, f in zip(x["model"], x["floor"])
    ]
    worst = min(ratios, key=lambda t: t[2])
    out = {"http_floor": {"met": worst[2] >= 0.8, "numbers": f"lowest: {worst[2]:.2f} (--workers {worst[0]}, C={worst[1]})"}}
    grpc = [
        (x["layout"], h["concurrency"], g["throughput_rps"] / h["throughput_rps"] if h["throughput_rps"] else 0.0)
        for x in runs
        for h, g in zip(x["model"], x.get("grpc", []))
    ]
    if grpc:
        worst = min(grpc, key=lambda t: t[2])
        out["grpc_http"] = {"met": worst[2] >= 1.0, "numbers": f"lowest: {worst[2]:.2f}× (--workers {worst[0]}, C={worst[1]})"}
    default = next((x for x in runs if x["layout"] == "default"), None)
    if default:
        gaps = []
        for i, level in enumerate(default["model"]):
            top = max(runs, key=lambda x: x["model"][i]["throughput_rps"])
            gaps.append((level["concurrency"], level["throughput_rps"] / top["model"][i]["throughput_rps"], top["layout"]))
        worst = min(gaps, key=lambda g: g[1])
        out["http_default"] = {
            "met": worst[1] >= 0.9,
            "numbers": f"worst: {worst[1]:.2f} of --workers {worst[2]} at C={worst[0]}",
        }
    return out


def goals(report: dict) -> dict:
    p = report["phases"]
    out = {}
    if (t := p.get("tests", {})).get("ran"):
        out["tests"] = {
            "met": t["failed"] == 0 and t["passed"] > 0,
            "numbers": f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped",
        }
    if p.get("sweep", {}).get("ran"):
        out.update(sweep_goals(p["sweep"]))
    if (k := p.get("kernel", {})).get("ran"):
        big = [r for r in k["rows"] if r["mib"] >= 256]
        worst = min(big, key=lambda r: r["ratio"]) if big else None
        if worst:
            out["kernel"] = {
                "met": worst["ratio"] >= 0.85 and all(r["exact"] for r in k["rows"]),
                "numbers": f"lowest {worst['ratio']:.2f}× ({worst['dtype']}, {worst['mib']} MiB)",
            }
    if p.get("http", {}).get("ran"):
        out.update(http_goals(p["http"]))
    return out


def markdown(report: dict) -> str:
    g = report["goals"]
    lines = [
        f"# gpu-check: {report.get('gpu') or 'no GPU'}",
        "",
        machine_line(report) if "machine" in report else "",
        "",
        f"Command: `{report.get('command', 'prelu-deploy gpu-check')}`",
        "",
        "## Goals",
        "",
        "| goal | met | numbers |",
        "|---|---|---|",
    ]
    for key, text in GOALS.items():
        v = g.get(key)
        met = "–" if v is None else "yes" if v["met"] else "**no**"
        lines.append(f"| {text} | {met} | {v['numbers'] if v else 'not measured'} |")
    lines += [
        "",
        "Fastest correct candidate per batch and precision: " + "; ".join(f"{k}: `{v}`" for k, v in g.get("fastest", {}).items()),
        "",
    ]
    for name, phase in report["phases"].items():
        lines += [f"## {name} ({phase.get('seconds', 0):.0f} s)", ""]
        if not phase.get("ran"):
            lines += [f"Not run: {phase.get('why')}", ""]
            continue
        lines += _PHASES[name](phase) + [""]
    return "\n".join(lines)


def _tests_md(t: dict) -> list[str]:
    out = [
        f"`{t['command']}`: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped in {t['duration_s']:.0f} s.",
        "",
    ]
    out += [f"- FAILED `{f['test']}`: {f['message']}" for f in t["failures"]]
    out += [f"- skipped ×{n}: {why}" for why, n in t["skips"].items()]
    return out


def _sweep_md(s: dict) -> list[str]:
    out = [
        f"Baseline `{s['baseline']}` (torch eager fp32, TF32 off). Host array in → host logits out; medians of "
        "interleaved calls; max abs diff against the baseline's logits (a candidate beyond twice its precision's "
        "parity tolerance is not counted as correct).",
        "",
        "| batch | candidate | median ms | p99 ms | images/s | vs baseline | max abs diff / scale |",
        "|---" * 7 + "|",
    ]
    for r in s["results"]:
        rel = r["max_abs_diff_vs_baseline"] / r["logit_scale"] if r["logit_scale"] else 0.0
        out.append(
            f"| {r['batch']} | `{r['label']}` | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {r['throughput']:,.0f} | "
            f"{r['speedup_vs_baseline']:.2f}× | {rel:.1e}{'' if _correct(r) else ' **beyond tolerance**'} |"
        )
    if b := s.get("batch1_breakdown"):
        out += [
            "",
            f"Batch 1 on `onnxruntime:cuda:tf32`, median of {b['runs']} calls: staging {b['stage']:.3f} ms, "
            f"host→device {b['h2d']:.3f} ms, graph replay + wait {b['run']:.3f} ms, device→host {b['d2h']:.3f} ms.",
        ]
    return out


def _kernel_md(k: dict) -> list[str]:
    out = ["| dtype | MiB | kernel ms | copy ms | kernel GB/s | copy GB/s | kernel / copy | exact |", "|---" * 8 + "|"]
    out += [
        f"| {r['dtype']} | {r['mib']} | {r['kernel_ms']:.3f} | {r['copy_ms']:.3f} | {r['kernel_gbs']:,.0f} | "
        f"{r['copy_gbs']:,.0f} | {r['ratio']:.2f} | {r['exact']} |"
        for r in k["rows"]
    ]
    return out


def _http_md(h: dict) -> list[str]:
    out = [
        f"`{h['model']}` beside `{h['floor']}` (no work), binary FP32 tensors of the model's golden rows.",
        "",
        "The model over gRPC on the same server: its requests/s, p50 and its ratio to HTTP binary's.",
        "",
        "| layout | C | model req/s | p50 ms | p99 ms | floor req/s | model / floor | gRPC req/s | gRPC p50 ms "
        "| gRPC / HTTP | errors | log noise |",
        "|---" * 12 + "|",
    ]
    for x in h["layouts"]:
        if not x.get("ran"):
            out.append(f"| {x['layout']} | – | not run: {x.get('why')} |" + "  |" * 9)
            continue
        grpc = x.get("grpc") or [None] * len(x["model"])
        for m, f, g in zip(x["model"], x["floor"], grpc):
            ratio = m["throughput_rps"] / f["throughput_rps"] if f["throughput_rps"] else 0.0
            by_grpc = (
                f"{g['throughput_rps']:,.0f} | {g['p50_ms'] or 0:.2f} | {g['throughput_rps'] / m['throughput_rps']:.2f}×"
                if g and m["throughput_rps"]
                else "– | – | –"
            )
            errors = {**(m["errors"] or {}), **{f"gRPC {k}": v for k, v in ((g or {}).get("errors") or {}).items()}}
            out.append(
                f"| {x['layout']} | {m['concurrency']} | {m['throughput_rps']:,.0f} | {m['p50_ms'] or 0:.2f} | "
                f"{m['p99_ms'] or 0:.2f} | {f['throughput_rps']:,.0f} | {ratio:.2f} | {by_grpc} | {errors or 0} | "
                f"{x['log_noise']} |"
            )
    return out


_PHASES = {"tests": _tests_md, "sweep": _sweep_md, "kernel": _kernel_md, "http": _http_md}


def write(report: dict, out: Path) -> list[Path]:
    report["goals"] = goals(report)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "gpu-check.json", out / "gpu-check.md"]
    write_bytes(paths[0], json.dumps(report, indent=2, default=str).encode())
    write_bytes(paths[1], markdown(report).encode())
    return paths
