"""The one fp16 conversion of an ONNX graph: onnxconverter-common's float16 pass, inputs and outputs
kept float32 unless asked (the ONNX Runtime CUDA runner's `io_fp16`). `build` uses it for strongly
typed TensorRT builders, the ONNX Runtime CUDA runner for its fp16 variant, so both compute in the
same fp16 graph."""

import onnx

from prelu_deploy.export.onnx_file import pinned

CONVERSION = "onnxconverter-common float16 (inputs/outputs kept fp32)"


def to_fp16(graph: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    try:
        from onnxconverter_common import float16
    except ImportError:
        from prelu_deploy.errors import UsageError

        raise UsageError(
            "fp16 graphs need onnxconverter-common: pip install onnxconverter-common (the trt and gpu extras bring it)"
        ) from None
    return pinned(float16.convert_float_to_float16(graph, keep_io_types=keep_io_types))
