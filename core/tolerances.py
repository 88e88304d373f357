"""Parity tolerances, one per precision: what `parity`, the server's gate and `quantize` all judge by
(here, at the bottom of the house, so export and runners read the same numbers)."""

from dataclasses import dataclass


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
