"""The Runner protocol: every backend is one small object built from a model entry, chosen by name.
Parity, benchmarks and the server only ever see this interface (as Polygraphy's comparator only sees
its runners): specs, batch limits and precision come from the entry, never from the caller's guess."""

from importlib import import_module
from pathlib import Path
from typing import Protocol

import numpy as np

from prelu_deploy.errors import ModelDirError, UsageError
from prelu_deploy.manifest import BatchProfile, ModelEntry, TensorSpec, read_entry
from prelu_deploy.runners.device import parse_device

__all__ = ["BaseRunner", "Runner", "TensorSpec", "backends", "default_backend", "get_runner", "run_batched"]


class Runner(Protocol):
    name: str  # the backend, e.g. "onnxruntime"
    entry: ModelEntry
    precision: str  # fp32 | tf32 | fp16 | int8 (manifest.RUN_PRECISIONS): what parity tolerances apply
    profile: BatchProfile  # the batch sizes run() accepts
    cuda_graphs: bool

    def inputs(self) -> list[TensorSpec]: ...

    def outputs(self) -> list[TensorSpec]: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch (profile.min ≤ rows ≤ profile.max) → float32 logits (rows, classes)."""
        ...

    def timings(self) -> dict[str, float] | None:
        """GPU runners: CUDA-event times (ms) of the last run(); None elsewhere."""
        ...

    def close(self) -> None: ...


class BaseRunner:
    """What every backend shares: specs and limits from the entry, the input check, close()."""

    name = "base"
    cuda_graphs = False

    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.last_timings: dict[str, float] | None = None

    @property
    def precision(self) -> str:
        return self.entry.precision

    @property
    def profile(self) -> BatchProfile:
        return self.entry.profile

    def inputs(self) -> list[TensorSpec]:
        return [self.entry.input]

    def outputs(self) -> list[TensorSpec]:
        return [self.entry.output]

    def run(self, batch: np.ndarray) -> np.ndarray:
        dims, p = self.entry.input.dims, self.profile
        if batch.ndim != len(dims) + 1 or list(batch.shape[1:]) != dims:
            raise ValueError(f"{self.entry.name}: input of shape {list(batch.shape)} does not fit [N, {', '.join(map(str, dims))}]")
        if not p.min <= len(batch) <= p.max:
            raise ValueError(f"{self.entry.name}: batch of {len(batch)} is outside {p.min}..{p.max}, what this "
                             f"{'plan' if self.entry.is_plan else 'entry'} accepts (run_batched splits larger inputs)")
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def timings(self) -> dict[str, float] | None:
        return self.last_timings

    def close(self) -> None:
        """Release what the backend holds (sessions, engines, device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_batched(runner: Runner, x: np.ndarray) -> np.ndarray:
    """Any number of rows through `runner`: split at its profile's max, the last piece padded up to
    its min (a plan built with --min-batch > 1) and the padding dropped from the output."""
    p, outs = runner.profile, []
    if p.min <= len(x) <= p.max:  # the common case: one call, no copy
        return runner.run(x)
    for i in range(0, len(x), p.max):
        chunk = x[i:i + p.max]
        n = len(chunk)
        if n < p.min:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], p.min - n, axis=0)])
        outs.append(runner.run(chunk)[:n])
    return np.concatenate(outs)


_BACKENDS = {"onnxruntime": "prelu_deploy.runners.onnxruntime_runner:OnnxRuntimeRunner",
             "tensorrt": "prelu_deploy.runners.tensorrt_runner:TensorRTRunner",
             "torch": "prelu_deploy.runners.torch_runner:TorchRunner",
             "torch-compile": "prelu_deploy.runners.torch_runner:CompiledTorchRunner"}


def backends() -> list[str]:
    return list(_BACKENDS)


def default_backend(entry: ModelEntry) -> str:
    """What an entry's artifact runs on: a plan on TensorRT, an ONNX graph on ONNX Runtime."""
    return "tensorrt" if entry.is_plan else "onnxruntime"


def get_runner(backend: str | None, model: ModelEntry | str | Path, device: str = "cpu", **options) -> Runner:
    """The one door: the runner for `backend` ("auto"/None: the entry's own) on a model entry or its
    folder, on `device` (cpu | cuda | cuda:N). Imports the backend only when asked for; refuses a
    backend the entry holds nothing for. `precision` (an option) asks for a runtime precision: tf32 or
    fp16 of an fp32 ONNX entry on the GPU, tf32 for torch on the GPU; by default the entry's own."""
    kind, index = parse_device(device)  # a bad --device is refused before anything is read
    entry = model if isinstance(model, ModelEntry) else read_entry(model)
    backend = default_backend(entry) if backend in (None, "auto") else backend
    if backend not in _BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; available: auto, {', '.join(_BACKENDS)}")
    if backend == "onnxruntime" and entry.is_plan:
        raise ModelDirError(f"{entry.path} holds a TensorRT plan, not an ONNX graph: use --backend tensorrt (needs an NVIDIA "
                         f"GPU) or the ONNX entry it was built from ({entry.onnx_source or 'see its manifest'})")
    if backend == "tensorrt" and not entry.is_plan:
        raise ModelDirError(f"{entry.path} holds no TensorRT plan; make one with `prelu-deploy build {entry.path}`")
    target = _BACKENDS[backend]
    if backend.startswith("torch"):
        options["device"] = device
    elif backend == "onnxruntime" and kind == "cuda":
        target, options["device"] = "prelu_deploy.runners.onnxruntime_cuda:OnnxRuntimeCudaRunner", device
    elif options.get("precision") not in (None, entry.precision):  # the CPU provider, or a plan: as built
        raise UsageError(f"--precision {options['precision']!r}: {entry.name} runs on {backend}"
                         f"{'' if backend == 'tensorrt' else ' (CPU)'} as {entry.precision} only"
                         f"{'; tf32 and fp16 of an ONNX entry need --device cuda' if backend == 'onnxruntime' else ''}")
    else:
        options.pop("precision", None)
    if backend == "tensorrt":
        options["device"] = index  # a plan runs on a GPU only: --device cpu means the default one, cuda:0
    module, cls = target.split(":")
    return getattr(import_module(module), cls)(entry, **options)
