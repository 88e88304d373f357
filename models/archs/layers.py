"""Building blocks shared by the zoo."""

import math
from collections import Counter, OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from prelu_deploy.errors import UsageError
from prelu_deploy.models.prelu import activation


def scaled(channels: int, width: float) -> int:
    """Channel count scaled by `width` (small test versions of the paper's models)."""
    return max(1, round(channels * width))


def out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a conv or a (floor-mode) pooling window."""
    return (size + 2 * padding - kernel) // stride + 1


def check_size(arch: str, input_size: int, final_size: int) -> None:
    """Refuse an input so small that the feature map vanishes before the classifier."""
    if final_size < 1:
        raise UsageError(f"{arch}: input_size {input_size} is too small: the feature map shrinks to nothing")


def conv_act(
    cin: int, cout: int, act: str, kernel: int = 3, stride: int = 1, padding: int = 1, bn: bool = False
) -> list[nn.Module]:
    """conv → [batch norm] → rectifier."""
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=not bn)
    return [conv, nn.BatchNorm2d(cout), activation(act, cout)] if bn else [conv, activation(act, cout)]


def linear_act(fin: int, fout: int, act: str, dropout: float = 0.0) -> list[nn.Module]:
    """linear → rectifier → [dropout]."""
    layers: list[nn.Module] = [nn.Linear(fin, fout), activation(act, fout)]
    return layers + [nn.Dropout(dropout)] if dropout else layers


_KINDS = {
    nn.Conv2d: "conv",
    nn.Linear: "fc",
    nn.MaxPool2d: "pool",
    nn.Dropout: "drop",
    nn.LocalResponseNorm: "lrn",
    nn.Flatten: "flatten",
    nn.AdaptiveAvgPool2d: "gap",
}


def named(layers: list[nn.Module]) -> nn.Sequential:
    """A Sequential whose children read like the paper: conv1, conv1_bn, conv1_act, pool1, fc1, …
    (batch norm and rectifier take the name of the weight layer before them)."""
    counts: Counter = Counter()
    names, last = [], None
    for layer in layers:
        kind = next((k for t, k in _KINDS.items() if isinstance(layer, t)), None)
        if kind is None:  # batch norm or rectifier: belongs to the preceding weight layer
            names.append(f"{last}_{'bn' if isinstance(layer, nn.BatchNorm2d) else 'act'}")
            continue
        counts[kind] += 1
        names.append(kind if kind in ("flatten", "gap") else f"{kind}{counts[kind]}")
        if kind in ("conv", "fc"):
            last = names[-1]
    return nn.Sequential(OrderedDict(zip(names, layers)))


class SpatialPyramidPooling(nn.Module):
    """Max pooling over a pyramid of grids (He et al., SPP-net), concatenated.

    For an a×a feature map, level n pools with window ceil(a/n) and stride floor(a/n) (clamped to
    ≥ 1). Sizes are fixed at construction from the input size, so every window is a constant and the
    module exports to ONNX as plain MaxPool ops. That formula yields floor((a - ceil(a/n)) / floor(a/n)) + 1
    bins per side, which is n for most a but not all (a = 9, n = 7 gives 8): `out_features` counts
    what the formula gives.
    """

    def __init__(self, channels: int, size: int, levels: tuple[int, ...] = (7, 3, 2, 1)):
        super().__init__()
        self.size = size
        self.levels = tuple(levels)
        self.windows = [(math.ceil(size / n), max(1, size // n)) for n in self.levels]
        self.out_features = channels * sum(out_size(size, k, s) ** 2 for k, s in self.windows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.max_pool2d(x, k, s).flatten(1) for k, s in self.windows], dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, size={self.size}, (window, stride)={self.windows}"
