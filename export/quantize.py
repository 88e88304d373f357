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
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from prelu_deploy.errors import DatasetError, ExportError, UsageError
from prelu_deploy.export.entry_writer import check_target, writing_entry
from prelu_deploy.export.onnx_file import save
from prelu_deploy.export.tensors import module_nodes, module_tensors, run_exposed
from prelu_deploy.manifest import ModelEntry, read_entry
from prelu_deploy.plugins.onnxruntime_lib import new_session
from prelu_deploy.snapshot import sibling_dir
from prelu_deploy.tolerances import TOLERANCES, cosines, judge

METHODS = ("minmax", "entropy", "percentile")


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
        return {self.name: self.x[self.i - self.batch : self.i]}

    def rewind(self) -> None:
        self.i = 0


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """The quantizer advises its pre-processing (shape inference, graph optimisation) twice per call, on
    the root logger, whenever a graph lacks its own marker; exported graphs have had both (the exporter's
    optimizer and export's strict shape inference), so the advice is dropped, every other line kept."""
    return "consider" not in record.getMessage() or "pre-processing" not in record.getMessage()


def quantize(
    model: Path,
    out: Path,
    entry: ModelEntry,
    x: np.ndarray,
    method: str,
    per_channel: bool,
    exclude: list[str],
    tensorrt: bool = False,
) -> None:
    """The QDQ graph of `model` written to `out`: uint8 activations and int8 weights for ONNX Runtime;
    for TensorRT (explicit quantization) int8 symmetric activations and float biases, what its parser
    takes."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_static(
            str(model),
            str(out),
            _Reader(entry.input.name, x, min(32, entry.max_batch_size)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            nodes_to_exclude=exclude or None,
            extra_options={"ActivationSymmetric": tensorrt, "WeightSymmetric": True, "QuantizeBias": not tensorrt},
        )
    finally:
        root.removeFilter(_no_preprocessing_advice)
    save(onnx.load(out), out)  # the quantizer stamps the installed onnx's IR version


def held_out_scores(entry: ModelEntry, graphs: dict[str, Path], n: int = 1000) -> dict:
    """Held-out accuracy of each ONNX graph, each one's top-1 agreement with the first, and the INT8
    tolerance's judgement of the last against the first (`holds`: the judge parity and the gate use)."""
    from prelu_deploy.models.data import held_out
    from prelu_deploy.models.preprocess import Preprocess

    if not entry.source.dataset:
        return {}
    x, labels = held_out(entry.source.dataset, Preprocess.from_dict(entry.preprocess), n)
    logits = {k: new_session(p).run(None, {entry.input.name: x})[0] for k, p in graphs.items()}
    preds = {k: v.argmax(1) for k, v in logits.items()}
    (ref, first), last = next(iter(logits.items())), list(logits.values())[-1]
    verdict = judge(last, logits[ref], logits[ref].astype(np.float64), "int8", labels)
    return {
        "n": len(labels),
        **{f"accuracy_{k}": float((p == labels).mean()) for k, p in preds.items()},
        "top1_agreement": {k: float((p == first.argmax(1)).mean()) for k, p in preds.items()},
        "holds": verdict["passed"],
        "failures": verdict["failures"],
    }


def _holds(scores: dict) -> bool:
    return bool(scores.get("holds"))


def _worst_module(fp32: Path, int8: Path, input_name: str, x: np.ndarray, skip: set[str]) -> str | None:
    """The first module whose INT8 tensor drifts from fp32 (cosine below the INT8 tolerance's per-layer
    bound), else the one that drifts most."""
    layers = {path: t for path, t in module_tensors(onnx.load(fp32)).items() if path not in skip}
    ref = run_exposed(fp32, input_name, list(layers.values()), x)
    got = run_exposed(int8, input_name, list(layers.values()), x)
    worst = {path: float(cosines(got[t], ref[t]).min()) for path, t in layers.items() if got[t].shape == ref[t].shape}
    bound = TOLERANCES["int8"].layer_min_cosine
    return next((p for p, c in worst.items() if c < bound), min(worst, key=worst.get, default=None))


