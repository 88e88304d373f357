"""He initialisation: the formula, and the statistical property that makes it matter (sec. 2.2)."""

import math

import pytest
import torch
from torch import nn

from prelu_deploy.errors import UsageError
from prelu_deploy.models import create_model
from prelu_deploy.models.init import fan, he_init_, he_std
from prelu_deploy.models.prelu import PReLU


def test_he_std_formula():
    assert he_std(9 * 64) == pytest.approx(math.sqrt(2 / (9 * 64)))  # ReLU: sqrt(2/n)
    assert he_std(100, a=0.25) == pytest.approx(math.sqrt(2 / (1.0625 * 100)))
    assert he_std(100, a=1.0) == pytest.approx(math.sqrt(1 / 100))  # linear: a = 1 halves nothing


def test_fan_forward_and_backward():
    w = torch.empty(32, 16, 3, 3)  # d = 32 filters, c = 16 input channels, k = 3
    assert fan(w, "fan_in") == 9 * 16
    assert fan(w, "fan_out") == 9 * 32
    assert fan(torch.empty(10, 50), "fan_in") == 50
    with pytest.raises(UsageError):
        fan(w, "both")


@pytest.mark.parametrize("arch,act", [("digits_prelu", "prelu_shared"), ("cifar_prelu", "relu"), ("model_a", "prelu_channel")])
def test_create_model_draws_he_weights(arch, act):
    kwargs = {"width": 0.25, "input_size": 64} if arch == "model_a" else {}
    torch.manual_seed(0)
    model = create_model(arch, act=act, **kwargs)
    a = 0.0 if act == "relu" else 0.25
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() >= 5000:
            assert m.weight.std().item() == pytest.approx(he_std(fan(m.weight), a), rel=0.05)
            if m.bias is not None:
                assert torch.all(m.bias == 0)


def _top_variance(act: str, std: float | None, depth: int = 30, channels: int = 128, seeds: int = 8) -> float:
    """Variance of the pre-activations at the top of `depth` conv+rectifier layers relative to the
    first layer's (paper eq. 10: Var[y_L] = Var[y_1] · Π ½(1+a²) n_l Var[w_l]), as a geometric mean
    over `seeds` independent draws of the weights.

    Why so: the paper's result is about the expectation; one draw of a network of width c drifts from
    it by a log-normal factor of spread about sqrt(5·depth/c) (1.1 for c = 128), so a test of one narrow
    network would be noise. Circular padding: zero padding would shrink the variance at the borders, an
    effect the derivation leaves out."""
    logs = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        x = torch.randn(4, channels, 4, 4)
        first = None
        with torch.no_grad():
            for _ in range(depth):
                conv = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular", bias=False)
                if std is None:
                    he_init_(conv, a=0.0 if act == "relu" else 0.25)
                else:
                    nn.init.normal_(conv.weight, 0.0, std)
                y = conv(x)
                first = first or y.var().item()
                x = torch.relu(y) if act == "relu" else PReLU(channels, shared=act == "prelu_shared")(y)
        logs.append(math.log(y.var().item() / first))
    return math.exp(sum(logs) / len(logs))


@pytest.mark.parametrize("act", ["relu", "prelu_shared", "prelu_channel"])
def test_he_init_keeps_variance_through_30_layers(act):
    ratio = _top_variance(act, std=None)
    assert 0.25 < ratio < 4, ratio


@pytest.mark.parametrize("std,direction", [(0.01, "collapses"), (0.02, "collapses"), (0.08, "explodes")])
def test_naive_fixed_std_fails_through_30_layers(std, direction):
    # per-layer gain ½·n·std² with n = 9·128: 0.058, 0.23, 3.7 → over 29 layers ~1e-36, ~3e-19, ~3e16
    ratio = _top_variance("relu", std=std)
    assert (ratio < 1e-3) if direction == "collapses" else (ratio > 1e3), ratio
