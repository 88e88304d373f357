"""What a model is: an architecture summary (`inspect`) and the learned PReLU slopes per layer (the view of
He et al. 2015, Table 1: channel-shared slopes, and the mean of channel-wise ones, layer by layer)."""

import torch
from torch import nn

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
    """FLOPs (2 per multiply-add) of one forward pass on one image: its convolutions and linear layers, the
    way torch's FlopCounterMode counts them (bias adds, pooling and activations are not counted). Read from
    forward hooks: that counter imports torch._dynamo, which would double the start-up of `inspect`."""
    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            per_output = module.in_features
        total += 2 * output.numel() * per_output

    hooks = [m.register_forward_hook(count) for _, m in _weighted_layers(model)]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


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
