"""Triton's model-repository extension over HTTP (serve.repository.control): POST /v2/repository/index, POST
/v2/repository/models/{name}/load and .../unload — what tritonclient's get_model_repository_index,
load_model and unload_model call. Behind the API token (serve.api.auth: the management API)."""

import json

from fastapi import APIRouter, Request

from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.api.openapi import errors

router = APIRouter(prefix="/v2/repository", tags=["Model repository"])
_ROW = {
    "type": "object",
    "required": ["name", "state"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "state": {"type": "string", "enum": ["READY", "UNAVAILABLE", "LOADING"]},
        "reason": {"type": "string"},
    },
}
_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}, "parameters": {"type": "object"}}}
            }
        },
    }
}
_ERRORS = errors(400, 401, 403, 404, 500, 504)


def _answer(schema: dict) -> dict:
    return {200: {"description": "OK", "content": {"application/json": {"schema": schema}}}, **_ERRORS}


async def _body(request: Request, allowed: tuple[str, ...] = ()) -> dict:
    """The optional JSON object of a repository request; parameters other than `allowed` are refused."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, f"request is not valid JSON ({type(err).__name__})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be an object")
    if unknown := sorted(set(params) - set(allowed)):
        raise ApiError(
            400,
            f"parameters {', '.join(map(repr, unknown))} are not supported: a model loads from its "
            "directory in the repository as it is on disk",
        )
    return body


@router.post("/index", responses=_answer({"type": "array", "items": _ROW}), openapi_extra=_BODY)
async def index(request: Request) -> list[dict]:
    ready = (await _body(request)).get("ready", False)
    if not isinstance(ready, bool):
        raise ApiError(400, "'ready' must be true or false")
    return request.app.state.control.index(ready)


@router.post("/models/{name}/load", responses=_answer(_ROW), openapi_extra=_BODY)
async def load(name: str, request: Request) -> dict:
    await _body(request)
    return await request.app.state.control.load(name)


@router.post("/models/{name}/unload", responses=_answer(_ROW), openapi_extra=_BODY)
async def unload(name: str, request: Request) -> dict:
    await _body(request, allowed=("unload_dependents",))  # this server's models have no dependents
    return await request.app.state.control.unload(name)
