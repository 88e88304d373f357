"""Server processes: how many, and how they share one port.

One Python process has one event loop and one interpreter lock; on a machine with more cores than
one such process can keep busy, the server runs several worker processes under uvicorn's own
`Multiprocess` supervisor (serve.workers.supervisor: it replaces a worker that dies, and bounds a shutdown).
The parent binds one listening socket per worker on the same port (SO_REUSEPORT), so the kernel
spreads new connections over the workers:
on one shared socket, whichever worker woke first accepted a whole burst of connections (measured:
docs/benchmarks.md). Each worker loads the repository itself (its own runners, batchers and parity
gate); the settings reach it through the environment, as JSON, because workers are started from a fork
server (serve.workers.supervisor), not forked from this process. Prometheus counters of all workers are
summed at /metrics through prometheus_client's multiprocess mode (a folder of per-process files that the
parent creates and removes)."""

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass

import uvicorn

from prelu_deploy.errors import ListenError, UsageError
from prelu_deploy.serve.workers import connections
from prelu_deploy.serve.api.metrics import MULTIPROC_ENV
from prelu_deploy.serve.settings import Settings
from prelu_deploy.serve.workers.supervisor import CONTEXT, Supervisor

SETTINGS_ENV = "PRELU_DEPLOY_SERVE_SETTINGS"
LOG_LEVEL_ENV = "PRELU_DEPLOY_LOG_LEVEL"
LOG_FORMAT = "%(levelname)s:     %(message)s"
log = logging.getLogger("prelu_deploy.serve")


@dataclass(frozen=True)
class Plan:
    """Worker processes × runner instances per model × threads per instance."""

    workers: int
    instances: int
    threads: int
    cores: int
    lone_threads: int | None = None  # a lone request's own runner (every core), when threads are fewer

    def __str__(self) -> str:
        return (
            f"{self.workers} worker process{'es' if self.workers > 1 else ''} × {self.instances} runner instance"
            f"{'s' if self.instances > 1 else ''} per model × {self.threads} thread{'s' if self.threads > 1 else ''} "
            f"on {self.cores} core{'s' if self.cores > 1 else ''}"
            + (f"; a lone request tries {self.lone_threads} threads" if self.lone_threads else "")
        )


def plan(cores: int, workers: int | None = None, instances: int | None = None, threads: int | None = None) -> Plan:
    """What is not given is chosen so that workers × instances × threads = cores: by default one
    single-threaded worker per core, and — unless --threads is given — a runner with a thread per core
    for a request alone on the server (one client connection: nothing else can be waiting; it runs
    inline). Several single-threaded workers share the HTTP work among event loops, which a small model
    needs more than threads; only a lone request is left with idle cores, which the lone runner gives it
    (docs/benchmarks.md). Whether it is kept is decided on the first lone requests (serve.engine.batcher)."""
    lone = threads is None
    instances = instances or 1
    if workers is None:
        workers = max(1, cores // (instances * (threads or 1)))
    if threads is None:
        threads = max(1, cores // (workers * instances))
    return Plan(workers, instances, threads, cores, cores if lone and threads < cores else None)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


class ServerConfig(uvicorn.Config):
    """uvicorn's Config plus what serve.workers.connections' protocol enforces (the request-head deadline and
    size limits), the graceful deadline of a shutdown, and under several workers the shared connection
    count (an array in shared memory: each worker process writes its own `slot`), and the supervisor's
    environment as of the worker's start (`environ`, set by serve.workers.supervisor); a module-level
    class, so it travels to the workers by pickling."""

    def __init__(
        self,
        *args,
        header_timeout: float = 10.0,
        max_head_bytes: int = 16 << 10,
        max_header_line_bytes: int = 8 << 10,
        connection_slots=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.header_timeout, self.max_head_bytes = header_timeout, max_head_bytes
        self.max_header_line_bytes = max_header_line_bytes
        self.connection_slots, self.slot = connection_slots, 0
        self.environ: dict[str, str] | None = None

    def load(self) -> None:  # in the worker process, before it serves (and before the app factory reads the settings)
        if self.environ is not None:
            os.environ.clear()
            os.environ.update(self.environ)
        super().load()
        if self.connection_slots is not None:
            connections.COUNT.share(self.connection_slots, self.slot)


def app_from_env():
    """The app factory each worker process calls: the settings its parent put in the environment."""
    from prelu_deploy.serve.api.app import create_app

    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    return create_app(settings, open_connections=connections.COUNT.total)


def listen(host: str, port: int, copies: int = 1) -> list[socket.socket]:
    """`copies` listening sockets on host:port — one per worker process, with SO_REUSEPORT where the
    system has it (else one, shared) — or ListenError (exit 9) saying why not. The port is first
    taken by a socket without SO_REUSEPORT, so that a port something else holds is refused, and so is
    a second server asked for this port later (its first bind fails)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise UsageError(f"--host {host!r}: not an address this machine can resolve ({err.strerror})") from None
    reuse_port = copies > 1 and hasattr(socket, "SO_REUSEPORT")
    socks: list[socket.socket] = []
    try:
        probe = _bound(family, kind, proto, addr, reuse_port=False)
        if not reuse_port:
            socks = [probe]
        else:
            addr = probe.getsockname()  # --port 0: the port the system chose, for every copy
            probe.close()
            socks = [_bound(family, kind, proto, addr, reuse_port=True) for _ in range(copies)]
    except OSError as err:
        for sock in socks:
            sock.close()
        raise ListenError(
            f"cannot listen on {host}:{port}: {err.strerror}; choose another --port, or stop what holds it"
        ) from None
    return socks


def _bound(family, kind, proto, addr, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(2048)  # now: a second bind to a port that is only bound would succeed
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(settings: Settings, socks: list[socket.socket], workers: int, log_level: str) -> None:
    """Serve `settings` on the bound sockets (serve.workers.processes.listen): in this process when `workers`
    is 1, else in `workers` worker processes supervised by this one."""
    common = dict(
        log_level=log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        http=connections.HeadLimitsProtocol,
        header_timeout=settings.header_timeout_s,
        max_head_bytes=settings.max_header_bytes,
        max_header_line_bytes=settings.max_header_line_bytes,
        limit_concurrency=settings.limit_concurrency,
    )
    if workers == 1:  # one process serves what it loads: no pin, whatever the environment it was started from holds
        from prelu_deploy.serve.api.app import create_app
        from prelu_deploy.serve.repository.loader import PINS_ENV

        os.environ.pop(PINS_ENV, None)
        app = create_app(settings, open_connections=connections.COUNT.total)
        uvicorn.Server(ServerConfig(app, **common)).run(sockets=socks[:1])
        return
    metrics_dir = tempfile.mkdtemp(prefix="prelu-deploy-metrics-")
    os.environ.update({SETTINGS_ENV: settings.model_dump_json(), MULTIPROC_ENV: metrics_dir, LOG_LEVEL_ENV: log_level})
    from prelu_deploy.serve.repository.loader import pin_versions

    pin_versions(settings.repo)  # each model's version now: what every worker serves until SIGHUP (serve.repository.loader)
    try:
        slots = CONTEXT.RawArray("i", 2 * workers)  # two per worker: see Supervisor
        cfg = ServerConfig(f"{__name__}:app_from_env", factory=True, workers=workers, connection_slots=slots, **common)
        Supervisor(cfg, sockets=socks).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
