"""Per-layer parity (Polygraphy's "mark all" comparison): the ONNX graph run with every intermediate
tensor exposed, PyTorch run with forward hooks on the same inputs, tensors matched to modules, and for
each layer the error against PyTorch — so a failing parity says where precision was lost first.

Matching: the exporter records on each ONNX node the module it came from (`pkg.torch.onnx.name_scopes`).
A module's ONNX tensor is the output of its last node. Its PyTorch counterpart is its own output, or
that of the batch norm (dropout, identity) right after it that has no ONNX node of its own — a
convolution whose batch norm the exporter folded in is compared with the batch norm's output, which is
what the fused node computes."""

import json

import numpy as np

from prelu_deploy.manifest import ModelEntry

SCOPES = "pkg.torch.onnx.name_scopes"
FOLDED = ("BatchNorm", "Dropout", "Identity")  # modules that leave no node of their own in an inference graph


def onnx_layers(graph) -> dict[str, str]:
    """Module path → the name of the last tensor its nodes produce, in graph order."""
    out = {}
    for node in graph.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if SCOPES in meta:
            scopes = json.loads(meta[SCOPES].replace("'", '"'))
            if path := ".".join(s for s in scopes[1:-1] if s):
                out[path] = node.output[0]
    return out


def _run_all(entry: ModelEntry, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX graph with `names` exposed as outputs: each one's value on x."""
    import onnx
    import onnxruntime as ort

    graph = onnx.load(entry.artifact)
    exposed = {o.name for o in graph.graph.output}
    graph.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in exposed)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as the graph says
    session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {entry.input.name: x})))


def _torch_outputs(model, x: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(module path, class name, output) of every leaf module, in the order they ran."""
    import torch

    seen, hooks = [], []
    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, path=path: seen.append((path, type(m).__name__, o.detach().numpy().copy()))))
    try:
        with torch.inference_mode():
            model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    return seen


def per_layer(entry: ModelEntry, model, x: np.ndarray, max_abs_of_scale: float | None, min_cosine: float | None) -> dict:
    """Every matched layer's error, and the first one beyond the tolerance (None when all hold)."""
    layers = onnx_layers(__import__("onnx").load(entry.artifact))
    ran = _torch_outputs(model, x)
    onnx_values = _run_all(entry, list(layers.values()), x)
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
        a, b = got.reshape(len(x), -1).astype(np.float64), ref.reshape(len(x), -1).astype(np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)
        scale = float(np.abs(b).max()) or 1.0
        row = {"layer": path, "compared_with": ran[j][0], "tensor": layers[path], "shape": list(got.shape[1:]),
               "max_abs": float(np.abs(a - b).max()), "scale": scale, "min_cosine": float(cos.min())}
        row["beyond"] = bool((max_abs_of_scale is not None and row["max_abs"] > max_abs_of_scale * scale)
                             or (min_cosine is not None and row["min_cosine"] < min_cosine))
        rows.append(row)
        first = first or (path if row["beyond"] else None)
    return {"layers": rows, "first_beyond_tolerance": first}
