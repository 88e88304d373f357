import pytest
import torch

from prelu_deploy.errors import PreluDeployError
from prelu_deploy.models import create_model
from prelu_deploy.models.data import load_digits
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.models.train import TrainConfig, evaluate, train


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data, Preprocess.fitted(data.train.images)


def _trained(digits, seed, epochs=2, **cfg):
    data, pre = digits
    torch.manual_seed(seed)
    model = create_model("digits_prelu", width=0.5)
    summary = train(model, data, pre, TrainConfig(epochs=epochs, seed=seed, **cfg))
    return model, summary


def test_training_is_deterministic_for_a_seed(digits):
    a, sa = _trained(digits, seed=3)
    b, sb = _trained(digits, seed=3)
    c, _ = _trained(digits, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [r["train_loss"] for r in sa["history"]] == [r["train_loss"] for r in sb["history"]]
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_training_learns_and_slopes_move(digits):
    model, summary = _trained(digits, seed=0, epochs=4)
    history = summary["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert evaluate(model, digits[0].test, digits[1])["accuracy"] > 0.7  # chance is 0.1
    assert not torch.all(model.conv1_act.weight == 0.25)  # the slopes are learned
    assert summary["config"]["seed"] == 0 and summary["test_size"] == 360


def test_divergence_is_reported(digits):
    with pytest.raises(PreluDeployError, match="training diverged in epoch 1"):
        _trained(digits, seed=0, epochs=1, lr=1e6)
