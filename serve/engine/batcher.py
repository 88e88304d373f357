"""Dynamic batching without a wait when idle. Each runner instance has its own thread (a runner — a
TensorRT context and stream — is never used by two threads at once), and every thread takes its own
batches from one shared queue: a free thread takes at once everything queued, up to `max_batch` rows,
so a lone request on an idle server runs immediately, and under load a batch forms from what arrived
while every instance was busy. `max_delay_s` (default 0) only ever adds a wait under load — when the
thread found a backlog — and bounds it from the moment the oldest request of the batch was queued.

The event loop only queues a request and, once per batch, settles the callers' futures: gathering,
running and the batch metrics happen on the runner threads (the loop's CPU per request is what
limits a server of a small model, so the loop does no batching work). One exception: an HTTP
request while the server has a single client connection (`alone`, injected by the app: HTTP/1.1
brings that connection's requests one at a time, so nobody else can be waiting) runs at once on the
event loop's own thread when the batcher is idle and the run is short (INLINE_MAX_S), as a
hand-written server would. A gRPC call cannot be known to be alone (a call that runs without an await
is over before grpcio hands in the next), but a run briefer than the hand-offs a batch adds
(INLINE_BRIEF_S) runs inline whenever the batcher is idle, alone or not: for such a model the batch's
thread hand-offs and grpcio's suspended call cost more than the run they would share. Not when the
operator set a queue delay: that asks for batches under load. A lone runner
with more threads (serve.workers.processes.plan) takes turns with the first instance on the first
lone requests and is kept only when faster (LONE_GAIN): timed on real lone requests, not at startup,
while other workers may still be loading. Each caller gets exactly its own rows back. The queue is
bounded: when full, `submit` raises QueueFull at once (the HTTP layer answers 503 with Retry-After)."""

import asyncio
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

INLINE_MAX_S = 0.01  # an inline run holds the event loop: only for models that run a request within this
# a run this brief costs less than a batch's hand-offs over gRPC (docs/grpc.md: 0.3–0.4 ms at one client)
INLINE_BRIEF_S = 0.0002
LONE_TRIALS = 12  # lone requests timed on each of the lone runner and the first instance before one is kept
# the lone runner is kept when its median time per row is at least this much faster (a margin for
# noise): speed decides, since a lone request leaves the other cores idle, but a runner that is not
# faster is not worth the core its extra threads spin on (docs/benchmarks.md: which models gain)
LONE_GAIN = 1.05


class QueueFull(Exception):
    pass


