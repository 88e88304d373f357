"""ONNX → TensorRT plan, written as a sibling Triton model entry `<name>_trt/` (a Triton entry has one
platform, so the plan cannot sit beside the ONNX file in the same entry):

    <repo>/<name>_trt/config.pbtxt      platform tensorrt_plan
    <repo>/<name>_trt/manifest.json     the ONNX entry's manifest + a "tensorrt" section
    <repo>/<name>_trt/golden.npz        the same golden I/O, so the entry is self-contained
    <repo>/<name>_trt/1/model.plan

TensorRT-RTX networks are strongly typed and take no precision flags: for fp16 there the ONNX graph
is converted first (onnxconverter-common, inputs and outputs kept fp32), and the manifest says so.
"""

import time
from dataclasses import replace
from pathlib import Path

import onnx

from prelu_deploy.atomic import write_bytes
from prelu_deploy.errors import ExportError, UsageError
from prelu_deploy.export.fp16 import CONVERSION, to_fp16
from prelu_deploy.export.entry_writer import check_target, writing_entry
from prelu_deploy.manifest import BatchProfile, TensorRT, read_entry
from prelu_deploy.plugins import channel_shared_prelu as csp
from prelu_deploy.plugins.tensorrt_lib import load_tensorrt, unsupported_cc
from prelu_deploy.precisions import BUILD_PRECISIONS
from prelu_deploy.snapshot import sibling_dir


def _parse(trt, builder, logger, data: bytes):
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise ExportError(
            "the TensorRT ONNX parser refused the graph: "
            + "; ".join(f"node {e.node()} ({e.node_name() or '?'}, {e.node_operator() or '?'}): {e.desc()}" for e in errors)
        )
    return network, parser


def _compute_capabilities(trt, flavour: str, config, targets: list[str]) -> list[str]:
    for i, cc in enumerate(targets):
        name = "SM" + cc.replace(".", "")
        if why := unsupported_cc(flavour, cc):  # checked before the library is asked
            raise UsageError(f"--target-cc {cc}: {why}")
        if not hasattr(trt, "ComputeCapability") or not hasattr(trt.ComputeCapability, name):
            known = [c for c in dir(getattr(trt, "ComputeCapability", object)) if c.startswith("SM")]
            raise UsageError(f"--target-cc {cc}: not a target this TensorRT builds for (it knows {', '.join(known) or 'none'})")
        config.num_compute_capabilities = len(targets)
        config.set_compute_capability(getattr(trt.ComputeCapability, name), i)
    return targets or ["library default"]


