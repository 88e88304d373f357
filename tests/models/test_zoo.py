import pytest
import torch
from torch import nn

from prelu_deploy.errors import UsageError
from prelu_deploy.models import create_model, list_models, model_config
from prelu_deploy.models.archs.layers import SpatialPyramidPooling
from prelu_deploy.models.prelu import ACTIVATIONS, PReLU

from .sizes import SMALL


def test_zoo_lists_the_issue_architectures():
    assert list_models() == sorted(SMALL)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_architecture_builds_and_runs(name, act):
    model = create_model(name, act=act, num_classes=7, **SMALL[name])
    cfg = model.config
    assert (model.arch, model.arch_kwargs) == (name, {"act": act, "num_classes": 7, **SMALL[name]})
    logits = model.eval()(torch.randn(3, cfg.in_chans, cfg.input_size, cfg.input_size))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    prelus = [m for m in model.modules() if isinstance(m, PReLU)]
    if act.startswith("prelu"):
        assert prelus and all(m.shared == (act == "prelu_shared") for m in prelus)
        assert all(torch.all(m.weight == 0.25) for m in prelus)
    else:
        assert not prelus


@pytest.mark.parametrize("name", list_models())
def test_config_record(name):
    cfg = model_config(name)
    assert len(cfg.mean) == len(cfg.std) == cfg.in_chans
    assert cfg.act in ACTIVATIONS and cfg.num_classes >= 10


def test_model_a_full_size_gives_1000_logits():
    """Built and run on torch's meta device: the layers and every shape as on the CPU, without drawing and
    multiplying 200 M weights (what is computed is tested at small sizes above)."""
    with torch.device("meta"):
        model = create_model("model_a").eval()
        with torch.inference_mode():
            assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(fcs) == 19  # "19 weight layers"
    assert convs[0].kernel_size == (7, 7) and convs[0].stride == (2, 2) and convs[0].out_channels == 96
    assert [m.out_features for m in fcs] == [4096, 4096, 1000]
    # 224 → 112 (7×7/2) → 37 (3×3/3) → 18 → 9; SPP on 9×9: levels 7, 3, 2, 1 give 8², 3², 2², 1² bins
    assert model.spp.size == 9 and fcs[0].in_features == 512 * (64 + 9 + 4 + 1)


@pytest.mark.parametrize(
    "name,convs,widths", [("model_a", 5, (256, 512, 512)), ("model_b", 6, (256, 512, 512)), ("model_c", 6, (384, 768, 896))]
)
def test_paper_table3_layouts(name, convs, widths):
    with torch.device("meta"):  # the layout only: no weights drawn
        model = create_model(name, input_size=64)  # full widths; a small input keeps fc1 small
    outs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert outs == [96] + [w for w in widths for _ in range(convs)]
    pools = [(m.kernel_size, m.stride) for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert pools == [(3, 3), (2, 2), (2, 2)]


@pytest.mark.parametrize("size,level,bins", [(9, 7, 8), (13, 7, 12), (14, 7, 7), (13, 3, 3), (9, 2, 2), (2, 7, 2), (6, 1, 1)])
def test_spp_window_ceil_stride_floor(size, level, bins):
    spp = SpatialPyramidPooling(channels=3, size=size, levels=(level,))
    out = spp(torch.randn(2, 3, size, size))
    assert spp.out_features == out.shape[1] == 3 * bins * bins


def test_spp_pools_max_over_each_window():
    spp = SpatialPyramidPooling(channels=1, size=4, levels=(2, 1))
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert spp(x).tolist() == [[5.0, 7.0, 13.0, 15.0, 15.0]]


def test_unknown_architecture_names_the_available_ones():
    with pytest.raises(UsageError, match="unknown architecture 'resnet50'; available: alexnet_prelu, cifar_prelu"):
        create_model("resnet50")


def test_unknown_keyword_and_bad_values_are_refused():
    with pytest.raises(UsageError, match="digits_prelu does not take depth"):
        create_model("digits_prelu", depth=3)
    with pytest.raises(UsageError, match="unknown activation 'gelu'"):
        create_model("cifar_prelu", act="gelu")
    with pytest.raises(UsageError, match="input_size 4 is too small"):
        create_model("cifar_prelu", input_size=4)
    with pytest.raises(UsageError, match="too small"):
        create_model("model_a", input_size=16)


@pytest.mark.parametrize("name", list_models())
def test_flops_are_what_torchs_counter_counts(name):
    """inspect's and the manifest's FLOPs (forward hooks) equal torch's FlopCounterMode, at full size (on
    the meta device: shapes only) and at the small size."""
    from torch.utils.flop_counter import FlopCounterMode

    from prelu_deploy.models.summary import flops_per_image

    for kwargs in ({}, SMALL[name]):
        with torch.device("meta"):
            model = create_model(name, **kwargs).eval()
        cfg = model.config
        shape = (cfg.in_chans, cfg.input_size, cfg.input_size)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(torch.zeros(1, *shape, device="meta"))
        assert flops_per_image(model, shape) == counter.get_total_flops() > 0
