import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from prelu_deploy.errors import CheckpointError
from prelu_deploy.models import create_model, list_models, load_checkpoint, save_checkpoint
from prelu_deploy.models.preprocess import Preprocess

from .sizes import SMALL

PRE = Preprocess(size=(8, 8), channels=1, mean=(0.3,), std=(0.4,))


@pytest.mark.parametrize("name", list_models())
def test_round_trip_is_exact(tmp_path, name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    with torch.no_grad():  # non-default slopes, so a lost tensor would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_checkpoint(
        model,
        tmp_path / "m.safetensors",
        labels=list("abcdefghij"),
        preprocess=PRE,
        metrics={"accuracy": 0.5},
        training={"epochs": 1},
    )
    loaded, meta = load_checkpoint(path)
    cfg = model.config
    x = torch.randn(2, cfg.in_chans, cfg.input_size, cfg.input_size)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert (meta.arch, meta.kwargs, meta.labels, meta.preprocess) == (name, SMALL[name], list("abcdefghij"), PRE)
    assert meta.metrics == {"accuracy": 0.5} and meta.training == {"epochs": 1} and len(meta.sha256) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind
    assert not loaded.training


@pytest.fixture
def digits(tmp_path):
    torch.manual_seed(0)
    model = create_model("digits_prelu", width=0.25)
    return model, save_checkpoint(model, tmp_path / "d.safetensors", preprocess=PRE)


def _rewrite(path, tensors=None, meta=None):
    """Rewrite a checkpoint with changed tensors or metadata, as a foreign tool might have written it."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        old = json.loads(f.metadata()["prelu_deploy"])
    state = tensors(state) if tensors else state
    save_file(state, path, metadata={"prelu_deploy": json.dumps(meta(old) if meta else old)})
    return path


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_truncated_safetensors(digits):
    _, path = digits
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load_checkpoint(path)


def test_unknown_architecture(digits):
    path = _rewrite(digits[1], meta=lambda m: {**m, "arch": "resnet50"})
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet50'; available: alexnet_prelu"):
        load_checkpoint(path)


def test_unsupported_format_version(digits):
    path = _rewrite(digits[1], meta=lambda m: {**m, "format_version": 99})
    with pytest.raises(CheckpointError, match="unsupported format version 99"):
        load_checkpoint(path)


def test_missing_unexpected_and_misshaped_tensors_are_all_listed(digits):
    def damage(state):
        del state["conv1.weight"], state["fc2.bias"]
        state["extra.weight"] = torch.zeros(1)
        state["conv2.weight"] = torch.zeros(3, 3, 3, 3)
        return state

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_rewrite(digits[1], tensors=damage))
    message = str(err.value)
    assert "\n" not in message
    assert "missing tensors: conv1.weight, fc2.bias" in message
    assert "unexpected tensors: extra.weight" in message
    assert "mis-shaped tensors: conv2.weight (3, 3, 3, 3) (model wants (8, 8, 3, 3))" in message


def test_pickles_with_code_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "arch": "digits_prelu", "hook": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()

    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(legacy)
    assert not marker.exists()


def test_plain_pytorch_files(tmp_path, digits):
    model, _ = digits
    full = tmp_path / "full.pt"
    torch.save({"arch": "digits_prelu", "kwargs": {"width": 0.25}, "state_dict": model.state_dict()}, full)
    loaded, meta = load_checkpoint(full)
    assert meta.arch == "digits_prelu" and torch.equal(loaded.conv1.weight, model.conv1.weight)

    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    with pytest.raises(CheckpointError, match=r"bare state dict .* \(--arch NAME\)"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="mis-shaped"):  # default width 1.0 does not fit
        load_checkpoint(bare, arch="digits_prelu")


def test_bad_safetensors_header_length(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(path)


def test_save_refuses_a_module_not_from_the_zoo(tmp_path):
    with pytest.raises(CheckpointError, match="not made by create_model"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert not any(tmp_path.iterdir())


def test_failed_save_keeps_the_old_file(tmp_path, digits, monkeypatch):
    model, path = digits
    before = path.read_bytes()
    import prelu_deploy.atomic as atomic

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)  # the write fails half-way, after data went out
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(create_model("digits_prelu", width=0.25), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["d.safetensors"]
