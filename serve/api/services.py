"""What runs beside the HTTP app in each worker process, started once its models are loaded and stopped
before they close: the model control (the repository API, serve.repository.control) and the gRPC server
(--grpc-port; grpc is imported only when it is on)."""

import logging
import socket

from prelu_deploy.errors import ListenError

log = logging.getLogger("prelu_deploy.serve")


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_grpc_port(host: str, port: int) -> None:
    """In the parent, before any model loads: ListenError (exit 9) when host:port cannot be bound —
    taken by another process, or by this server's own HTTP port."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError as err:
        raise ListenError(
            f"cannot listen for gRPC on {address(host, port)}: {err.strerror}; choose another "
            f"--grpc-port (0: no gRPC), or stop what holds it"
        ) from None


def initial_models(settings) -> dict:
    """What a worker loads at start, as --model-control says (serve.repository.control)."""
    from prelu_deploy.serve.repository.control import initial_models

    return initial_models(settings)


async def start(app):
    """Start what `app.state.settings` asks for; returns the coroutine function that stops it all."""
    from prelu_deploy.serve.repository.control import ModelControl, ModelTable

    settings = app.state.settings
    if not isinstance(app.state.models, ModelTable):
        app.state.models = ModelTable(app.state.models)
    control = app.state.control = ModelControl(app)  # the repository API (serve.api.routes.repository_api, gRPC)
    await control.start()
    grpc_server = None
    if settings.grpc_port:
        from prelu_deploy.serve.api import grpc_service

        grpc_server = await grpc_service.start(app)

    async def stop() -> None:
        if grpc_server is not None:  # calls in progress finish (within --shutdown-timeout); new ones are refused
            await grpc_server.stop(settings.shutdown_timeout_s)
        await control.close()

    return stop
