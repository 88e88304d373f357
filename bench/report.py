"""Benchmark reports: a JSON file (machine, versions, settings, statistics), a Markdown table to paste
into docs, and with --plot PNG charts (matplotlib). Written atomically, named by kind, model and time."""

import json
import platform
import shlex
import sys
import time
from functools import cache
from importlib.metadata import PackageNotFoundError, distributions, packages_distributions, version
from pathlib import Path

from prelu_deploy import usable_cores
from prelu_deploy.atomic import write_bytes
from prelu_deploy.bench.plots import plot_http, plot_runners
from prelu_deploy.bench.timing import CV_HIGH

# import name → the distribution that usually provides it. Where a module is already imported, the
# distribution whose files hold that very module is reported instead: onnxruntime-gpu and onnxruntime
# both install `onnxruntime`, and the metadata of the one not loaded must not name the runtime measured.
MODULES = {
    "prelu_deploy": "prelu-deploy",
    "numpy": "numpy",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "tensorrt": "tensorrt",
    "tensorrt_rtx": "tensorrt-rtx-cu13",
    "cupy": "cupy-cuda13x",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
}
_distributions_by_module = cache(packages_distributions)  # read once a process: all distributions' files, 0.6 s


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu() -> str | None:
    """The GPU's name when CuPy and a driver are present (never imports torch)."""
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return f"{props['name'].decode()} (compute capability {props['major']}.{props['minor']})"
    except Exception:
        return None


def loaded_distribution(module: str) -> tuple[str, str] | None:
    """(distribution, version) whose installed files hold the module `module` as imported in this
    process; None when it is not imported or no distribution claims that file."""
    mod = sys.modules.get(module)
    if mod is None or not getattr(mod, "__file__", None):
        return None
    path, own = Path(mod.__file__).resolve(), getattr(mod, "__version__", None)
    found = [
        (dist.metadata["Name"], dist.version)
        for name in _distributions_by_module().get(module, [])
        for dist in distributions(name=name)  # every copy on sys.path, e.g. a --target install first
        if Path(dist.locate_file(f"{module}/__init__.py")).resolve() == path
    ]
    # two distributions installed over one folder both claim its files: the module's own version decides
    return next((f for f in found if f[1] == own), found[0] if found else None)


def environment() -> dict:
    versions = {}
    for module, pkg in MODULES.items():
        if found := loaded_distribution(module):
            versions[found[0]] = found[1]
            continue
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cores": usable_cores(),
            "gpu": _gpu(),
            "python": platform.python_version(),
        },
        "versions": versions,
        "command": shlex.join(["prelu-deploy", *sys.argv[1:]]),
    }


def ms(v) -> str:
    return "–" if v is None else f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def machine_line(report: dict) -> str:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    cores = f"{m['cores']} core{'s' if m['cores'] != 1 else ''}"
    return f"Machine: {m['cpu']}, {cores}, {m['gpu'] or 'no GPU'}; Python {m['python']}; {versions}."


def markdown_runners(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"## `prelu-deploy bench`: {r['model']} ({r['target']})",
        "",
        machine_line(r),
        "",
        f"Command: `{r['command']}`",
        "",
        f"Warm-up ≥ {s['warmup']} calls and ≥ {s['warmup_s']:g} s, then ≥ {s['runs']} calls and ≥ {s['duration_s']:g} s "
        f"per candidate, the candidates interleaved round-robin in one process. Speed-up = {r['baseline']} median / "
        "candidate median (> 1: faster). Max abs diff: the candidate's logits vs the baseline's on the same inputs "
        "(the export's golden held-out images, repeated to the batch size).",
        "",
    ]
    if r["flops_per_image"]:
        g = r["gemm"]["cpu"]
        lines += [
            f"Roofline: {r['flops_per_image'] / 1e6:.2f} MFLOP per image (2 per multiply-add); dense float32 GEMM "
            f"{g['gflops']:.1f} GFLOP/s ({g['library']}, n={g['n']}), measured in this run"
            + "".join(f"; GPU {v['dtype']} GEMM {v['gflops']:.0f} GFLOP/s" for k, v in r["gemm"].items() if k != "cpu")
            + ". The GEMM is a practical ceiling, not the hardware's peak: above 100 % the runtime's convolution "
            "kernels outran that library's matrix multiply.",
            "",
        ]
    lines += [
        "| batch | candidate | median ms | mean ms | p90 ms | p95 ms | p99 ms | min ms | max ms | images/s | "
        f"speed-up vs {r['baseline']} | GFLOP/s | of GEMM | max abs diff | CV |",
        "|" + "---|" * 15,
    ]
    for row in r["results"]:
        cv = f"{row['cv']:.2f}" + (" ⚠" if row["high_cv"] else "")
        roof = f"{row['gflops']:.2f} | {row['gemm_fraction']:.1%}" if "gflops" in row else "– | –"
        times = " | ".join(ms(row[k]) for k in ("median_ms", "mean_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms"))
        lines.append(
            f"| {row['batch']} | {row['label']} | {times} | "
            f"{row['throughput']:.0f} | {row['speedup_vs_baseline']:.2f}× | {roof} | "
            f"{row['max_abs_diff_vs_baseline']:.1e} | {cv} |"
        )
    gpu = [row for row in r["results"] if "gpu" in row]
    if gpu:
        lines += [
            "",
            "| batch | candidate | GPU compute ms (CUDA events) | host→device ms | device→host ms | CUDA graphs |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['batch']} | {row['label']} | {ms(row['gpu']['compute_ms'])} | {ms(row['gpu']['h2d_ms'])} | "
            f"{ms(row['gpu']['d2h_ms'])} | {'yes' if row['gpu']['cuda_graphs'] else 'no'} |"
            for row in gpu
        ]
    lines += _cv_note(row["cv"] for row in r["results"])
    return "\n".join(lines) + "\n"


