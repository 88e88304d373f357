"""Rectifiers of He et al. 2015, "Delving Deep into Rectifiers".

PReLU: f(y) = max(0, y) + a·min(0, y), with `a` learned per channel (channel-wise) or one per layer
(channel-shared), initialised to 0.25 (paper, sec. 2.1). ReLU and a fixed-slope leaky ReLU are here so
the paper's ReLU-vs-PReLU comparison can be rerun on any architecture.
"""

from torch import nn

from prelu_deploy.errors import UsageError

ACTIVATIONS = ("prelu_channel", "prelu_shared", "relu", "leaky")
PRELU_INIT = 0.25
LEAKY_SLOPE = 0.01


class PReLU(nn.PReLU):
    """Paper PReLU. A subclass of nn.PReLU so that ONNX export emits the standard `PRelu` op."""

    def __init__(self, channels: int, shared: bool):
        super().__init__(num_parameters=1 if shared else channels, init=PRELU_INIT)
        self.shared = shared

    def extra_repr(self) -> str:
        return f"{'channel-shared' if self.shared else f'channel-wise, {self.num_parameters}'}"


def check_act(act: str) -> str:
    if act not in ACTIVATIONS:
        raise UsageError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    return act


def activation(act: str, channels: int) -> nn.Module:
    """The rectifier named `act` for a layer of `channels` channels."""
    check_act(act)
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    return PReLU(channels, shared=act == "prelu_shared")


def initial_slope(act: str) -> float:
    """The negative slope `a` the rectifier starts with: what He initialisation accounts for."""
    return {"relu": 0.0, "leaky": LEAKY_SLOPE}.get(check_act(act), PRELU_INIT)
