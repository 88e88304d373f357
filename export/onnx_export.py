"""A zoo model → an ONNX graph: dynamic batch, fixed spatial size, inputs named for what they are."""

import contextlib
import logging
import re
import warnings

import onnx
import torch
from torch import nn

from prelu_deploy.errors import ExportError

INPUT, OUTPUT = "images", "logits"
DEFAULT_OPSET = 18


_REGISTRIES: dict = {}  # from_torchlib's arguments (the opset) → the exporter's ATen → ONNX table, built once a process


@contextlib.contextmanager
def _translations_built_once():
    """torch.onnx.export builds its table of ATen → ONNX translations (torchlib's) anew on every call, about
    as much CPU as tracing a small model; with no custom translations (we pass none) the table is the same
    each time and the export only reads it. So within this block the table of an opset is built once per
    process. torch's private hook (torch.onnx._internal.exporter._registration): where it is not there as
    expected, the export builds the table as before."""
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry

        original = ONNXRegistry.__dict__["from_torchlib"]
        build = original.__func__
    except (ImportError, KeyError, AttributeError):
        yield
        return

    def built_once(cls, *args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))  # the opset asked for
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build(cls, *args, **kwargs)
        return _REGISTRIES[key]

    ONNXRegistry.from_torchlib = classmethod(built_once)
    try:
        yield
    finally:
        ONNXRegistry.from_torchlib = original


def to_onnx(model: nn.Module, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """torch.export-based ONNX export (the maintained exporter) of a model in eval mode. Batch norm is
    folded into the convolutions by the exporter's optimizer."""
    cfg = model.config
    example = torch.zeros(2, cfg.in_chans, cfg.input_size, cfg.input_size)  # batch 1 would specialise
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its registry notes are not ours to print
    try:
        with warnings.catch_warnings(), _translations_built_once():
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
