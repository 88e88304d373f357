"""The Runner protocol: every backend is one small object built from a model entry, found by name through
the registry (runners.registry). Parity, benchmarks and the server only ever see this interface (as
Polygraphy's comparator only sees its runners): specs, batch limits and precision come from the entry
and the precision table, never from the caller's guess."""

from typing import Protocol

import numpy as np

from prelu_deploy.manifest import BatchProfile, ModelEntry, TensorSpec
from prelu_deploy.precisions import run_precision
from prelu_deploy.runners.cuda import parse_device

__all__ = ["BaseRunner", "Runner", "TensorSpec", "run_batched"]


class Runner(Protocol):
    name: str  # the backend, e.g. "onnxruntime"
    entry: ModelEntry
    precision: str  # fp32 | tf32 | fp16 | int8 (prelu_deploy.precisions): what parity tolerances apply
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
    """What every backend shares: specs and limits from the entry, the device, the precision it computes
    in (asked for, or the default; checked against the one table, prelu_deploy.precisions), the input
    check, close()."""

    name = "base"  # the backend: its row of the precision table
    cuda_graphs = False

    def __init__(self, entry: ModelEntry, device: str = "cpu", precision: str | None = None):
        self.entry = entry
        self.device_kind, self.device_index = parse_device(device)
        self.precision = run_precision(self.name, self.device_kind, entry.name, entry.precision, precision)
        self.last_timings: dict[str, float] | None = None

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
            raise ValueError(
                f"{self.entry.name}: input of shape {list(batch.shape)} does not fit [N, {', '.join(map(str, dims))}]"
            )
        if not p.min <= len(batch) <= p.max:
            raise ValueError(
                f"{self.entry.name}: batch of {len(batch)} is outside {p.min}..{p.max}, what this "
                f"{'plan' if self.entry.is_plan else 'entry'} accepts (run_batched splits larger inputs)"
            )
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
        chunk = x[i : i + p.max]
        n = len(chunk)
        if n < p.min:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], p.min - n, axis=0)])
        outs.append(runner.run(chunk)[:n])
    return np.concatenate(outs)
