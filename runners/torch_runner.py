"""PyTorch runners on the checkpoint a model directory was exported from: eager (the reference) and
torch.compile."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError, PreluDeployError, UsageError
from prelu_deploy.manifest import read_model_dir, sha256_file
from prelu_deploy.runners.runner import TensorSpec


def load_source_model(model_dir, checkpoint: str | Path | None = None):
    """The PyTorch model a model directory came from; refuses a checkpoint whose sha256 differs."""
    from prelu_deploy.models import load_checkpoint

    source = model_dir.manifest["source"]
    path = Path(checkpoint or source["checkpoint"])
    if not path.is_file():
        raise ModelDirError(f"{model_dir.path}: its source checkpoint {path} is gone; pass --checkpoint PATH")
    if sha256_file(path) != source["sha256"]:
        raise ModelDirError(f"{path}: sha256 differs from the checkpoint {model_dir.name} was exported from")
    return load_checkpoint(path)[0]


class TorchRunner:
    """Eager PyTorch on `device` ("cpu", "cuda", "cuda:1"); the reference of parity, a baseline of benchmarks."""

    name = "torch"
    precision = "fp32"

    def __init__(self, model_dir: str | Path, checkpoint: str | Path | None = None, threads: int | None = None,
                 device: str = "cpu"):
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
        self.model_dir = read_model_dir(model_dir)
        self.model = self._prepare(load_source_model(self.model_dir, checkpoint).eval().to(self.device))
        m = self.model_dir.manifest
        self._in = TensorSpec(m["input"]["name"], tuple(m["input"]["shape"]), "FP32")
        self._out = TensorSpec(m["output"]["name"], tuple(m["output"]["shape"]), "FP32")

    def _prepare(self, model):
        return model

    def inputs(self) -> list[TensorSpec]:
        return [self._in]

    def outputs(self) -> list[TensorSpec]:
        return [self._out]

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()  # .cpu() waits for the GPU: the call's time is complete


class CompiledTorchRunner(TorchRunner):
    """The same model through `torch.compile` (TorchInductor: C++/OpenMP on CPU, Triton on GPU). It
    compiles at the first call of each batch size (tens of seconds), so warm it up before timing."""

    name = "torch-compile"

    def _prepare(self, model):
        import torch

        return torch.compile(model)
