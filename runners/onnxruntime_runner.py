"""ONNX Runtime runner: CPU provider by default; CUDA and TensorRT execution providers when installed."""

import numpy as np

from prelu_deploy import confined_threads
from prelu_deploy.errors import ModelDirError, PreluDeployError, UsageError
from prelu_deploy.manifest import ModelEntry
from prelu_deploy.runners.runner import BaseRunner


class OnnxRuntimeRunner(BaseRunner):
    name = "onnxruntime"

    def __init__(self, entry: ModelEntry, providers: list[str] | None = None, threads: int | None = None,
                 spinning: bool = True):
        super().__init__(entry)
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
        if threads := threads or confined_threads():
            opts.intra_op_num_threads = threads
        if not spinning:  # idle threads sleep at once instead of spinning: fair to whatever runs next
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # the bytes the manifest's sha256 vouches for (of one version with the manifest: manifest.load_entry); a
        # graph loaded from bytes has no folder to find external data in, so ONNX Runtime refuses any (1.19–1.32)
        model = entry.artifact_bytes()
        try:
            self.session = ort.InferenceSession(model, opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own types (NoSuchFile, InvalidProtobuf, Fail)
            raise ModelDirError(f"{entry.path}: ONNX Runtime cannot load {entry.artifact.name} "
                                f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: batch})[0]

    def close(self) -> None:
        self.session = None
