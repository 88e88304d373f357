"""`prelu-deploy bench MODEL_DIR|ARCH`: backends × PReLU lowerings (× TensorRT precisions) × batch
sizes in one process, the candidates interleaved per batch size, with speed-ups against a baseline, a
check that every candidate computes what the baseline computes, and a roofline (achieved GFLOP/s
against a dense GEMM measured in the same run: bench.roofline). The model directories each candidate
needs are made by bench.sources."""

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prelu_deploy.bench.roofline import entry_flops, gemm_rate, gemm_rate_gpu
from prelu_deploy.bench.sources import Sources
from prelu_deploy.bench.timing import interleaved, summary
from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import LOWERINGS, read_entry
from prelu_deploy.precisions import BUILD_PRECISIONS, RUN_PRECISIONS, run_precisions
from prelu_deploy.runners.device import check_device, parse_device
from prelu_deploy.runners.registry import BACKENDS, backends, get_runner


@dataclass
class RunnerBench:
    backends: list[str]
    lowerings: list[str] | None = None  # None: the model directory's own (native for an architecture)
    precisions: tuple[str, ...] = ("fp32",)  # what each backend offers: RUN_PRECISIONS and candidates()
    batches: tuple[int, ...] = (1, 8, 32)
    baseline: str | None = None  # a candidate label or a backend name; default torch, else the first
    warmup: int = 10
    warmup_s: float = 0.5
    runs: int = 50
    duration_s: float = 2.0
    max_runs: int = 100_000
    threads: int | None = None
    device: str = "cpu"  # where the torch and ONNX Runtime candidates run: cpu | cuda[:N] (TensorRT: the GPU of cuda:N)
    act: str = "prelu_shared"  # for an architecture name: how to build it (as `train` does)
    width: float | None = None
    input_size: int | None = None
    seed: int = 0

    def arch_kwargs(self) -> dict:
        return {k: v for k, v in {"act": self.act, "width": self.width, "input_size": self.input_size}.items() if v is not None}

    def check(self) -> None:
        for name, values, allowed in (
            ("--backend", self.backends, backends()),
            ("--prelu-mode", self.lowerings or [], LOWERINGS),
            ("--precision", self.precisions, RUN_PRECISIONS),
        ):
            if bad := [v for v in values if v not in allowed]:
                raise UsageError(f"{name}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
        if not self.backends:
            raise UsageError("--backend: name at least one backend")
        parse_device(self.device)
        if not self.batches or min(self.batches) < 1:
            raise UsageError(f"--batch: batch sizes must be ≥ 1, not {list(self.batches)}")
        if self.runs < 1 or self.warmup < 0 or self.duration_s < 0 or self.warmup_s < 0 or self.max_runs < self.runs:
            raise UsageError("--runs must be ≥ 1, --max-runs ≥ --runs, and warm-up and durations ≥ 0")
        for backend in self.backends:  # CUDA asked for but not here: said now, before any export or build
            check_device(backend, self.device)


@dataclass
class Candidate:
    label: str  # e.g. "onnxruntime:leaky", "tensorrt:native:fp16", "torch", "torch:cuda"
    backend: str
    lowering: str | None
    precision: str
    model_dir: Path | None = None  # made by Sources.model_dir once the arguments are all checked
    options: dict = field(default_factory=dict)  # runner options beyond the defaults (gpu-check's settings)


def candidates(cfg: RunnerBench, own_lowering: str) -> list[Candidate]:
    """What to measure, before any (slow) export or build."""
    lowerings, gpu = cfg.lowerings or [own_lowering], cfg.device != "cpu"
    on, kind = ("", "cpu") if not gpu else (f":{cfg.device}", "cuda")
    out = []
    for backend in cfg.backends:
        loads = BACKENDS[backend].loads
        if loads == "checkpoint":  # the source checkpoint: fp32 whatever the lowering (and more on a GPU)
            runs = run_precisions(backend, kind, "fp32")
            out += [
                Candidate(f"{backend}{on}" + ("" if p == "fp32" else f":{p}"), backend, None, p)
                for p in ("fp32", *(p for p in cfg.precisions if p in runs and p != "fp32"))
            ]
        elif loads == "onnx":  # the fp32 entry as the table allows, and the int8 one quantize makes of it
            kept = (*run_precisions(backend, kind, "fp32"), "int8")
            out += [
                Candidate(f"{backend}{on}:{lo}" + ("" if p == "fp32" else f":{p}"), backend, lo, p)
                for lo in lowerings
                for p in cfg.precisions
                if p in kept
            ]
        else:  # a plan per lowering and build precision (on the GPU of --device)
            out += [
                Candidate(f"{backend}:{lo}:{p}", backend, lo, p)
                for lo in lowerings
                for p in cfg.precisions
                if p in BUILD_PRECISIONS
            ]
    return out


def _on_gpu(c: Candidate) -> bool:
    return BACKENDS[c.backend].gpu_only or ":cuda" in c.label


def _backend_options(cfg: RunnerBench, c: Candidate) -> dict:
    """What the candidate's backend is told beyond the common options, as its record says."""
    b, out = BACKENDS[c.backend], {}
    if b.spins:  # a pool spinning after each call steals the cores of the candidate that runs next: off
        out["spinning"] = False  # while interleaving, so each candidate's tail is its own
    if b.graph_buckets and cfg.device != "cpu":
        out["buckets"] = tuple(cfg.batches)  # a CUDA graph per batch measured
    if b.loads != "plan":  # a plan computes in what it was built in
        out["precision"] = c.precision
    return out


def _baseline(cfg: RunnerBench, labels: list[str]) -> str:
    want = cfg.baseline or ("torch" if any(label.split(":")[0] == "torch" for label in labels) else labels[0])
    match = [label for label in labels if label == want] or [label for label in labels if label.split(":")[0] == want]
    if not match:
        raise UsageError(f"--baseline {want!r} is none of this run's candidates ({', '.join(labels)})")
    return match[0]


def _measure_batch(
    cfg: RunnerBench,
    cands: list[Candidate],
    runners: dict,
    base: str,
    golden: np.ndarray,
    batch: int,
    flops: int | None,
    gemm: dict,
) -> tuple[list[dict], dict]:
    """One batch size: every candidate interleaved on the golden inputs repeated up to `batch`; rows
    of the report and the raw samples."""
    x = np.ascontiguousarray(np.resize(golden, (batch, *golden.shape[1:])))
    outputs = {label: r.run(x) for label, r in runners.items()}
    timings: dict[str, list[dict]] = {label: [] for label in runners}

    def call(label: str) -> None:
        r = runners[label]
        r.run(x)
        if (t := r.timings()) is not None:  # GPU runners: CUDA-event times of that call
            timings[label].append(t)

    samples = interleaved(
        {label: (lambda label=label: call(label)) for label in runners},
        cfg.warmup,
        cfg.runs,
        warmup_s=cfg.warmup_s,
        duration_s=cfg.duration_s,
        max_runs=cfg.max_runs,
    )
    stats = {label: summary(s, items=batch) for label, s in samples.items()}
    rows, ref = [], outputs[base]
    for c in cands:
        st = stats[c.label]
        row = {
            "batch": batch,
            **asdict(c),
            "model_dir": str(c.model_dir),
            **st,
            "speedup_vs_baseline": stats[base]["median_ms"] / st["median_ms"],
            "max_abs_diff_vs_baseline": float(np.abs(outputs[c.label].astype(np.float64) - ref).max()),
            "logit_scale": float(np.abs(ref).max()),
        }
        if flops:
            row["gflops"] = flops * batch / (st["median_ms"] * 1e6)
            row["gemm_fraction"] = row["gflops"] / gemm[f"cuda_{c.precision}" if _on_gpu(c) else "cpu"]["gflops"]
        if timings[c.label]:
            row["gpu"] = {k: float(np.median([t[k] for t in timings[c.label]])) for k in timings[c.label][0]}
            row["gpu"]["cuda_graphs"] = runners[c.label].cuda_graphs
        rows.append(row)
    return rows, {(batch, label): s for label, s in samples.items()}


def run(target: str, cfg: RunnerBench, log=print, cands: list[Candidate] | None = None) -> tuple[dict, dict]:
    """The report (JSON-ready) and the raw samples {(batch, label): seconds}. `cands`: what to measure
    instead of what `cfg` lists (gpu-check's settings)."""
    cfg.check()
    with tempfile.TemporaryDirectory(prefix="prelu-deploy-bench-") as tmp:
        src = Sources(target, cfg.arch_kwargs(), cfg.seed, max(cfg.batches), Path(tmp))
        cands = cands or candidates(cfg, src.own_lowering)
        base = _baseline(cfg, [c.label for c in cands])
        for c in cands:
            c.model_dir = src.model_dir(c)
        options = {"threads": cfg.threads} if cfg.threads else {}
        runners = {
            c.label: get_runner(c.backend, c.model_dir, cfg.device, **options, **_backend_options(cfg, c), **c.options)
            for c in cands
        }
        flops = entry_flops(cands[0].model_dir)
        golden = read_entry(cands[0].model_dir).golden_io()["inputs"].astype(np.float32)  # real held-out images
        gemm = {"cpu": gemm_rate()}
        for p in sorted({c.precision for c in cands if _on_gpu(c)}):
            gemm[f"cuda_{p}"] = gemm_rate_gpu("float16" if p == "fp16" else "float32")  # tf32: its fp32 GEMM
        log(f"dense GEMM: {gemm['cpu']['gflops']:.1f} GFLOP/s on the CPU (n={gemm['cpu']['n']}, float32)")
        results, raw = [], {}
        try:
            for batch in cfg.batches:
                log(f"batch {batch}: {len(runners)} candidates interleaved …")
                rows, samples = _measure_batch(cfg, cands, runners, base, golden, batch, flops, gemm)
                results += rows
                raw.update(samples)
        finally:
            for r in runners.values():
                r.close()
        report = {
            "kind": "runners",
            "target": target,
            "model": src.name,
            "baseline": base,
            "candidates": [c.label for c in cands],
            "flops_per_image": flops,
            "gemm": gemm,
            "settings": asdict(cfg),
            "results": results,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    return report, raw
