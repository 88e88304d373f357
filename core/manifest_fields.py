"""The manifest's keys on the way in: each field of manifest.json typed and bounded into the arguments
of a ModelEntry (prelu_deploy.manifest, the only caller), a wrong one refused with its name. Apart from
the entry so that the schema reads as one list, and neither module outgrows a page."""

from pathlib import Path

from prelu_deploy.errors import ModelDirError
from prelu_deploy.precisions import PRECISIONS
from prelu_deploy.snapshot import name_problem, path_problem
from prelu_deploy.specs import FieldReader, Source, TensorRT

LOWERINGS = ("native", "plugin", "leaky")  # of channel-shared PReLU (docs/architecture.md)


def entry_fields(m: dict, where: Path) -> dict:
    """ModelEntry's stored fields from manifest `m` (read from `where`): each typed and bounded, a bad one a
    ModelDirError that names it."""
    r = FieldReader(where)
    prelu, src = r.get(m, "prelu", dict, "prelu"), r.get(m, "source", dict, "source")
    lowering = r.get(prelu, "lowering", str, "prelu.lowering")
    if lowering not in LOWERINGS:
        raise ModelDirError(f"{where}: manifest field 'prelu.lowering' is {lowering!r}, not one of {', '.join(LOWERINGS)}")
    max_batch = r.get(m, "max_batch_size", int, "max_batch_size")
    if max_batch < 1:
        raise ModelDirError(f"{where}: manifest field 'max_batch_size' must be ≥ 1, not {max_batch}")
    artifacts = r.get(m, "artifacts", dict, "artifacts")
    if not all(isinstance(v, str) for v in artifacts.values()):
        raise ModelDirError(f"{where}: manifest field 'artifacts' must map paths to sha256 strings")
    trt = None
    if (t := r.get(m, "tensorrt", dict, "tensorrt", optional=True)) is not None:
        precision = r.get(t, "precision", str, "tensorrt.precision")
        if precision not in PRECISIONS:
            raise ModelDirError(f"{where}: manifest field 'tensorrt.precision' is {precision!r}, not {', '.join(PRECISIONS)}")
        trt = TensorRT(
            flavour=r.get(t, "flavour", str, "tensorrt.flavour"),
            version=r.get(t, "version", str, "tensorrt.version"),
            precision=precision,
            profile=r.profile(r.get(t, "profile", dict, "tensorrt.profile"), "tensorrt.profile"),
            target_compute_capabilities=r.get(t, "target_compute_capabilities", list, "tensorrt.target_compute_capabilities"),
            fp16_conversion=t.get("fp16_conversion"),
            workspace_mb=t.get("workspace_mb"),
            timing_cache=t.get("timing_cache"),
            timing_cache_written=bool(t.get("timing_cache_written")),
            build_seconds=t.get("build_seconds"),
            network_layers=t.get("network_layers") or [],
            tf32=bool(t.get("tf32")),
            plugin=r.get(t, "plugin", dict, "tensorrt.plugin", optional=True),
        )
    if why := name_problem(name := r.get(m, "name", str, "name")):  # it names the folders quantize and build write
        raise ModelDirError(f"{where}: manifest field 'name': {why}")
    if bad := [why for rel in artifacts if (why := path_problem(rel))]:
        raise ModelDirError(f"{where}: manifest field 'artifacts': {bad[0]}")
    return dict(
        name=name,
        platform="tensorrt_plan" if trt else "onnxruntime_onnx",
        input=r.tensor(m, "input"),
        output=r.tensor(m, "output"),
        max_batch_size=max_batch,
        lowering=lowering,
        prelu_layers=r.get(prelu, "layers", list, "prelu.layers"),
        source=Source(
            r.get(src, "checkpoint", str, "source.checkpoint"),
            r.get(src, "sha256", str, "source.sha256"),
            r.get(src, "arch", str, "source.arch"),
            r.get(src, "kwargs", dict, "source.kwargs", optional=True) or {},
            r.get(src, "metrics", dict, "source.metrics", optional=True),
        ),
        preprocess=r.get(m, "preprocess", dict, "preprocess", optional=True),
        labels=r.get(m, "labels", list, "labels", optional=True),
        preprocess_origin=r.get(m, "preprocess_origin", str, "preprocess_origin", optional=True),
        golden=r.get(m, "golden", dict, "golden", optional=True) or {},
        versions=r.get(m, "versions", dict, "versions", optional=True) or {},
        artifacts=artifacts,
        created=m.get("created"),
        opset=m.get("opset"),
        flops_per_image=r.get(m, "flops_per_image", int, "flops_per_image", optional=True),
        onnx_source=m.get("onnx_source"),
        tensorrt=trt,
        int8=r.get(m, "int8", dict, "int8", optional=True),
    )
