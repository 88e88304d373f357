"""The ChannelSharedPReLU TensorRT plugin: what runs without a GPU here (fields, formats, types,
registration), with either TensorRT flavour. Its kernel: tests/plugins/test_kernel.py."""

import numpy as np
import pytest

from prelu_deploy.plugins import channel_shared_prelu as csp

from ..conftest import tensorrt_or_skip  # noqa: E402

trt, FLAVOUR = tensorrt_or_skip()
from prelu_deploy.plugins.trt_plugin import ChannelSharedPReLUCreator, _fields, register_plugins  # noqa: E402


def _desc(dtype, fmt=None):
    d = trt.DynamicPluginTensorDesc()
    p = trt.PluginTensorDesc()
    p.type, p.format = dtype, fmt or trt.TensorFormat.LINEAR
    d.desc = p
    return d


@pytest.mark.parametrize("slope", [-0.5, 0.0, 0.25, 1.0, 1.7])
def test_fields_round_trip(slope):
    creator = ChannelSharedPReLUCreator()
    plugin = creator.create_plugin("p", _fields(slope), trt.TensorRTPhase.BUILD)
    again = creator.create_plugin("q", plugin.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.slope == plugin.slope == np.float32(slope)
    assert (again.plugin_name, again.plugin_version, again.plugin_namespace) == ("ChannelSharedPReLU", "1", "prelu_deploy")
    assert again.clone().slope == again.slope and again.num_outputs == 1


def test_creator_declares_its_field_and_refuses_bad_ones():
    creator = ChannelSharedPReLUCreator()
    assert [f.name for f in creator.field_names] == ["slope"]
    with pytest.raises(ValueError, match="exactly one float32 field 'slope'"):
        creator.create_plugin("p", trt.PluginFieldCollection([]), trt.TensorRTPhase.BUILD)


def test_format_combinations():
    plugin = ChannelSharedPReLUCreator().create_plugin("p", _fields(0.3), trt.TensorRTPhase.BUILD)
    F, H = trt.DataType.FLOAT, trt.DataType.HALF
    ok = plugin.supports_format_combination
    assert ok(0, [_desc(F), _desc(F)], 1) and ok(0, [_desc(H), _desc(H)], 1)
    assert ok(1, [_desc(F), _desc(F)], 1) and ok(1, [_desc(H), _desc(H)], 1)
    assert not ok(1, [_desc(H), _desc(F)], 1)  # output type follows the input
    assert not ok(0, [_desc(trt.DataType.INT8), _desc(trt.DataType.INT8)], 1)
    assert not ok(0, [_desc(F, trt.TensorFormat.CHW32), _desc(F)], 1)  # linear only


def test_output_types_and_shapes_follow_the_input():
    plugin = ChannelSharedPReLUCreator().create_plugin("p", _fields(0.3), trt.TensorRTPhase.BUILD)
    assert plugin.get_output_data_types([trt.DataType.HALF]) == [trt.DataType.HALF]
    marker = object()  # dims expressions pass through untouched: output shape = input shape
    assert plugin.get_output_shapes([marker], [], None) == [marker]


def test_registration():
    from prelu_deploy.plugins import trt_plugin

    creator = register_plugins()
    try:
        assert register_plugins() is creator  # once per process
        found = trt.get_plugin_registry().get_creator(csp.OP_TYPE, "1", csp.DOMAIN)
        assert found is not None and found.name == csp.OP_TYPE
    finally:  # a registered creator changes how TensorRT-RTX's parser treats custom nodes: leave none behind
        trt.get_plugin_registry().deregister_creator(creator)
        trt_plugin._registered = None
