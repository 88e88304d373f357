"""The TensorRT runner: its refusals run anywhere; running a plan needs a GPU (marked gpu)."""

import json
from pathlib import Path

import numpy as np
import pytest

from prelu_deploy.errors import ModelDirError, PreluDeployError
from prelu_deploy.export.lowering import LOWERINGS
from prelu_deploy.runners.registry import get_runner

from ..conftest import _gpu_present, tensorrt_gpu_or_skip, tensorrt_or_skip  # noqa: E402

trt, FLAVOUR = tensorrt_or_skip()
from prelu_deploy.export.build import build_plan  # noqa: E402


@pytest.fixture(scope="module")
def repo(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("repo")
    for mode in LOWERINGS:
        exported(root, f"d_{mode}", mode)
    return root


@pytest.fixture(scope="module")
def plan(repo):
    """plan(mode, precision): `d_{mode}_{precision}_trt`, the plan built the first time a test asks for it
    (a machine without a GPU runs the tests of one plan, not the six)."""

    def get(mode: str, precision: str) -> Path:
        entry = repo / f"d_{mode}_{precision}_trt"
        if not entry.is_dir():
            build_plan(repo / f"d_{mode}", precision).rename(entry)
        return entry

    return get


def test_an_onnx_entry_has_no_plan(repo):
    with pytest.raises(ModelDirError, match=r"holds no TensorRT plan; make one with `prelu-deploy build"):
        get_runner("tensorrt", repo / "d_native")


def test_a_plan_from_another_tensorrt_is_refused(plan, tmp_path):
    import shutil

    entry = tmp_path / "old"
    shutil.copytree(plan("native", "fp32"), entry)
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["tensorrt"]["version"] = "10.0.0"
    (entry / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match=rf"plan built by {FLAVOUR} 10.0.0, but this is {FLAVOUR} .*; rebuild"):
        get_runner("tensorrt", entry)


def test_a_corrupt_plan_is_refused(plan, tmp_path):
    import shutil

    entry = tmp_path / "corrupt"
    shutil.copytree(plan("native", "fp32"), entry)
    (entry / "1" / "model.plan").write_bytes(b"not a plan")
    with pytest.raises(ModelDirError, match="1/model.plan sha256 differs from the manifest"):
        get_runner("tensorrt", entry)


@pytest.mark.skipif(_gpu_present(), reason="checks the message given where there is no GPU")
def test_without_a_gpu_says_so(plan):
    with pytest.raises(PreluDeployError, match="the TensorRT runner needs CuPy and an NVIDIA GPU"):
        get_runner("tensorrt", plan("native", "fp32"))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", LOWERINGS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gpu_parity_of_every_lowering_and_precision(plan, mode, precision):
    tensorrt_gpu_or_skip()
    from prelu_deploy.tolerances import judge

    runner = get_runner("tensorrt", plan(mode, precision))
    golden = runner.entry.golden_io()
    for n in (1, 7, 32):
        x = np.resize(golden["inputs"], (n, *golden["inputs"].shape[1:]))
        ref = np.resize(golden["logits_fp64"], (n, golden["logits_fp64"].shape[1]))
        report = judge(runner.run(x), ref.astype(np.float32), ref, precision=precision)
        assert report["passed"], report["failures"]


def test_parity_on_a_plan_entry_says_what_it_needs(cli_in_process, plan):
    """A plan entry goes to the TensorRT runner (its own backend), never to ONNX Runtime on a missing file
    (the console script's main() in this process)."""
    entry = plan("native", "fp32")
    proc = cli_in_process("parity", entry, "--backend", "onnxruntime", check_rc=6)
    assert "holds a TensorRT plan, not an ONNX graph: use --backend tensorrt" in proc.stderr
    assert "Traceback" not in proc.stderr and "NoSuchFile" not in proc.stderr
    if not _gpu_present():
        proc = cli_in_process("parity", entry, check_rc=1)
        assert "the TensorRT runner needs CuPy and an NVIDIA GPU" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.gpu
def test_gpu_a_plan_with_max_batch_4_passes_its_gate(repo, tmp_path):
    """8 golden rows, a plan that takes at most 4: the gate runs them in two calls."""
    tensorrt_gpu_or_skip()
    from prelu_deploy.serve.repository.loader import load_model
    from prelu_deploy.serve.settings import Settings

    entry = build_plan(repo / "d_leaky", max_batch=4, opt_batch=2, dest=tmp_path / "d_leaky_trt")
    served = load_model(entry, Settings(instances=2))
    assert served.ready, served.reason
    assert served.backend == "tensorrt" and served.max_batch == 4 and len(served.runners) == 2
    served.close()
