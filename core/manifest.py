"""The model directory and its manifest: one format, read and written here, torch-free, so export
writes it and the server reads it without either importing the other.

    <repo>/<name>/config.pbtxt     Triton's model config
    <repo>/<name>/manifest.json    ours: labels, preprocessing, lowering, provenance, hashes, golden I/O
    <repo>/<name>/golden.npz       golden inputs and their PyTorch logits (float32 and float64)
    <repo>/<name>/1/model.onnx
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prelu_deploy.errors import ModelDirError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.pbtxt"
GOLDEN = "golden.npz"
ONNX = "1/model.onnx"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelDir:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.get("labels")

    def golden(self) -> dict[str, np.ndarray]:
        """{"inputs", "logits", "logits_fp64"} as stored at export."""
        with np.load(self.path / GOLDEN) as z:
            return {k: z[k] for k in z.files}

    def verify(self) -> list[str]:
        """Problems with the artifacts: missing files, sha256 that differ from the manifest."""
        problems = []
        for rel, expected in self.manifest["artifacts"].items():
            f = self.path / rel
            if not f.is_file():
                problems.append(f"{rel} is missing")
            elif sha256_file(f) != expected:
                problems.append(f"{rel} sha256 differs from the manifest (file changed after export)")
        return problems


def read_model_dir(path: str | Path) -> ModelDir:
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise ModelDirError(f"{path}: not a model directory (no {MANIFEST}); make one with `prelu-deploy export`")
    try:
        manifest = json.loads(mf.read_text())
    except (ValueError, OSError) as err:
        raise ModelDirError(f"{mf}: unreadable manifest ({err})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ModelDirError(f"{mf}: unsupported manifest format version {version!r} (this prelu-deploy reads {FORMAT_VERSION})")
    missing = [k for k in ("name", "artifacts", "input", "output", "preprocess") if k not in manifest]
    if missing:
        raise ModelDirError(f"{mf}: manifest lacks {', '.join(missing)}")
    return ModelDir(path, manifest)
