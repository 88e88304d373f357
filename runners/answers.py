"""Images → top-k labels with probabilities: the one answer format of the server's /classify and of
`prelu-deploy classify` (which runs without a server: ONNX Runtime or TensorRT on a model directory,
torch on a checkpoint)."""

from pathlib import Path
from typing import Callable

import numpy as np

from prelu_deploy.errors import UsageError
from prelu_deploy.models import packaged


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predictions(names: list[str], logits: np.ndarray, labels: list[str] | None, k: int) -> list[dict]:
    """Per image: its name and the top-k labels with their probabilities, most likely first."""
    probs = softmax(logits)
    labels = labels or [str(i) for i in range(probs.shape[1])]
    k = min(k, probs.shape[1])
    return [
        {
            "filename": name,
            "top_k": [{"label": labels[i], "index": int(i), "probability": float(p[i])} for i in np.argsort(-p)[:k]],
        }
        for name, p in zip(names, probs)
    ]


def model_path(model: str | Path) -> Path:
    """`--model` as given: a model directory or checkpoint file, else the name of a bundled model."""
    path = Path(model)
    if path.exists() or path.parent != Path("."):
        return path
    bundled = packaged("bundled")  # the repository `prelu-deploy serve` serves by default
    if (bundled / str(model)).is_dir():
        return bundled / str(model)
    names = ", ".join(sorted(p.name for p in bundled.iterdir() if p.is_dir()))
    raise UsageError(f"--model {model}: neither a model directory, a checkpoint file, nor a bundled model ({names})")


def load_classifier(model: str | Path, backend: str | None = None, threads: int | None = None):
    """(preprocess, labels, run) for a model directory (its runner), a checkpoint (torch) or the name of
    a bundled model."""
    from prelu_deploy.models.preprocess import Preprocess

    path = model_path(model)
    if path.is_dir():
        from prelu_deploy.manifest import read_entry
        from prelu_deploy.runners.registry import get_runner
        from prelu_deploy.runners.runner import run_batched

        entry = read_entry(path).verified()
        if not entry.preprocess:
            raise UsageError(f"{path}: no preprocessing record, so images cannot be classified; re-export it")
        try:
            pre = Preprocess.from_dict(entry.preprocess)
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from None
        runner = get_runner(backend, entry, threads=threads)
        return pre, entry.labels, lambda x: run_batched(runner, x)
    if not path.is_file():
        raise UsageError(f"--model {model}: neither a model directory nor a checkpoint file")
    import torch

    from prelu_deploy.models import load_checkpoint
    from prelu_deploy.models.reference import eager_logits

    if threads:
        torch.set_num_threads(threads)
    net, meta = load_checkpoint(path)
    return meta.preprocess or net.config.default_preprocess(), meta.labels, lambda x: eager_logits(net, x)


def classify_files(
    files: list[Path],
    model: str | Path,
    k: int = 5,
    backend: str | None = None,
    threads: int | None = None,
    batch: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """The server's answer for these image files, computed in this process, `batch` images a call."""
    pre, labels, run = load_classifier(model, backend, threads)
    out = []
    for i in range(0, len(files), batch):
        chunk = files[i : i + batch]
        images = []
        for f in chunk:
            try:
                images.append(pre.load_image(f))
            except (OSError, SyntaxError, ValueError) as err:
                raise UsageError(f"{f}: not an image Pillow can read ({err})") from None
        out += predictions([str(f) for f in chunk], run(pre.to_tensor(np.stack(images))), labels, k)
        if on_batch:
            on_batch(len(chunk))
    return out
