"""Public API of the model zoo: the only doors tests and other packages go through.

    create_model(name, **kwargs) -> nn.Module      list_models() -> list[str]
    save_checkpoint(model, path, ...)              load_checkpoint(path) -> (model, meta)

Imported lazily (PEP 562) so that torch-free parts, such as `prelu_deploy.models.preprocess` used by
the server, can be imported without torch installed.
"""

from importlib import import_module
from pathlib import Path

_EXPORTS = {
    "create_model": "registry",
    "list_models": "registry",
    "model_config": "registry",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "CheckpointMeta": "checkpoint",
    "Preprocess": "preprocess",
}

__all__ = sorted(_EXPORTS)


def packaged(*parts: str) -> Path:
    """A file or folder shipped in this package (weights/, samples/, bundled/) at its real location: a
    strict editable install links each file from the checkout, and a model directory holds no links."""
    return Path(__file__).resolve().parent.joinpath(*parts)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
