"""The versions every ONNX file this project writes carries. `onnx.helper.make_model` stamps the
installed onnx's own IR version (14 with onnx 1.23), which a slightly older onnxruntime refuses
("Unsupported model IR version: 14, max supported IR version: 13"). So each writer — export, quantize,
the fp16 variant, the bench floor — pins the IR version and checks the opset that the oldest
onnxruntime this project supports reads (pyproject's floor)."""

from pathlib import Path

import onnx

from prelu_deploy.errors import ExportError

# Read by every onnxruntime since 1.18 (its compatibility table: IR ≤ 10, opsets ≤ 21), so by the extras' floor too.
IR_VERSION = 10
MAX_OPSET = 21


def pinned(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its IR version lowered to IR_VERSION (nothing in our graphs needs a newer one);
    refuses a default-domain opset the oldest supported onnxruntime cannot read."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset > MAX_OPSET:
        raise ExportError(
            f"opset {opset} is newer than onnxruntime's oldest supported release reads (≤ {MAX_OPSET}): "
            f"export with --opset {MAX_OPSET} or lower"
        )
    model.ir_version = min(model.ir_version or IR_VERSION, IR_VERSION)
    return model


def save(model: onnx.ModelProto, path: str | Path) -> None:
    onnx.save(pinned(model), path)
