"""`prelu-deploy bench MODEL_DIR|ARCH`: backends × PReLU lowerings (× TensorRT precisions) × batch
sizes in one process, the candidates interleaved per batch size, with speed-ups against a baseline, a
check that every candidate computes what the baseline computes, and a roofline (achieved GFLOP/s
against a dense GEMM measured in the same run)."""

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prelu_deploy.bench.timing import interleaved, summary
from prelu_deploy.errors import PreluDeployError, UsageError
from prelu_deploy.manifest import LOWERINGS, ModelEntry, read_entry
from prelu_deploy.precisions import BUILD_PRECISIONS, RUN_PRECISIONS, run_precisions
from prelu_deploy.runners.device import check_device, parse_device
from prelu_deploy.runners.registry import backends, get_runner


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
        for name, values, allowed in (("--backend", self.backends, backends()), ("--prelu-mode", self.lowerings or [], LOWERINGS),
                                      ("--precision", self.precisions, RUN_PRECISIONS)):
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


class Sources:
    """The model directories the candidates need, made on demand: the one given is used where it
    fits; other lowerings are exported from its source checkpoint, TensorRT plans built from those."""

    def __init__(self, target: str, arch_kwargs: dict, seed: int, max_batch: int, workdir: Path):
        self.workdir, self.max_batch = workdir, max_batch
        self.given: ModelEntry | None = None
        if Path(target).is_dir():
            self.given = read_entry(target)
            self.checkpoint, self.name = self.given.checkpoint, self.given.source.arch
            if max_batch > self.given.profile.max:
                raise UsageError(f"--batch {max_batch} is over {target}'s max batch size "
                                 f"{self.given.profile.max} (export or build it with a larger --max-batch)")
        else:
            self.checkpoint, self.name = self._from_architecture(target, arch_kwargs, seed), target
        self._onnx: dict[str, Path] = {}

    def _from_architecture(self, arch: str, kwargs: dict, seed: int) -> Path:
        try:
            import torch

            from prelu_deploy.models import create_model, list_models, save_checkpoint
        except ImportError:
            raise UsageError(f"{arch!r} is not a model directory; benchmarking an architecture needs "
                             "pip install 'prelu-deploy[export]'") from None
        if arch not in list_models():
            raise UsageError(f"{arch!r} is neither a model directory nor an architecture ({', '.join(list_models())})")
        torch.manual_seed(seed)  # He-initialised weights: the speed of a trained model, not its accuracy
        return save_checkpoint(create_model(arch, **kwargs), self.workdir / f"{arch}.safetensors")

    @property
    def own_lowering(self) -> str:
        return self.given.lowering if self.given else "native"

    def onnx(self, lowering: str) -> Path:
        g = self.given
        if g and not g.is_plan and g.precision == "fp32" and g.lowering == lowering:
            return g.path
        if lowering not in self._onnx:
            from prelu_deploy.export.model_dir import export_model_dir

            if not self.checkpoint.is_file():
                raise UsageError(f"the {lowering} lowering needs a re-export, but the source checkpoint "
                                 f"{self.checkpoint} is gone")
            self._onnx[lowering] = export_model_dir(self.checkpoint, self.name, self.workdir / lowering, mode=lowering,
                                                    max_batch=self.max_batch)
        return self._onnx[lowering]

    def plan(self, lowering: str, precision: str) -> Path:
        g = self.given
        if g and g.is_plan and (g.lowering, g.precision) == (lowering, precision):
            return g.path
        from prelu_deploy.export.build import build_plan

        return build_plan(self.onnx(lowering), precision, max_batch=self.max_batch,
                          dest=self.workdir / lowering / f"{self.name}_trt_{precision}")

    def int8(self, lowering: str) -> Path:
        g = self.given
        if g and g.precision == "int8" and g.lowering == lowering:
            return g.path
        from prelu_deploy.export.quantize import quantize_entry

        fp32 = read_entry(self.onnx(lowering))  # calibrated on its golden inputs: real held-out images where known
        return quantize_entry(fp32.path, dest=self.workdir / lowering / f"{self.name}_int8",
                              inputs=fp32.golden_io()["inputs"][fp32.golden_real()])

    def model_dir(self, c: "Candidate") -> Path:
        if c.backend == "onnxruntime":
            return self.int8(c.lowering) if c.precision == "int8" else self.onnx(c.lowering)
        if c.backend == "tensorrt":
            return self.plan(c.lowering, c.precision)
        return self.given.path if self.given else self.onnx(self.own_lowering)  # torch: the source checkpoint


def candidates(cfg: RunnerBench, own_lowering: str) -> list[Candidate]:
    """What to measure, before any (slow) export or build."""
    lowerings, gpu = cfg.lowerings or [own_lowering], cfg.device != "cpu"
    on, kind = ("", "cpu") if not gpu else (f":{cfg.device}", "cuda")
    out = []
    for backend in cfg.backends:
        if backend.startswith("torch"):  # the source checkpoint: fp32 whatever the lowering (and more on a GPU)
            runs = run_precisions(backend, kind, "fp32")
            out += [Candidate(f"{backend}{on}" + ("" if p == "fp32" else f":{p}"), backend, None, p)
                    for p in ("fp32", *(p for p in cfg.precisions if p in runs and p != "fp32"))]
        elif backend == "onnxruntime":  # the fp32 entry as the table allows, and the int8 one quantize makes of it
            kept = (*run_precisions(backend, kind, "fp32"), "int8")
            out += [Candidate(f"onnxruntime{on}:{lo}" + ("" if p == "fp32" else f":{p}"), backend, lo, p)
                    for lo in lowerings for p in cfg.precisions if p in kept]
        else:
            out += [Candidate(f"tensorrt:{lo}:{p}", backend, lo, p) for lo in lowerings for p in cfg.precisions
                    if p in BUILD_PRECISIONS]
    return out


