"""The supervisor of several worker processes (serve.workers.processes): uvicorn's own, with a socket per worker,
connection counts that survive a rolling restart, a shutdown that ends, and workers forked from a fork server.

uvicorn spawns each worker: a new interpreter that imports the console script, the web stack and the serving
code again before it loads a model, at start and for each replacement (docs/benchmarks.md: what it costs).
Here a multiprocessing fork server imports them once (PRELOAD), when the first worker starts, and forks every
worker from it; the fork server is a new interpreter too, holding nothing of the supervisor's (Python 3.14
makes it the default start method on Linux). A worker starts with the supervisor's environment as of its
own start, as a spawned one did (the fork server's own is that of the first start: see WorkerProcess)."""

import copy
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import time

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

KILL_AFTER_S = 2.0  # a worker still alive this long after its --shutdown-timeout is killed
STARTUP_S = 120.0  # SIGHUP: how long a replacement may take to load its models (and pass their parity gate)
# What the fork server imports before its first fork: the console script (a worker's __main__, which each
# would import again otherwise) and what a worker imports before it loads its models. Not onnxruntime, whose
# import starts a thread on some machines: a process with a second thread is not safe to fork.
PRELOAD = (
    "__main__",
    "prelu_deploy.serve.workers.processes",
    "prelu_deploy.serve.api.app",
    "prelu_deploy.serve.repository.loader",
    "prelu_deploy.serve.repository.control",
    "tritonclient.grpc",
)
CONTEXT = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
log = logging.getLogger("prelu_deploy.serve")


class WorkerProcess(Process):
    """uvicorn's worker process (its health-check pipe, its target), started by CONTEXT instead of uvicorn's
    spawn, with the supervisor's environment as of now (config.environ, applied by ServerConfig.load in the
    worker): the fork server's own environment is that of the first start, and the supervisor's changes
    after it (a SIGHUP's new version pins) would not reach later workers."""

    def __init__(self, config, sockets: list[socket.socket]):
        config.environ = dict(os.environ)
        super().__init__(config, sockets)  # uvicorn's spawn Process, not started: its target and arguments are ours
        self.process = CONTEXT.Process(target=self.process._target, kwargs=self.process._kwargs)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, with each worker on its own socket of `sockets` (one per worker; or one,
    shared by all), and a dead worker marked dead for prometheus_client (the in-flight gauge, a sum
    over live workers, forgets it) and replaced on the same socket. The number of workers is fixed
    by the sockets: SIGTTIN/SIGTTOU are refused. Each worker process counts its connections in a slot
    of its own — two per worker, so that during a rolling restart (SIGHUP) the new worker never
    shares one with the old, whose connections close after it started — freed once it has exited.
    Shutdown is bounded: SIGTERM (or SIGINT) stops the supervision at once (even mid health check),
    each worker gets --shutdown-timeout seconds for its in-flight requests, and one still alive
    KILL_AFTER_S later (hung, or stopped) is killed."""

    def __init__(self, config, sockets: list[socket.socket]):
        super().__init__(config, sockets)
        if CONTEXT.get_start_method() == "forkserver":
            CONTEXT.set_forkserver_preload(list(PRELOAD))
        self.slot_owner: list[Process | None] = [None] * (len(config.connection_slots) if config.connection_slots else 0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop_signal)

    def _stop_signal(self, sig, frame) -> None:
        self.signal_queue.append(sig)
        self.should_exit.set()  # now, not at the next turn of the loop: a health check may be waiting on a hung worker

    def _spawn(self, idx: int) -> Process:
        config = copy.copy(self.config)
        if config.connection_slots is not None:
            config.slot = next(i for i, owner in enumerate(self.slot_owner) if owner is None)
            config.connection_slots[config.slot] = 0
        process = WorkerProcess(config, [self.sockets[idx % len(self.sockets)]])
        process.start()
        if config.connection_slots is not None:
            self.slot_owner[config.slot] = process
        return process

    def _gone(self, process: Process) -> None:
        """After `process` has exited: its connections are gone with it, its slot is free again."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)
        if process in self.slot_owner:
            slot = self.slot_owner.index(process)
            self.config.connection_slots[slot] = 0
            self.slot_owner[slot] = None

    def _stop(self, processes: list[Process]) -> None:
        """SIGTERM to each of `processes`, each joined within --shutdown-timeout + KILL_AFTER_S, else killed."""
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown + KILL_AFTER_S
        for process in processes:
            process.process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.exitcode is None:
                log.warning(
                    "worker process %s did not stop within %g s of SIGTERM (--shutdown-timeout + %g s): killed",
                    process.pid,
                    self.config.timeout_graceful_shutdown + KILL_AFTER_S,
                    KILL_AFTER_S,
                )
                process.kill()
                process.process.join()
            self._gone(process)

    def init_processes(self) -> None:
        self.processes = [self._spawn(i) for i in range(self.processes_num)]

    def terminate_all(self) -> None:
        log.info(
            "stopping: %d worker processes finish their requests within %g s (--shutdown-timeout)",
            len(self.processes),
            self.config.timeout_graceful_shutdown,
        )

    def join_all(self) -> None:
        self._stop(self.processes)

    def _alive(self, process: Process) -> bool:
        """uvicorn's health check — the worker answers a ping within timeout_worker_healthcheck — in
        steps of 0.1 s that a stop signal cuts short."""
        if not process.process.is_alive():
            return False
        try:
            process.parent_conn.send(b"ping")
            deadline = time.monotonic() + self.config.timeout_worker_healthcheck
            while not process.parent_conn.poll(0.1):
                if self.should_exit.is_set():
                    return True  # stopping: _stop deals with it
                if time.monotonic() > deadline:
                    return False
            process.parent_conn.recv()
            return True
        except (OSError, EOFError, pickle.UnpicklingError):
            return False

    def keep_subprocess_alive(self) -> None:
        for idx, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if self._alive(process):
                continue
            process.kill()  # dead or hung
            process.process.join()
            self._gone(process)
            if process.exitcode == STARTUP_FAILURE:  # broken app or settings: every restart would fail alike
                log.error("worker process %s failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            log.warning(
                "worker process %s died or stopped answering (%g s health check); starting another on its socket",
                process.pid,
                self.config.timeout_worker_healthcheck,
            )
            self.processes[idx] = self._spawn(idx)

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced in turn, the new one serving before the old one stops."""
        from prelu_deploy.serve.repository.loader import pin_versions

        pin_versions()  # a deliberate reload: the new workers serve the versions on disk now (serve.repository.loader)
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(idx)
            if not new.wait_until_ready(STARTUP_S, self.should_exit):  # uvicorn gives it 5 s: too few on a busy host
                new.kill()
                new.process.join()
                self._gone(new)
                log.error("the replacement of worker process %s did not start; keeping it, no further restarts", old.pid)
                return
            self.processes[idx] = new
            self._stop([old])

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN: the number of workers is fixed by their sockets (--workers); restart to change it")

    handle_ttou = handle_ttin
