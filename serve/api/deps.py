"""FastAPI dependencies: the served models, injected into routes. All are `async def`:
FastAPI runs a plain `def` dependency in a worker thread, and four such hops per request cost more
than a small model does. The inference routes are not FastAPI routes at all (serve.api.hot_path); they
call find_model/require_ready."""

from typing import Annotated

from fastapi import Depends, Request

from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.repository.loader import ServedModel
from prelu_deploy.serve.repository.versions import find_version


async def get_models(request: Request) -> dict[str, ServedModel]:
    return request.app.state.models


def find_model(models: dict[str, ServedModel], name: str, version: str | None = None) -> ServedModel:
    """The named model, ready or not — its version `version`, or the one unversioned requests reach
    (serve.repository.versions); 404 for an unknown name or version."""
    if name not in models:  # an unloaded model says so (serve.repository.versions.ModelTable)
        gone = getattr(models, "gone", {}).get(name)
        raise ApiError(404, gone or f"unknown model {name!r}; served: {', '.join(models) or 'none'}")
    return models[name] if version is None else find_version(models, name, version)


def require_ready(served: ServedModel) -> ServedModel:
    """The model, which must be ready (for inference); 503 with its reason otherwise."""
    if not served.ready:
        raise ApiError(503, f"model {served.name!r} is not ready: {served.reason}")
    return served


async def any_model(name: str, models: Annotated[dict, Depends(get_models)], version: str | None = None) -> ServedModel:
    return find_model(models, name, version)


Models = Annotated[dict[str, ServedModel], Depends(get_models)]
AnyModel = Annotated[ServedModel, Depends(any_model)]
