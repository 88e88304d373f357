"""The architecture registry: `@register_model` on a builder, `create_model(name, **kwargs)` as the
only door (as in timm). Every builder takes the same core keywords — num_classes, in_chans,
input_size, act, width — and its defaults are the entry's config record."""

import inspect
from dataclasses import asdict, dataclass
from typing import Callable

from torch import nn

from prelu_deploy.errors import UsageError
from prelu_deploy.models.init import he_init_
from prelu_deploy.models.prelu import check_act, initial_slope
from prelu_deploy.models.preprocess import Preprocess


@dataclass(frozen=True)
class ModelConfig:
    """What travels with an architecture: input shape, classes and default normalisation."""

    name: str
    in_chans: int
    input_size: int
    num_classes: int
    act: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    def default_preprocess(self) -> Preprocess:
        """What a checkpoint saved without a preprocessing record is served with: the architecture's
        registered input size, channels, mean/std and interpolation."""
        return Preprocess(
            (self.input_size, self.input_size), self.in_chans, self.mean, self.std, interpolation=self.interpolation
        )


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def register_model(mean: tuple[float, ...], std: tuple[float, ...]):
    """Register a builder under its function name, with the default normalisation of its inputs."""

    def wrap(fn):
        if fn.__name__ in _BUILDERS and _BUILDERS[fn.__name__] is not fn:
            raise ValueError(
                f"architecture {fn.__name__!r} is already registered (by {_BUILDERS[fn.__name__].__module__}); "
                "choose another name"
            )
        _BUILDERS[fn.__name__] = fn
        _NORMS[fn.__name__] = (tuple(mean), tuple(std))
        return fn

    return wrap


def _ensure_loaded() -> None:
    from prelu_deploy.models import archs  # noqa: F401  (registers the zoo)


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_BUILDERS)


def _builder(name: str) -> Callable[..., nn.Module]:
    _ensure_loaded()
    if name not in _BUILDERS:
        raise UsageError(f"unknown architecture {name!r}; available: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]


def _resolve(name: str, kwargs: dict) -> dict:
    params = inspect.signature(_builder(name)).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UsageError(f"{name} does not take {', '.join(unknown)}; it takes {', '.join(params)}")
    resolved = {k: p.default for k, p in params.items()}
    resolved.update(kwargs)
    check_act(resolved["act"])
    return resolved


def model_config(name: str, **kwargs) -> ModelConfig:
    """The config record of `name` as built with `kwargs`."""
    r = _resolve(name, kwargs)
    mean, std = _NORMS[name]
    if r["in_chans"] != len(mean):  # e.g. an RGB architecture trained on grey images
        mean, std = (sum(mean) / len(mean),) * r["in_chans"], (sum(std) / len(std),) * r["in_chans"]
    return ModelConfig(name, r["in_chans"], r["input_size"], r["num_classes"], r["act"], mean, std)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build architecture `name`, He-initialised for its rectifier. The module remembers how it was
    made (`arch`, `arch_kwargs`, `config`) so a checkpoint can rebuild it."""
    resolved = _resolve(name, kwargs)
    model = _builder(name)(**resolved)
    he_init_(model, a=initial_slope(resolved["act"]))
    model.arch = name
    model.arch_kwargs = dict(kwargs)
    model.config = model_config(name, **kwargs)
    return model
