"""Golden I/O for the manifest: a few real preprocessed held-out images, plus inputs crafted so that
every PReLU layer sees negative pre-activations (a parity check that never exercised the slopes would
prove nothing about them), with their PyTorch logits in float32 and float64."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from prelu_deploy.errors import DatasetError
from prelu_deploy.models.checkpoint import CheckpointMeta
from prelu_deploy.models.data import held_out
from prelu_deploy.models.reference import negative_fractions, reference_logits


def held_out_images(meta: CheckpointMeta, n: int, dataset: str | None = None) -> tuple[np.ndarray | None, str | None]:
    """The first n held-out images of the checkpoint's dataset, preprocessed; else None and why."""
    dataset = dataset or (meta.metrics or {}).get("dataset")
    if meta.preprocess is None:
        return None, "the checkpoint records no preprocessing"
    if dataset is None:
        return None, "the checkpoint records no dataset"
    if dataset != "digits" and not Path(dataset).is_dir():
        return None, f"its dataset {dataset} is not on this machine"
    try:
        return held_out(dataset, meta.preprocess, n)[0], None
    except DatasetError as err:
        return None, f"its dataset could not be read ({err})"


def crafted_inputs(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    """Zero-mean noise at 1× and 3× the normalised scale: half of every pre-activation goes negative."""
    rng = np.random.default_rng(seed)
    scales = np.where(np.arange(n) % 2 == 0, 1.0, 3.0).reshape(-1, 1, 1, 1)
    return (rng.standard_normal((n, *shape)) * scales).astype(np.float32)


def make_golden(model: nn.Module, meta: CheckpointMeta, n_real: int = 4, n_crafted: int = 4) -> dict:
    cfg = model.config
    """Golden inputs and their PyTorch logits; `no_held_out` says why none are real images (then INT8,
    judged on real images only, cannot be judged on them: `quantize` refuses such an entry)."""
    real, why = held_out_images(meta, n_real)
    crafted = crafted_inputs((cfg.in_chans, cfg.input_size, cfg.input_size), n_crafted)
    inputs = crafted if real is None else np.concatenate([real, crafted])
    fp32, fp64 = reference_logits(model, inputs)
    return {
        "inputs": inputs,
        "logits": fp32,
        "logits_fp64": fp64,
        "no_held_out": why,
        "sources": ["held-out"] * (0 if real is None else len(real)) + ["crafted"] * n_crafted,
        "negative_fraction": negative_fractions(model, torch.from_numpy(inputs)),
    }
