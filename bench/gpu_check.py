"""`prelu-deploy gpu-check`: whether this toolkit is right and fast on this GPU host, in one command
and one report. Four phases, each bounded in time, the report rewritten (atomically) after each:

- tests: every `gpu`-marked test of the checkout (`pytest -m gpu`), counted from its JUnit XML;
- sweep: backends × precisions × batch 1/32/256 in one process (`bench`'s interleaved measurement),
  each setting the runners offer beside their defaults, judged against torch eager fp32;
- kernel: the channel-shared PReLU kernel's bandwidth against a device-to-device copy;
- http: `serve --device cuda` under the load generator at 1/8/64 clients, the model beside the floor
  model (bench/floor.py: no work) for each worker layout; every server stopped whatever happens.

Where no NVIDIA GPU is present it says so and runs nothing (exit 0). gpu_report.py judges the goals."""

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prelu_deploy.bench import gpu_report
from prelu_deploy.bench.runners import Candidate, RunnerBench
from prelu_deploy.bench.runners import run as run_sweep
from prelu_deploy.errors import UsageError
from prelu_deploy.runners.registry import BACKENDS

PHASES = ("tests", "sweep", "kernel", "http")
ROOT = Path(__file__).resolve().parents[1]  # the checkout (an editable install); a wheel has no tests/

# (label, backend, precision, runner options): each runner's default, and the settings it offers
SWEEP = [
    ("torch:cuda", "torch", "fp32", {}),  # cuDNN's algorithm search on (the default on cuda)
    ("torch:cuda-nobench", "torch", "fp32", {"cudnn_benchmark": False}),
    ("torch:cuda:tf32", "torch", "tf32", {}),
    ("torch:cuda:fp16", "torch", "fp16", {}),  # channels-last (the default for fp16)
    ("torch:cuda:fp16-nocl", "torch", "fp16", {"channels_last": False}),
    ("torch-compile:cuda", "torch-compile", "fp32", {}),
    ("torch-compile:cuda:tf32+cl", "torch-compile", "tf32", {"channels_last": True}),
    ("torch-compile:cuda:fp16", "torch-compile", "fp16", {}),
    ("onnxruntime:cuda", "onnxruntime", "fp32", {}),
    ("onnxruntime:cuda+heuristic", "onnxruntime", "fp32", {"conv_algo": "HEURISTIC"}),
    ("onnxruntime:cuda:tf32", "onnxruntime", "tf32", {}),
    ("onnxruntime:cuda:tf32+heuristic", "onnxruntime", "tf32", {"conv_algo": "HEURISTIC"}),
    ("onnxruntime:cuda:fp16", "onnxruntime", "fp16", {}),
    ("onnxruntime:cuda:fp16+io16", "onnxruntime", "fp16", {"io_fp16": True}),
    ("onnxruntime:cuda:fp16+io16+nhwc", "onnxruntime", "fp16", {"io_fp16": True, "nhwc": True}),
]


@dataclass
class GpuCheck:
    out: Path = Path("gpu-check")
    phases: tuple[str, ...] = PHASES
    arch: str = "cifar_prelu"
    lowering: str = "leaky"
    batches: tuple[int, ...] = (1, 32, 256)
    sweep_s: float = 0.6  # measured seconds per batch size (all candidates interleaved)
    concurrency: tuple[int, ...] = (1, 8, 64)
    http_s: float = 2.0  # measured seconds per level
    http_warmup_s: float = 0.5  # unmeasured seconds of load before each level
    layouts: tuple[str, ...] = ("1", "2", "4", "default")  # --workers N, or serve's own choice
    budget_s: float = 345.0  # the whole check; each phase gets what is left (goal: ≤ 6 minutes on an H200)
    device: str = "cuda"  # the HTTP phase's --device (its tests run it on the CPU)
    tests: str = "tests"  # what `pytest -m gpu` collects, under the checkout
    test_processes: int = 4  # pytest-xdist's -n

    def check(self) -> None:
        if bad := [p for p in self.phases if p not in PHASES]:
            raise UsageError(f"--only: unknown {', '.join(bad)}; choose from {', '.join(PHASES)}")
        if bad := [x for x in self.layouts if x != "default" and not (x.isdecimal() and int(x) >= 1)]:
            raise UsageError(f"--layouts: {', '.join(bad)} is neither a worker count nor 'default'")


