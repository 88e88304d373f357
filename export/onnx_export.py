"""A zoo model → an ONNX graph: dynamic batch, fixed spatial size, inputs named for what they are."""

import logging
import re
import warnings

import onnx
import torch
from torch import nn

from prelu_deploy.errors import ExportError

INPUT, OUTPUT = "images", "logits"
DEFAULT_OPSET = 18


def to_onnx(model: nn.Module, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """torch.export-based ONNX export (the maintained exporter) of a model in eval mode. Batch norm is
    folded into the convolutions by the exporter's optimizer."""
    cfg = model.config
    example = torch.zeros(2, cfg.in_chans, cfg.input_size, cfg.input_size)  # batch 1 would specialise
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its registry notes are not ours to print
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; name the op when it says which
        if op := re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", str(err)):
            raise ExportError(f"{model.arch}: unsupported layer: {op.group(1)} has no ONNX translation") from err
        raise ExportError(f"{model.arch}: torch.onnx.export failed: {str(err).strip().splitlines()[0]}") from err
    return program.model_proto


def check(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker full check (with strict shape inference), then the graph with inferred shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported graph fails the ONNX checker: {str(err).splitlines()[0]}") from None
