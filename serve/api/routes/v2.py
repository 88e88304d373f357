"""Open Inference Protocol v2: health, server and model metadata, readiness, inference."""

import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from prelu_deploy import __version__
from prelu_deploy.serve.engine.batcher import BatcherStopped, QueueFull
from prelu_deploy.serve.api.deps import AnyModel, Models, find_model, require_ready
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.api.hot_path import HotRequest
from prelu_deploy.serve.repository.holds import held
from prelu_deploy.serve.api.openapi import errors
from prelu_deploy.serve.api.protocol import HEADER_LENGTH, decode_request, encode_response
from prelu_deploy.serve.repository.loader import ServedModel
from prelu_deploy.serve.repository.versions import ready_versions

log = logging.getLogger("prelu_deploy.serve")
INLINE_DECODE_BYTES = 64 << 10  # smaller bodies decode faster than a hop to a thread
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])


async def infer(request: HotRequest) -> tuple[bytes, dict[str, str]]:
    """POST /v2/models/{name}[/versions/{version}]/infer, served by serve.api.hot_path (not FastAPI's router)."""
    models, settings = request.state.models, request.state.settings
    served = require_ready(find_model(models, request.name, request.version))
    with held(served):  # a version swapped out meanwhile answers this request before it is retired
        args = (request.body, request.header(HEADER_LENGTH), served.entry.input, served.entry.output, settings.max_queue)
        # parsing megabytes of JSON takes milliseconds: off the event loop, so other clients are not held up
        small = len(request.body) <= INLINE_DECODE_BYTES
        req, x = decode_request(*args) if small else await run_in_threadpool(decode_request, *args)
        y = await submit(served, x, inline=True)
    return encode_response(served.name, req, served.entry.output.name, y, served.number)


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get(
    "/health/ready", responses={503: {"description": "Not every model is ready: `models` names each one not ready and why"}}
)
async def ready(request: Request, models: Models) -> JSONResponse:
    ok = bool(models) and all(m.ready for m in models.values())
    if ok:
        return JSONResponse({"ready": True})
    repo = request.app.state.settings.repo
    body = {"ready": False, "models": {name: public_reason(m.reason, repo) for name, m in models.items() if not m.ready}}
    return JSONResponse(body if models else {**body, "reason": "no model is served"}, status_code=503)


def public_reason(reason: str, repo: Path | None) -> str:
    """A not-ready reason as unauthenticated callers may read it: paths inside the repository relative
    to it (the log keeps the full text)."""
    if repo is not None:
        for root in {str(repo), str(repo.resolve())}:
            reason = reason.replace(root.rstrip("/") + "/", "")
    return reason


@router.get("")
async def server_metadata() -> dict:
    return {"name": "prelu-deploy", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}


def metadata(served: ServedModel, versions: list[str] | None = None) -> dict:
    """`served`'s metadata; `versions`: the model's versions that take traffic (default: this one's)."""
    meta = {"name": served.name, "versions": versions or [str(served.number)], "backend": served.backend, "ready": served.ready}
    if e := served.entry:
        runner = served.runners[0] if served.runners else None  # what the runner reports, else what the entry says
        ins, outs = (runner.inputs(), runner.outputs()) if runner else ([e.input], [e.output])
        meta["platform"] = e.platform
        meta["inputs"] = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ins]
        meta["outputs"] = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in outs]
        meta.update(
            labels=e.labels,
            prelu_lowering=e.lowering,
            precision=e.precision,
            max_batch_size=served.max_batch,
            instances=len(served.runners),
        )
    if served.reason:
        meta["reason"] = served.reason
    if served.parity:
        meta["parity_gate"] = served.parity
    return meta


@router.get("/models/{name}", responses=errors(404))
@router.get("/models/{name}/versions/{version}", responses=errors(404))
async def model_metadata(served: AnyModel, models: Models, version: str | None = None) -> dict:
    return metadata(served, [version] if version else ready_versions(models, served.name))


@router.get("/models/{name}/ready", responses={**errors(404), 503: {"description": "Not ready (the reason is given)"}})
@router.get("/models/{name}/versions/{version}/ready", responses={**errors(404), 503: {"description": "Not ready"}})
async def model_ready(served: AnyModel) -> JSONResponse:
    body = {"name": served.name, "ready": served.ready, **({"reason": served.reason} if served.reason else {})}
    return JSONResponse(body, status_code=200 if served.ready else 503)


async def submit(served: ServedModel, x, inline: bool = False, brief: bool = False):
    """The model's output rows for `x`; a full queue is a 503, a failing runner a JSON 500 that says why.
    `inline`: an HTTP request, which the batcher may run on this thread when it is alone on the server;
    `brief`: a gRPC call, which it may run on this thread whenever the run is brief (serve.engine.batcher)."""
    try:
        return await served.engine.submit(x, inline, brief)
    except QueueFull as err:
        raise ApiError(503, f"model {served.name!r} is overloaded: {err}; retry shortly", {"Retry-After": "1"}) from None
    except BatcherStopped as err:
        raise ApiError(503, f"model {served.name!r}: {err}", {"Retry-After": "1"}) from None
    except Exception as err:
        log.error("model %s: the %s runner failed: %s: %s", served.name, served.backend, type(err).__name__, err)
        raise ApiError(500, f"model {served.name!r}: the {served.backend} runner failed ({type(err).__name__}: {err})") from None