def gpu_present() -> str | None:
    """The GPUs nvidia-smi lists, or None where there is no NVIDIA GPU (or driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and "GPU" in out.stdout else None


def phase_tests(cfg: GpuCheck, seconds: float) -> dict:
    """`pytest -m gpu` on the checkout's tests; counts and failures from its JUnit XML."""
    tests = next((p for p in (ROOT / cfg.tests, Path.cwd() / cfg.tests) if p.exists()), None)
    if tests is None:
        return {"ran": False, "why": f"no {cfg.tests} beside the package or here: run gpu-check in a checkout"}
    xml = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(cfg.test_processes),
        f"--junitxml={xml}",
        str(tests),
    ]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=tests.parent if tests.is_dir() else tests.parents[1], capture_output=True, text=True, timeout=seconds
        )
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        tail = f"stopped after {seconds:.0f} s\n" + ((err.stdout or b"")[-3000:].decode(errors="replace") if err.stdout else "")
    result = {
        "ran": True,
        "command": " ".join(cmd[1:]),
        "duration_s": time.monotonic() - start,
        "tail": tail,
        "passed": 0,
        "failed": 0,
        "skipped": 0,
        "failures": [],
        "skips": {},
    }
    if not xml.is_file():
        return {**result, "failed": 1, "failures": [{"test": "pytest", "message": "no JUnit report (see tail)"}]}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            result["failed"] += 1
            result["failures"].append({"test": name, "message": (bad.get("message") or "").splitlines()[0][:300]})
        elif (skip := case.find("skipped")) is not None:
            result["skipped"] += 1
            reason = (skip.get("message") or "")[:200]
            result["skips"][reason] = result["skips"].get(reason, 0) + 1
        else:
            result["passed"] += 1
    return result


def phase_sweep(cfg: GpuCheck, log) -> dict:
    """The SWEEP candidates interleaved per batch size (`bench`'s method), plus where batch 1 goes."""
    bench = RunnerBench(
        backends=sorted({b for _, b, _, _ in SWEEP}),
        lowerings=[cfg.lowering],
        batches=cfg.batches,
        baseline="torch:cuda",
        warmup=5,
        warmup_s=0.2,
        runs=20,
        duration_s=cfg.sweep_s,
        device="cuda",
    )
    cands = [
        Candidate(label, backend, None if BACKENDS[backend].loads == "checkpoint" else cfg.lowering, precision, options=opts)
        for label, backend, precision, opts in SWEEP
    ]
    report, _ = run_sweep(cfg.arch, bench, log=log, cands=cands)
    report["batch1_breakdown"] = _ort_batch1_breakdown(report, cfg)
    return report


def _ort_batch1_breakdown(report: dict, cfg: GpuCheck, runs: int = 400) -> dict | None:
    """Where one batch-1 call of ONNX Runtime's CUDA runner (tf32) goes: the host staging, the
    host→device copy, the graph replay (run_with_iobinding, which waits for the GPU) and the copy back."""
    from prelu_deploy.export.model_dir import export_model_dir
    from prelu_deploy.models import create_model, save_checkpoint
    from prelu_deploy.runners.registry import get_runner

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(create_model(cfg.arch), Path(tmp) / "m.safetensors")
        entry = export_model_dir(ckpt, "m", tmp, mode=cfg.lowering, max_batch=1)
        runner = get_runner("onnxruntime", entry, "cuda", precision="tf32", buckets=(1,))
        try:
            x = np.asarray(runner.entry.golden_io()["inputs"][:1], np.float32)
            runner.run(x)
            slot, times = runner._slots[1], {k: [] for k in ("stage", "h2d", "run", "d2h")}
            for _ in range(runs):
                t0 = time.perf_counter()
                runner.buckets.pad(x, out=slot.host)
                t1 = time.perf_counter()
                slot.x.update_inplace(slot.host)
                t2 = time.perf_counter()
                runner.session.run_with_iobinding(slot.binding, slot.run_options)
                t3 = time.perf_counter()
                slot.y.numpy()
                t4 = time.perf_counter()
                for k, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
                    times[k].append(b - a)
            return {k: float(np.median(v) * 1e3) for k, v in times.items()} | {"runs": runs}
        finally:
            runner.close()


