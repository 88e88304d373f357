"""`prelu-deploy export`, `parity` and `classify`, run as a user runs them: `parity` and `classify` once each as
the console script's process; `export`, the other outputs and the refusals by the script's main() in this
process (the same code, without a new interpreter importing torch and setting up its exporter). `export` runs
as a process of its own in tests/core/test_atomic.py, from an interpreter that imported only the CLI."""

import json

import onnx
import pytest

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.manifest import read_entry, sha256_file

from ..manifests import edit_manifest


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return tmp_path_factory.mktemp("repo")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["native", "plugin", "leaky"])
def test_export_then_parity_passes(cli, cli_in_process, shipped, repo, mode):
    out = cli_in_process("export", shipped, "--name", f"d_{mode}", "--repo", repo, "--prelu-mode", mode).stdout
    assert f"lowering {mode}" in out
    run = cli if mode == "leaky" else cli_in_process  # the console script as a process once, its main() here for the others
    report = json.loads(run("parity", repo / f"d_{mode}", "--json", "--n", "100").stdout)
    o = report["outputs"]["logits"]
    assert report["passed"] and o["max_abs"] <= 1e-4 * o["logit_scale"] and o["top1_agreement"] == 1.0
    assert report["inputs"] == {"held_out": 100, "golden": 8} and report["accuracy"]["runner"] >= 0.98
    assert all(f > 0 for f in report["negative_fraction"].values())
    text = cli_in_process("parity", repo / f"d_{mode}", "--n", "20").stdout
    assert "fp32 tolerance" in text and "max abs ≤ 0.0001 × logit scale" in text and "PASS" in text


def test_parity_fails_on_a_wrong_graph(cli_in_process, exported, tmp_path):
    """A lowering bug (a wrong slope) with a consistent manifest: parity must catch it, exit 7."""
    md = read_entry(exported(tmp_path, "d_leaky"))  # made once for the run: the console script's export is tested above
    graph = onnx.load(md.artifact)
    leaky = [n for n in graph.graph.node if n.op_type == "LeakyRelu"][2]  # the third PReLU: conv3_act
    leaky.attribute[0].f += 0.5
    onnx.save(graph, md.artifact)
    edit_manifest(md.path, lambda m: m["artifacts"].update({"1/model.onnx": sha256_file(md.artifact)}))
    proc = cli_in_process("parity", md.path, check_rc=7)
    assert "onnxruntime disagrees with PyTorch: max abs error" in proc.stderr and "FAIL" in proc.stdout
    # per layer: every layer before it within tolerance, and it named as the first beyond
    report = json.loads(cli_in_process("parity", md.path, "--per-layer", "--json", check_rc=7).stdout)["per_layer"]
    names = [r["layer"] for r in report["layers"]]
    assert report["first_beyond_tolerance"] == "conv3_act" and names[:5] == ["conv1", "conv1_act", "conv2", "conv2_act", "pool1"]
    assert not any(r["beyond"] for r in report["layers"][: names.index("conv3_act")])
    assert "first layer beyond tolerance: conv3_act" in cli_in_process("parity", md.path, "--per-layer", check_rc=7).stdout


def test_per_layer_matches_folded_batch_norms(tmp_path):
    """cifar_prelu's convolutions carry their batch norms after export: the fused tensor is matched to
    the batch norm's output (never to the bare convolution's), and every layer holds."""
    import torch

    from prelu_deploy.models import create_model, save_checkpoint
    from prelu_deploy.runners.parity import run_parity

    torch.manual_seed(0)
    model = create_model("cifar_prelu", width=0.25)
    for m in model.modules():  # a trained-looking batch norm, so folding it is not a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    entry = export_model_dir(save_checkpoint(model, tmp_path / "c.safetensors"), "c", tmp_path / "repo")
    layers = run_parity(entry, n=0, per_layer=True)["per_layer"]
    pairs = {r["layer"]: r["compared_with"] for r in layers["layers"]}
    assert layers["first_beyond_tolerance"] is None and len(pairs) >= 10
    bns = [p for p in pairs.values() if p.endswith("_bn")]
    assert len(bns) >= 4 and not [layer for layer in pairs if layer.startswith("conv") and layer[5:] == ""], pairs


def test_parity_refuses_a_tampered_artifact(cli_in_process, exported, tmp_path):
    tampered = exported(tmp_path, "d_leaky")
    with open(tampered / "golden.npz", "ab") as f:
        f.write(b"\0")
    proc = cli_in_process("parity", tampered, check_rc=6)
    assert "golden.npz sha256 differs from the manifest" in proc.stderr


@pytest.mark.parametrize(
    "args,rc,message",
    [
        (["export", "{tmp}/none.safetensors", "--name", "x", "--repo", "{tmp}/r"], 3, "cannot read"),
        (
            ["export", "{shipped}", "--name", "x", "--repo", "{tmp}/r", "--prelu-mode", "fused"],
            2,
            "unknown PReLU lowering 'fused'",
        ),
        (["parity", "{tmp}", "--n", "1"], 6, "not a model directory"),
        (["parity", "{tmp}", "--backend", "tvm"], 6, "not a model directory"),
    ],
)
def test_bad_input(cli_in_process, tmp_path, shipped, args, rc, message):
    proc = cli_in_process(*[a.format(tmp=tmp_path, shipped=shipped) for a in args], check_rc=rc)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_classify_without_a_server(cli, cli_in_process, shipped):
    """The samples through `prelu-deploy classify`, on the bundled model directory (the script as a process)
    and on its checkpoint (its main() here): the server's answer format, the right digit for each."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for run, model in ((cli, root / "models" / "bundled" / "digits"), (cli_in_process, shipped)):
        answer = json.loads(run("classify", root / "models" / "samples", "--model", model, "--top-k", "3", "--json").stdout)
        assert len(answer["predictions"]) == 10
        for p in answer["predictions"]:
            assert len(p["top_k"]) == 3 and p["top_k"][0]["label"] == Path(p["filename"]).stem[-1]
    assert "no such image file or folder" in cli_in_process("classify", "nope.png", "--model", shipped, check_rc=2).stderr
