"""The GPU runners on a GPU (every test here is marked gpu: skipped with a reason where there is none).
Reference: PyTorch on the CPU in float64 (and float32), i.e. TF32 off. Written without a GPU to run
them on: see docs/gpu.md for what has run where."""

import numpy as np
import pytest

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.runners.parity import TOLERANCES, run_parity
from prelu_deploy.runners.registry import get_runner
from prelu_deploy.runners.runner import run_batched

from ..server import Server

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory, shipped):
    """The digits model in every lowering, and a He-initialised cifar_prelu (3×32×32, batch norms
    folded: convolutions that cuDNN runs with TF32 unless told not to), max batch 64."""
    import torch

    from prelu_deploy.models import create_model, save_checkpoint

    root = tmp_path_factory.mktemp("gpu_repo")
    for mode in ("native", "plugin", "leaky"):
        export_model_dir(shipped, f"digits_{mode}", root, mode=mode, max_batch=64)
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("cifar_prelu", width=0.5), root.parent / "cifar.safetensors")
    export_model_dir(ckpt, "cifar", root, mode="leaky", max_batch=64)
    return root


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
@pytest.mark.parametrize("model", ["digits_native", "digits_plugin", "digits_leaky", "cifar"])
def test_onnxruntime_cuda_parity(gpu_repo, model, precision):
    report = run_parity(
        gpu_repo / model, "onnxruntime", n=100 if model.startswith("digits") else 0, device="cuda", precision=precision
    )
    o = report["outputs"]["logits"]
    assert report["passed"], o["failures"]
    assert o["precision"] == precision and o["max_abs"] <= TOLERANCES[precision].max_abs_of_scale * o["logit_scale"]


def test_fp32_on_the_gpu_is_tf32_free(gpu_repo):
    """fp32 within the fp32 gate on a convolution stack TF32 would move 6–9× past it (issue 11's H100 numbers)."""
    o = run_parity(gpu_repo / "cifar", "onnxruntime", n=0, device="cuda", precision="fp32")["outputs"]["logits"]
    assert o["max_abs"] <= 1e-4 * o["logit_scale"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_cuda_graph_per_bucket_answers_every_batch_size(gpu_repo, precision):
    graphs = get_runner("onnxruntime", gpu_repo / "cifar", "cuda", precision=precision)
    plain = get_runner("onnxruntime", gpu_repo / "cifar", "cuda", precision=precision, cuda_graphs=False)
    assert graphs.cuda_graphs and graphs.graph_note is None and not plain.cuda_graphs
    assert graphs.buckets.sizes == [1, 2, 4, 8, 16, 32, 64]
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    scale = float(np.abs(plain.run(x)).max())
    for rows in range(1, 65):
        for repeat in range(2):  # a replay after another bucket's replay still reads this call's input
            np.testing.assert_allclose(
                graphs.run(x[:rows] + repeat),
                plain.run(x[:rows] + repeat),
                rtol=0,
                atol=TOLERANCES[precision].max_abs_of_scale * scale / 10,
            )
    graphs.close()
    plain.close()


@pytest.mark.parametrize("backend", ["torch", "torch-compile"])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_torch_on_cuda_parity(gpu_repo, backend, precision):
    report = run_parity(gpu_repo / "cifar", backend, n=0, device="cuda", precision=precision)
    assert report["passed"], report["outputs"]["logits"]["failures"]
    assert report["outputs"]["logits"]["precision"] == precision


def test_torch_compile_cuda_graph_per_bucket(gpu_repo):
    compiled = get_runner("torch-compile", gpu_repo / "cifar", "cuda")
    eager = get_runner("torch", gpu_repo / "cifar", "cuda")
    assert compiled.cuda_graphs and compiled.buckets.sizes == [1, 2, 4, 8, 16, 32, 64]
    x = np.random.default_rng(1).standard_normal((64, 3, 32, 32)).astype(np.float32)
    scale = float(np.abs(eager.run(x)).max())
    for rows in (1, 3, 5, 8, 17, 33, 64):
        np.testing.assert_allclose(compiled.run(x[:rows]), eager.run(x[:rows]), rtol=0, atol=1e-4 * scale)


def test_the_server_on_cuda_answers_tritonclient_equal_to_the_runner(gpu_repo):
    import tritonclient.http as httpclient

    runner = get_runner("onnxruntime", gpu_repo / "cifar", "cuda")
    x = np.random.default_rng(2).standard_normal((5, 3, 32, 32)).astype(np.float32)
    expected = run_batched(runner, x)
    srv = Server(gpu_repo, "--device", "cuda", "--max-batch-size", "64", start_timeout=300)  # cuDNN searches, graph captures
    try:
        client = httpclient.InferenceServerClient(url=srv.url[len("http://") :])
        assert client.is_model_ready("cifar")
        inp = httpclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = client.infer("cifar", [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=True)])
        np.testing.assert_allclose(out.as_numpy("logits"), expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))
        client.close()
    finally:
        assert srv.stop()