class BatcherStopped(RuntimeError):
    pass


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        runs: list[Callable[[np.ndarray], np.ndarray]],
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int, list[float], float], None] | None = None,
        lone_run: Callable[[np.ndarray], np.ndarray] | None = None,
        inline_ok: bool = True,
        on_lone_verdict: Callable[[bool, float], None] | None = None,
        alone: Callable[[], bool] = lambda: False,
    ):
        self.instance_run = runs[0]  # the first instance's: a brief run inline (never the lone runner's trial)
        self.inline_run = runs[0]  # a lone request's: the first instance's, unless a lone runner (more threads) wins its trial
        # lone runner's and the instance's seconds per row on lone requests, until one is kept (then None)
        self._trial = ((lone_run, []), (runs[0], [])) if lone_run else None
        self.on_lone_verdict = on_lone_verdict  # on_lone_verdict(kept, gain): after the trial, on the loop
        self.alone = alone  # whether the server has one client connection (injected: the server counts them)
        self.inline_ok = inline_ok  # False: never inline (GPU runners keep to their own thread, where their CUDA state is)
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_s, max_queue
        self.on_batch = on_batch  # on_batch(rows, queue seconds, compute seconds), called on a runner thread
        self.pending_rows = 0  # queued, not yet taken by a runner thread
        self.running = 0  # batches taken by runner threads and not yet answered
        self.row_seconds = float("inf")  # the last batch's compute time per row: whether an inline run is short
        self._queue: deque[_Item] = deque()
        self._changed = threading.Condition()  # guards _queue, pending_rows, running and _stopping
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._serve, args=(run,), name=f"runner-{i}", daemon=True) for i, run in enumerate(runs)
        ]
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return not self._stopping and all(t.is_alive() for t in self._threads)

    async def stop(self) -> None:
        """After the batches in progress (one still gathering runs with what it has); whatever is
        still queued fails with BatcherStopped."""
        with self._changed:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self.pending_rows -= sum(len(i.x) for i in left)
            self._changed.notify_all()
        for item in left:
            _settle(item.future, None, BatcherStopped("the server is shutting down"))
        for thread in self._threads:
            if thread.is_alive():
                await asyncio.to_thread(thread.join)

    async def submit(self, x: np.ndarray, inline: bool = False, brief: bool = False) -> np.ndarray:
        """The runner's output rows for `x`, computed in some batch with other callers' rows — or at once
        on the calling thread when the batcher is idle and either the caller allows it (`inline`: an HTTP
        request), nobody else can be waiting (`alone()`) and the run is short, or the caller asks for it
        (`brief`: a gRPC call), the run is briefer than a batch's hand-offs and no queue delay is set."""
        seconds = len(x) * self.row_seconds
        lone = inline and seconds <= INLINE_MAX_S and self.alone()
        brief = brief and seconds <= INLINE_BRIEF_S and not self.max_delay_s
        if self.inline_ok and (lone or brief) and (y := self._run_inline(x, lone)) is not None:
            return y
        loop = self._loop
        items = [_Item(x[i : i + self.max_batch], loop.create_future()) for i in range(0, len(x), self.max_batch)]
        with self._changed:
            if self._stopping:
                raise BatcherStopped("the server is shutting down")
            if self.pending_rows + len(x) > self.max_queue:
                raise QueueFull(f"{self.pending_rows} rows already queued (limit {self.max_queue})")
            self._queue.extend(items)
            self.pending_rows += len(x)
            self._changed.notify(len(items))
        if len(items) == 1:
            return await items[0].future
        return np.concatenate(await asyncio.gather(*(i.future for i in items)))

    def _run_inline(self, x: np.ndarray, lone: bool) -> np.ndarray | None:
        """x run on this thread (a lone request by `inline_run`, or during the lone runner's trial by the
        candidate whose turn it is; a brief one by the first instance), if nothing is queued or running
        (then no runner thread can start a batch until this returns: only the caller's thread queues,
        and the first instance is free — or the lone runner has the cores to itself); None otherwise.
        Saves the two thread hand-offs of a batch."""
        with self._changed:
            if self._stopping or self._queue or self.running or len(x) > self.max_batch:
                return None
            self.running += 1
        run, times = (self.inline_run if lone else self.instance_run), None
        if lone and self._trial:  # the one with fewer timings goes next: they take turns
            run, times = min(self._trial, key=lambda candidate: len(candidate[1]))
        try:
            out, seconds = self._timed(run, [_Item(x, None)])
        finally:
            with self._changed:
                self.running -= 1
        if times is not None:
            times.append(seconds / len(x))
            self._judge_trial()
        return out

    def _judge_trial(self) -> None:
        (lone, lone_times), (instance, instance_times) = self._trial
        if len(lone_times) < LONE_TRIALS or len(instance_times) < LONE_TRIALS:
            return
        gain = statistics.median(instance_times) / statistics.median(lone_times)
        self._trial = None
        if gain >= LONE_GAIN:
            self.inline_run = lone
        if self.on_lone_verdict:
            self.on_lone_verdict(gain >= LONE_GAIN, gain)

    def _take(self) -> list[_Item] | None:
        """The next batch for a free runner thread (waits for one); None once stopping."""
        with self._changed:
            while not self._queue and not self._stopping:
                self._changed.wait()
            if not self._queue:  # stopping (stop() empties the queue)
                return None
            self.running += 1  # from now: an inline run must not start while this batch gathers
            batch, rows = [], 0
            while True:
                while self._queue and rows + len(self._queue[0].x) <= self.max_batch:
                    batch.append(self._queue.popleft())
                    rows += len(batch[-1].x)
                # a wait for company only under load, and never past max_delay after the oldest row was queued
                left = self.max_delay_s - (time.perf_counter() - batch[0].queued_at)
                if len(batch) < 2 or self._queue or rows >= self.max_batch or left <= 0 or self._stopping:
                    break
                self._changed.wait(left)
            self.pending_rows -= rows
            return batch

    def _timed(self, run: Callable[[np.ndarray], np.ndarray], batch: list[_Item]) -> tuple[np.ndarray, float]:
        """The batch's output rows and its compute seconds (also reported to on_batch)."""
        start = time.perf_counter()
        x = batch[0].x if len(batch) == 1 else np.concatenate([i.x for i in batch])
        out = run(x)
        seconds = time.perf_counter() - start
        self.row_seconds = seconds / len(x)
        if self.on_batch:
            self.on_batch(len(x), [start - i.queued_at for i in batch], seconds)
        return out, seconds

    def _serve(self, run: Callable[[np.ndarray], np.ndarray]) -> None:
        while (batch := self._take()) is not None:
            try:
                (out, _), error = self._timed(run, batch), None
            except Exception as err:  # the runner failed: every caller in the batch hears why
                out, error = None, err
            with self._changed:  # done with the runner: before the answer, so its caller finds the batcher idle
                self.running -= 1
            self._loop.call_soon_threadsafe(_answer, batch, out, error)


def _answer(batch: list[_Item], out: np.ndarray | None, error: Exception | None) -> None:
    """On the event loop: each caller its own rows (or the error); a caller that went away is skipped."""
    offset = 0
    for item in batch:
        n = len(item.x)
        _settle(item.future, None if out is None else out[offset : offset + n], error)
        offset += n


def _settle(future: asyncio.Future, result, error: Exception | None) -> None:
    if not future.done():
        future.set_exception(error) if error is not None else future.set_result(result)