def phase_kernel(sizes_mib=(16, 256), runs: int = 20) -> dict:
    """The kernel's bandwidth (bytes read + written per second) against cudaMemcpyAsync device to device."""
    import cupy

    from prelu_deploy.plugins import channel_shared_prelu as csp
    from prelu_deploy.plugins.kernel import launch

    stream, rows = cupy.cuda.Stream(non_blocking=True), []
    for dtype in (np.float32, np.float16):
        for mib in sizes_mib:
            n = (mib << 20) // np.dtype(dtype).itemsize
            x = cupy.random.standard_normal(n, dtype=np.float32).astype(dtype)
            y = cupy.empty_like(x)
            kernel = lambda: launch(x.data.ptr, y.data.ptr, n, dtype == np.float16, -0.3, stream.ptr)  # noqa: E731
            copy = lambda: cupy.cuda.runtime.memcpyAsync(y.data.ptr, x.data.ptr, x.nbytes, 3, stream.ptr)  # noqa: E731
            kernel()
            stream.synchronize()
            head = slice(0, 1 << 16)
            exact = bool(np.array_equal(cupy.asnumpy(y[head]), csp.reference(cupy.asnumpy(x[head]), -0.3)))
            ms = {name: _event_ms(fn, stream, runs) for name, fn in (("kernel", kernel), ("copy", copy))}
            rows.append(
                {
                    "dtype": np.dtype(dtype).name,
                    "mib": mib,
                    "exact": exact,
                    "kernel_ms": ms["kernel"],
                    "copy_ms": ms["copy"],
                    "kernel_gbs": 2 * x.nbytes / ms["kernel"] / 1e6,
                    "copy_gbs": 2 * x.nbytes / ms["copy"] / 1e6,
                    "ratio": ms["copy"] / ms["kernel"],
                }
            )
            x = y = None  # the device memory freed before the next size
    return {"rows": rows}


def _event_ms(fn, stream, runs: int) -> float:
    import cupy

    times = []
    for _ in range(runs + 2):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return float(np.median(times[2:]))


def run(cfg: GpuCheck, log=print) -> tuple[dict, list[Path]]:
    """Every phase asked for, within the budget; the report (JSON + Markdown) after each."""
    from prelu_deploy.bench.gpu_http import phase_http
    from prelu_deploy.bench.report import environment

    cfg.check()
    deadline = time.monotonic() + cfg.budget_s
    report = {
        "kind": "gpu-check",
        "gpu": gpu_present(),
        "settings": {**asdict(cfg), "out": str(cfg.out)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "phases": {},
    }
    paths = []
    for phase in cfg.phases:
        left = deadline - time.monotonic()
        if left < 20:
            report["phases"][phase] = {"ran": False, "why": f"the {cfg.budget_s:.0f} s budget was spent"}
            continue
        log(f"gpu-check: {phase} ({left:.0f} s left) …")
        start = time.monotonic()
        try:
            if phase == "tests":
                result = phase_tests(cfg, min(left - 60 * (len(cfg.phases) - 1), 240))
            elif phase == "sweep":
                result = phase_sweep(cfg, log)
            elif phase == "kernel":
                result = phase_kernel()
            else:
                result = phase_http(cfg, log, deadline)
        except Exception as err:  # one phase's failure is a finding, not the end of the check
            result = {"ran": False, "why": f"{type(err).__name__}: {str(err).strip()[:500]}"}
        report["phases"][phase] = {"ran": True, **result, "seconds": time.monotonic() - start}
        report.update(environment())
        paths = gpu_report.write(report, cfg.out)
    return report, paths


def no_gpu_message() -> str:
    return (
        "gpu-check: no NVIDIA GPU here (nvidia-smi lists none): nothing to check. On a GPU host: "
        "pip uninstall -y onnxruntime; pip install -e '.[export,serve,gpu,dev]'; prelu-deploy gpu-check"
    )
