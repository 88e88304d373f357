"""Checkpoints: `.safetensors` with one JSON metadata entry, written atomically.

The metadata entry `prelu_deploy` holds: format_version, arch, kwargs, labels, preprocess, training,
metrics. Plain PyTorch files are read too, with `torch.load(weights_only=True)` — never by unpickling
arbitrary objects: either a dict {"arch", "state_dict", optional "kwargs", "labels", "preprocess",
"metrics"} or a bare state dict together with `arch=`.
"""

import hashlib
import json
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from prelu_deploy.atomic import write_bytes
from prelu_deploy.errors import CheckpointError, PreluDeployError
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.models.registry import create_model

FORMAT_VERSION = 1
META_KEY = "prelu_deploy"
_LISTED = 8  # how many names an error lists before "and N more"


@dataclass
class CheckpointMeta:
    arch: str
    kwargs: dict
    labels: list[str] | None = None
    preprocess: Preprocess | None = None
    training: dict | None = None
    metrics: dict | None = None
    format_version: int = FORMAT_VERSION
    path: str = ""
    sha256: str = ""

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "arch": self.arch,
            "kwargs": self.kwargs,
            "labels": self.labels,
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "training": self.training,
            "metrics": self.metrics,
        }


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    labels: list[str] | None = None,
    preprocess: Preprocess | None = None,
    metrics: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Write `model` (made by create_model) and its metadata to `path` atomically."""
    if not hasattr(model, "arch"):
        raise CheckpointError("this module was not made by create_model(): its architecture is unknown")
    meta = CheckpointMeta(model.arch, model.arch_kwargs, labels, preprocess, training, metrics)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    write_bytes(path, st_save(tensors, metadata={META_KEY: json.dumps(meta.to_json())}))
    return path


def load_checkpoint(path: str | Path, *, arch: str | None = None) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model in eval mode; raises CheckpointError with a one-line reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    if _is_safetensors(data):
        state, meta_json = _read_safetensors(path, data)
    elif data[:2] == b"PK" or data[:1] == b"\x80":
        state, meta_json = _read_torch(path)
    else:
        raise CheckpointError(f"{path}: not a checkpoint (neither safetensors nor a PyTorch file)")
    meta = _parse_meta(path, meta_json, arch)
    meta.path, meta.sha256 = str(path), hashlib.sha256(data).hexdigest()
    try:
        model = create_model(meta.arch, **meta.kwargs)
    except PreluDeployError as err:
        raise CheckpointError(f"{path}: {err}") from None
    _check_state(path, model, state)
    model.load_state_dict(state)
    return model.eval(), meta


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _read_safetensors(path: Path, data: bytes) -> tuple[dict, dict | None]:
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        state = st_load(data)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err})") from None
    raw = (header.get("__metadata__") or {}).get(META_KEY)
    try:
        return state, json.loads(raw) if raw else None
    except ValueError:
        raise CheckpointError(f"{path}: the '{META_KEY}' metadata entry is not valid JSON") from None


def _read_torch(path: Path) -> tuple[dict, dict | None]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain data ({_refused(err)}), "
            "which are never unpickled; save the model's state dict instead "
            "(torch.save(model.state_dict(), PATH)) and name its architecture (--arch NAME)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: corrupt PyTorch file ({str(err).splitlines()[0]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], {k: v for k, v in obj.items() if k != "state_dict"}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise CheckpointError(f"{path}: not a checkpoint (a PyTorch file without a state dict)")


def _refused(err: pickle.UnpicklingError) -> str:
    """What torch's weights-only loader refused, in a few plain words: its message is several sentences
    of advice with terminal colour codes, and the advice (unpickle anyway) is not ours to give."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return f"a pickled {found[1]}"
    return text.strip().split(". ")[0].strip().rstrip(".") or "unsafe content"


def _parse_meta(path: Path, meta: dict | None, arch: str | None) -> CheckpointMeta:
    if meta is None or "arch" not in meta:
        if arch is None:
            raise CheckpointError(f"{path}: a bare state dict without prelu-deploy metadata; name its architecture (--arch NAME)")
        return CheckpointMeta(arch=arch, kwargs={})
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{path}: unsupported format version {version!r} "
            f"(this prelu-deploy reads 1 to {FORMAT_VERSION}); upgrade prelu-deploy"
        )
    try:
        pre = Preprocess.from_dict(meta["preprocess"]) if meta.get("preprocess") else None
    except ValueError as err:
        raise CheckpointError(f"{path}: bad preprocessing record: {err}") from None
    kwargs = meta.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: 'kwargs' must be a JSON object")
    return CheckpointMeta(
        arch=arch or meta["arch"],
        kwargs=kwargs,
        labels=meta.get("labels"),
        preprocess=pre,
        training=meta.get("training"),
        metrics=meta.get("metrics"),
        format_version=version,
    )


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _check_state(path: Path, model: nn.Module, state: dict) -> None:
    """Name every missing, unexpected and mis-shaped tensor, so one error tells the whole story."""
    expected = model.state_dict()
    problems = []
    if missing := [k for k in expected if k not in state]:
        problems.append(f"missing tensors: {_listed(missing)}")
    if unexpected := [k for k in state if k not in expected]:
        problems.append(f"unexpected tensors: {_listed(unexpected)}")
    shaped = [
        f"{k} {tuple(state[k].shape)} (model wants {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if shaped:
        problems.append(f"mis-shaped tensors: {_listed(shaped)}")
    if problems:
        raise CheckpointError(f"{path}: does not fit {model.arch}({_kwargs_repr(model.arch_kwargs)}): " + "; ".join(problems))


def _kwargs_repr(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
