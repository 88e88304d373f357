import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prelu_deploy.export.model_dir import export_model_dir

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "weights" / "digits_prelu.safetensors"

if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core: keep each to one thread
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def tensorrt_or_skip():
    """(module, flavour) of the installed TensorRT — NVIDIA's `tensorrt` or TensorRT-RTX — or skip the
    calling module: tests hold for either flavour."""
    try:
        from prelu_deploy.plugins.tensorrt_lib import load_tensorrt

        return load_tensorrt()
    except Exception:
        pytest.skip("no TensorRT installed (the trt extra brings TensorRT-RTX; make test installs it)", allow_module_level=True)


def _gpu_present() -> bool:
    if os.environ.get("PRELU_DEPLOY_TEST_ASSUME_GPU") == "1":  # a test of the suite's own skips (test_gpu_skips.py)
        return True
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def tensorrt_gpu_or_skip():
    """(module, flavour) of a TensorRT that runs engines on this machine's GPU, or skip the calling test
    with the reason: none installed, or a flavour that does not run on this GPU (TensorRT-RTX on Hopper)."""
    trt, flavour = tensorrt_or_skip()
    from prelu_deploy.plugins.tensorrt_lib import unsupported_cc

    cc = (
        subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip()
        if shutil.which("nvidia-smi")
        else ""
    )
    if cc and (why := unsupported_cc(flavour, cc)):
        pytest.skip(why)
    return trt, flavour


def pytest_collection_modifyitems(config, items):
    if _gpu_present():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and the gpu extra; no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tensorrt_gpu():
    """First in a test's arguments: skips before the other fixtures are built (an H200 without TensorRT
    failed a TensorRT test with "TensorRT is not installed" instead of skipping)."""
    return tensorrt_gpu_or_skip()


@pytest.fixture(scope="session")
def shipped() -> Path:
    return SHIPPED


@pytest.fixture
def cli():
    """Run the real `prelu-deploy` console script; returns the CompletedProcess."""
    exe = Path(sys.executable).with_name("prelu-deploy")

    def run(*args, check_rc: int | None = 0):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    return run


@pytest.fixture(scope="session")
def repo(tmp_path_factory, shipped):
    """A model repository holding the bundled digits model (leaky lowering) as `digits`; read-only for
    the tests that share it (a module that needs another defines its own `repo`)."""
    root = tmp_path_factory.mktemp("repo")
    export_model_dir(shipped, "digits", root, mode="leaky")
    return root
