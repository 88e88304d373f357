"""Where a runner runs: `--device cpu | cuda | cuda:N` parsed, and why CUDA is not there for ONNX Runtime
or for torch, with what to install (the backends' records name these: runners.registry; the check
before any model is loaded: runners.device). Imports no backend at module level (the server imports
this without torch)."""

import re

from prelu_deploy.errors import UsageError

__all__ = ["GPU_INSTALL", "ort_cuda_missing", "parse_device", "torch_cuda_missing"]

GPU_INSTALL = (
    "onnxruntime and onnxruntime-gpu cannot share one environment: pip uninstall -y onnxruntime, "
    "then pip install 'prelu-deploy[gpu]' (onnxruntime-gpu, which needs an NVIDIA driver, CUDA 12/13 "
    "and cuDNN 9; README, 'On a GPU machine')"
)


def parse_device(device: str) -> tuple[str, int]:
    """ "cpu" → ("cpu", 0); "cuda" → ("cuda", 0); "cuda:N" → ("cuda", N); anything else: UsageError (exit 2)."""
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device or "")
    if not m or (m[1] == "cpu" and m[2] is not None):
        raise UsageError(f"--device {device!r}: choose cpu, cuda or cuda:N (N: the GPU's index)")
    return m[1], int(m[2] or 0)


def ort_cuda_missing(ort=None) -> str | None:
    """Why ONNX Runtime's CUDA execution provider cannot be used here, or None when it is installed.
    (Installed is not yet working: a session still needs a GPU and CUDA's libraries; the runner checks
    that the session really took the provider.)"""
    if ort is None:
        try:
            import onnxruntime as ort
        except ImportError:
            return (
                "--device cuda needs ONNX Runtime with its CUDA execution provider; onnxruntime is not installed: " + GPU_INSTALL
            )
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return None
    return (
        f"--device cuda needs ONNX Runtime's CUDAExecutionProvider, which this onnxruntime {ort.__version__} lacks "
        f"(it has {', '.join(available)}): {GPU_INSTALL}"
    )


def torch_cuda_missing(index: int) -> str | None:
    """Why torch cannot run on GPU `index`, or None when it can."""
    try:
        import torch
    except ImportError:
        return "the torch runners need torch: pip install 'prelu-deploy[export]'"
    if not torch.cuda.is_available():
        return (
            f"torch device 'cuda' is not available here (torch {torch.__version__}, CUDA not available): "
            "install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    if index >= torch.cuda.device_count():
        return f"torch device 'cuda:{index}' is not available here: this machine has {torch.cuda.device_count()} GPU(s)"
    return None
