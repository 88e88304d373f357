"""`prelu_deploy::ChannelSharedPReLU`: one node per channel-shared PReLU, its slope an attribute.

The op is defined as an ONNX function whose body is standard ONNX — `LeakyRelu(alpha=@slope)`, which
is the same function, y = x if x > 0 else slope·x — so any ONNX runtime can run it (ONNX Runtime
inlines model-local functions). TensorRT's ONNX parser looks a registered plugin up by the node's op
type, version and `plugin_namespace` *attribute* (not its domain), and from TensorRT 10.15 it uses the
model-local function unless that attribute is present: so the node carries
`plugin_namespace="prelu_deploy"`, and the build falls back to the body only when no creator is
registered (TensorRT-RTX: always).
"""

import numpy as np
import onnx
from onnx import helper

DOMAIN = "prelu_deploy"
OP_TYPE = "ChannelSharedPReLU"
VERSION = 1  # also the TensorRT plugin version ("1")
BODY_OPSET = 18


def function_proto() -> onnx.FunctionProto:
    """The op's definition, to be added to a model's `functions`."""
    slope = helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT)
    slope.ref_attr_name = "slope"
    body = helper.make_node("LeakyRelu", ["X"], ["Y"])
    body.attribute.append(slope)
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs=["X"],
        outputs=["Y"],
        nodes=[body],
        opset_imports=[helper.make_opsetid("", BODY_OPSET)],
        attributes=["slope"],
    )


def make_node(x: str, y: str, slope: float, name: str) -> onnx.NodeProto:
    return helper.make_node(OP_TYPE, [x], [y], name=name, domain=DOMAIN, slope=float(slope), plugin_namespace=DOMAIN)


def reference(x: np.ndarray, slope: float) -> np.ndarray:
    """NumPy reference (as Polygraphy's pluginref): y = x if x > 0 else slope·x, in x's dtype."""
    return np.where(x > 0, x, x * x.dtype.type(slope))
