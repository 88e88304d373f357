"""The model directory: layout, Triton config, manifest and golden I/O; atomic on every failure."""

import json

import numpy as np
import onnx
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from prelu_deploy.errors import CheckpointError, ExportError, ModelDirError, UsageError
from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.export.onnx_export import to_onnx
from prelu_deploy.manifest import read_entry
from prelu_deploy.models import create_model, save_checkpoint
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.models.registry import register_model
from prelu_deploy.runners.registry import get_runner


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory, shipped):
    from prelu_deploy.export import model_dir

    model_dir._traced.clear()  # traced here, whatever this process exported before
    return export_model_dir(shipped, "digits", tmp_path_factory.mktemp("repo"), mode="plugin")


def test_layout_and_triton_config(digits_dir):
    assert sorted(str(p.relative_to(digits_dir)) for p in digits_dir.rglob("*") if p.is_file()) == [
        "1/model.onnx",
        "config.pbtxt",
        "golden.npz",
        "manifest.json",
    ]
    cfg = text_format.Parse((digits_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("digits", "onnxruntime_onnx", 32)
    assert [(t.name, list(t.dims), t.data_type) for t in cfg.input] == [("images", [1, 8, 8], model_config_pb2.TYPE_FP32)]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [10])]
    assert cfg.HasField("dynamic_batching")


def test_onnx_file(digits_dir):
    graph = onnx.load(digits_dir / "1" / "model.onnx")
    onnx.checker.check_model(graph, full_check=True)
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["prelu_lowering"] == "plugin" and json.loads(props["labels"]) == [str(i) for i in range(10)]
    assert json.loads(props["preprocess"])["size"] == [8, 8] and len(props["source_sha256"]) == 64
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch, fixed spatial size


def test_manifest_and_golden(digits_dir, shipped):
    md = read_entry(digits_dir)
    m = json.loads((digits_dir / "manifest.json").read_text())  # the format on disk
    assert md.verify() == [] and md.platform == "onnxruntime_onnx" and md.lowering == "plugin" and md.precision == "fp32"
    assert m["source"]["arch"] == "digits_prelu" and m["prelu"]["lowering"] == "plugin"
    assert all(layer["op"] == "prelu_deploy::ChannelSharedPReLU" for layer in m["prelu"]["layers"])
    assert set(m["versions"]) >= {"torch", "onnx", "onnxruntime"} and m["versions"]["torch"]
    assert m["golden"]["sources"] == ["held-out"] * 4 + ["crafted"] * 4
    assert all(0.05 < f < 0.95 for f in m["golden"]["negative_fraction"].values())  # every slope exercised
    golden = md.golden_io()
    out = get_runner("onnxruntime", digits_dir).run(golden["inputs"])
    np.testing.assert_allclose(out, golden["logits_fp64"], atol=1e-4 * np.abs(golden["logits_fp64"]).max())


def test_another_lowering_or_name_of_an_exported_checkpoint_reuses_its_trace(digits_dir, shipped, tmp_path, monkeypatch):
    """The trace (seconds; most of an export) is made once per checkpoint: bench's re-exported lowerings and a
    checkpoint exported under several names reuse it, and write what a fresh trace writes."""
    from prelu_deploy.export import model_dir

    traced = []
    monkeypatch.setattr(model_dir, "to_onnx", lambda *args: traced.append(args) or to_onnx(*args))
    again = export_model_dir(shipped, "again", tmp_path, mode="plugin")
    native = export_model_dir(shipped, "native", tmp_path, mode="native")
    assert traced == []  # digits_dir's export traced it (this test runs before test_existing_directory_needs_force replaces it)
    assert (again / "1" / "model.onnx").read_bytes() == (digits_dir / "1" / "model.onnx").read_bytes()
    ops = [n.op_type for n in onnx.load(native / "1" / "model.onnx").graph.node]  # the kept graph was not lowered in place
    assert ops.count("PRelu") == 5 and "ChannelSharedPReLU" not in ops and read_entry(native).verify() == []
    kept = dict(model_dir._traced)
    monkeypatch.setattr(model_dir, "TRACED_BYTES", 0)  # a graph over the bound is not kept
    export_model_dir(shipped, "opset17", tmp_path, mode="leaky", opset=17)  # another opset: another graph, traced
    assert len(traced) == 1 and model_dir._traced == kept


