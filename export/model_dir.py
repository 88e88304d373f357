"""checkpoint → model directory (docs/architecture.md layout, loadable by Triton), written atomically."""

import json
import time
from collections import OrderedDict
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import onnx

from prelu_deploy import __version__
from prelu_deploy.errors import UsageError
from prelu_deploy.export.entry_writer import check_target, writing_entry
from prelu_deploy.export.golden import make_golden
from prelu_deploy.export.lowering import LOWERINGS, lower, prelu_layers
from prelu_deploy.export.onnx_export import DEFAULT_OPSET, INPUT, OUTPUT, check, to_onnx
from prelu_deploy.export.onnx_file import save
from prelu_deploy.manifest import ModelEntry, Source, TensorSpec
from prelu_deploy.models import load_checkpoint
from prelu_deploy.models.summary import flops_per_image
from prelu_deploy.snapshot import name_problem


# The graphs this process traced last, before lowering: (checkpoint sha256, arch, kwargs, opset) → graph.
# Exporting a checkpoint again (another lowering, name or version: bench's candidates) reuses its trace.
TRACED_BYTES = 64 << 20  # what they may hold together; a larger graph is not kept
_traced: OrderedDict[tuple, onnx.ModelProto] = OrderedDict()


def _native_graph(model, meta, opset: int) -> onnx.ModelProto:
    """`model`'s exported graph before lowering: to_onnx (seconds of tracing, most of an export) once per
    checkpoint while it is among the last traced here. Keyed by the checkpoint's sha256, so a changed
    file is traced anew; never modified (lower() works on a copy)."""
    key = (meta.sha256, meta.arch, json.dumps(meta.kwargs, sort_keys=True, default=str), opset)
    if key in _traced:
        _traced.move_to_end(key)
        return _traced[key]
    graph = to_onnx(model, opset)
    if graph.ByteSize() <= TRACED_BYTES:
        _traced[key] = graph
        while sum(g.ByteSize() for g in _traced.values()) > TRACED_BYTES:
            _traced.popitem(last=False)
    return graph


def _versions() -> dict:
    out = {"prelu_deploy": __version__}
    for pkg in ("torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def export_model_dir(
    checkpoint: str | Path,
    name: str,
    repo: str | Path = "model_repository",
    mode: str = "leaky",
    opset: int = DEFAULT_OPSET,
    max_batch: int = 32,
    force: bool = False,
    version: int | str | None = None,
    arch: str | None = None,
    preprocess: dict | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Export `checkpoint` as `<repo>/<name>/` (`version`: as that version of it, beside the others: a
    number or "next"); on any failure nothing is left at the destination. A bare state dict names its
    architecture (`arch`); `preprocess` (fit, mean, std) and `labels` replace what the checkpoint records
    or, where it records nothing, the architecture's defaults."""
    dest = Path(repo) / name
    if why := name_problem(name):  # the rule read_entry holds every manifest's name to
        raise UsageError(why)
    version = check_target(dest, force, version)
    if max_batch < 1:
        raise UsageError(f"--max-batch must be at least 1, not {max_batch}")
    if mode not in LOWERINGS:  # refuse before the slow part, not after it
        raise UsageError(f"unknown PReLU lowering {mode!r}; choose one of {', '.join(LOWERINGS)}")
    model, meta = load_checkpoint(checkpoint, arch=arch)
    cfg = model.config
    pre, origin = _preprocess(meta.preprocess or cfg.default_preprocess(), preprocess or {}, bool(meta.preprocess))
    labels = labels or meta.labels
    if labels is not None and len(labels) != cfg.num_classes:
        raise UsageError(f"--labels: {len(labels)} names for a model of {cfg.num_classes} classes")
    native = _native_graph(model, meta, opset)
    layers = prelu_layers(native)
    graph = check(lower(native, mode))
    preprocess = pre.to_dict()
    properties = {
        "labels": json.dumps(labels),
        "preprocess": json.dumps(preprocess),
        "source_sha256": meta.sha256,
        "arch": meta.arch,
        "prelu_lowering": mode,
    }
    onnx.helper.set_model_props(graph, properties)
    golden = make_golden(model, meta)
    in_dims = [cfg.in_chans, cfg.input_size, cfg.input_size]
    with writing_entry(dest, force, version) as stage:
        save(graph, stage / stage.files.onnx)
        stage.golden(inputs=golden["inputs"], logits=golden["logits"], logits_fp64=golden["logits_fp64"])
        stage.finish(
            ModelEntry(
                name=name,
                platform="onnxruntime_onnx",
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                source=Source(str(Path(checkpoint).resolve()), meta.sha256, meta.arch, meta.kwargs, meta.metrics),
                labels=labels,
                preprocess=preprocess,
                preprocess_origin=origin,
                input=TensorSpec(INPUT, (-1, *in_dims)),
                output=TensorSpec(OUTPUT, (-1, cfg.num_classes)),
                max_batch_size=max_batch,
                opset=opset,
                flops_per_image=flops_per_image(model, tuple(in_dims)),  # for the benchmark's roofline
                lowering=mode,
                prelu_layers=[{**layer, "op": _op_after(layer, mode)} for layer in layers],
                golden={
                    "file": stage.files.golden,
                    "count": len(golden["inputs"]),
                    "sources": golden["sources"],
                    "negative_fraction": golden["negative_fraction"],
                    **({"no_held_out": golden["no_held_out"]} if golden["no_held_out"] else {}),
                },
                versions=_versions(),
            )
        )
    return dest


def _preprocess(base, given: dict, recorded: bool):
    """The preprocessing to record and where it came from: a checkpoint saved without a record is served
    with its architecture's defaults; options given on the command line replace either."""
    try:
        pre = replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    except ValueError as err:
        raise UsageError(f"preprocessing: {err}") from None
    origin = "checkpoint" if recorded else "architecture defaults (the checkpoint has no record)"
    return pre, origin + (f", with {', '.join(f'--{k}' for k in given)} given" if given else "")


def _op_after(layer: dict, mode: str) -> str:
    if not layer["shared"] or mode == "native":
        return "PRelu"
    return "LeakyRelu" if mode == "leaky" else "prelu_deploy::ChannelSharedPReLU"
