"""A compact VGG-style network for 32×32 RGB images: three stages of two 3×3 conv + batch norm +
rectifier blocks, 2×2 max-pools between them, global average pooling, one linear classifier."""

from torch import nn

from prelu_deploy.models.archs.layers import check_size, conv_act, named, out_size, scaled
from prelu_deploy.models.registry import register_model

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@register_model(CIFAR_MEAN, CIFAR_STD)
def cifar_prelu(
    num_classes: int = 10, in_chans: int = 3, input_size: int = 32, act: str = "prelu_shared", width: float = 1.0
) -> nn.Module:
    layers: list[nn.Module] = []
    cin, size = in_chans, input_size
    for i, filters in enumerate((64, 128, 256)):
        cout = scaled(filters, width)
        layers += conv_act(cin, cout, act, bn=True) + conv_act(cout, cout, act, bn=True)
        layers.append(nn.MaxPool2d(2, 2))
        cin, size = cout, out_size(size, 2, 2)
    check_size("cifar_prelu", input_size, size)
    return named([*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, num_classes)])
