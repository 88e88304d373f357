"""The backends, found through one registry (Polygraphy's split of loader and runner).

A backend's record is its loader's facts: what of a model entry it loads (the ONNX graph, the TensorRT
plan, or the source checkpoint), on which devices, the function that says why CUDA device N is not
there for it (checked before any model is loaded: runners.device), whether its CPU thread pool is its
session's own, which runner options it takes beyond the common ones (a spinning CPU pool, CUDA graphs per
batch bucket), and its runner class per device kind (imported only when asked for). The runner class
builds the session or engine from the entry and runs it. Below them, plugins/onnxruntime_lib.new_session
is the documented lower-level helper; export's own ONNX Runtime sessions use it too. The precisions
each may compute in are the one table's (prelu_deploy.precisions), checked by every runner as it is made.

`get_runner` is the one door: parity, bench, classify and the server all come through it. Importing
this module imports neither numpy nor the manifest (get_runner does): the CLI's --help lists backends()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from prelu_deploy.errors import ModelDirError, UsageError
from prelu_deploy.runners.cuda import ort_cuda_missing, parse_device, torch_cuda_missing

if TYPE_CHECKING:
    from prelu_deploy.manifest import ModelEntry
    from prelu_deploy.runners.runner import Runner

__all__ = ["BACKENDS", "Backend", "backends", "default_backend", "get_runner"]

POOL_OPTIONS = ("threads", "spinning")  # a CPU pool's size and habit


@dataclass(frozen=True)
class Backend:
    name: str
    loads: str  # "onnx" | "plan" | "checkpoint" (the source checkpoint the entry names: any entry)
    runners: dict[str, str]  # device kind (cpu | cuda) → "module:Class"
    # why CUDA device N is not there for this backend, or None when it is (runners.device.check_device);
    # None for a backend whose runner checks that itself as it is made
    cuda_missing: Callable[[int], str | None] | None
    gpu_only: bool = False  # --device cpu means the default GPU, cuda:0
    own_pool: bool = False  # its CPU thread pool is its session's: a second runner may have another size
    spins: bool = False  # its CPU pool spins after each call unless made with spinning=False
    graph_buckets: bool = False  # on a GPU, a CUDA graph per batch-size bucket (the option buckets: which sizes)

    def refusal(self, entry: ModelEntry) -> str | None:
        """Why this backend cannot load `entry`, or None."""
        if self.loads == "onnx" and entry.is_plan:
            return (
                f"{entry.path} holds a TensorRT plan, not an ONNX graph: use --backend tensorrt (needs an NVIDIA "
                f"GPU) or the ONNX entry it was built from ({entry.onnx_source or 'see its manifest'})"
            )
        if self.loads == "plan" and not entry.is_plan:
            return f"{entry.path} holds no TensorRT plan; make one with `prelu-deploy build {entry.path}`"
        return None

    def load(self, entry: ModelEntry, device: str, **options) -> Runner:
        kind, index = parse_device(device)
        if self.gpu_only:
            kind, device = "cuda", f"cuda:{index}"
        if why := self.refusal(entry):
            raise ModelDirError(why)
        if kind == "cuda":  # a runner on the GPU has no CPU pool to size
            options = {k: v for k, v in options.items() if k not in POOL_OPTIONS}
        module, cls = self.runners[kind].split(":")
        return getattr(import_module(f"prelu_deploy.runners.{module}"), cls)(entry, device=device, **options)


def _ort_cuda_missing(index: int) -> str | None:
    return ort_cuda_missing()  # its CUDA provider serves every GPU; the session checks it took the provider


_TORCH = {"cpu": "torch_runner:TorchRunner", "cuda": "torch_runner:TorchRunner"}
_COMPILED = {"cpu": "torch_runner:CompiledTorchRunner", "cuda": "torch_runner:CompiledTorchRunner"}
BACKENDS = {
    b.name: b
    for b in (
        Backend(
            "onnxruntime",
            "onnx",
            {"cpu": "onnxruntime_runner:OnnxRuntimeRunner", "cuda": "onnxruntime_cuda:OnnxRuntimeCudaRunner"},
            _ort_cuda_missing,
            own_pool=True,
            spins=True,
            graph_buckets=True,
        ),
        # its runner checks CuPy, the GPU and TensorRT's support matrix itself
        Backend("tensorrt", "plan", {"cuda": "tensorrt_runner:TensorRTRunner"}, None, gpu_only=True),
        Backend("torch", "checkpoint", _TORCH, torch_cuda_missing),  # torch's threads are process-wide
        Backend("torch-compile", "checkpoint", _COMPILED, torch_cuda_missing, graph_buckets=True),
    )
}


def backends() -> list[str]:
    return list(BACKENDS)


def default_backend(entry: ModelEntry | None = None) -> str:
    """What "auto" means for an entry: a plan on TensorRT, an ONNX graph on ONNX Runtime (no entry yet,
    as when --device is checked before loading: an ONNX graph's)."""
    loads = "plan" if entry is not None and entry.is_plan else "onnx"
    return next(b.name for b in BACKENDS.values() if b.loads == loads)


def get_runner(backend: str | None, model: ModelEntry | str | Path, device: str = "cpu", **options) -> Runner:
    """The runner for `backend` ("auto"/None: the entry's own) on a model entry or its folder, on
    `device` (cpu | cuda | cuda:N). `precision` (an option) asks for a runtime precision the table
    allows (tf32 or fp16 of an fp32 ONNX entry on the GPU, tf32 for torch on the GPU); by default the
    entry's own. Other options go to the backend's runner class."""
    from prelu_deploy.manifest import ModelEntry, read_entry

    parse_device(device)  # a bad --device is refused before anything is read
    entry = model if isinstance(model, ModelEntry) else read_entry(model)
    backend = default_backend(entry) if backend in (None, "auto") else backend
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; available: auto, {', '.join(BACKENDS)}")
    return BACKENDS[backend].load(entry, device, **options)
