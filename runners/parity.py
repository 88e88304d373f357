"""Parity of a runner against PyTorch on held-out images and the entry's golden inputs, judged by
the precision's tolerance (prelu_deploy.tolerances.judge: the float64 reference is the truth, the
float32 one the noise floor any float32 runner shares)."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.runners.registry import get_runner
from prelu_deploy.runners.runner import run_batched
from prelu_deploy.tolerances import TOLERANCES, judge, judged_rows


def run_parity(
    model_dir: str | Path,
    backend: str | None = None,
    dataset: str | None = None,
    n: int = 256,
    checkpoint: str | Path | None = None,
    per_layer: bool = False,
    **runner_options,
) -> dict:
    """Run the runner (default: the one the entry's artifact runs on) and the PyTorch reference on the
    same inputs: up to `n` held-out images plus the entry's golden inputs (crafted so every PReLU sees
    negative pre-activations). Tolerances follow the entry's precision."""
    import torch

    from prelu_deploy.models.data import held_out
    from prelu_deploy.models.preprocess import Preprocess
    from prelu_deploy.models.reference import negative_fractions, reference_logits
    from prelu_deploy.runners.torch_runner import load_source_model

    entry = read_entry(model_dir).verified()
    runner = get_runner(backend, entry, **runner_options)
    model = load_source_model(entry, checkpoint)
    dataset = dataset or entry.source.dataset
    golden = entry.golden_io()["inputs"]
    images, labels = np.zeros((0, *golden.shape[1:]), np.float32), None
    if dataset and n > 0 and entry.preprocess:
        images, labels = held_out(dataset, Preprocess.from_dict(entry.preprocess), n)
    inputs = np.concatenate([images, golden])
    try:
        out = run_batched(runner, inputs)
    finally:
        runner.close()
    ref32, ref64 = reference_logits(model, inputs)
    rows = judged_rows(np.concatenate([np.ones(len(images), bool), entry.golden_real()]), runner.precision)
    judgement = judge(out[rows], ref32[rows], ref64[rows], runner.precision, labels)  # held-out rows come first
    report = {
        "model_dir": str(entry.path),
        "backend": runner.name,
        "lowering": entry.lowering,
        "dataset": dataset,
        "inputs": {"held_out": len(images), "golden": len(golden)},
        "negative_fraction": negative_fractions(model, torch.from_numpy(inputs)),
        "outputs": {entry.output.name: judgement},
    }
    if "accuracy" in judgement:
        report["accuracy"] = {"runner": judgement["accuracy"]["runner"], "torch": judgement["accuracy"]["reference"]}
    report["passed"] = all(o["passed"] for o in report["outputs"].values())
    if per_layer:
        from prelu_deploy.runners.layer_parity import per_layer as layer_errors

        if entry.is_plan:
            raise UsageError(f"{entry.path}: --per-layer compares an ONNX graph's tensors; run it on the ONNX entry")
        tol = TOLERANCES[entry.precision]
        report["per_layer"] = layer_errors(entry, model, inputs[:64], tol.max_abs_of_scale, tol.layer_min_cosine)
    return report
