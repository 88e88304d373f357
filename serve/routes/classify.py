"""Image classification: one or more uploaded images (multipart) or one image as the raw body →
top-k labels with probabilities per image."""

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from prelu_deploy.runners.classify import predictions
from prelu_deploy.serve.deps import Models, SettingsDep, find_model, read_body, require_ready
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.images import decode
from prelu_deploy.serve.openapi import CLASSIFY, CLASSIFY_RESPONSE, errors
from prelu_deploy.serve.routes.v2 import submit
from prelu_deploy.serve.settings import Settings

router = APIRouter(prefix="/v1", tags=["classification"])
CLASSIFY_ERRORS = {200: CLASSIFY_RESPONSE, **errors(400, 404, 408, 413, 415, 500, 503)}


async def _uploads(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    ctype, max_images = request.headers.get("content-type", ""), settings.max_images
    body = await read_body(request, settings)
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=max_images + 1)
        files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise ApiError(400, "the multipart body holds no files")
        if len(files) > max_images:
            raise ApiError(400, f"{len(files)} images in one request; at most {max_images}")
        return files
    if ctype.startswith(("image/", "application/octet-stream")) or not ctype:
        return [("body", body)]
    raise ApiError(415, f"content type {ctype!r}: send multipart/form-data files or one image as the body (image/*)")


@router.post("/models/{name}/classify", openapi_extra=CLASSIFY, responses=CLASSIFY_ERRORS)
async def classify(name: str, request: Request, models: Models, settings: SettingsDep,
                   top_k: int | None = Query(None, ge=1, le=1000)) -> dict:
    served = require_ready(find_model(models, name))
    pre = served.preprocess
    if pre is None:
        raise ApiError(503, f"model {served.name!r} cannot classify images: {served.no_classify}; "
                            f"send tensors to /v2/models/{served.name}/infer")
    uploads = await _uploads(request, settings)

    def prepare() -> np.ndarray:  # decoding is CPU work: off the event loop
        return pre.to_tensor(np.stack([decode(data, f"image {fname!r}", pre, settings.max_pixels) for fname, data in uploads]))

    x = await run_in_threadpool(prepare)
    logits = await submit(served, x)
    return {"model": served.name, "predictions": predictions([name for name, _ in uploads], logits, served.entry.labels,
                                                             top_k or settings.top_k)}


@router.post("/classify", openapi_extra=CLASSIFY, responses=CLASSIFY_ERRORS)
async def classify_default(request: Request, models: Models, settings: SettingsDep,
                           top_k: int | None = Query(None, ge=1, le=1000)) -> dict:
    """The default model: the only one served, or the first in name order."""
    if not models:
        raise ApiError(503, "no model is served")
    return await classify(next(iter(models)), request, models, settings, top_k)
