"""ONNX Runtime runner: CPU provider by default; CUDA and TensorRT execution providers when installed."""

from pathlib import Path

import numpy as np

from prelu_deploy.errors import PreluDeployError, UsageError
from prelu_deploy.manifest import read_model_dir
from prelu_deploy.runners.runner import TensorSpec

_DTYPES = {"tensor(float)": "FP32", "tensor(float16)": "FP16"}


class OnnxRuntimeRunner:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, model_dir: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 spinning: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PreluDeployError("onnxruntime is not installed: pip install 'prelu-deploy[serve]'") from None
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        if missing := [p for p in providers if p not in available]:
            raise UsageError(f"ONNX Runtime providers not available here: {', '.join(missing)} "
                             f"(available: {', '.join(available)})")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        if not spinning:  # idle threads sleep at once instead of spinning: fair to whatever runs next
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.model_dir = read_model_dir(model_dir)
        self.session = ort.InferenceSession(str(self.model_dir.onnx_path), opts, providers=providers)
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name

    @staticmethod
    def _specs(args) -> list[TensorSpec]:
        return [TensorSpec(a.name, tuple(d if isinstance(d, int) else -1 for d in a.shape), _DTYPES.get(a.type, a.type))
                for a in args]

    def inputs(self) -> list[TensorSpec]:
        return self._specs(self.session.get_inputs())

    def outputs(self) -> list[TensorSpec]:
        return self._specs(self.session.get_outputs())

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]
