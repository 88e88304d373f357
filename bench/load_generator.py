"""The load generator of `bench http` and `bench serving`: clients as asyncio coroutines writing
requests encoded once, on one event loop (uvloop where installed): no extra dependency, no
monkey-patching (gevent, as tritonclient.http uses), and a per-request cost far below a Python
server's, reported per level as the cores the generator kept busy."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import numpy as np

from prelu_deploy.bench.timing import CV_HIGH, summary

if TYPE_CHECKING:
    from prelu_deploy.bench.http_load import Endpoint, Workload

WINDOWS = 5  # a level's throughput is also counted in this many equal windows: its stability


class _Level:
    """One concurrency level: the request budget its clients share, and what they measured."""

    def __init__(self, budget: int, deadline: float):
        self.budget, self.deadline = budget, deadline
        self.latencies: list[float] = []
        self.finished: list[float] = []  # when each successful request completed
        self.errors: dict[str, int] = {}

    def take(self) -> bool:
        if self.budget <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.budget -= 1
        return True

    def record(self, start: float, failure: str | None) -> None:
        """One request sent at `start`: its latency when it succeeded, else a count of its `failure`."""
        if failure is None:
            self.finished.append(time.perf_counter())
            self.latencies.append(self.finished[-1] - start)
        else:
            self.errors[failure] = self.errors.get(failure, 0) + 1


def _raw_requests(ep: Endpoint, work: Workload) -> list[bytes]:
    """Each distinct request as the bytes on the wire, encoded once: a client then only writes and reads."""
    path = ep.base + work.method_path
    out = []
    for body, headers in work.bodies:
        head = [
            f"POST {path} HTTP/1.1",
            f"host: {ep.host}:{ep.port}",
            f"content-length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return out


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 response, its body read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    if m := re.search(rb"\r\ncontent-length: *(\d+)", head):
        await reader.readexactly(int(m.group(1)))
    elif b"\r\ntransfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # the last chunk's (empty) trailer line
    else:
        await reader.read()  # delimited by close
        return status, False
    return status, b"\r\nconnection: close" not in head


async def _client(ep: Endpoint, requests: list[bytes], level: _Level, first: int, timeout: float) -> None:
    """One keep-alive connection sending its next request when the last one is answered."""
    ssl = ep.scheme == "https" or None
    reader = writer = None
    i = first
    while level.take():
        request = requests[i % len(requests)]
        i += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if writer is None:
                    reader, writer = await asyncio.open_connection(ep.host, ep.port, ssl=ssl)
                writer.write(request)
                status, keep = await _response(reader)
        except TimeoutError:
            status, keep = "timeout", False
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, keep = "connection error", False
        level.record(start, None if status == 200 else str(status))
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def drive(ep: Endpoint, work: Workload, concurrency: int, duration_s: float, max_requests: int, timeout: float) -> dict:
    """`concurrency` clients for `duration_s` or `max_requests` in all, whichever ends first. The
    clients are coroutines on one event loop (uvloop where installed) writing pre-encoded requests,
    so the generator costs little CPU; what it did cost is reported (`client_cpu`: cores it kept busy),
    so a reader can tell whether it, rather than the server, was the limit."""
    requests = _raw_requests(ep, work)
    return measure(lambda level, k: _client(ep, requests, level, k, timeout), work.items, concurrency, duration_s, max_requests)


def measure(
    client: Callable[[_Level, int], Awaitable[None]], items: int, concurrency: int, duration_s: float, max_requests: int
) -> dict:
    """A level of `concurrency` coroutines `client(level, k)` on one event loop, as `drive` runs its
    HTTP clients (bench.grpc_load runs its gRPC ones here too): the level's report and raw latencies."""

    async def clients() -> None:
        await asyncio.gather(*(client(level, k) for k in range(concurrency)))

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        cpu, start = time.process_time(), time.perf_counter()
        level = _Level(max_requests, start + duration_s)
        runner.run(clients())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    ok = len(level.latencies)
    return {
        "concurrency": concurrency,
        "requests": ok + sum(level.errors.values()),
        "ok": ok,
        "errors": dict(sorted(level.errors.items())),
        "wall_s": wall,
        "client_cpu": cpu / wall,
        "throughput_rps": ok / wall,
        "images_per_s": ok * items / wall,
        **stability(level.finished, start, wall),
        "latency": summary(level.latencies, items=items),
        "_samples": level.latencies,
    }


def _loop_factory():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


def stability(finished: list[float], start: float, wall: float) -> dict:
    """Successful requests/s in WINDOWS equal windows of the level and their coefficient of
    variation: a level whose throughput still drifts (a server warming up, a noisy neighbour) shows
    it here, as perf_analyzer's stability check would."""
    if not finished:
        return {"window_rps": [], "throughput_cv": None, "stable": False}
    counts, _ = np.histogram(finished, bins=WINDOWS, range=(start, start + wall))
    rps = counts / (wall / WINDOWS)
    cv = float(rps.std() / rps.mean())
    return {"window_rps": [float(r) for r in rps], "throughput_cv": cv, "stable": cv <= CV_HIGH}
