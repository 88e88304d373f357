"""AlexNet (Krizhevsky et al. 2012) with PReLU: overlapping 3×3/2 max-pooling, local response
normalisation after the first two convs, dropout 0.5 in the classifier."""

from torch import nn

from prelu_deploy.models.archs.layers import check_size, conv_act, linear_act, named, out_size, scaled
from prelu_deploy.models.archs.paper import IMAGENET_MEAN, IMAGENET_STD
from prelu_deploy.models.registry import register_model


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


@register_model(IMAGENET_MEAN, IMAGENET_STD)
def alexnet_prelu(
    num_classes: int = 1000, in_chans: int = 3, input_size: int = 224, act: str = "prelu_channel", width: float = 1.0
) -> nn.Module:
    c1, c2, c3, c4, c5 = (scaled(c, width) for c in (96, 256, 384, 384, 256))
    size = out_size(input_size, 11, 4, 2)
    for _ in range(3):  # three overlapping 3×3/2 pools; the 5×5 and 3×3 convs keep the size
        size = out_size(size, 3, 2)
    check_size("alexnet_prelu", input_size, size)
    hidden = scaled(4096, width)
    return named(
        [
            *conv_act(in_chans, c1, act, kernel=11, stride=4, padding=2),
            _lrn(),
            nn.MaxPool2d(3, 2),
            *conv_act(c1, c2, act, kernel=5, padding=2),
            _lrn(),
            nn.MaxPool2d(3, 2),
            *conv_act(c2, c3, act),
            *conv_act(c3, c4, act),
            *conv_act(c4, c5, act),
            nn.MaxPool2d(3, 2),
            nn.Flatten(),
            nn.Dropout(0.5),
            *linear_act(c5 * size * size, hidden, act),
            nn.Dropout(0.5),
            *linear_act(hidden, hidden, act),
            nn.Linear(hidden, num_classes),
        ]
    )
