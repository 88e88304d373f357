"""Every ONNX file the project writes carries an IR version and opset that the oldest supported
onnxruntime reads (onnx 1.23 stamps IR 14, which onnxruntime 1.31 refused on an H200), and the
installed onnxruntime loads it. The quantizer's and the floor's files: tests/export/test_quantize.py,
tests/bench/test_floor.py."""

import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from prelu_deploy.errors import ExportError
from prelu_deploy.export.onnx_file import IR_VERSION, MAX_OPSET, pinned
from prelu_deploy.manifest import read_entry


def assert_readable(model: onnx.ModelProto) -> None:
    assert model.ir_version <= IR_VERSION, f"IR {model.ir_version}: onnxruntime ≤ 1.20 refuses it"
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= MAX_OPSET
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_exported_graph_and_its_fp16_variant_are_readable(repo):
    from prelu_deploy.export.fp16 import to_fp16

    graph = onnx.load(read_entry(repo / "digits").artifact)
    assert_readable(graph)
    assert_readable(to_fp16(graph))


def test_a_new_onnx_stamp_is_lowered_and_a_too_new_opset_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "g", [x], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    model.ir_version = 14  # what onnx 1.23's make_model writes
    assert_readable(pinned(model))
    model.opset_import[0].version = MAX_OPSET + 1
    with pytest.raises(ExportError, match=f"--opset {MAX_OPSET}"):
        pinned(model)
