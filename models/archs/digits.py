"""A small network for 8×8 grey digits (scikit-learn's handwritten digits): two stages of two 3×3
convs, 2×2 max-pools, one hidden fc layer. About 0.1 M parameters."""

from torch import nn

from prelu_deploy.models.archs.layers import check_size, conv_act, linear_act, named, out_size, scaled
from prelu_deploy.models.registry import register_model


@register_model((0.5,), (0.5,))
def digits_prelu(
    num_classes: int = 10, in_chans: int = 1, input_size: int = 8, act: str = "prelu_shared", width: float = 1.0
) -> nn.Module:
    c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(128, width)
    size = out_size(out_size(input_size, 2, 2), 2, 2)
    check_size("digits_prelu", input_size, size)
    return named(
        [
            *conv_act(in_chans, c1, act),
            *conv_act(c1, c1, act),
            nn.MaxPool2d(2, 2),
            *conv_act(c1, c2, act),
            *conv_act(c2, c2, act),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Dropout(0.25),
            *linear_act(c2 * size * size, hidden, act),
            nn.Linear(hidden, num_classes),
        ]
    )
