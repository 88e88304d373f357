"""Where a runner runs: `--device cpu | cuda | cuda:N`, checked in one place before any model is loaded,
by the backend's own record (runners.registry: the function that says why CUDA is not there for it),
with an error that says what to install. Imports no backend at module level (the server imports this
without torch); the parsing and the per-library checks are runners.cuda's."""

from prelu_deploy.errors import UsageError
from prelu_deploy.runners.cuda import GPU_INSTALL, ort_cuda_missing, parse_device, torch_cuda_missing
from prelu_deploy.runners.registry import BACKENDS, default_backend

__all__ = ["GPU_INSTALL", "check_device", "ort_cuda_missing", "parse_device", "torch_cuda_missing"]


def check_device(backend: str, device: str) -> None:
    """Refuse `device` for `backend` before any model is loaded: a bad string, or CUDA that is not there
    for that backend ("auto" serves ONNX entries on ONNX Runtime, so it needs its CUDA provider). A
    backend whose record names no check (tensorrt) checks itself as its runner is made."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return
    record = BACKENDS.get(default_backend() if backend == "auto" else backend)
    if record and record.cuda_missing and (why := record.cuda_missing(index)):
        raise UsageError(why)
