"""The TensorRT plugin for `prelu_deploy::ChannelSharedPReLU` (IPluginV3, class-based Python, TRT ≥ 10).

One field, `slope` (float32); fp32 and fp16, linear format; output shape and type = the input's; any
(dynamic) shape. `enqueue` launches the CuPy kernel of `kernel.py` on TensorRT's stream.
`register_plugins()` puts the creator in TensorRT's registry, after which the ONNX parser (TensorRT
≥ 10.7) maps the custom node to it instead of its ONNX function body. TensorRT-RTX has no plugin
layers: the build registers nothing there and the parser uses the function body.
"""

import numpy as np

from prelu_deploy.plugins import channel_shared_prelu as csp
from prelu_deploy.plugins.tensorrt_lib import load_tensorrt

trt, FLAVOUR = load_tensorrt()
_TYPES = (trt.DataType.FLOAT, trt.DataType.HALF)


def _fields(slope: float | None) -> "trt.PluginFieldCollection":
    data = np.array([] if slope is None else [slope], np.float32)
    return trt.PluginFieldCollection([trt.PluginField("slope", data, trt.PluginFieldType.FLOAT32)])


class ChannelSharedPReLUPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
    def __init__(self, slope: float):
        trt.IPluginV3.__init__(self)
        trt.IPluginV3OneCore.__init__(self)
        trt.IPluginV3OneBuild.__init__(self)
        trt.IPluginV3OneRuntime.__init__(self)
        self.plugin_name, self.plugin_version, self.plugin_namespace = csp.OP_TYPE, str(csp.VERSION), csp.DOMAIN
        self.num_outputs = 1
        self.slope = float(slope)

    # core
    def get_capability_interface(self, _type):
        return self

    def clone(self):
        return ChannelSharedPReLUPlugin(self.slope)

    # build
    def get_output_data_types(self, input_types):
        return [input_types[0]]

    def get_output_shapes(self, inputs, shape_inputs, expr_builder):
        return [inputs[0]]

    def supports_format_combination(self, pos, in_out, num_inputs):
        desc = in_out[pos].desc
        if desc.format != trt.TensorFormat.LINEAR:
            return False
        return desc.type in _TYPES if pos == 0 else desc.type == in_out[0].desc.type

    def configure_plugin(self, inputs, outputs):
        pass

    def get_workspace_size(self, inputs, outputs):
        return 0

    def get_valid_tactics(self):
        return []

    def get_fields_to_serialize(self):
        return _fields(self.slope)

    # runtime
    def set_tactic(self, tactic):
        pass

    def on_shape_change(self, inputs, outputs):
        pass

    def attach_to_context(self, context):
        return self.clone()

    def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
        from prelu_deploy.plugins.kernel import launch

        n = int(np.prod(tuple(input_desc[0].dims)))
        launch(inputs[0], outputs[0], n, input_desc[0].type == trt.DataType.HALF, self.slope, stream)


class ChannelSharedPReLUCreator(trt.IPluginCreatorV3One):
    def __init__(self):
        trt.IPluginCreatorV3One.__init__(self)
        self.name, self.plugin_version, self.plugin_namespace = csp.OP_TYPE, str(csp.VERSION), csp.DOMAIN
        self.field_names = _fields(None)

    def create_plugin(self, name, fields, phase):
        slope = [f.data for f in fields if f.name == "slope"]
        if not slope or len(slope[0]) != 1:
            raise ValueError(f"{csp.OP_TYPE}: needs exactly one float32 field 'slope'")
        return ChannelSharedPReLUPlugin(float(slope[0][0]))


_registered: ChannelSharedPReLUCreator | None = None


def register_plugins() -> ChannelSharedPReLUCreator:
    """Register the creator once per process (TensorRT keeps a reference; so do we)."""
    global _registered
    if _registered is None:
        creator = ChannelSharedPReLUCreator()
        if not trt.get_plugin_registry().register_creator(creator, csp.DOMAIN):
            raise RuntimeError(f"TensorRT ({FLAVOUR}) refused to register {csp.DOMAIN}::{csp.OP_TYPE}")
        _registered = creator
    return _registered
