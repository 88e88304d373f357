"""The FastAPI app: models loaded (with their parity gate) in the lifespan, one dynamic batcher per
ready model, errors answered as {"error": "..."} with the status codes the protocol uses."""

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prelu_deploy import __version__
from prelu_deploy.serve.batching import DynamicBatcher
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.metrics import Metrics
from prelu_deploy.serve.repository import ServedModel, load_repository
from prelu_deploy.serve.routes import classify, v2
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")


def create_app(settings: Settings, models: dict[str, ServedModel] | None = None) -> FastAPI:
    """The app for `settings.repo` (or for already loaded `models`)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.models = models if models is not None else load_repository(settings.repo, settings)
        for served in app.state.models.values():
            if served.ready:
                served.batcher = DynamicBatcher(served.runner.run, settings.max_batch_size,
                                                settings.max_queue_delay_ms / 1000, settings.max_queue,
                                                settings.instances, metrics.batch_observer(served.name))
                served.batcher.start()
        yield
        for served in app.state.models.values():
            if served.batcher:
                await served.batcher.stop()

    app = FastAPI(title="prelu-deploy", version=__version__, lifespan=lifespan,
                  description="PReLU image classifiers over the Open Inference Protocol v2 and a classify endpoint.")
    app.state.settings, app.state.metrics = settings, metrics
    app.include_router(v2.router)
    app.include_router(classify.router)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return JSONResponse({"error": f"body of {length} bytes is over the limit of {settings.max_body_bytes}"},
                                status_code=413)
        metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            metrics.in_flight.dec()
        parts = request.url.path.split("/")
        model = parts[parts.index("models") + 1] if "models" in parts[:-1] else "-"
        if model not in getattr(app.state, "models", {}):  # label values stay bounded whatever clients send
            model = "-" if model == "-" else "unknown"
        known = ("infer", "classify", "ready", "live", "metrics")
        endpoint = parts[-1] if parts[-1] in known else "metadata" if model != "-" else "other"
        metrics.requests.labels(model, endpoint, str(response.status_code)).inc()
        log.debug("%s %s → %d in %.1f ms", request.method, request.url.path, response.status_code,
                  (time.perf_counter() - start) * 1e3)
        return response

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
