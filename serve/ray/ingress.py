"""ASGI middleware that Ray Serve runs in front of every HTTP server of the application's ingress — Ray's
Python proxy (`--ray-ingress proxy`, and HAProxy's backup) and each replica's own server (HAProxy and
direct ingress) — named by `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=prelu_deploy.serve.ray.ingress:middlewares`
in the Serve controller's environment (serve/ray/options.py:ingress_env). It imports no ray.

- The answers Ray makes itself, before or instead of the app — back-pressure 503 (with Retry-After), 404
  for a path no application serves, 408 past a request timeout, 500 when a replica died under a request,
  503 with no replica — are text/plain; they reach the client as {"error": "..."} JSON with their status
  and headers, as the app's own errors do. The app's answers pass through untouched (its errors are JSON
  already; a text/plain 4xx/5xx is Ray's).
- Each request says `x-request-disconnect-disabled: ?1`: Ray then runs it without a second task watching
  for the client's disconnect (a task, an asyncio.wait and a cancellation less per request). A request
  whose client left then runs to its end, as in the plain server (uvicorn does not cancel it either); the
  app still sees the disconnect while it reads the body."""

import json

from starlette.middleware import Middleware

DISCONNECT_DISABLED = (b"x-request-disconnect-disabled", b"?1")  # Ray's header (SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER)


def middlewares() -> list[Middleware]:
    return [Middleware(RayIngress)]


class RayIngress:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["headers"] = [*scope["headers"], DISCONNECT_DISABLED]
        held: dict | None = None  # a text/plain error's start, held until its body is known
        body = b""

        async def send_json_errors(message):
            nonlocal held, body
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _content_type(message).startswith(b"text/plain"):
                    held = message
                    return
                return await send(message)
            if held is None or message["type"] != "http.response.body":
                return await send(message)
            body += message.get("body", b"")
            if message.get("more_body"):
                return
            content = json.dumps({"error": body.decode(errors="replace").strip() or f"HTTP {held['status']}"}).encode()
            headers = [(k, v) for k, v in held.get("headers", []) if bytes(k).lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
            await send({**held, "headers": headers})
            held = None
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, send_json_errors)


def _content_type(start: dict) -> bytes:
    return next((bytes(v).lower() for k, v in start.get("headers", []) if bytes(k).lower() == b"content-type"), b"")
