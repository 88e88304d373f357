"""PyTorch runners on the checkpoint a model entry was exported from: eager (the reference) and
torch.compile."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError, PreluDeployError, UsageError
from prelu_deploy.manifest import ModelEntry, sha256_file
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


class TorchRunner(BaseRunner):
    """Eager PyTorch on `device` ("cpu", "cuda", "cuda:1"); the reference of parity, a baseline of benchmarks."""

    name = "torch"

    def __init__(self, entry: ModelEntry, checkpoint: str | Path | None = None, threads: int | None = None,
                 device: str = "cpu"):
        super().__init__(entry)
        try:
            import torch
        except ImportError:
            raise PreluDeployError("the torch runners need torch: pip install 'prelu-deploy[export]'") from None

        if threads:
            torch.set_num_threads(threads)
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise UsageError(f"torch device {device!r} is not available here (torch {torch.__version__}, "
                             f"CUDA {'available' if torch.cuda.is_available() else 'not available'})")
        self.device = torch.device(device)
        self.model = self._prepare(load_source_model(entry, checkpoint).eval().to(self.device))

    @property
    def precision(self) -> str:
        return "fp32"  # the checkpoint itself, whatever the entry's artifact computes in

    def _prepare(self, model):
        return model

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            return self.model(x).float().cpu().numpy()  # .cpu() waits for the GPU: the call's time is complete

    def close(self) -> None:
        self.model = None


class CompiledTorchRunner(TorchRunner):
    """The same model through `torch.compile` (TorchInductor: C++/OpenMP on CPU, Triton on GPU). It
    compiles at the first call of each batch size (tens of seconds), so warm it up before timing."""

    name = "torch-compile"

    def _prepare(self, model):
        import torch

        return torch.compile(model)
