"""The PyTorch reference that parity judges by: a model's logits in float32 and float64, and the fraction
of negative pre-activations each PReLU layer saw (whether a parity run exercised the slopes at all)."""

import copy

import numpy as np
import torch
from torch import nn

from prelu_deploy.models.prelu import PReLU


def negative_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per PReLU layer, the fraction of its inputs (pre-activations) below zero on batch `x`: shows
    whether a parity run exercised the slopes at all."""
    seen: dict[str, float] = {}

    def record(name):
        return lambda mod, args: seen.__setitem__(name, float((args[0] < 0).double().mean()))

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if isinstance(m, PReLU)]
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def eager_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """float32 logits of `model`, eager on the CPU: the reference's forward, and the lower-level helper
    `classify` runs a bare checkpoint with (it has no model entry for the runners' registry)."""
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


def reference_logits(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch logits in float32 and in float64 (a copy of the model), the latter to tell float32
    rounding from real divergence."""
    with torch.inference_mode():
        fp64 = copy.deepcopy(model).double().eval()(torch.from_numpy(x).double()).numpy()
    return eager_logits(model, x), fp64
