"""Parity of a runner against PyTorch, with tolerances that depend on precision and are stated.

The reference runs in float32 and in float64: the float64 logits are the truth, and the float32
PyTorch error against them is the noise floor any float32 runner shares. A top-1 flip counts as a
failure only where PyTorch's top-1/top-2 margin exceeds `margin_eps` of the logit scale (near-ties
flip legitimately at lower precision).
"""

from dataclasses import asdict
from pathlib import Path

import numpy as np

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.runners.runner import get_runner, run_batched
from prelu_deploy.tolerances import TOLERANCES


def judged(real: np.ndarray, precision: str) -> np.ndarray:
    """The rows a tolerance class judges: all of them, or for INT8 the real images only."""
    return real if precision == "int8" else np.ones_like(real)


def compare(out: np.ndarray, ref32: np.ndarray, ref64: np.ndarray, precision: str = "fp32") -> dict:
    """Every number of the parity report for one output tensor."""
    tol = TOLERANCES[precision]
    out64 = out.astype(np.float64)
    scale = float(np.abs(ref64).max()) or 1.0
    err = np.abs(out64 - ref64)
    cos = (out64 * ref64).sum(1) / (np.linalg.norm(out64, axis=1) * np.linalg.norm(ref64, axis=1) + 1e-300)
    top2 = np.sort(ref64, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > tol.margin_eps * scale
    flips = out.argmax(1) != ref64.argmax(1)
    agreement_decided = 1 - (flips & decided).sum() / max(int(decided.sum()), 1)
    k = min(5, ref64.shape[1])
    top5 = np.mean([len(set(a) & set(b)) / k for a, b in zip(np.argsort(-out64, 1)[:, :k], np.argsort(-ref64, 1)[:, :k])])
    report = {
        "n": len(out), "precision": precision, "logit_scale": scale, "tolerance": asdict(tol),
        "max_abs": float(err.max()), "mean_abs": float(err.mean()),
        "max_rel": float((err / np.maximum(np.abs(ref64), 1e-6 * scale)).max()),
        "max_abs_vs_torch_fp32": float(np.abs(out64 - ref32).max()),
        "torch_fp32_noise": float(np.abs(ref32.astype(np.float64) - ref64).max()),
        "min_cosine": float(cos.min()), "top1_agreement": float(1 - flips.mean()),
        "top1_flips": int(flips.sum()), "top1_flips_beyond_margin": int((flips & decided).sum()),
        "top5_overlap": float(top5),
    }
    report["failures"] = [msg for bad, msg in (
        (tol.max_abs_of_scale is not None and report["max_abs"] > (tol.max_abs_of_scale or 0) * scale,
         f"max abs error {report['max_abs']:.3g} > {tol.max_abs_of_scale or 0:g} × logit scale {scale:.3g}"),
        (tol.min_cosine is not None and report["min_cosine"] < (tol.min_cosine or 0), f"cosine {report['min_cosine']:.6f} < {tol.min_cosine}"),
        (agreement_decided < tol.min_top1, f"{report['top1_flips_beyond_margin']} top-1 flips where PyTorch's margin exceeds "
                                           f"{tol.margin_eps:g} × scale (agreement {agreement_decided:.1%} < {tol.min_top1:.0%})"),
    ) if bad]
    report["passed"] = not report["failures"]
    return report


def run_parity(model_dir: str | Path, backend: str | None = None, dataset: str | None = None, n: int = 256,
               checkpoint: str | Path | None = None, per_layer: bool = False, **runner_options) -> dict:
    """Run the runner (default: the one the entry's artifact runs on) and the PyTorch reference on the
    same inputs: up to `n` held-out images plus the entry's golden inputs (crafted so every PReLU sees
    negative pre-activations). Tolerances follow the entry's precision."""
    import torch

    from prelu_deploy.models.data import held_out
    from prelu_deploy.models.preprocess import Preprocess
    from prelu_deploy.models.report import negative_fractions, reference_logits
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
    rows = judged(np.concatenate([np.ones(len(images), bool), entry.golden_real()]), runner.precision)
    report = {"model_dir": str(entry.path), "backend": runner.name, "lowering": entry.lowering,
              "dataset": dataset, "inputs": {"held_out": len(images), "golden": len(golden)},
              "negative_fraction": negative_fractions(model, torch.from_numpy(inputs)),
              "outputs": {entry.output.name: compare(out[rows], ref32[rows], ref64[rows], precision=runner.precision)}}
    if labels is not None:
        k = len(images)
        acc = report["accuracy"] = {"runner": float((out[:k].argmax(1) == labels).mean()),
                                    "torch": float((ref64[:k].argmax(1) == labels).mean())}
        drop, limit = acc["torch"] - acc["runner"], TOLERANCES[runner.precision].max_accuracy_drop
        if limit is not None and drop > limit:
            report["outputs"][entry.output.name]["failures"].append(
                f"held-out accuracy drop {100 * drop:.2f} points > {100 * limit:g} ({acc['runner']:.2%} vs PyTorch {acc['torch']:.2%})")
            report["outputs"][entry.output.name]["passed"] = False
    report["passed"] = all(o["passed"] for o in report["outputs"].values())
    if per_layer:
        from prelu_deploy.runners.layers import per_layer as layer_errors

        if entry.is_plan:
            raise UsageError(f"{entry.path}: --per-layer compares an ONNX graph's tensors; run it on the ONNX entry")
        tol = TOLERANCES[entry.precision]
        report["per_layer"] = layer_errors(entry, model, inputs[:64], tol.max_abs_of_scale, tol.layer_min_cosine)
    return report