def test_the_exporters_translation_table_is_built_once_and_the_graph_is_the_same(monkeypatch):
    """torch.onnx.export builds its ATen → ONNX table on every call: to_onnx builds it once per process (and
    opset), and the graph exported with the kept table is the one a freshly built table gives."""
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    from prelu_deploy.export import onnx_export

    build = ONNXRegistry.__dict__["from_torchlib"].__func__
    built = []
    counted = classmethod(lambda cls, *args, **kwargs: built.append(args or kwargs) or build(cls, *args, **kwargs))
    monkeypatch.setattr(ONNXRegistry, "from_torchlib", counted)
    monkeypatch.setattr(onnx_export, "_REGISTRIES", {})
    torch.manual_seed(0)
    model = create_model("digits_prelu", width=0.25)
    fresh, kept = (to_onnx(model).SerializeToString() for _ in range(2))
    assert len(built) == 1 and fresh == kept
    assert ONNXRegistry.__dict__["from_torchlib"] is counted  # torch's own method back after each export


def test_tampered_artifact_is_detected(digits_dir, tmp_path):
    import shutil

    copy = tmp_path / "digits"
    shutil.copytree(digits_dir, copy)
    with open(copy / "1" / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert read_entry(copy).verify() == ["1/model.onnx sha256 differs from the manifest (file changed after export)"]
    (copy / "manifest.json").write_text("{")
    with pytest.raises(ModelDirError, match="unreadable manifest"):
        read_entry(copy)
    with pytest.raises(ModelDirError, match="not a model directory"):
        read_entry(tmp_path)


def test_model_a_with_spp_exports_and_matches(tmp_path):
    torch.manual_seed(0)
    model = create_model("model_a", width=0.05, input_size=64, num_classes=12)
    ckpt = save_checkpoint(model, tmp_path / "a.safetensors", preprocess=Preprocess((64, 64), 3, (0.5,) * 3, (0.25,) * 3))
    md = read_entry(export_model_dir(ckpt, "model_a", tmp_path / "repo", mode="leaky"))
    assert md.golden["sources"] == ["crafted"] * 4  # no dataset recorded: crafted inputs only
    ops = {n.op_type for n in onnx.load(md.artifact).graph.node}
    assert "MaxPool" in ops and "PRelu" in ops  # SPP as plain pooling; channel-wise PReLU kept
    golden = md.golden_io()
    out = get_runner("onnxruntime", md.path).run(golden["inputs"])
    assert np.abs(out - golden["logits_fp64"]).max() <= 1e-4 * np.abs(golden["logits_fp64"]).max()


def test_existing_directory_needs_force(digits_dir, shipped):
    with pytest.raises(UsageError, match="exists; pass --force"):
        export_model_dir(shipped, "digits", digits_dir.parent)
    before = read_entry(digits_dir).created
    replaced = export_model_dir(shipped, "digits", digits_dir.parent, mode="leaky", force=True)
    assert read_entry(replaced).lowering == "leaky" and before
    assert sorted(p.name for p in digits_dir.parent.iterdir()) == ["digits"]  # no staging folder left


def _nothing_left(repo):
    return not repo.exists() or not any(repo.iterdir())


def test_unreadable_checkpoint_leaves_nothing(tmp_path):
    (tmp_path / "bad.safetensors").write_text("nope")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        export_model_dir(tmp_path / "bad.safetensors", "x", tmp_path / "repo")
    assert _nothing_left(tmp_path / "repo")


def test_unwritable_destination(tmp_path, shipped):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(ExportError, match="not a writable folder"):
        export_model_dir(shipped, "x", tmp_path / "file" / "repo")
    with pytest.raises(UsageError, match="model name 'a b'"):
        export_model_dir(shipped, "a b", tmp_path / "repo")


def _svd_net(num_classes: int = 10, in_chans: int = 1, input_size: int = 8, act: str = "relu", width: float = 1.0):
    """A test-only architecture with a layer that has no ONNX translation."""

    class SvdNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(in_chans * input_size * input_size, 4)

        def forward(self, x):
            return torch.linalg.svd(self.fc(x.flatten(1)).reshape(-1, 2, 2))[1].repeat(1, num_classes // 2)

    return SvdNet()


@pytest.fixture
def svd_registered():
    """Registered for one test only, so list_models() stays the zoo everywhere else."""
    from prelu_deploy.models import registry

    register_model((0.5,), (0.5,))(_svd_net)
    yield
    registry._BUILDERS.pop("_svd_net"), registry._NORMS.pop("_svd_net")


def test_unsupported_layer_is_named_and_leaves_nothing(tmp_path, svd_registered):
    ckpt = save_checkpoint(
        create_model("_svd_net"), tmp_path / "svd.safetensors", preprocess=Preprocess((8, 8), 1, (0.5,), (0.5,))
    )
    with pytest.raises(ExportError, match="unsupported layer: aten._linalg_svd has no ONNX translation"):
        export_model_dir(ckpt, "svd", tmp_path / "repo")
    assert _nothing_left(tmp_path / "repo")
