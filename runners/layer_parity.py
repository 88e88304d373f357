"""Per-layer parity (Polygraphy's "mark all" comparison): the ONNX graph run with every intermediate
tensor exposed, PyTorch run with forward hooks on the same inputs, tensors matched to modules, and for
each layer the error against PyTorch — so a failing parity says where precision was lost first.

Matching: the exporter records on each ONNX node the module it came from (`pkg.torch.onnx.name_scopes`).
A module's ONNX tensor is the output of its last node. Its PyTorch counterpart is its own output, or
that of the batch norm (dropout, identity) right after it that has no ONNX node of its own — a
convolution whose batch norm the exporter folded in is compared with the batch norm's output, which is
what the fused node computes."""

import numpy as np

from prelu_deploy.export.tensors import module_tensors, run_exposed
from prelu_deploy.tolerances import cosines
from prelu_deploy.manifest import ModelEntry

FOLDED = ("BatchNorm", "Dropout", "Identity")  # modules that leave no node of their own in an inference graph


def _torch_outputs(model, x: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(module path, class name, output) of every leaf module, in the order they ran."""
    import torch

    seen, hooks = [], []
    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, o, path=path: seen.append((path, type(m).__name__, o.detach().numpy().copy()))
                )
            )
    try:
        with torch.inference_mode():
            model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    return seen


def per_layer(entry: ModelEntry, model, x: np.ndarray, max_abs_of_scale: float | None, min_cosine: float | None) -> dict:
    """Every matched layer's error, and the first one beyond the tolerance (None when all hold)."""
    import onnx

    layers = module_tensors(onnx.load(entry.artifact))
    ran = _torch_outputs(model, x)
    onnx_values = run_exposed(entry.artifact, entry.input.name, list(layers.values()), x)
    rows, first = [], None
    for i, (path, _, _) in enumerate(ran):
        if path not in layers:
            continue
        j = i
        while j + 1 < len(ran) and ran[j + 1][0] not in layers and ran[j + 1][1].startswith(FOLDED):
            j += 1  # folded into this module's node by the exporter
        ref, got = ran[j][2], onnx_values[layers[path]]
        if ref.shape != got.shape:
            continue
        scale = float(np.abs(ref).max()) or 1.0
        row = {
            "layer": path,
            "compared_with": ran[j][0],
            "tensor": layers[path],
            "shape": list(got.shape[1:]),
            "max_abs": float(np.abs(got.astype(np.float64) - ref).max()),
            "scale": scale,
            "min_cosine": float(cosines(got, ref).min()),
        }
        row["beyond"] = bool(
            (max_abs_of_scale is not None and row["max_abs"] > max_abs_of_scale * scale)
            or (min_cosine is not None and row["min_cosine"] < min_cosine)
        )
        rows.append(row)
        first = first or (path if row["beyond"] else None)
    return {"layers": rows, "first_beyond_tolerance": first}
