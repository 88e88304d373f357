"""PyTorch runners on the checkpoint a model entry was exported from: eager (the reference) and
torch.compile. On a GPU, `fp32` means TF32 off (cuDNN convolutions and cuBLAS matmuls use TF32 unless
told not to); `tf32` is the opt-in that allows it; `fp16` runs the model in half precision (weights
and activations; the batch is copied to the GPU as float32 and cast there, the logits come back as
float32). torch-compile on a GPU uses CUDA graphs (`mode="reduce-overhead"`), one per batch-size
bucket, all captured when the runner is made.

On a GPU, two settings default to what was fastest on a GPU host (docs/gpu.md has the numbers), and
`prelu-deploy gpu-check` measures each against its alternative: `cudnn_benchmark` (cuDNN's algorithm search per input shape, a
process-wide flag set around each call like TF32's; on by default on cuda) and `channels_last` (NHWC
activations, what cuDNN's fp16 tensor-core convolutions prefer; on by default for fp16)."""

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError, UsageError
from prelu_deploy.manifest import ModelEntry, sha256_file
from prelu_deploy.runners.buckets import Buckets
from prelu_deploy.runners.cuda import torch_cuda_missing
from prelu_deploy.runners.runner import BaseRunner


def load_source_model(entry: ModelEntry, checkpoint: str | Path | None = None):
    """The PyTorch model an entry came from; refuses a checkpoint whose sha256 differs."""
    from prelu_deploy.models import load_checkpoint

    path = Path(checkpoint) if checkpoint else entry.checkpoint
    if not path.is_file():
        raise ModelDirError(f"{entry.path}: its source checkpoint {path} is gone; pass --checkpoint PATH")
    if sha256_file(path) != entry.source.sha256:
        raise ModelDirError(f"{path}: sha256 differs from the checkpoint {entry.name} was exported from")
    return load_checkpoint(path)[0]


@contextmanager
def cuda_numerics(tf32: bool, cudnn_benchmark: bool | None = None):
    """TF32 in cuDNN convolutions and cuBLAS matmuls as asked (and cuDNN's algorithm search when given),
    restored afterwards (process-wide flags: a tf32 runner beside an fp32 one in one process must not
    change the other's numbers)."""
    import torch

    flags = torch.backends.cudnn, torch.backends.cuda.matmul
    before = flags[0].allow_tf32, flags[1].allow_tf32, flags[0].benchmark
    flags[0].allow_tf32 = flags[1].allow_tf32 = tf32
    if cudnn_benchmark is not None:
        flags[0].benchmark = cudnn_benchmark
    try:
        yield
    finally:
        flags[0].allow_tf32, flags[1].allow_tf32, flags[0].benchmark = before


class TorchRunner(BaseRunner):
    """Eager PyTorch on `device` ("cpu", "cuda", "cuda:1"); the reference of parity, a baseline of benchmarks."""

    name = "torch"

    def __init__(
        self,
        entry: ModelEntry,
        device: str = "cpu",
        precision: str | None = None,
        checkpoint: str | Path | None = None,
        threads: int | None = None,
        channels_last: bool | None = None,
        cudnn_benchmark: bool | None = None,
        buckets: tuple[int, ...] | None = None,
    ):
        super().__init__(entry, device, precision)  # the checkpoint itself, whatever the entry's artifact computes in
        import torch  # not installed: the console script names the extra that brings it (cli/main.py: EXTRA_FOR)

        if threads:
            torch.set_num_threads(threads)
        on_gpu = self.device_kind == "cuda"
        if on_gpu and (why := torch_cuda_missing(self.device_index)):
            raise UsageError(why)
        self.device = torch.device(device)
        self.channels_last = self.precision == "fp16" if channels_last is None else channels_last
        self.cudnn_benchmark = on_gpu if cudnn_benchmark is None else cudnn_benchmark
        self._bucket_sizes = buckets
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self._staging = None  # page-locked host rows for the copy to the GPU
        if on_gpu:
            self._staging = torch.empty((self.profile.max, *entry.input.dims), dtype=torch.float32, pin_memory=True)
        with self._numerics():
            model = load_source_model(entry, checkpoint).eval().to(self.device, self._dtype)
            self.model = self._prepare(model.to(memory_format=self._memory_format))

    def _numerics(self):
        return cuda_numerics(self.precision == "tf32", self.cudnn_benchmark) if self.device.type == "cuda" else _nothing()

    def _prepare(self, model):
        return model

    def _to_device(self, batch: np.ndarray, rows: int | None = None):
        """The batch on the device (padded with zero rows to `rows` when given)."""
        import torch

        x = torch.from_numpy(batch)
        if self._staging is None:
            return x
        host = self._staging[: rows or len(batch)]
        host[: len(batch)] = x
        host[len(batch) :] = 0
        x = host.to(self.device, non_blocking=True)  # the previous call's .cpu() waited: the staging rows are free
        return x.to(dtype=self._dtype, memory_format=self._memory_format)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._numerics():
            return self.model(self._to_device(batch)).float().cpu().numpy()  # .cpu() waits for the GPU

    def close(self) -> None:
        self.model = self._staging = None


@contextmanager
def _nothing():
    yield


class CompiledTorchRunner(TorchRunner):
    """The same model through `torch.compile` (TorchInductor: C++/OpenMP on CPU, Triton on GPU). On
    the CPU it compiles at the first call of each batch size (tens of seconds), so warm it up before
    timing. On a GPU: `mode="reduce-overhead"` (CUDA graphs), static shapes, every batch padded to its
    bucket, and every bucket compiled and recorded here, before the first call (torch keeps its graph
    trees per thread: another thread records its own on its first call of each bucket)."""

    name = "torch-compile"

    def _prepare(self, model):
        import torch

        if self.device.type != "cuda":
            return torch.compile(model)
        self.buckets, self.cuda_graphs = Buckets(self.profile.max, self.profile.min, self._bucket_sizes), True
        cfg = torch._dynamo.config  # one compiled graph per bucket: more than dynamo's default 8 recompiles
        limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(cfg, limit, max(getattr(cfg, limit), len(self.buckets) + 1))
        self.model = torch.compile(model, mode="reduce-overhead", dynamic=False)
        for size in reversed(self.buckets.sizes):
            x = np.zeros((size, *self.entry.input.dims), np.float32)
            for _ in range(3):  # cudagraph trees: a warm-up run, the recording, a replay
                self._run(x)
        return self.model

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if not self.cuda_graphs:
            return super()._run(batch)
        import torch

        with torch.inference_mode(), self._numerics():
            torch.compiler.cudagraph_mark_step_begin()  # the previous call's outputs are no longer read
            x = self._to_device(batch, self.buckets.size_for(len(batch)))
            return Buckets.unpad(self.model(x).float().cpu().numpy(), len(batch))