def quantize_entry(
    model_dir: str | Path,
    calibration: str | None = None,
    n: int = 512,
    method: str = "minmax",
    per_channel: bool = False,
    exclude: list[str] | None = None,
    force: bool = False,
    dest: str | Path | None = None,
    inputs: np.ndarray | None = None,
    auto_exclude: bool = False,
    max_rounds: int = 8,
    tensorrt: bool = False,
    version: int | str | None = None,
) -> Path:
    """Quantize an ONNX entry into its sibling `<name>_int8/` (or `dest`); returns that entry. `inputs`
    replaces the calibration images (the benchmark of an untrained architecture has none). With
    `auto_exclude`, while the INT8 tolerance does not hold on the held-out split, the nodes of the
    module whose tensor drifts first from fp32 are kept in float and the graph quantized again."""
    entry = read_entry(model_dir).verified()
    if entry.is_plan or entry.precision != "fp32":
        raise UsageError(f"{entry.path}: quantize an fp32 ONNX entry (this one is {entry.platform}, {entry.precision})")
    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}")
    if inputs is None and "held-out" not in (entry.golden.get("sources") or []):  # judged_rows would fall back to noise
        why = entry.golden.get("no_held_out") or "crafted inputs only"
        raise UsageError(
            f"{entry.path}: INT8 is judged on real images, and this entry's golden I/O holds none ({why}); "
            "export it again where its checkpoint's dataset is available"
        )
    dest = Path(dest) if dest else sibling_dir(entry.path, f"{entry.name}_int8")  # in the entry's repository
    version = check_target(dest, force, version)
    x, source = (inputs, "given inputs") if inputs is not None else calibration_inputs(entry, calibration, n)
    nodes = {node.name for node in onnx.load(entry.artifact).graph.node}
    if unknown := sorted(set(exclude or []) - nodes):
        raise UsageError(f"--exclude: no node named {', '.join(unknown)} in {entry.artifact}")
    probe = None
    if auto_exclude:  # real held-out images show where the INT8 graph drifts
        if not entry.source.dataset:
            raise UsageError("--auto-exclude judges the held-out split: the checkpoint records no dataset")
        from prelu_deploy.models.data import held_out
        from prelu_deploy.models.preprocess import Preprocess

        probe = held_out(entry.source.dataset, Preprocess.from_dict(entry.preprocess), 64)[0]
    excluded, kept_float, graph = list(exclude or []), [], onnx.load(entry.artifact)
    with writing_entry(dest, force, version) as stage:
        out = stage / stage.files.onnx
        for _ in range(max_rounds + 1):
            try:
                quantize(entry.artifact, out, entry, x, method, per_channel, excluded, tensorrt)
            except Exception as err:  # the quantizer raises many types; say which step failed
                raise ExportError(f"onnxruntime.quantization failed on {entry.artifact}: {err}") from None
            scores = held_out_scores(entry, {"fp32": entry.artifact, "int8": out})
            if not auto_exclude or _holds(scores):
                break
            module = _worst_module(entry.artifact, out, entry.input.name, probe, set(kept_float))
            if module is None:
                break
            kept_float.append(module)
            excluded += [name for name in module_nodes(graph, module) if name not in excluded]
        stage.golden(entry.golden_path)
        int8 = {
            "quantizer": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "target": "tensorrt" if tensorrt else "onnxruntime",
            "activations": "int8 (symmetric)" if tensorrt else "uint8 (asymmetric)",
            "weights": "int8 (symmetric)",
            "biases": "float" if tensorrt else "int32",
            "per_channel": per_channel,
            "method": method,
            "calibration": {"source": source, "count": len(x), "sha256": hashlib.sha256(x.tobytes()).hexdigest()},
            "excluded_nodes": sorted(excluded),
            "auto_excluded_modules": kept_float,
            "held_out": scores,
            "tolerance_holds": _holds(scores) if scores else None,
        }
        stage.finish(replace(entry, name=dest.name, onnx_source=str(entry.artifact), int8=int8))
    return dest
