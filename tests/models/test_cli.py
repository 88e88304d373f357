"""The real console script, run as a user runs it: each command once as a process; again, other output
formats and its refusals of bad input by its main() in this process (the same code, without importing
torch once more)."""

import json

import pytest


def test_help_and_version(cli):
    out = cli("--help").stdout
    assert all(cmd in out for cmd in ("train", "eval", "inspect"))
    assert cli("--version").stdout.startswith("prelu-deploy ")


def test_inspect_shipped_json(cli, shipped):
    info = json.loads(cli("inspect", shipped, "--json").stdout)
    assert info["arch"] == "digits_prelu" and info["act"] == "prelu_shared" and info["input_shape"] == [1, 8, 8]
    assert info["parameters"] == 99183 and info["prelu_layers"] == 5 and len(info["slopes"]) == 5
    assert info["gflops_per_image"] > 0 and info["preprocess"]["size"] == [8, 8]


def test_inspect_tables(cli_in_process, shipped):
    out = cli_in_process("inspect", shipped).stdout
    assert "learned PReLU slopes" in out and "conv1_act" in out and "channel-shared" in out


def test_eval_shipped(cli, cli_in_process, shipped):
    result = json.loads(cli("eval", shipped, "--dataset", "digits", "--json").stdout)
    assert result["n"] == 360 and result["accuracy"] >= 0.98
    assert "accuracy" in cli_in_process("eval", shipped).stdout  # the dataset defaults to the one it was trained on


def test_train_then_eval_an_image_folder(cli, cli_in_process, tmp_path):
    from PIL import Image

    from prelu_deploy.models.data import load_digits

    data = load_digits()
    for i, (img, label) in enumerate(zip(data.train.images[:300], data.train.labels[:300])):
        (tmp_path / "imgs" / f"d{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(tmp_path / "imgs" / f"d{label}" / f"{i}.png")
    out = tmp_path / "ckpt" / "m.safetensors"
    log = cli(
        "train", "--arch", "digits_prelu", "--dataset", tmp_path / "imgs", "--epochs", "10", "--width", "0.5", "--out", out
    ).stdout
    assert "epoch  10" in log and out.exists()
    result = json.loads(cli_in_process("eval", out, "--dataset", tmp_path / "imgs", "--split", "all", "--json").stdout)
    assert result["n"] == 300 and result["accuracy"] > 0.5
    info = json.loads(cli_in_process("inspect", out, "--json").stdout)
    assert info["labels"] == [f"d{i}" for i in range(10)] and info["kwargs"]["width"] == 0.5


@pytest.mark.parametrize(
    "args,rc,message",
    [
        (["eval", "nope.safetensors"], 3, "nope.safetensors: cannot read"),
        (["inspect", "{tmp}/notes.txt"], 3, "notes.txt: not a checkpoint"),
        (["train", "--arch", "resnet", "--out", "{tmp}/x.safetensors"], 2, "unknown architecture 'resnet'"),
        (["train", "--arch", "digits_prelu", "--act", "tanh", "--out", "{tmp}/x.safetensors"], 2, "unknown activation"),
        (["train", "--arch", "digits_prelu", "--out", "{shipped}"], 2, "exists; pass --force"),
        (["train", "--arch", "digits_prelu", "--dataset", "{tmp}/none", "--out", "{tmp}/x.safetensors"], 4, "no such folder"),
        (["eval", "{shipped}", "--split", "val"], 4, "unknown split 'val'"),
        (["train", "--arch", "digits_prelu", "--epochs", "0", "--out", "{tmp}/x.safetensors"], 2, "epochs"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(cli_in_process, tmp_path, shipped, args, rc, message):
    (tmp_path / "notes.txt").write_text("not a model")
    args = [a.format(tmp=tmp_path, shipped=shipped) for a in args]
    proc = cli_in_process(*args, check_rc=rc)
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
