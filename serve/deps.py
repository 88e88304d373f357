"""FastAPI dependencies: the served models and settings, injected into routes. All are `async def`:
FastAPI runs a plain `def` dependency in a worker thread, and four such hops per request cost more
than a small model does. The inference routes (the hot path) take none: solving dependencies was a
third of a request's CPU in a profile (docs/benchmarks.md); they call find_model/require_ready."""

import asyncio
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from prelu_deploy.serve.errors import ApiError, ClientGone
from prelu_deploy.serve.metrics import Metrics
from prelu_deploy.serve.repository import ServedModel
from prelu_deploy.serve.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> dict[str, ServedModel]:
    return request.app.state.models


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request body, refused with 413 past --max-body-mb (also when no Content-Length announced it)
    and with 408 when it is not complete within --body-timeout seconds (a slow client holds no
    connection forever); a client that disconnects midway is a ClientGone, not a server error."""
    limit, timeout_s = settings.max_body_bytes, settings.body_timeout_s
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):  # one timer for the whole body, not one per chunk
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise ApiError(413, f"body is over the limit of {limit} bytes")
    except TimeoutError:
        raise ApiError(408, f"request body not complete within {timeout_s:g} s", {"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone("body") from None
    request._body = bytes(body)  # Starlette's cache: form() parses from it
    return request._body


def find_model(models: dict[str, ServedModel], name: str, version: str | None = None) -> ServedModel:
    """The named model, ready or not; 404 for an unknown name or version."""
    if version not in (None, "1"):
        raise ApiError(404, f"model {name!r} has no version {version!r}; it has version '1'")
    if name not in models:
        raise ApiError(404, f"unknown model {name!r}; served: {', '.join(models) or 'none'}")
    return models[name]


def require_ready(served: ServedModel) -> ServedModel:
    """The model, which must be ready (for inference); 503 with its reason otherwise."""
    if not served.ready:
        raise ApiError(503, f"model {served.name!r} is not ready: {served.reason}")
    return served


async def any_model(name: str, models: Annotated[dict, Depends(get_models)], version: str | None = None) -> ServedModel:
    return find_model(models, name, version)


Models = Annotated[dict[str, ServedModel], Depends(get_models)]
AnyModel = Annotated[ServedModel, Depends(any_model)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
