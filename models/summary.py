"""What a model is: an architecture summary (`inspect`) and the learned PReLU slopes per layer (the view of
He et al. 2015, Table 1: channel-shared slopes, and the mean of channel-wise ones, layer by layer)."""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prelu_deploy.models.prelu import PReLU


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def slope_report(model: nn.Module) -> list[dict]:
    """One row per PReLU: the weight layer it follows, channel-shared or channel-wise, and its slopes."""
    rows, last = [], None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = name
        elif isinstance(module, PReLU):
            a = module.weight.detach().double()
            rows.append(
                {
                    "layer": name,
                    "after": last,
                    "kind": "channel-shared" if module.shared else "channel-wise",
                    "channels": a.numel(),
                    "mean": float(a.mean()),
                    "min": float(a.min()),
                    "max": float(a.max()),
                }
            )
    return rows


def flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on one image, as counted by torch."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(torch.zeros(1, *input_shape))
    return counter.get_total_flops()


def summary(model: nn.Module) -> dict:
    """Architecture summary of a model made by create_model."""
    cfg = model.config
    layers = _weighted_layers(model)
    shape = (cfg.in_chans, cfg.input_size, cfg.input_size)
    return {
        "arch": model.arch,
        "kwargs": model.arch_kwargs,
        "act": cfg.act,
        "input_shape": list(shape),
        "num_classes": cfg.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "conv_layers": sum(isinstance(m, nn.Conv2d) for _, m in layers),
        "linear_layers": sum(isinstance(m, nn.Linear) for _, m in layers),
        "prelu_layers": sum(isinstance(m, PReLU) for m in model.modules()),
        "gflops_per_image": flops_per_image(model, shape) / 1e9,
    }
