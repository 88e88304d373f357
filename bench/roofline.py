"""What a runner benchmark's GFLOP/s are read against (bench.runners): the dense GEMM rate of this
CPU and of the GPU, measured in the same run, and the FLOPs per image of the model measured."""

from pathlib import Path

import numpy as np

from prelu_deploy.bench.timing import interleaved, summary
from prelu_deploy.errors import PreluDeployError
from prelu_deploy.manifest import read_entry


def gemm_rate(n: int = 1024, runs: int = 10) -> dict:
    """Dense float32 GEMM rate of this CPU through NumPy's BLAS (all its threads): what the machine
    gives a compute-bound kernel in practice (not its peak: a runtime's convolutions may beat it), the
    reference against which a model's GFLOP/s are read."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    s = summary(interleaved({"gemm": lambda: a @ a}, warmup=2, runs=runs)["gemm"])
    return {
        "device": "cpu",
        "library": f"numpy {np.__version__} matmul",
        "n": n,
        "dtype": "float32",
        "median_ms": s["median_ms"],
        "gflops": 2 * n**3 / (s["median_ms"] * 1e6),
    }


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
    return {
        "device": "cuda",
        "library": f"{xp.__name__} {xp.__version__} matmul (cuBLAS)",
        "n": n,
        "dtype": dtype,
        "median_ms": s["median_ms"],
        "gflops": 2 * n**3 / (s["median_ms"] * 1e6),
    }


def entry_flops(model_dir: Path) -> int | None:
    """FLOPs per image of the model at `model_dir`: from the manifest (export records it); older directories:
    counted on the source checkpoint; None where neither can say."""
    md = read_entry(model_dir)
    if flops := md.flops_per_image:
        return flops
    try:
        from prelu_deploy.models import load_checkpoint
        from prelu_deploy.models.summary import flops_per_image

        return flops_per_image(load_checkpoint(md.checkpoint)[0], tuple(md.input.dims))
    except (ImportError, OSError, PreluDeployError):  # no torch here, or the checkpoint moved: roofline unknown
        return None
