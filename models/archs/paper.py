"""Models A, B and C of He et al. 2015, Table 3.

7×7/2 conv with 96 filters → 3×3/3 max-pool → three stages of 3×3 convs separated by 2×2/2
max-pools (A: 5 convs a stage at 256/512/512 filters; B: 6 a stage; C: 6 a stage at 384/768/896) →
spatial pyramid pooling {7, 3, 2, 1} → fc 4096 → fc 4096 → classes, with dropout 0.5 after each
hidden fc. `width` scales every layer's filters and units so tests can build small versions.
"""

from torch import nn

from prelu_deploy.models.archs.layers import SpatialPyramidPooling, check_size, conv_act, linear_act, named, out_size, scaled
from prelu_deploy.models.registry import register_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PaperNet(nn.Module):
    def __init__(
        self,
        arch: str,
        stages: tuple[int, ...],
        convs: int,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        act: str,
        width: float,
    ):
        super().__init__()
        # 7×7/2 conv (pad 3) → 3×3/3 pool → stage → 2×2/2 pool → stage → 2×2/2 pool → stage
        size = out_size(out_size(input_size, 7, 2, 3), 3, 3)
        cin = scaled(96, width)
        layers = conv_act(in_chans, cin, act, kernel=7, stride=2, padding=3) + [nn.MaxPool2d(3, 3)]
        for i, filters in enumerate(stages):
            if i:
                layers.append(nn.MaxPool2d(2, 2))
                size = out_size(size, 2, 2)
            for _ in range(convs):
                layers += conv_act(cin, scaled(filters, width), act)
                cin = scaled(filters, width)
        check_size(arch, input_size, size)
        self.features = named(layers)
        self.spp = SpatialPyramidPooling(cin, size)
        hidden = scaled(4096, width)
        self.classifier = named(
            [
                *linear_act(self.spp.out_features, hidden, act, dropout=0.5),
                *linear_act(hidden, hidden, act, dropout=0.5),
                nn.Linear(hidden, num_classes),
            ]
        )

    def forward(self, x):
        return self.classifier(self.spp(self.features(x)))


@register_model(IMAGENET_MEAN, IMAGENET_STD)
def model_a(
    num_classes: int = 1000, in_chans: int = 3, input_size: int = 224, act: str = "prelu_channel", width: float = 1.0
) -> nn.Module:
    """Model A: 19 weight layers (VGG-19-like)."""
    return PaperNet(
        "model_a", (256, 512, 512), 5, num_classes=num_classes, in_chans=in_chans, input_size=input_size, act=act, width=width
    )


@register_model(IMAGENET_MEAN, IMAGENET_STD)
def model_b(
    num_classes: int = 1000, in_chans: int = 3, input_size: int = 224, act: str = "prelu_channel", width: float = 1.0
) -> nn.Module:
    """Model B: A made deeper, 6 convs a stage (22 weight layers)."""
    return PaperNet(
        "model_b", (256, 512, 512), 6, num_classes=num_classes, in_chans=in_chans, input_size=input_size, act=act, width=width
    )


@register_model(IMAGENET_MEAN, IMAGENET_STD)
def model_c(
    num_classes: int = 1000, in_chans: int = 3, input_size: int = 224, act: str = "prelu_channel", width: float = 1.0
) -> nn.Module:
    """Model C: B made wider, 384/768/896 filters."""
    return PaperNet(
        "model_c", (384, 768, 896), 6, num_classes=num_classes, in_chans=in_chans, input_size=input_size, act=act, width=width
    )
