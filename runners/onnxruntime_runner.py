"""ONNX Runtime runner on the CPU execution provider (the CUDA one: runners.onnxruntime_cuda)."""

import numpy as np

from prelu_deploy.errors import ModelDirError, UsageError
from prelu_deploy.manifest import ModelEntry
from prelu_deploy.plugins.onnxruntime_lib import CPU, load_onnxruntime, new_session
from prelu_deploy.runners.runner import BaseRunner


class OnnxRuntimeRunner(BaseRunner):
    name = "onnxruntime"

    def __init__(
        self,
        entry: ModelEntry,
        device: str = "cpu",
        precision: str | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
        spinning: bool = True,
    ):
        super().__init__(entry, device, precision)
        available = load_onnxruntime().get_available_providers()
        providers = providers or CPU
        if missing := [p for p in providers if p not in available]:
            raise UsageError(
                f"ONNX Runtime providers not available here: {', '.join(missing)} (available: {', '.join(available)})"
            )
        # the bytes the manifest's sha256 vouches for (of one version with the manifest: manifest.load_entry); a
        # graph loaded from bytes has no folder to find external data in, so ONNX Runtime refuses any (1.19–1.32)
        try:
            self.session = new_session(entry.artifact_bytes(), providers, threads, spinning)
        except Exception as err:  # onnxruntime raises its own types (NoSuchFile, InvalidProtobuf, Fail)
            raise ModelDirError(
                f"{entry.path}: ONNX Runtime cannot load {entry.artifact.name} "
                f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
            ) from None
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: batch})[0]

    def close(self) -> None:
        self.session = None
