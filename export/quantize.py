"""INT8: a model entry → a sibling `<name>_int8/` entry holding a QDQ graph made by ONNX Runtime's own
quantizer (`onnxruntime.quantization.quantize_static`), calibrated on real preprocessed images, with
the manifest's `int8` section recording how (method, calibration set and its sha256, excluded nodes)
and what it cost (held-out accuracy before and after, top-1 agreement).

PReLU in a QDQ graph: ONNX Runtime's quantizer puts Q/DQ pairs around Conv/Gemm and leaves
activations it has no QDQ rule for in float between a DequantizeLinear and a QuantizeLinear. At
session creation its optimiser fuses DQ → LeakyRelu → Q into QLinearLeakyRelu (the `leaky` lowering
stays integer end to end); PRelu has no integer kernel, so the `native` lowering runs each PReLU in
float between a DQ/Q pair. The negative range is why a PReLU network needs its activations calibrated
with signed spans (a ReLU network's are all ≥ 0)."""

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from prelu_deploy.atomic import check_destination, staged_dir
from prelu_deploy.errors import DatasetError, ExportError, UsageError
from prelu_deploy.export.triton import config_pbtxt
from prelu_deploy.manifest import CONFIG, GOLDEN, ONNX, ModelEntry, read_entry

METHODS = ("minmax", "entropy", "percentile")
INT8_TOP1 = 0.99  # the INT8 tolerance class (runners.parity): top-1 agreement with fp32 PyTorch …
INT8_ACCURACY_DROP = 0.005  # … and a held-out accuracy drop of at most half a point


def calibration_inputs(entry: ModelEntry, source: str | None, n: int) -> tuple[np.ndarray, str]:
    """Up to n real training images of `source` ('digits' or an image folder; default: the dataset
    the checkpoint was trained on), preprocessed as the entry says."""
    from prelu_deploy.models.data import load_dataset
    from prelu_deploy.models.preprocess import Preprocess

    source = source or entry.source.dataset
    if not source:
        raise UsageError("name the calibration images: --calibration digits or --calibration IMAGE_DIR")
    if not entry.preprocess:
        raise UsageError(f"{entry.path}: no preprocessing record, so images cannot be calibrated with")
    pre = Preprocess.from_dict(entry.preprocess)
    split = load_dataset(source, pre.size, pre.channels, pre.fit).train
    if len(split) == 0:
        raise DatasetError(f"{source}: no training images to calibrate with")
    return pre.to_tensor(split.images[:n]), source


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over a float32 NCHW array, in batches."""

    def __init__(self, name: str, x: np.ndarray, batch: int):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += self.batch
        return {self.name: self.x[self.i - self.batch:self.i]}

    def rewind(self) -> None:
        self.i = 0


def quantize(model: Path, out: Path, entry: ModelEntry, x: np.ndarray, method: str, per_channel: bool,
             exclude: list[str]) -> None:
    """The QDQ graph of `model` (uint8 activations, int8 weights) written to `out`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    quantize_static(str(model), str(out), _Reader(entry.input.name, x, min(32, entry.max_batch_size)),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, calibrate_method=methods[method], nodes_to_exclude=exclude or None,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def held_out_scores(entry: ModelEntry, graphs: dict[str, Path], n: int = 1000) -> dict:
    """Held-out accuracy of each ONNX graph, and each one's top-1 agreement with the first."""
    import onnxruntime as ort

    from prelu_deploy.models.data import held_out
    from prelu_deploy.models.preprocess import Preprocess

    if not entry.source.dataset:
        return {}
    x, labels = held_out(entry.source.dataset, Preprocess.from_dict(entry.preprocess), n)
    preds = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {entry.input.name: x})[0].argmax(1)
             for k, p in graphs.items()}
    first = next(iter(preds.values()))
    return {"n": len(labels), **{f"accuracy_{k}": float((p == labels).mean()) for k, p in preds.items()},
            "top1_agreement": {k: float((p == first).mean()) for k, p in preds.items()}}


def quantize_entry(model_dir: str | Path, calibration: str | None = None, n: int = 512, method: str = "minmax",
                   per_channel: bool = False, exclude: list[str] | None = None, force: bool = False,
                   dest: str | Path | None = None, inputs: np.ndarray | None = None) -> Path:
    """Quantize an ONNX entry into its sibling `<name>_int8/` (or `dest`); returns that entry. `inputs`
    replaces the calibration images (the benchmark of an untrained architecture has none)."""
    entry = read_entry(model_dir).verified()
    if entry.is_plan or entry.precision != "fp32":
        raise UsageError(f"{entry.path}: quantize an fp32 ONNX entry (this one is {entry.platform}, {entry.precision})")
    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}")
    dest = Path(dest) if dest else entry.path.parent / f"{entry.name}_int8"
    check_destination(dest, force, ExportError)
    x, source = (inputs, "given inputs") if inputs is not None else calibration_inputs(entry, calibration, n)
    nodes = {node.name for node in onnx.load(entry.artifact).graph.node}
    if unknown := sorted(set(exclude or []) - nodes):
        raise UsageError(f"--exclude: no node named {', '.join(unknown)} in {entry.artifact}")
    with staged_dir(dest) as tmp:
        (tmp / "1").mkdir()
        try:
            quantize(entry.artifact, tmp / ONNX, entry, x, method, per_channel, exclude or [])
        except Exception as err:  # the quantizer raises many types; say which step failed
            raise ExportError(f"onnxruntime.quantization failed on {entry.artifact}: {err}") from None
        scores = held_out_scores(entry, {"fp32": entry.artifact, "int8": tmp / ONNX})
        shutil.copyfile(entry.path / GOLDEN, tmp / GOLDEN)
        (tmp / CONFIG).write_text(config_pbtxt(dest.name, "onnx", entry.max_batch_size, [(entry.input.name, entry.input.dims)],
                                               [(entry.output.name, entry.output.dims)]))
        int8 = {"quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                "activations": "uint8 (asymmetric)", "weights": "int8 (symmetric)", "per_channel": per_channel,
                "method": method, "calibration": {"source": source, "count": len(x),
                                                  "sha256": hashlib.sha256(x.tobytes()).hexdigest()},
                "excluded_nodes": sorted(exclude or []), "held_out": scores}
        replace(entry, name=dest.name, onnx_source=str(entry.artifact), int8=int8).write(tmp)
    return dest
