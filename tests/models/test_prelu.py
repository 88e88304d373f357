import pytest
import torch
from torch import nn

from prelu_deploy.errors import UsageError
from prelu_deploy.models.init import param_groups
from prelu_deploy.models.prelu import LEAKY_SLOPE, PRELU_INIT, PReLU, activation, initial_slope


@pytest.mark.parametrize("shared", [True, False])
def test_prelu_is_the_papers_function(shared):
    act = PReLU(4, shared=shared)
    assert act.weight.numel() == (1 if shared else 4)
    assert torch.all(act.weight == PRELU_INIT)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([-0.5]) if shared else torch.tensor([-0.5, 0.0, 1.0, 2.5]))
    y = torch.randn(3, 4, 5, 5)
    a = act.weight.view(1, -1, 1, 1)
    expected = torch.clamp(y, min=0) + a * torch.clamp(y, max=0)
    assert torch.equal(act(y), expected)


def test_prelu_on_fc_features_is_per_unit():
    act = PReLU(6, shared=False)
    with torch.no_grad():
        act.weight.copy_(torch.arange(6.0))
    y = -torch.ones(2, 6)
    assert torch.equal(act(y), -torch.arange(6.0).expand(2, 6))


def test_activation_factory():
    assert isinstance(activation("relu", 8), nn.ReLU)
    assert activation("leaky", 8).negative_slope == LEAKY_SLOPE
    assert activation("prelu_shared", 8).shared and activation("prelu_shared", 8).weight.numel() == 1
    assert not activation("prelu_channel", 8).shared and activation("prelu_channel", 8).weight.numel() == 8
    assert [initial_slope(a) for a in ("relu", "leaky", "prelu_shared", "prelu_channel")] == [0, LEAKY_SLOPE, 0.25, 0.25]
    with pytest.raises(UsageError, match="prelu_channel, prelu_shared, relu, leaky"):
        activation("swish", 8)


def test_no_weight_decay_on_slopes():
    """A step with zero gradient and weight decay moves the conv weights but never the slopes."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), PReLU(4, shared=False), nn.Linear(4, 2), PReLU(1, shared=True))
    groups = param_groups(model, weight_decay=0.1)
    assert {id(p) for p in groups[0]["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert groups[1]["weight_decay"] == 0.0
    assert {id(model[1].weight), id(model[3].weight)} <= {id(p) for p in groups[1]["params"]}
    opt = torch.optim.SGD(groups, lr=1.0, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(zip([id(p) for p in model.parameters()], before))
    assert torch.equal(model[1].weight, after[id(model[1].weight)])
    assert torch.equal(model[3].weight, after[id(model[3].weight)])
    assert not torch.equal(model[0].weight, after[id(model[0].weight)])
