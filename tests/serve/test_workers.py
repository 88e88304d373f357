"""Several server processes on one port (serve.workers.processes): the layout chosen from the core count, every
worker answering right, /metrics summed over the workers, and a killed worker replaced."""

import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from prelu_deploy.runners.registry import get_runner
from prelu_deploy.serve.engine.batcher import LONE_TRIALS
from prelu_deploy.serve.workers.processes import Plan, plan

from ..server import Server

LONE = 8 * LONE_TRIALS  # lone requests: one worker gets half or more, enough for its trial (2 × LONE_TRIALS + 1)


@pytest.mark.parametrize(
    "cores, given, want",
    [
        (2, {}, (2, 1, 1, 2)),  # the default: a single-threaded worker per core, a lone request on every core
        (16, {}, (16, 1, 1, 16)),
        (1, {}, (1, 1, 1, None)),
        (2, {"workers": 1}, (1, 1, 2, None)),  # one worker: its instance has every core already
        (16, {"workers": 4}, (4, 1, 4, 16)),
        (16, {"threads": 4}, (4, 1, 4, None)),  # --threads pins the thread count: no lone runner
        (16, {"threads": 1}, (16, 1, 1, None)),
        (16, {"workers": 2, "instances": 2}, (2, 2, 4, 16)),
        (2, {"instances": 4}, (1, 4, 1, 2)),  # never fewer than one of anything
    ],
)
def test_the_layout_fills_the_cores(cores, given, want):
    layout = plan(cores, **given)
    assert (layout.workers, layout.instances, layout.threads, layout.lone_threads) == want
    assert str(Plan(2, 1, 1, 2, 2)) == (
        "2 worker processes × 1 runner instance per model × 1 thread on 2 cores; a lone request tries 2 threads"
    )


def _children(pid: int) -> set[int]:
    """The worker processes of the server whose supervisor is `pid`: the children of its fork server
    (serve.workers.supervisor), itself a child of the supervisor beside multiprocessing's resource tracker."""
    return {worker for child in _kids(pid) if "multiprocessing.forkserver" in _cmdline(child) for worker in _kids(child)}


def _kids(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:  # ended meanwhile
        return ""


def _listening(port: int) -> int:
    """Listening TCP sockets on `port` (/proc/net/tcp: local address in hex, state 0A = LISTEN)."""
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    return sum(1 for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port)


def _count(srv: Server, status: int) -> float:
    _, _, body = srv.request("GET", "/metrics")
    m = re.search(rf'prelu_requests_total{{endpoint="infer",model="digits",status="{status}"}} (\S+)', body.decode())
    return float(m.group(1)) if m else 0.0


def _infer(srv: Server, x: np.ndarray):
    return srv.json(
        "POST",
        "/v2/models/digits/infer",
        {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]},
    )


def test_two_workers_answer_right_count_together_and_survive_a_death(repo):
    srv = Server(repo, "--workers", "2", "--log-level", "info")
    try:
        workers = _children(srv.proc.pid)
        assert len(workers) == 2
        x = np.load(repo / "digits" / "golden.npz")["inputs"]
        x = np.concatenate([x, x[:, :, ::-1], x[:, :, :, ::-1]])  # 24 real digits and their mirror images
        want = get_runner("onnxruntime", repo / "digits").run(x)

        def one(i):
            status, body = _infer(srv, x[i : i + 1])  # a connection each: the kernel hands them to either worker
            return status, np.asarray(body["outputs"][0]["data"]) if status == 200 else body

        for i in range(LONE):  # a connection at a time: alone (unless the last one's close is not seen yet), run
            status, y = one(i % len(x))  # inline — in the lone runner's trial, which one worker at least finishes
            assert status == 200 and np.allclose(y, want[i % len(x)], rtol=1e-5, atol=1e-5)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(len(x))))
        assert all(status == 200 for status, _ in answers)
        np.testing.assert_allclose(np.stack([a for _, a in answers]), want, rtol=1e-5, atol=1e-5)
        # whichever worker answers /metrics, it tells the sum over both workers
        assert {_count(srv, 200) for _ in range(6)} == {len(x) + LONE}
        assert _listening(srv.port) == 2  # a socket per worker (SO_REUSEPORT): the kernel spreads connections

        os.kill(next(iter(workers)), signal.SIGKILL)  # a worker dies; the other serves, the supervisor replaces it
        assert _infer(srv, x[:1])[0] == 200
        deadline = time.monotonic() + 30
        while len(_children(srv.proc.pid) - workers) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_children(srv.proc.pid)) == 2 and len(_children(srv.proc.pid) - workers) == 1
        assert _count(srv, 200) >= len(x) + LONE  # the dead worker's counts are not lost
        assert _listening(srv.port) == 2  # the replacement took over its predecessor's socket
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "2 worker processes × 1 runner instance per model × 1 thread" in log
    if len(os.sched_getaffinity(0)) > 1:
        assert "a lone request tries 2 threads" in log and "lone-request runner on 2 threads, on trial" in log
        assert re.search(r"model digits: a lone request runs on (2 threads|the instance)", log), log
    assert "model digits: ready" in log and "Traceback" not in log, log
