"""ONNX Runtime CPU latency of the three PReLU lowerings on cifar_prelu (channel-shared PReLU), batch
1, 8 and 32: median of 50 runs after 10 warm-up runs, lowerings interleaved in one process. Prints the
Markdown for docs/benchmarks.md. Reproduce: `.venv/bin/python docs/bench_lowerings.py`."""

import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.models import create_model, save_checkpoint
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.serve.bench import interleaved, summary
from prelu_deploy.serve.runner import get_runner

MODES = ("native", "leaky", "plugin")


def main() -> None:
    torch.manual_seed(0)
    model = create_model("cifar_prelu", act="prelu_shared")
    with torch.no_grad():  # trained-looking slopes, not all 0.25
        for m in model.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.6)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(model, Path(tmp) / "c.safetensors", preprocess=Preprocess((32, 32), 3, (0.5,) * 3, (0.25,) * 3))
        runners = {m: get_runner("onnxruntime", export_model_dir(ckpt, m, Path(tmp) / "repo", mode=m)) for m in MODES}
        rows = []
        for batch in (1, 8, 32):
            x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
            outs = {m: r.run(x) for m, r in runners.items()}
            samples = interleaved({m: (lambda r=r: r.run(x)) for m, r in runners.items()}, warmup=10, runs=50)
            stats = {m: summary(s) for m, s in samples.items()}
            rows.append((batch, stats, {m: float(np.abs(outs[m] - outs["native"]).max()) for m in MODES}))
    print("## PReLU lowerings on ONNX Runtime CPU (cifar_prelu, channel-shared PReLU)\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPUExecutionProvider, onnxruntime "
          f"{ort.__version__}, default threads. Median of 50 runs after 10 warm-up, the three lowerings "
          "interleaved in one process; ratio = native median / lowering median (>1: faster than native).\n")
    print("Command: `.venv/bin/python docs/bench_lowerings.py`\n")
    print("| batch | native median ms | leaky median ms | plugin median ms | leaky vs native | plugin vs native | max abs diff leaky / plugin vs native |")
    print("|---|---|---|---|---|---|---|")
    for batch, st, diff in rows:
        n = st["native"]["median_ms"]
        print(f"| {batch} | {n:.3f} | {st['leaky']['median_ms']:.3f} | {st['plugin']['median_ms']:.3f} | "
              f"{n / st['leaky']['median_ms']:.2f}× | {n / st['plugin']['median_ms']:.2f}× | {diff['leaky']:.1e} / {diff['plugin']:.1e} |")
    worst = max(s["cv"] for _, st, _ in rows for s in st.values())
    note = " (high: a noisy machine; trust the ratios, not the absolute times)" if worst > 0.1 else ""
    print(f"\nLargest coefficient of variation among the runs: {worst:.2f}{note}.")


if __name__ == "__main__":
    main()
