"""A real `prelu-deploy serve` process on a free loopback port, for tests."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prelu_deploy.serve.addresses import free_ports

from .zygote import popen


def free_port() -> int:
    return free_ports(1)[0]


def wait_for(condition, timeout_s: float = 30, step_s: float = 0.02):
    """condition()'s first true value, asked every `step_s` until `timeout_s` (then AssertionError): a test
    waits for what it can observe of another process, not for a guessed time."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout_s:g} s: {getattr(condition, '__doc__', None) or condition}"
        time.sleep(step_s)
    return value


class Endpoint:
    """An HTTP server at `url` (ours, or Ray's proxy in front of it), with small request helpers."""

    def __init__(self, url: str):
        self.url = url

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=30):
        """(status, lower-cased headers, body bytes) — 4xx and 5xx included, never raised."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def metric(self, prefix: str) -> float:
        """The sum of the /metrics samples whose line starts with `prefix`."""
        _, _, text = self.request("GET", "/metrics")
        return sum(float(line.split()[-1]) for line in text.decode().splitlines() if line.startswith(prefix))

    def json(self, method: str, path: str, payload=None, **kw):
        status, headers, body = self.request(
            method, path, None if payload is None else json.dumps(payload).encode(), {"content-type": "application/json"}, **kw
        )
        return status, json.loads(body) if body else None


class Server(Endpoint):
    """`prelu-deploy serve REPO ARGS` on a free port, started when made (ready to answer /v2/health/live).
    Forked from the test servers' zygote (tests/zygote.py), or — `fresh=True`, or an environment that
    the zygote cannot give it — started as a new interpreter running the console script."""

    def __init__(self, repo: Path, *args: str, start_timeout: float = 60, grpc: bool = False, fresh: bool = False):
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0  # gRPC (serve --grpc-port) only where a test asks for it
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        super().__init__(f"http://127.0.0.1:{self.port}")
        exe = Path(sys.executable).with_name("prelu-deploy")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        workers = () if "--workers" in args else ("--workers", "1")  # one process unless a test is about workers
        argv = [
            str(exe),
            "serve",
            str(repo),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--grpc-port",
            str(self.grpc_port),
            *workers,
            *args,
        ]
        self.proc = popen(argv, env, fresh=fresh)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/health/live", timeout=1)
                return
            except (urllib.error.URLError, OSError):  # refused, or accepted but not answered while models load
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {start_timeout:g} s")

    def stop(self) -> bool:
        """SIGTERM, as an orchestrator stops it. True when the server shut down by itself in time:
        uvicorn finishes in-flight requests, then re-raises the signal (exit status -SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return False
        return self.proc.returncode in (0, -signal.SIGTERM)
