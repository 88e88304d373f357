"""Image classification: one or more uploaded images (multipart) or one image as the raw body →
top-k labels with probabilities per image. Served by serve.api.hot_path (not FastAPI's router):
POST /v1/models/{name}/classify, and POST /v1/classify when one model is served."""

import asyncio
import json
import weakref
from urllib.parse import parse_qs

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from prelu_deploy.runners.answers import predictions
from prelu_deploy.serve.api.deps import find_model, require_ready
from prelu_deploy.serve.api.protocol import VERSION_HEADER
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.api.hot_path import HotRequest
from prelu_deploy.serve.api.images import Header, decode, header
from prelu_deploy.serve.repository.holds import held
from prelu_deploy.serve.api.openapi import MAX_TOP_K
from prelu_deploy.serve.api.routes.v2 import submit

# one image this small in pixels and in bytes decodes in well under a millisecond: faster than a hop to
# a thread; anything else — larger, or several images — is decoded off the event loop
INLINE_DECODE_PIXELS = 128 * 128
INLINE_DECODE_BYTES = 16 << 10
_decode_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


async def classify(request: HotRequest) -> tuple[bytes, dict[str, str]]:
    models, settings = request.state.models, request.state.settings
    if request.name is None:  # /v1/classify: the one model that answers; with several, the client says which
        if not models:
            raise ApiError(503, "no model is served")
        ready = sorted(name for name, served in models.items() if served.ready)
        if len(ready) > 1:
            raise ApiError(
                400, f"{len(ready)} models are served ({', '.join(ready)}): name one, POST /v1/models/{{name}}/classify"
            )
        request.name = ready[0] if ready else next(iter(models))  # none ready: the first says why (503)
    served = require_ready(find_model(models, request.name))
    with held(served):  # a version swapped out meanwhile answers this request before it is retired
        top_k = _top_k(request.scope["query_string"]) or settings.top_k
        pre = served.preprocess
        if pre is None:
            raise ApiError(
                503,
                f"model {served.name!r} cannot classify images: {served.no_classify}; "
                f"send tensors to /v2/models/{served.name}/infer",
            )
        uploads = await _uploads(request, settings.max_images)
        x = await _prepare(uploads, pre, settings)
        logits = await submit(served, x, inline=True)
    answer = {"model": served.name, "predictions": predictions([name for name, _ in uploads], logits, served.entry.labels, top_k)}
    return json.dumps(answer).encode(), {"content-type": "application/json", VERSION_HEADER: str(served.number)}


async def _prepare(uploads: list[tuple[str, bytes]], pre, settings) -> np.ndarray:
    """The uploads as the model's input. Their headers first (on the event loop only for one small
    upload), their pixels counted against --max-request-pixels; then each image decoded, reduced and
    dropped in turn, at most --max-decodes at once in this worker, off the event loop — unless there
    is one image, small in pixels and in bytes."""

    def headers() -> list[Header]:
        return [header(data, f"image {name!r}", settings.max_pixels) for name, data in uploads]

    small = len(uploads) == 1 and len(uploads[0][1]) <= INLINE_DECODE_BYTES
    heads = headers() if small else await run_in_threadpool(headers)
    total = sum(h.pixels for h in heads)
    if total > settings.max_request_pixels:
        images = f"{len(heads)} images hold" if len(heads) > 1 else "image holds"
        raise ApiError(
            413,
            f"the request's {images} {total} pixels; the limit is {settings.max_request_pixels} "
            f"pixels a request (--max-request-pixels)",
        )
    if small and total <= INLINE_DECODE_PIXELS:
        return pre.to_tensor(decode(heads[0], pre, settings.max_pixels)[None])
    loop = asyncio.get_running_loop()
    if (slots := _decode_slots.get(loop)) is None:  # one per worker process: it serves one app on one loop
        slots = _decode_slots[loop] = asyncio.Semaphore(settings.max_decodes)
    rows = []
    for head in heads:
        async with slots:
            rows.append(await run_in_threadpool(decode, head, pre, settings.max_pixels))
    return await run_in_threadpool(lambda: pre.to_tensor(np.stack(rows)))


def _top_k(query_string: bytes) -> int | None:
    values = parse_qs(query_string.decode("latin-1")).get("top_k")
    if not values:
        return None
    try:
        k = int(values[-1])
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_TOP_K:
        raise ApiError(400, f"query.top_k: must be an integer from 1 to {MAX_TOP_K}, not {values[-1]!r}")
    return k


async def _uploads(request: HotRequest, max_images: int) -> list[tuple[str, bytes]]:
    ctype = request.header("content-type") or ""
    if ctype.startswith("multipart/form-data"):
        form_request = Request(request.scope)
        form_request._body = request.body  # Starlette's body cache: form() parses from it
        try:
            form = await form_request.form(max_files=max_images + 1)
        except HTTPException as err:  # Starlette's word for a malformed multipart body
            raise ApiError(err.status_code, f"multipart body: {err.detail}") from None
        try:
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        finally:
            await form.close()
        if not files:
            raise ApiError(400, "the multipart body holds no files")
        if len(files) > max_images:
            raise ApiError(400, f"{len(files)} images in one request; at most {max_images}")
        return files
    if ctype.startswith(("image/", "application/octet-stream")) or not ctype:
        return [("body", request.body)]
    raise ApiError(415, f"content type {ctype!r}: send multipart/form-data files or one image as the body (image/*)")