def build_plan(
    model_dir: str | Path,
    precision: str = "fp32",
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_mb: int | None = None,
    timing_cache: str | Path | None = None,
    target_cc: list[str] | None = None,
    force: bool = False,
    dest: str | Path | None = None,
    version: int | str | None = None,
) -> Path:
    """Build the plan of a model directory into its sibling `<name>_trt/` entry (or `dest`); returns that entry."""
    md = read_entry(model_dir).verified()
    if md.is_plan:
        raise UsageError(f"{md.path} is already a TensorRT plan entry; build from the ONNX entry it came from ({md.onnx_source})")
    if md.int8:  # explicit quantization: the Q/DQ nodes decide, no precision flag
        if md.int8.get("target") != "tensorrt":
            raise UsageError(
                f"{md.path} was quantized for ONNX Runtime (uint8 activations, int32 biases), which TensorRT's "
                f"parser refuses; quantize with --tensorrt for a TensorRT build"
            )
        precision = "int8"
    elif precision not in BUILD_PRECISIONS:
        raise UsageError(
            f"unknown precision {precision!r}; choose fp32 or fp16 (int8 comes from an entry made by "
            "`prelu-deploy quantize --tensorrt`)"
        )
    max_batch = max_batch or md.max_batch_size
    opt_batch = opt_batch or min(8, max_batch)
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise UsageError(f"batch profile must satisfy 1 ≤ min ≤ opt ≤ max, not {min_batch}/{opt_batch}/{max_batch}")
    dest = Path(dest) if dest else sibling_dir(md.path, f"{md.name}_trt")  # in the entry's repository
    version = check_target(dest, force, version)
    trt, flavour = load_tensorrt()
    graph = onnx.load(md.artifact)
    conversion = None
    # strongly typed builders (TensorRT-RTX, TensorRT 11) have no FP16 flag: fp16 is an fp16 graph there
    fp16_flag = flavour == "tensorrt" and hasattr(trt.BuilderFlag, "FP16")
    if precision == "fp16" and not fp16_flag:
        graph, conversion = to_fp16(graph), f"{CONVERSION}; {flavour} {trt.__version__} is strongly typed"
    lowering = md.lowering
    # The parser takes a registered plugin for a node carrying plugin_namespace (plugins/channel_shared_prelu).
    # Not on TensorRT-RTX: it has no plugin layers, and a registered creator makes its parser abort the
    # process on a custom node without a body (seen with 1.7.1).
    if lowering == "plugin" and flavour == "tensorrt":
        from prelu_deploy.plugins.trt_plugin import register_plugins

        register_plugins()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, graph.SerializeToString())
    config = builder.create_builder_config()
    if precision == "fp16" and fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    tf32 = hasattr(trt.BuilderFlag, "TF32") and config.get_flag(trt.BuilderFlag.TF32)
    if tf32 and precision == "fp32":  # on by default, and beyond the fp32 gate: fp32 means fp32
        config.clear_flag(trt.BuilderFlag.TF32)
        tf32 = False
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    use_cache = bool(timing_cache) and flavour == "tensorrt"  # timing-cache calls are no-ops in TensorRT-RTX
    if use_cache:  # reused across builds, updated after each
        old = Path(timing_cache).read_bytes() if Path(timing_cache).exists() else b""
        config.set_timing_cache(config.create_timing_cache(old), ignore_mismatch=False)
    targets = _compute_capabilities(trt, flavour, config, target_cc or [])
    inp, dims = md.input, md.input.dims
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    layers = [
        {"name": network.get_layer(i).name, "type": str(network.get_layer(i).type).split(".")[-1]}
        for i in range(network.num_layers)
    ]
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT ({flavour}) could not build an engine for {md.path}; see its log above")
    seconds = time.perf_counter() - start
    cache_written = False
    if use_cache and (cache := config.get_timing_cache()) is not None:
        data = bytes(cache.serialize())
        if data:
            write_bytes(timing_cache, data)
            cache_written = True
    uses_plugin = any(layer["type"].startswith("PLUGIN") for layer in layers)
    section = TensorRT(
        flavour=flavour,
        version=trt.__version__,
        precision=precision,
        fp16_conversion=conversion,
        profile=BatchProfile(min_batch, opt_batch, max_batch),
        target_compute_capabilities=targets,
        workspace_mb=workspace_mb,
        timing_cache=str(timing_cache)
        if use_cache
        else ("ignored: timing caches are no-ops in TensorRT-RTX" if timing_cache else None),
        timing_cache_written=cache_written,
        build_seconds=round(seconds, 3),
        network_layers=layers,
        tf32=bool(tf32),
        plugin=(
            {
                "name": csp.OP_TYPE,
                "version": str(csp.VERSION),
                "namespace": csp.DOMAIN,
                "path": "registered TensorRT plugin"
                if uses_plugin
                else "ONNX function body ("
                + (
                    "TensorRT-RTX has no plugin layers, so no plugin was registered)"
                    if flavour == "tensorrt_rtx"
                    else "the parser did not take the registered plugin)"
                ),
            }
            if lowering == "plugin"
            else None
        ),
    )
    with writing_entry(dest, force, version) as stage:
        (stage / stage.files.plan).write_bytes(bytes(plan))
        stage.golden(md.golden_path)
        stage.finish(
            replace(
                md,
                name=dest.name,
                platform="tensorrt_plan",
                onnx_source=str(md.artifact),
                tensorrt=section,
                max_batch_size=max_batch,
            )
        )
    return dest
