"""Server processes: how many, and how they share one port.

One Python process has one event loop and one interpreter lock; on a machine with more cores than
one such process can keep busy, the server runs several worker processes (uvicorn's own
`Multiprocess` supervisor, which restarts a worker that dies), all accepting on one listening socket
that the parent bound. Each worker loads the repository itself (its own runners, batchers and parity
gate); the settings reach it through the environment, as JSON, because workers are spawned, not
forked. Prometheus counters of all workers are summed at /metrics through prometheus_client's
multiprocess mode (a folder of per-process files that the parent creates and removes)."""

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass

import uvicorn
from uvicorn.supervisors import Multiprocess

from prelu_deploy.serve.metrics import MULTIPROC_ENV
from prelu_deploy.serve.settings import Settings

SETTINGS_ENV = "PRELU_DEPLOY_SERVE_SETTINGS"
LOG_LEVEL_ENV = "PRELU_DEPLOY_LOG_LEVEL"
LOG_FORMAT = "%(levelname)s:     %(message)s"


def usable_cores() -> int:
    """Cores this process may run on (taskset and cgroup cpusets respected), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """Worker processes × runner instances per model × threads per instance."""

    workers: int
    instances: int
    threads: int
    cores: int

    def __str__(self) -> str:
        return (f"{self.workers} worker process{'es' if self.workers > 1 else ''} × {self.instances} runner instance"
                f"{'s' if self.instances > 1 else ''} per model × {self.threads} thread{'s' if self.threads > 1 else ''} "
                f"on {self.cores} core{'s' if self.cores > 1 else ''}")


THREADS_PER_WORKER = 2  # the default: a lone request still gets two cores' worth of ONNX Runtime


def plan(cores: int, workers: int | None = None, instances: int | None = None, threads: int | None = None) -> Plan:
    """What is not given is chosen so that workers × instances × threads = cores: by default one worker
    per two cores, each with one two-threaded instance. Measured on 2 cores (docs/benchmarks.md): one
    worker with both cores answered 0.74–0.83× the hand-written baseline's requests/s at concurrency 1
    and 0.92–1.03× at 8, two single-threaded workers 0.44× and 0.62× (a lone request runs on one core,
    and few keep-alive connections land on one worker); at 64 clients the two were within noise."""
    instances = instances or 1
    if workers is None:
        workers = max(1, cores // (instances * (threads or THREADS_PER_WORKER)))
    if threads is None:
        threads = max(1, cores // (workers * instances))
    return Plan(workers, instances, threads, cores)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


class ServerConfig(uvicorn.Config):
    """uvicorn's Config plus the request-head deadline that serve.connections' protocol enforces; a
    module-level class, so it travels to spawned workers by pickling."""

    def __init__(self, *args, header_timeout: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout


def app_from_env():
    """The app factory each worker process calls: the settings its parent put in the environment."""
    from prelu_deploy.serve.app import create_app

    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    return create_app(settings)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which also tells prometheus_client when a worker is gone, so that the
    in-flight gauge (a sum over live workers) forgets a worker that died mid-request."""

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        from prometheus_client import multiprocess

        for pid in before - {p.pid for p in self.processes}:
            multiprocess.mark_process_dead(pid)


def run(settings: Settings, sock: socket.socket, workers: int, log_level: str) -> None:
    """Serve `settings` on the bound `sock`: in this process when `workers` is 1, else in `workers`
    spawned processes supervised by this one."""
    from prelu_deploy.serve.connections import HeadTimeoutProtocol

    common = dict(log_level=log_level, timeout_graceful_shutdown=30, http=HeadTimeoutProtocol,
                  header_timeout=settings.header_timeout_s)
    if workers == 1:
        from prelu_deploy.serve.app import create_app

        uvicorn.Server(ServerConfig(create_app(settings), **common)).run(sockets=[sock])
        return
    metrics_dir = tempfile.mkdtemp(prefix="prelu-deploy-metrics-")
    os.environ.update({SETTINGS_ENV: settings.model_dump_json(), MULTIPROC_ENV: metrics_dir,
                       LOG_LEVEL_ENV: log_level})
    try:
        cfg = ServerConfig(f"{__name__}:app_from_env", factory=True, workers=workers, **common)
        Supervisor(cfg, sockets=[sock]).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