def gemm_rate(n: int = 1024, runs: int = 10) -> dict:
    """Dense float32 GEMM rate of this CPU through NumPy's BLAS (all its threads): what the machine
    gives a compute-bound kernel in practice (not its peak: a runtime's convolutions may beat it), the
    reference against which a model's GFLOP/s are read."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    s = summary(interleaved({"gemm": lambda: a @ a}, warmup=2, runs=runs)["gemm"])
    return {"device": "cpu", "library": f"numpy {np.__version__} matmul", "n": n, "dtype": "float32",
            "median_ms": s["median_ms"], "gflops": 2 * n**3 / (s["median_ms"] * 1e6)}


def gemm_rate_gpu(dtype: str, n: int = 8192, runs: int = 20) -> dict:
    """The same on the GPU (cuBLAS through CuPy, else through torch), timed with CUDA events."""
    try:
        import cupy as xp

        a = xp.random.standard_normal((n, n), dtype=xp.float32).astype(dtype)
        start, end, elapsed = xp.cuda.Event(), xp.cuda.Event(), xp.cuda.get_elapsed_time
    except ImportError:
        import torch as xp

        a = xp.randn(n, n, device="cuda", dtype=getattr(xp, dtype))
        start, end = xp.cuda.Event(enable_timing=True), xp.cuda.Event(enable_timing=True)
        elapsed = lambda s, e: s.elapsed_time(e)  # noqa: E731
    for _ in range(3):
        a @ a
    times = []
    for _ in range(runs):
        start.record()
        a @ a
        end.record()
        end.synchronize()
        times.append(elapsed(start, end) / 1e3)
    s = summary(times)
    return {"device": "cuda", "library": f"{xp.__name__} {xp.__version__} matmul (cuBLAS)", "n": n, "dtype": dtype,
            "median_ms": s["median_ms"], "gflops": 2 * n**3 / (s["median_ms"] * 1e6)}


def _on_gpu(c: Candidate) -> bool:
    return c.backend == "tensorrt" or ":cuda" in c.label


def _flops_per_image(model_dir: Path) -> int | None:
    """From the manifest (export records it); older directories: counted on the source checkpoint."""
    md = read_entry(model_dir)
    if flops := md.flops_per_image:
        return flops
    try:
        from prelu_deploy.models import load_checkpoint
        from prelu_deploy.models.summary import flops_per_image

        return flops_per_image(load_checkpoint(md.checkpoint)[0], tuple(md.input.dims))
    except (ImportError, OSError, PreluDeployError):  # no torch here, or the checkpoint moved: roofline unknown
        return None


def _baseline(cfg: RunnerBench, labels: list[str]) -> str:
    want = cfg.baseline or ("torch" if any(label.split(":")[0] == "torch" for label in labels) else labels[0])
    match = [label for label in labels if label == want] or [label for label in labels if label.split(":")[0] == want]
    if not match:
        raise UsageError(f"--baseline {want!r} is none of this run's candidates ({', '.join(labels)})")
    return match[0]


def _measure_batch(cfg: RunnerBench, cands: list[Candidate], runners: dict, base: str, golden: np.ndarray,
                   batch: int, flops: int | None, gemm: dict) -> tuple[list[dict], dict]:
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

    samples = interleaved({label: (lambda label=label: call(label)) for label in runners}, cfg.warmup, cfg.runs,
                          warmup_s=cfg.warmup_s, duration_s=cfg.duration_s, max_runs=cfg.max_runs)
    stats = {label: summary(s, items=batch) for label, s in samples.items()}
    rows, ref = [], outputs[base]
    for c in cands:
        st = stats[c.label]
        row = {"batch": batch, **asdict(c), "model_dir": str(c.model_dir), **st,
               "speedup_vs_baseline": stats[base]["median_ms"] / st["median_ms"],
               "max_abs_diff_vs_baseline": float(np.abs(outputs[c.label].astype(np.float64) - ref).max()),
               "logit_scale": float(np.abs(ref).max())}
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
        # ONNX Runtime's pool spins after each call by default, stealing the cores of the candidate
        # that runs next: off while interleaving, so each candidate's tail is its own
        per_backend = {"onnxruntime": {"spinning": False}}
        for backend in ("onnxruntime", "torch-compile") if cfg.device != "cpu" else ():  # a CUDA graph per batch measured
            per_backend.setdefault(backend, {})["buckets"] = tuple(cfg.batches)
        runners = {c.label: get_runner(c.backend, c.model_dir, cfg.device, **options, **per_backend.get(c.backend, {}),
                                       **({} if c.backend == "tensorrt" else {"precision": c.precision}), **c.options)
                   for c in cands}
        flops = _flops_per_image(cands[0].model_dir)
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
        report = {"kind": "runners", "target": target, "model": src.name, "baseline": base,
                  "candidates": [c.label for c in cands], "flops_per_image": flops, "gemm": gemm,
                  "settings": asdict(cfg), "results": results,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return report, raw
