"""The one place TensorRT is imported: standard `tensorrt` when present, else TensorRT-RTX
(`tensorrt_rtx`, which installs from PyPI and builds engines without a GPU). Every artifact records
which one was used."""

from types import ModuleType

from prelu_deploy.errors import PreluDeployError


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
        raise PreluDeployError("TensorRT is not installed: pip install 'prelu-deploy[trt]' (TensorRT-RTX, which "
                               "builds engines without a GPU), or install NVIDIA's `tensorrt`") from None
