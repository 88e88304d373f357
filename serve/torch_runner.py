"""PyTorch eager runner on the checkpoint a model directory was exported from (the reference)."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest import read_model_dir, sha256_file
from prelu_deploy.serve.runner import TensorSpec


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
    name = "torch"
    precision = "fp32"

    def __init__(self, model_dir: str | Path, checkpoint: str | Path | None = None, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model_dir = read_model_dir(model_dir)
        self.model = load_source_model(self.model_dir, checkpoint)
        m = self.model_dir.manifest
        self._in = TensorSpec(m["input"]["name"], tuple(m["input"]["shape"]), "FP32")
        self._out = TensorSpec(m["output"]["name"], tuple(m["output"]["shape"]), "FP32")

    def inputs(self) -> list[TensorSpec]:
        return [self._in]

    def outputs(self) -> list[TensorSpec]:
        return [self._out]

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()
