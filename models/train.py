"""Training and evaluation: momentum SGD as in He et al. 2015 (weight decay on weights only, none on
the PReLU slopes), cosine learning-rate decay, random ±shift augmentation, deterministic for a seed."""

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from prelu_deploy.errors import PreluDeployError
from prelu_deploy.models.data import Dataset, Split
from prelu_deploy.models.init import param_groups
from prelu_deploy.models.preprocess import Preprocess


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    shift: int = 1  # random translation in pixels, 0 to turn augmentation off
    seed: int = 0


def predict(model: nn.Module, images: np.ndarray, preprocess: Preprocess, batch_size: int = 256) -> torch.Tensor:
    """Logits for uint8 NHWC images, in eval mode, batch by batch."""
    model.eval()
    with torch.inference_mode():
        return torch.cat(
            [model(torch.from_numpy(preprocess.to_tensor(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
        )


def evaluate(model: nn.Module, split: Split, preprocess: Preprocess, batch_size: int = 256) -> dict:
    """Accuracy, mean cross-entropy and per-class accuracy on a split."""
    logits = predict(model, split.images, preprocess, batch_size)
    labels = torch.from_numpy(split.labels)
    correct = logits.argmax(1) == labels
    per_class = {int(c): float(correct[labels == c].float().mean()) for c in labels.unique()}
    return {
        "n": len(split),
        "correct": int(correct.sum()),
        "accuracy": int(correct.sum()) / len(split),
        "loss": float(F.cross_entropy(logits, labels)),
        "per_class_accuracy": per_class,
    }


def _shifted(images: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ±shift pixels, filling with the edge values."""
    if shift == 0:
        return images
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    h, w = images.shape[1:3]
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, len(images)))
    return np.stack([p[y : y + h, x : x + w] for p, y, x in zip(padded, dy, dx)])


def train(
    model: nn.Module, data: Dataset, preprocess: Preprocess, cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None
) -> dict:
    """Train in place; returns the training summary (config, per-epoch history, final metrics)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    steps = cfg.epochs * -(-len(data.train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    history = []
    for epoch in range(1, cfg.epochs + 1):
        start, model = time.perf_counter(), model.train()
        order = rng.permutation(len(data.train))
        total, seen = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = torch.from_numpy(preprocess.to_tensor(_shifted(data.train.images[idx], cfg.shift, rng)))
            y = torch.from_numpy(data.train.labels[idx])
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise PreluDeployError(f"training diverged in epoch {epoch} (loss {loss.item()}); lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        held = evaluate(model, data.test, preprocess)
        row = {
            "epoch": epoch,
            "train_loss": total / seen,
            "test_loss": held["loss"],
            "test_accuracy": held["accuracy"],
            "lr": sched.get_last_lr()[0],
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return {
        "dataset": data.name,
        "config": asdict(cfg),
        "history": history,
        "train_size": len(data.train),
        "test_size": len(data.test),
    }
