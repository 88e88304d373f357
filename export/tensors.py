"""An exported graph's intermediate tensors, by the module they came from: the exporter records on each
node its module (`pkg.torch.onnx.name_scopes`; the lowerings keep it). Used by per-layer parity
(runners.layer_parity) and by `quantize --auto-exclude`."""

import json
from pathlib import Path

import numpy as np
import onnx

from prelu_deploy.plugins.onnxruntime_lib import new_session

SCOPES = "pkg.torch.onnx.name_scopes"


def module_of(node) -> str | None:
    """The dotted module path a node was exported from, or None."""
    meta = {p.key: p.value for p in node.metadata_props}
    if SCOPES not in meta:
        return None
    scopes = json.loads(meta[SCOPES].replace("'", '"'))
    return ".".join(s for s in scopes[1:-1] if s) or None


def module_tensors(graph: onnx.ModelProto) -> dict[str, str]:
    """Module path → the last tensor its nodes produce, in graph order."""
    return {path: node.output[0] for node in graph.graph.node if (path := module_of(node))}


def module_nodes(graph: onnx.ModelProto, path: str) -> list[str]:
    """The names of the nodes exported from module `path`."""
    return [node.name for node in graph.graph.node if module_of(node) == path]


def run_exposed(model: Path, input_name: str, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The graph at `model` run on x with `names` exposed as outputs (no graph optimisation, so every
    tensor is what the graph says): each one's value."""
    graph = onnx.load(model)
    exposed = {o.name for o in graph.graph.output}
    graph.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in exposed
    )
    session = new_session(graph.SerializeToString(), optimise=False)
    return dict(zip(names, session.run(names, {input_name: x})))
