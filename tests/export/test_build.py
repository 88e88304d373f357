"""TensorRT plans built on this CPU-only machine with TensorRT-RTX (ahead-of-time build): every
lowering × precision, the sibling Triton entry, the manifest's account of what was built, and errors."""

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from prelu_deploy.errors import ExportError, ModelDirError, UsageError
from prelu_deploy.export.build import build_plan
from prelu_deploy.export.lowering import LOWERINGS
from prelu_deploy.manifest import BatchProfile, read_entry, sha256_file

from ..conftest import tensorrt_or_skip  # noqa: E402

trt, FLAVOUR = tensorrt_or_skip()
RTX = FLAVOUR == "tensorrt_rtx"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("repo")
    for mode in LOWERINGS:
        exported(root, f"d_{mode}", mode)
    return root


@pytest.mark.parametrize("mode", LOWERINGS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_every_lowering_and_precision(repo, mode, precision):
    entry = build_plan(repo / f"d_{mode}", precision, min_batch=1, opt_batch=4, max_batch=16, force=True)
    assert entry.name == f"d_{mode}_trt"
    md = read_entry(entry)
    assert md.verify() == [] and (entry / "1" / "model.plan").stat().st_size > 10_000
    assert md.is_plan and md.platform == "tensorrt_plan" and md.artifact == entry / "1" / "model.plan"
    t = md.tensorrt
    assert (t.flavour, t.version, t.precision, md.precision) == (FLAVOUR, trt.__version__, precision, precision)
    assert t.profile == md.profile == BatchProfile(1, 4, 16) and md.max_batch_size == 16
    assert (t.fp16_conversion is not None) == (precision == "fp16")
    assert not t.tf32 if precision == "fp32" else True  # fp32 means fp32: TensorRT's default TF32 cleared
    types = [layer["type"] for layer in t.network_layers]
    if mode == "native":
        assert "PARAMETRIC_RELU" in types
    else:  # leaky, and plugin through its function body: activations, no PReLU layer left
        assert "PARAMETRIC_RELU" not in types and "ACTIVATION" in types
    if mode == "plugin":
        assert t.plugin["namespace"] == "prelu_deploy"
        if RTX:
            assert "function body" in t.plugin["path"] and not t.uses_registered_plugin
            assert "TensorRT-RTX has no plugin layers, so no plugin was registered" in t.plugin["path"]
        else:  # the node's plugin_namespace lets the parser take the registered plugin
            assert t.uses_registered_plugin
    else:
        assert t.plugin is None
    cfg = text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == (entry.name, "tensorrt_plan", 16)


def test_target_compute_capabilities_and_timing_cache(repo, tmp_path):
    entry = build_plan(repo / "d_leaky", target_cc=["8.6", "12.0"], timing_cache=tmp_path / "cache.bin", force=True)
    t = read_entry(entry).tensorrt
    assert t.target_compute_capabilities == ["8.6", "12.0"]
    if RTX:
        assert t.timing_cache.startswith("ignored") and not t.timing_cache_written  # RTX: no-ops
    else:
        assert t.timing_cache_written
    with pytest.raises(UsageError, match=r"--target-cc 12.9: not a target this TensorRT builds for \(it knows SM"):
        build_plan(repo / "d_leaky", target_cc=["12.9"], force=True)
    # the support matrix, checked before the library is asked: TensorRT-RTX does not run on Hopper
    if RTX:
        with pytest.raises(
            UsageError,
            match=r"--target-cc 9.0: tensorrt_rtx does not run on compute capability 9.0 "
            r"\(H100/H200\); it runs on 8.0, 8.6, 8.9 and 12.x: install NVIDIA's `tensorrt`",
        ):
            build_plan(repo / "d_leaky", target_cc=["9.0"], force=True)


def test_refusals(repo):
    build_plan(repo / "d_native", force=True)
    with pytest.raises(UsageError, match="exists; pass --force"):
        build_plan(repo / "d_native")
    with pytest.raises(UsageError, match="1 ≤ min ≤ opt ≤ max"):
        build_plan(repo / "d_native", min_batch=8, opt_batch=4, force=True)
    with pytest.raises(UsageError, match="unknown precision 'int8'"):
        build_plan(repo / "d_native", "int8", force=True)
    with pytest.raises(ModelDirError, match="not a model directory"):
        build_plan(repo)


def test_parser_errors_name_the_node_and_leave_nothing(repo, tmp_path):
    import shutil

    import onnx

    broken = tmp_path / "broken"
    shutil.copytree(repo / "d_plugin", broken)
    graph = onnx.load(broken / "1" / "model.onnx")
    del graph.functions[:]  # the custom node is left with no definition and no plugin
    onnx.save(graph, broken / "1" / "model.onnx")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["name"] = "broken"
    manifest["artifacts"]["1/model.onnx"] = sha256_file(broken / "1" / "model.onnx")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"parser refused the graph: node \d+ \(node_prelu.*ChannelSharedPReLU\)"):
        build_plan(broken)
    assert not (tmp_path / "broken_trt").exists()


