"""INT8: a QDQ graph from ONNX Runtime's quantizer, calibrated on real digits, judged by the INT8
tolerance class (top-1 agreement, held-out accuracy drop) in parity and in the server's gate."""

import json

import onnx
import pytest

from prelu_deploy.errors import UsageError
from prelu_deploy.export.quantize import quantize_entry
from prelu_deploy.manifest import read_entry
from prelu_deploy.serve.repository.loader import load_model
from prelu_deploy.serve.settings import Settings
from .test_onnx_file import assert_readable


@pytest.fixture(scope="module")
def repo(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("q")
    for mode in ("leaky", "native"):
        quantize_entry(exported(root, f"d_{mode}", mode), n=256)
    return root


@pytest.mark.parametrize("mode, activation", [("leaky", "LeakyRelu"), ("native", "PRelu")])
def test_a_qdq_entry_records_how_and_what_it_cost(repo, mode, activation):
    e = read_entry(repo / f"d_{mode}_int8")
    assert e.precision == "int8" and e.lowering == mode and e.verify() == [] and e.name == f"d_{mode}_int8"
    q = e.int8
    assert q["format"] == "QDQ" and q["method"] == "minmax" and q["calibration"]["source"] == "digits"
    assert q["calibration"]["count"] == 256 and len(q["calibration"]["sha256"]) == 64
    scores = q["held_out"]
    assert scores["n"] == 360 and scores["accuracy_fp32"] - scores["accuracy_int8"] <= 0.005
    graph = onnx.load(e.artifact)
    assert_readable(graph)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 10 and activation in ops


def test_parity_and_the_gate_use_the_int8_tolerance(cli_in_process, repo):
    proc = cli_in_process("parity", repo / "d_leaky_int8", "--n", "360", "--json")
    report = json.loads(proc.stdout)
    out = report["outputs"]["logits"]
    assert report["passed"] and out["precision"] == "int8" and out["tolerance"]["min_top1"] == 0.99
    assert out["n"] == 360 + 4  # held-out images and the real golden rows; crafted noise is not judged
    served = load_model(repo / "d_leaky_int8", Settings())
    assert served.ready and served.parity["passed"]
    served.close()


def test_refusals(repo, tmp_path):
    with pytest.raises(UsageError, match="quantize an fp32 ONNX entry"):
        quantize_entry(repo / "d_leaky_int8", dest=tmp_path / "x")
    with pytest.raises(UsageError, match="--exclude: no node named nope"):
        quantize_entry(repo / "d_leaky", exclude=["nope"], dest=tmp_path / "x")
    with pytest.raises(UsageError, match="--method 'best'"):
        quantize_entry(repo / "d_leaky", method="best", dest=tmp_path / "x")
    with pytest.raises(UsageError, match="exists; pass --force"):
        quantize_entry(repo / "d_leaky")
    assert not (tmp_path / "x").exists()


def test_auto_exclude_keeps_the_drifting_modules_in_float(repo, tmp_path):
    """Calibrated on inputs 20× too small, every activation clips and INT8 collapses; --auto-exclude
    keeps the module that drifts first from fp32 in float, round after round, and wins it back."""
    src = read_entry(repo / "d_leaky")
    x = src.golden_io()["inputs"][src.golden_real()] * 0.05
    plain = read_entry(quantize_entry(src.path, dest=tmp_path / "plain", inputs=x)).int8
    auto = read_entry(quantize_entry(src.path, dest=tmp_path / "auto", inputs=x, auto_exclude=True, max_rounds=4)).int8
    assert plain["held_out"]["accuracy_int8"] < 0.5 and not plain["tolerance_holds"]
    assert auto["auto_excluded_modules"][:2] == ["conv1", "conv1_act"] and len(auto["excluded_nodes"]) >= 4
    assert auto["held_out"]["accuracy_int8"] > plain["held_out"]["accuracy_int8"] + 0.3


def test_an_entry_without_real_golden_images_is_not_quantized(cli_in_process, tmp_path):
    """A checkpoint that records no dataset exports with crafted golden inputs only, and says so; INT8 is
    judged on real images only, so `quantize` refuses such an entry instead of judging it on noise."""
    import torch

    from prelu_deploy.models import create_model, save_checkpoint
    from prelu_deploy.models.preprocess import Preprocess

    torch.manual_seed(0)
    ckpt = save_checkpoint(
        create_model("digits_prelu"), tmp_path / "d.safetensors", preprocess=Preprocess((8, 8), 1, (0.5,), (0.25,))
    )
    said = cli_in_process("export", ckpt, "--name", "d", "--repo", tmp_path / "repo").stdout
    assert "note: no held-out images in the golden I/O (the checkpoint records no dataset)" in said, said
    assert read_entry(tmp_path / "repo" / "d").golden["no_held_out"] == "the checkpoint records no dataset"
    err = cli_in_process("quantize", tmp_path / "repo" / "d", "--calibration", "digits", check_rc=2).stderr
    assert "INT8 is judged on real images, and this entry's golden I/O holds none (the checkpoint records no dataset)" in err
    assert not (tmp_path / "repo" / "d_int8").exists()
