"""He initialisation for rectifier networks, generalised to PReLU (He et al. 2015, sec. 2.2).

A layer's weights are drawn from N(0, std²) with std = sqrt(2 / ((1 + a²)·n)), where `a` is the
negative slope of the rectifier that follows and n = k²·c (forward case, eq. 15: keeps the variance of
the responses) or n = k²·d (backward case: keeps the variance of the gradients). a = 0 gives ReLU's
sqrt(2/n). Biases start at 0.
"""

import math

from torch import nn

from prelu_deploy.errors import UsageError

MODES = ("fan_in", "fan_out")


def he_std(fan: int, a: float = 0.0) -> float:
    return math.sqrt(2.0 / ((1.0 + a * a) * fan))


def fan(weight, mode: str = "fan_in") -> int:
    """n of the paper: k²·c input connections (fan_in) or k²·d output connections (fan_out)."""
    if mode not in MODES:
        raise UsageError(f"unknown He init mode {mode!r}; choose fan_in (forward) or fan_out (backward)")
    receptive = weight[0, 0].numel()  # k² for a conv, 1 for a linear layer
    return receptive * weight.shape[1 if mode == "fan_in" else 0]


def he_init_(model: nn.Module, a: float, mode: str = "fan_in") -> nn.Module:
    """Initialise every conv and linear layer of `model` in place; batch norm to the identity."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, he_std(fan(module.weight, mode), a))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups: weight decay on conv/linear weights only. The paper applies none to the
    PReLU slopes (it would push them towards 0, i.e. towards ReLU); biases and batch-norm affine
    parameters are left undecayed too, as is common."""
    decay = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]
