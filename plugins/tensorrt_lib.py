"""The one place TensorRT is imported: standard `tensorrt` when present, else TensorRT-RTX
(`tensorrt_rtx`, which installs from PyPI and builds engines without a GPU). Every artifact records
which one was used."""

from types import ModuleType

from prelu_deploy.errors import PreluDeployError

# Where each flavour's engines run, by compute capability (TensorRT-RTX's own "Supported compute
# capabilities" line; docs/gpu.md); standard TensorRT runs on all of them.
RUNS_ON = {"tensorrt_rtx": ("8.0", "8.6", "8.9", "12.")}
HOPPER_WAY_OUT = (
    "install NVIDIA's `tensorrt` (its plans run on Hopper), or serve the ONNX entry with ONNX Runtime's "
    "CUDA provider (onnxruntime-gpu)"
)


def unsupported_cc(flavour: str, cc: str) -> str | None:
    """Why `flavour` cannot run engines on compute capability `cc` ("9.0"), or None when it can."""
    supported = RUNS_ON.get(flavour)
    if supported is None or any(cc == s or (s.endswith(".") and cc.startswith(s)) for s in supported):
        return None
    return (
        f"{flavour} does not run on compute capability {cc}{' (H100/H200)' if cc.startswith('9.') else ''}; "
        f"it runs on 8.0, 8.6, 8.9 and 12.x: {HOPPER_WAY_OUT}"
    )


def load_tensorrt() -> tuple[ModuleType, str]:
    """(module, flavour) with flavour "tensorrt" or "tensorrt_rtx"."""
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        pass
    try:
        import tensorrt_rtx as trt

        return trt, "tensorrt_rtx"
    except ImportError:
        raise PreluDeployError(
            "TensorRT is not installed: pip install 'prelu-deploy[trt]' (TensorRT-RTX, which "
            "builds engines without a GPU), or install NVIDIA's `tensorrt`"
        ) from None
