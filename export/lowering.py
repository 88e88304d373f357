"""The three PReLU lowerings, as passes over the exported ONNX graph (docs/architecture.md).

- native: ONNX `PRelu`, as torch.onnx.export emits it.
- plugin: each channel-shared PRelu → one `prelu_deploy::ChannelSharedPReLU` node (attribute slope).
- leaky:  each channel-shared PRelu → `LeakyRelu(alpha=slope)`; runtimes fuse it into the conv before.
Channel-wise PRelu (a slope tensor of more than one element) stays `PRelu` in every mode.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import LOWERINGS  # noqa: F401 (export.lowering.LOWERINGS: the public name)
from prelu_deploy.plugins import channel_shared_prelu as csp


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every tensor whose value the graph fixes: initializers and Constant nodes."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def prelu_layers(model: onnx.ModelProto) -> list[dict]:
    """The PRelu nodes of a graph, in order, with their slopes and whether they are channel-shared."""
    consts = _constants(model)
    layers = []
    for node in model.graph.node:
        if node.op_type == "PRelu":
            if node.input[1] not in consts:
                raise UsageError(f"PRelu node {node.name!r} has a computed slope; only constant slopes export")
            slope = consts[node.input[1]]
            layers.append(
                {
                    "node": node.name,
                    "shared": slope.size == 1,
                    "channels": int(slope.size),
                    "slope": float(slope.reshape(-1)[0]) if slope.size == 1 else None,
                }
            )
    return layers


def lower(model: onnx.ModelProto, mode: str) -> onnx.ModelProto:
    """A copy of `model` with its channel-shared PReLUs in form `mode`."""
    if mode not in LOWERINGS:
        raise UsageError(f"unknown PReLU lowering {mode!r}; choose one of {', '.join(LOWERINGS)}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if mode == "native":
        return out
    consts = _constants(out)
    nodes, replaced = [], 0
    for node in out.graph.node:
        slope = consts.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1:
            nodes.append(node)
            continue
        a, replaced = float(slope.reshape(-1)[0]), replaced + 1
        if mode == "leaky":
            new = helper.make_node("LeakyRelu", [node.input[0]], [node.output[0]], name=node.name, alpha=a)
        else:
            new = csp.make_node(node.input[0], node.output[0], a, node.name)
        new.metadata_props.extend(node.metadata_props)  # the module it came from: per-layer parity reads it
        nodes.append(new)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if mode == "plugin" and replaced:
        out.functions.append(csp.function_proto())
        out.opset_import.append(helper.make_opsetid(csp.DOMAIN, csp.VERSION))
    _drop_unused(out)
    return out


def _drop_unused(model: onnx.ModelProto) -> None:
    """Remove initializers and Constant nodes that no node reads any more (the replaced slopes)."""
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or n.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
