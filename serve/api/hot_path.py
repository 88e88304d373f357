"""The routes that carry the load — v2 inference and image classification — answered as plain ASGI in
front of FastAPI. Through FastAPI's router a request for a small model spent more of the event loop's
CPU on route matching, parameter solving and Request/Response objects than on its own work (profiled:
docs/benchmarks.md); here a POST to one of these paths is matched against the server's route table
(serve.api.paths), its body read with the server's limits, and its handler's answer sent as is. Every
other request goes on to FastAPI, and the OpenAPI document still describes these routes (from the same
table)."""

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from starlette.datastructures import Headers

from prelu_deploy.serve.api import paths
from prelu_deploy.serve.errors import ApiError, ClientGone, error_response
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")
MODEL_KEY = "prelu_deploy.model"  # in an ASGI scope: the model a hot route's handler chose


@dataclass
class HotRequest:
    scope: dict
    body: bytes
    name: str | None  # the model named in the path (None: /v1/classify, the one model served)
    version: str | None

    def header(self, name: str) -> str | None:
        return Headers(scope=self.scope).get(name)

    @property
    def state(self):
        """The app's state: its models and settings."""
        return self.scope["app"].state


# a handler answers (body, headers) or raises ApiError
Handler = Callable[[HotRequest], Awaitable[tuple[bytes, dict[str, str]]]]


def match(path: str) -> tuple[str, str | None, str | None] | None:
    """(handler, model name, version) for a path of a hot route, else None."""
    found = paths.match(path)
    if found is None or not found[0].hot:
        return None
    route, params = found
    return route.endpoint, params.get("name"), params.get("version")


class HotPath:
    """ASGI middleware: `handlers` maps a route ("infer", "classify") to its handler."""

    def __init__(self, app, settings: Settings, handlers: dict[str, Handler]):
        self.app, self.settings, self.handlers = app, settings, handlers

    async def __call__(self, scope, receive, send):
        route = match(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            err = ApiError(405, f"{scope['method']} is not allowed here; use POST", {"Allow": "POST"})
            return await error_response(err)(scope, receive, send)
        kind, name, version = route
        request = HotRequest(scope, b"", name, version)
        try:
            request.body = await read_body(receive, self.settings)
            content, headers = await self.handlers[kind](request)
        except Exception as err:
            if isinstance(err, ClientGone):  # nobody to answer; one line, no traceback
                log.info("%s %s: %s", scope["method"], scope["path"], err.message)
            elif not isinstance(err, ApiError):
                log.exception("%s %s failed", scope["method"], scope["path"])
            return await error_response(err)(scope, receive, send)
        finally:
            scope[MODEL_KEY] = request.name  # the model that answered (/v1/classify names none), for /metrics
        await send_response(send, content, headers)


async def read_body(receive, settings: Settings) -> bytes:
    """The request body, refused with 413 past --max-body-mb (also when no Content-Length announced it)
    and with 408 when it is not complete within --body-timeout seconds (a slow client holds no
    connection forever); a client that disconnects midway is a ClientGone, not a server error."""
    limit, timeout_s = settings.max_body_bytes, settings.body_timeout_s
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):  # one timer for the whole body, not one per chunk
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone("body")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, body_too_large(limit))
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
    except TimeoutError:
        raise ApiError(408, f"request body not complete within {timeout_s:g} s", {"Connection": "close"}) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def body_too_large(limit: int, size: int | None = None) -> str:
    """A 413's words: the body's size when announced, the limit in MB and the option that raises it."""
    said = f"the body is {_mb(size)} ({size} bytes); the limit is" if size is not None else "the body is over the limit of"
    return f"{said} {_mb(limit)} (--max-body-mb)"


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.3g} MB"  # --max-body-mb's megabytes


async def send_response(send, content: bytes, headers: dict[str, str]) -> None:
    """A 200 with `content`, sent as two ASGI messages (no Response object on the hot path)."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": content})
