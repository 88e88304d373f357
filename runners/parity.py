"""Parity of a runner against PyTorch, with tolerances that depend on precision and are stated.

The reference runs in float32 and in float64: the float64 logits are the truth, and the float32
PyTorch error against them is the noise floor any float32 runner shares. A top-1 flip counts as a
failure only where PyTorch's top-1/top-2 margin exceeds `margin_eps` of the logit scale (near-ties
flip legitimately at lower precision).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.runners.runner import get_runner, run_batched


@dataclass(frozen=True)
class Tolerance:
    max_abs_of_scale: float | None  # max |runner − float64 reference| ≤ this × max |reference logit| (None: reported only)
    min_cosine: float | None  # (None: reported only)
    margin_eps: float  # of the logit scale: rows whose top-1/top-2 margin is below it may flip
    min_top1: float = 1.0  # top-1 agreement with PyTorch over the rows beyond that margin
    max_accuracy_drop: float | None = None  # held-out accuracy, PyTorch minus runner (when labels are known)
    layer_min_cosine: float | None = None  # per-layer parity of INT8 graphs: a layer's cosine to PyTorch's

    def describe(self) -> str:
        gates = ([f"max abs ≤ {self.max_abs_of_scale:g} × logit scale"] if self.max_abs_of_scale is not None else []) + \
                ([f"cosine ≥ {self.min_cosine}"] if self.min_cosine is not None else []) + \
                [f"top-1 agreement ≥ {self.min_top1:.0%} where PyTorch's margin > {self.margin_eps:g} × scale"] + \
                ([f"held-out accuracy drop ≤ {100 * self.max_accuracy_drop:g} points"] if self.max_accuracy_drop is not None else [])
        return "; ".join(gates)


# fp32, tf32 and fp16: the numbers themselves; int8 (export.quantize): the answers, as INT8 deployments judge it.
# tf32 (10-bit mantissa products, fp32 accumulation) measured on an H100 (2026-11-25): torch/cuDNN
# convolution stacks shaped like these models 6.2–9.1e-4 of the largest logit, ONNX Runtime's CUDA
# provider ~1e-3 on cifar_prelu (TF32 off: 3–5e-7). 2e-3 holds those with a 2× margin for deeper models
# and stays 5× tighter than fp16's bound. Cosine: an error of 2e-3 of the scale costs well under 1e-4.
TOLERANCES = {"fp32": Tolerance(1e-4, 0.99999, 1e-3), "tf32": Tolerance(2e-3, 0.9999, 1e-2), "fp16": Tolerance(1e-2, 0.999, 5e-2),
              "int8": Tolerance(None, None, 5e-2, min_top1=0.99, max_accuracy_drop=0.005, layer_min_cosine=0.99)}


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