def test_no_tensorrt_installed_gives_the_install_hint():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorrt'] = sys.modules['tensorrt_rtx'] = None\n"  # as if not installed
        "from prelu_deploy.plugins.tensorrt_lib import load_tensorrt\n"
        "try:\n    load_tensorrt()\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("PreluDeployError TensorRT is not installed: pip install 'prelu-deploy[trt]'")


def test_an_int8_entry_builds_with_explicit_quantization(repo, tmp_path):
    """A graph quantized --tensorrt (int8 symmetric activations, float biases) parses and builds; one
    quantized for ONNX Runtime is refused before TensorRT sees it."""
    from prelu_deploy.export.quantize import quantize_entry

    onnxruntime_int8 = quantize_entry(repo / "d_leaky", n=64, dest=tmp_path / "ort_int8")
    with pytest.raises(UsageError, match="quantized for ONNX Runtime .* quantize with --tensorrt"):
        build_plan(onnxruntime_int8, dest=tmp_path / "x")
    trt_int8 = quantize_entry(repo / "d_leaky", n=64, dest=tmp_path / "trt_int8", tensorrt=True)
    entry = read_entry(build_plan(trt_int8, dest=tmp_path / "trt_int8_trt"))
    assert entry.precision == "int8" and entry.tensorrt.precision == "int8" and entry.int8["target"] == "tensorrt"
    assert entry.verify() == [] and entry.artifact.stat().st_size > 10_000
    with pytest.raises(UsageError, match="int8 comes from an entry made by `prelu-deploy quantize --tensorrt`"):
        build_plan(repo / "d_leaky", "int8", dest=tmp_path / "y")


def test_the_support_matrix():
    from prelu_deploy.plugins.tensorrt_lib import unsupported_cc

    assert all(unsupported_cc("tensorrt_rtx", cc) is None for cc in ("8.0", "8.6", "8.9", "12.0", "12.1"))
    assert "H100/H200" in unsupported_cc("tensorrt_rtx", "9.0") and unsupported_cc("tensorrt_rtx", "7.5")
    assert all(unsupported_cc("tensorrt", cc) is None for cc in ("7.5", "8.0", "9.0", "10.0", "12.0"))


def test_build_writes_its_next_version_beside_the_others(repo, tmp_path):
    from prelu_deploy.manifest import load_entry, version_numbers

    dest = tmp_path / "d_leaky_trt"
    for _ in range(2):
        build_plan(repo / "d_leaky", "fp32", max_batch=8, dest=dest, version="next")
    assert version_numbers(dest) == [1, 2] and (dest / "2" / "model.plan").stat().st_size > 10_000
    assert all(load_entry(dest, n).verify() == [] and load_entry(dest, n).is_plan for n in (1, 2))
    assert 'platform: "tensorrt_plan"' in (dest / "config.pbtxt").read_text()