def _cv_note(cvs) -> list[str]:
    worst = max(cvs, default=0.0)
    if worst > CV_HIGH:
        return [
            "",
            f"⚠ coefficient of variation up to {worst:.2f} (> {CV_HIGH:g}): a noisy machine; trust the ratios "
            "and medians, not the tails, and rerun with a longer --duration.",
        ]
    return []


def markdown_http(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"## `prelu-deploy bench http`: {r['model']} at {r['target']}",
        "",
        machine_line(r) + " The load generator (one event loop, a keep-alive connection per client) runs on the same machine; "
        "its own CPU use is the last column (1.0 = one core busy).",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Workload: POST {r['endpoint']}, {r['workload']}. Each level: {s['warmup_s']:g} s warm-up, then "
        f"{s['duration_s']:g} s or {s['max_requests']} requests measured; latency of successful (200) requests.",
        "",
        "| concurrency | requests | ok | errors | p50 ms | p90 ms | p99 ms | max ms | requests/s | images/s | "
        "throughput CV across windows | generator CPU |",
        "|" + "---|" * 12,
    ]
    for lv in r["levels"]:
        lat = lv["latency"]
        errors = ", ".join(f"{k} ×{v}" for k, v in lv["errors"].items()) or "0"
        lines.append(
            f"| {lv['concurrency']} | {lv['requests']} | {lv['ok']} | {errors} | {ms(lat.get('median_ms'))} | "
            f"{ms(lat.get('p90_ms'))} | {ms(lat.get('p99_ms'))} | {ms(lat.get('max_ms'))} | "
            f"{lv['throughput_rps']:.0f} | {lv['images_per_s']:.0f} | {_stability(lv)} | "
            f"{lv.get('client_cpu', float('nan')):.2f} |"
        )
    if any(lv["throughput_cv"] is not None and not lv["stable"] for lv in r["levels"]):
        lines += [
            "",
            f"⚠ unstable: throughput varied by more than {CV_HIGH:.0%} (CV) between the windows of a level; "
            "lengthen --duration or --warmup.",
        ]
    return "\n".join(lines) + "\n"


def _stability(lv: dict) -> str:
    if lv["throughput_cv"] is None:
        return "–"
    return f"{lv['throughput_cv']:.2f}" + ("" if lv["stable"] else " ⚠ unstable")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write(report: dict, raw: dict, out_dir: Path, plot: bool, markdown=None) -> list[Path]:
    """JSON + Markdown (+ PNG) under `out_dir`; returns the paths written. `markdown` renders a report of
    a kind this module does not know (`bench serving`'s, which renders its own)."""
    base = out_dir / f"bench-{report['kind']}-{_safe(report['model'])}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem = next(s for s in (Path(f"{base}{f'-{i}' if i else ''}") for i in range(1000)) if not Path(f"{s}.json").exists())
    md = (markdown or {"runners": markdown_runners, "http": markdown_http}[report["kind"]])(report)
    paths = [Path(f"{stem}.json"), Path(f"{stem}.md")]  # not with_suffix: model names may hold dots
    write_bytes(paths[0], (json.dumps(report, indent=2) + "\n").encode())
    write_bytes(paths[1], md.encode())
    if plot and report["kind"] != "serving":
        png = Path(f"{stem}-latency.png" if report["kind"] == "runners" else f"{stem}-concurrency.png")
        (plot_runners if report["kind"] == "runners" else plot_http)(report, raw, png)
        paths.append(png)
    return paths
