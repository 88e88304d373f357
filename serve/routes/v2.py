"""Open Inference Protocol v2: health, server and model metadata, readiness, inference."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from prelu_deploy import __version__
from prelu_deploy.serve.batching import QueueFull
from prelu_deploy.serve.deps import AnyModel, Models, ReadyModel, SettingsDep, read_body
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.protocol import (
    HEADER_LENGTH,
    decode_input,
    encode_response,
    parse_request,
)
from prelu_deploy.serve.repository import ServedModel

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])


@router.get("/health/live")
def live() -> dict:
    return {"live": True}


@router.get("/health/ready")
def ready(models: Models) -> JSONResponse:
    ok = bool(models) and all(m.ready for m in models.values())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("")
def server_metadata() -> dict:
    return {"name": "prelu-deploy", "version": __version__, "extensions": ["binary_tensor_data"]}


def _metadata(served: ServedModel) -> dict:
    platform = "tensorrt_plan" if served.model_dir and "tensorrt" in served.model_dir.manifest else "onnxruntime_onnx"
    meta = {"name": served.name, "versions": ["1"], "platform": platform, "backend": served.backend,
            "ready": served.ready}
    if served.model_dir:
        m = served.model_dir.manifest
        meta["inputs"] = [{"name": m["input"]["name"], "datatype": "FP32", "shape": m["input"]["shape"]}]
        meta["outputs"] = [{"name": m["output"]["name"], "datatype": "FP32", "shape": m["output"]["shape"]}]
        meta["labels"], meta["prelu_lowering"] = m.get("labels"), m["prelu"]["lowering"]
    if served.reason:
        meta["reason"] = served.reason
    if served.parity:
        meta["parity_gate"] = served.parity
    return meta


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
def model_metadata(served: AnyModel) -> dict:
    return _metadata(served)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
def model_ready(served: AnyModel) -> JSONResponse:
    body = {"name": served.name, "ready": served.ready, **({"reason": served.reason} if served.reason else {})}
    return JSONResponse(body, status_code=200 if served.ready else 503)


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(request: Request, served: ReadyModel, settings: SettingsDep) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    req, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
    m = served.model_dir.manifest
    if len(req["inputs"]) != 1:
        raise ApiError(400, f"this model takes exactly one input ({m['input']['name']!r}), not {len(req['inputs'])}")
    x, _ = decode_input(req["inputs"][0], binary, 0, m["input"]["name"], m["input"]["shape"][1:], settings.max_queue)
    for out in req.get("outputs") or []:
        if not isinstance(out, dict) or out.get("name") != m["output"]["name"]:
            raise ApiError(400, f"unknown output {out.get('name') if isinstance(out, dict) else out!r}; "
                                f"this model gives {m['output']['name']!r}")
    y = await submit(served, x)
    content, headers = encode_response(served.name, req, m["output"]["name"], y)
    return Response(content, headers=headers)


async def submit(served: ServedModel, x):
    try:
        return await served.batcher.submit(x)
    except QueueFull as err:
        raise ApiError(503, f"model {served.name!r} is overloaded: {err}; retry shortly", {"Retry-After": "1"}) from None
