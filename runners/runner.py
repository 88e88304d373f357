"""The Runner protocol: every backend is one small object, chosen by name. Parity, benchmarks and the
server only ever see this interface (as Polygraphy's comparator only sees its runners)."""

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Protocol

import numpy as np

from prelu_deploy.errors import UsageError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for the batch dimension
    datatype: str  # Open Inference Protocol name: "FP32", "FP16"


class Runner(Protocol):
    name: str  # the backend, e.g. "onnxruntime"
    precision: str  # "fp32" or "fp16": what parity tolerances to apply

    def inputs(self) -> list[TensorSpec]: ...

    def outputs(self) -> list[TensorSpec]: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch → float32 logits (batch, classes)."""
        ...


_BACKENDS = {"onnxruntime": "prelu_deploy.runners.onnxruntime_runner:OnnxRuntimeRunner",
             "tensorrt": "prelu_deploy.runners.tensorrt_runner:TensorRTRunner",
             "torch": "prelu_deploy.runners.torch_runner:TorchRunner",
             "torch-compile": "prelu_deploy.runners.torch_runner:CompiledTorchRunner"}


def backends() -> list[str]:
    return list(_BACKENDS)


def get_runner(backend: str, model_dir: str | Path, **options) -> Runner:
    """The runner for `backend` on a model directory; imports the backend only when asked for."""
    if backend not in _BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; available: {', '.join(_BACKENDS)}")
    module, cls = _BACKENDS[backend].split(":")
    return getattr(import_module(module), cls)(model_dir, **options)
