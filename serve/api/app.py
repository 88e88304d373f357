"""The FastAPI app: models loaded (with their parity gate) in the lifespan, one dynamic batcher per
ready model, errors answered as {"error": "..."} with the status codes the protocol uses."""

import asyncio
from contextlib import asynccontextmanager
from functools import partial
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from prelu_deploy import __version__
from prelu_deploy.serve.api import paths, services
from prelu_deploy.serve.api.auth import Auth
from prelu_deploy.serve.repository.versions import every_version
from prelu_deploy.serve.errors import ApiError, error_response
from prelu_deploy.serve.api.hot_path import MODEL_KEY, HotPath, body_too_large
from prelu_deploy.serve.api.metrics import Metrics
from prelu_deploy.serve.api.openapi import install_docs
from prelu_deploy.serve.repository.loader import ServedModel
from prelu_deploy.serve.api.routes import classify, page, repository_api, v2
from prelu_deploy.serve.settings import Settings

OPEN_CONNECTIONS = (
    b"# HELP prelu_open_connections Open client connections over every worker (one: a lone request, "
    b"run inline)\n# TYPE prelu_open_connections gauge\nprelu_open_connections %d\n"
)


class LimitsAndMetrics:
    """Plain ASGI middleware (cheaper than @app.middleware's BaseHTTPMiddleware on every request):
    refuses bodies announced over the limit with 413 (within the body deadline), counts requests by model/endpoint/status and
    tracks in-flight requests. Label values stay bounded whatever paths clients send."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_body_bytes):
            close = {"Connection": "close"}
            if length.isdigit() and int(length) <= 4 * self.settings.max_body_bytes:
                # read and drop a moderately oversized body first, so that a client that sends it all
                # before reading (urllib, requests) gets the 413 rather than a broken pipe — within
                # --body-timeout, as any body; a client still sending then is answered and cut off
                try:
                    async with asyncio.timeout(self.settings.body_timeout_s):
                        while (await receive()).get("more_body"):
                            pass
                    close = {}
                except TimeoutError:
                    pass
            error = (
                body_too_large(self.settings.max_body_bytes, int(length))
                if length.isdigit()
                else f"Content-Length {length.decode(errors='replace')!r} is not a number of bytes"
            )
            response = JSONResponse({"error": error}, status_code=413, headers=close)
            return await response(scope, receive, send)
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            model, endpoint = self._labels(scope)
            self.metrics.requests.labels(model, endpoint, str(status)).inc()

    @staticmethod
    def _labels(scope) -> tuple[str, str]:
        """(model, endpoint) from the route table: a model not served counts as "unknown", a path not in the
        table as "other"."""
        route, params = paths.match(scope["path"]) or (None, {})
        model = scope.get(MODEL_KEY) or params.get("name", "-")
        if model != "-" and model not in getattr(scope["app"].state, "models", {}):
            model = "unknown"
        return model, route.endpoint if route else paths.OTHER


def start_batcher(served: ServedModel, settings: Settings, metrics: Metrics, alone: Callable[[], bool]) -> None:
    """The ready model's engine started on the running event loop; `alone`: whether a request is the only one
    the server can have."""
    served.engine.start(settings, metrics.batch_observer(served.name), alone)


def create_app(
    settings: Settings, models: dict[str, ServedModel] | None = None, open_connections: Callable[[], int] = lambda: 0
) -> FastAPI:
    """The app for `settings.repo` (or for already loaded `models`). `open_connections`: the server's open client
    connections over all its workers (serve.workers.connections; 0, unknown, where another server owns them: Ray's).
    With one, HTTP/1.1 brings its requests one at a time, so nothing else can be waiting: a batcher may run such a
    request inline."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.models = models if models is not None else services.initial_models(settings)
        app.state.start_batcher = partial(
            start_batcher, settings=settings, metrics=metrics, alone=lambda: open_connections() == 1
        )  # also for models loaded later
        for served in every_version(app.state.models):
            if served.ready:
                app.state.start_batcher(served)
        stop_services = await services.start(app)  # gRPC (--grpc-port), the repository API, on these models and batchers
        yield
        await stop_services()
        for served in every_version(app.state.models):
            if served.engine:
                await served.engine.stop()
            served.close()

    app = FastAPI(
        title="prelu-deploy",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="PReLU image classifiers over the Open Inference Protocol v2 and a classify endpoint.",
    )
    install_docs(app)
    page.headers()  # the page's script and style hashes (its CSP), from the page itself, at startup
    app.state.settings, app.state.metrics = settings, metrics
    app.include_router(v2.router)
    app.include_router(page.router)
    app.include_router(repository_api.router)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        return error_response(err)  # Starlette logs the traceback

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    app.add_middleware(HotPath, settings=settings, handlers={"infer": v2.infer, "classify": classify.classify})
    app.add_middleware(Auth, settings=settings, metrics=metrics)  # tokens (serve.api.auth): before any route
    app.add_middleware(LimitsAndMetrics, settings=settings, metrics=metrics)  # the outer one: it sees every request

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        text, media_type = metrics.exposition()
        return Response(text + OPEN_CONNECTIONS % open_connections(), media_type=media_type)

    return app
