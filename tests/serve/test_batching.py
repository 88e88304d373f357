"""The dynamic batcher on its own: real threads, real numpy functions as runners."""

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from prelu_deploy.serve.engine import batcher as batcher_module
from prelu_deploy.serve.engine.batcher import (
    INLINE_BRIEF_S,
    LONE_GAIN,
    LONE_TRIALS,
    BatcherStopped,
    DynamicBatcher,
    QueueFull,
)
from prelu_deploy.serve.api.hot_path import match


class Clock:
    """The batcher's clock where a test is about run times it measures: it moves only when a runner with
    this clock runs (by its `delay`), so a loaded machine's stalls never change what was measured. It
    runs an hour ahead of the real one, by which requests are stamped as queued: no batch waits for company."""

    def __init__(self):
        self.now = time.perf_counter() + 3600

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(batcher_module, "time", SimpleNamespace(perf_counter=clock))
    return clock


class Recorder:
    """A runner: doubles its rows, after `delay` seconds (on the `clock`, if given); remembers every batch's
    size and thread. With a `gate`, a call says it has begun (`entered`) and then waits until the test opens
    the gate: the test decides what arrives while the runner is busy, however fast or slow the machine."""

    def __init__(
        self,
        delay: float = 0.0,
        barrier: threading.Barrier | None = None,
        gate: threading.Event | None = None,
        clock: Clock | None = None,
    ):
        self.delay, self.barrier, self.gate, self.clock, self.batches, self.threads = delay, barrier, gate, clock, [], set()
        self.entered = threading.Event()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate:
            assert self.gate.wait(timeout=5), "the test never opened the gate"
        if self.barrier:
            self.barrier.wait(timeout=5)  # raises unless another instance runs at the same time
        if self.clock:
            self.clock.now += self.delay
        else:
            time.sleep(self.delay)
        return x * 2


async def busy(batcher: DynamicBatcher, run: Recorder, x: np.ndarray) -> asyncio.Future:
    """`x` submitted, once a runner thread has begun it (held there by `run`'s gate)."""
    run.entered.clear()
    future = asyncio.ensure_future(batcher.submit(x))
    assert await asyncio.to_thread(run.entered.wait, 5), "no runner thread took the request"
    return future


async def queued(batcher: DynamicBatcher, *xs: np.ndarray) -> list[asyncio.Future]:
    """Each of `xs` submitted and in the batcher's queue on return (each task's first step queues it)."""
    before = batcher.pending_rows
    futures = [asyncio.ensure_future(batcher.submit(x)) for x in xs]
    await asyncio.sleep(0)  # the tasks just made run their first step before this one resumes
    assert batcher.pending_rows == before + sum(len(x) for x in xs)
    return futures


def rows(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32).reshape(n, 1)


async def _with(batcher: DynamicBatcher, body):
    batcher.start()
    try:
        return await body()
    finally:
        await batcher.stop()


def test_every_caller_gets_its_own_rows_in_batches_of_at_most_max_batch():
    run = Recorder(delay=0.01)
    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0, max_queue=1000)
    sizes = [1, 3, 2, 8, 5, 1, 20, 4] * 4  # 20 rows: split over batches of 8 and put back together

    async def body():
        return await asyncio.gather(*(batcher.submit(rows(n, 100 * i)) for i, n in enumerate(sizes)))

    results = asyncio.run(_with(batcher, body))
    for i, (n, y) in enumerate(zip(sizes, results)):
        np.testing.assert_array_equal(y, rows(n, 100 * i) * 2)
    assert max(run.batches) <= 8 and sum(run.batches) == sum(sizes)
    assert len(run.batches) < len(sizes)  # requests that arrived while the runner was busy shared batches


def test_a_lone_request_runs_at_once_and_a_backlog_waits_at_most_the_delay():
    run = Recorder(delay=0.05)
    batcher = DynamicBatcher([run], max_batch=32, max_delay_s=0.5, max_queue=1000)

    async def body():
        start = time.perf_counter()
        await batcher.submit(rows(1))
        lone = time.perf_counter() - start
        run.gate = threading.Event()
        first = await busy(batcher, run, rows(1))  # taken at once, alone
        start = time.perf_counter()
        backlog = await queued(batcher, rows(1), rows(1), rows(1))  # a backlog of 3 rows while the runner is busy
        run.gate.set()
        await asyncio.gather(first, *backlog)  # the backlog gathers
        return lone, time.perf_counter() - start

    lone, loaded = asyncio.run(_with(batcher, body))
    assert lone < 0.4  # not the 0.5 s delay
    assert run.batches == [1, 1, 3] and 0.5 <= loaded < 2  # the backlog waited for company, up to the delay


def test_instances_run_at_the_same_time():
    run = Recorder(barrier=threading.Barrier(2))  # each call blocks until a second instance runs too
    batcher = DynamicBatcher([run, run], max_batch=1, max_delay_s=0, max_queue=100)

    async def body():
        return await asyncio.gather(*(batcher.submit(rows(1, i)) for i in range(4)))

    results = asyncio.run(_with(batcher, body))
    assert [float(y[0, 0]) for y in results] == [0, 2, 4, 6] and run.threads == {"runner-0", "runner-1"}


def test_a_full_queue_refuses_at_once():
    run = Recorder(gate=threading.Event())
    batcher = DynamicBatcher([run], max_batch=2, max_delay_s=0, max_queue=4)

    async def body():
        running = await busy(batcher, run, rows(2))  # taken by the runner, which then waits
        waiting = await queued(batcher, rows(2), rows(2))  # 4 rows queued: the limit
        with pytest.raises(QueueFull, match="4 rows already queued"):
            await batcher.submit(rows(1))
        run.gate.set()
        return await asyncio.gather(running, *waiting)

    assert [len(y) for y in asyncio.run(_with(batcher, body))] == [2, 2, 2]


def test_a_failing_runner_fails_every_caller_of_its_batch_and_keeps_serving():
    calls = []
    recorder = Recorder(gate=threading.Event())

    def run(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return recorder(x)

    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0, max_queue=100)

    async def body():
        first = await busy(batcher, recorder, rows(1))
        failing = await queued(batcher, rows(1), rows(1), rows(1))  # one batch of 3 once the runner is free
        recorder.gate.set()
        failed = await asyncio.gather(*failing, return_exceptions=True)
        return await first, failed, await batcher.submit(rows(2))

    first, failed, after = asyncio.run(_with(batcher, body))
    assert len(first) == 1 and len(after) == 2 and calls == [1, 3, 2]
    assert all(isinstance(e, RuntimeError) and str(e) == "device lost" for e in failed)


def test_stop_finishes_the_batch_in_progress_and_fails_what_is_queued():
    run = Recorder(gate=threading.Event())
    batcher = DynamicBatcher([run], max_batch=1, max_delay_s=0, max_queue=100)

    async def body():
        batcher.start()
        running = await busy(batcher, run, rows(1))
        (waiting,) = await queued(batcher, rows(1))
        stopping = asyncio.ensure_future(batcher.stop())
        failed = await asyncio.wait_for(asyncio.gather(waiting, return_exceptions=True), 5)  # what is queued fails at once...
        assert not running.done() and not stopping.done()  # ...while the batch in progress still runs
        run.gate.set()
        await stopping
        with pytest.raises(BatcherStopped):
            await batcher.submit(rows(1))
        return await running, failed

    done, (failed,) = asyncio.run(body())
    assert len(done) == 1 and isinstance(failed, BatcherStopped) and not batcher.alive()


def test_inline_runs_on_the_callers_thread_only_when_idle_and_short(clock):
    run = Recorder(delay=0.03, clock=clock)
    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0, max_queue=100, alone=lambda: True)
    where = []

    async def body():
        await batcher.submit(rows(1), inline=True)  # its run time is not known yet: a runner thread
        where.append(set(run.threads))
        run.delay, run.threads = 0.0, set()
        await batcher.submit(rows(1))  # measured fast now, but not asked for inline
        await batcher.submit(rows(2), inline=True)
        where.append(set(run.threads))
        run.delay, run.threads, run.gate = 0.05, set(), threading.Event()
        running = await busy(batcher, run, rows(1))  # a runner thread is busy with this one
        asked = asyncio.ensure_future(batcher.submit(rows(3, 7), inline=True))
        await asyncio.sleep(0)  # its first step: queued behind the busy runner, not run here
        assert batcher.pending_rows == 3
        run.gate.set()
        np.testing.assert_array_equal(await asked, rows(3, 7) * 2)
        await running
        where.append(set(run.threads))
        run.threads, run.gate = set(), None
        await batcher.submit(rows(1), inline=True)  # 50 ms a row measured: over INLINE_MAX_S
        where.append(set(run.threads))

    asyncio.run(_with(batcher, body))
    assert where == [{"runner-0"}, {"runner-0", "MainThread"}, {"runner-0"}, {"runner-0"}]


def test_a_request_not_alone_on_the_server_never_runs_on_the_callers_thread(clock):
    run = Recorder(clock=clock)
    connections = [2]
    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0, max_queue=100, alone=lambda: connections[0] == 1)

    async def body():
        for _ in range(3):  # the first measures the run time; the others would be inline if alone
            await batcher.submit(rows(1), inline=True)
        assert run.threads == {"runner-0"}
        connections[0] = 1
        await batcher.submit(rows(1), inline=True)
        assert "MainThread" in run.threads

    asyncio.run(_with(batcher, body))


def test_a_batcher_not_inline_ok_never_runs_on_the_callers_thread():
    run = Recorder()
    batcher = DynamicBatcher(
        [run],
        max_batch=8,
        max_delay_s=0,
        max_queue=100,
        inline_ok=False,  # as for GPU runners
        alone=lambda: True,
    )

    async def body():
        for _ in range(3):  # the first measures the run time; the others would be inline if allowed
            await batcher.submit(rows(1), inline=True)

    asyncio.run(_with(batcher, body))
    assert run.threads == {"runner-0"}


def test_a_brief_run_is_inline_whenever_idle_not_alone_and_never_on_the_lone_runner(clock):
    """A gRPC call (`brief`): inline on the caller's thread when the batcher is idle and the measured run is
    briefer than INLINE_BRIEF_S, though the server is not alone; queued behind a busy runner; on a runner
    thread once the run is measured slower; always by the first instance, never a lone runner's turn."""
    run, lone = Recorder(delay=INLINE_BRIEF_S / 2, clock=clock), Recorder(clock=clock)
    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0, max_queue=100, lone_run=lone, alone=lambda: False)
    where = []

    async def body():
        await batcher.submit(rows(1), brief=True)  # its run time is not known yet: a runner thread
        where.append(set(run.threads))
        run.threads = set()
        for i in range(3):
            np.testing.assert_array_equal(await batcher.submit(rows(1, i), brief=True), rows(1, i) * 2)
        where.append(set(run.threads))
        run.threads, run.gate = set(), threading.Event()
        running = await busy(batcher, run, rows(1))  # a runner thread is busy with this one
        asked = asyncio.ensure_future(batcher.submit(rows(2, 5), brief=True))
        await asyncio.sleep(0)  # its first step: queued behind the busy runner, not run here
        assert batcher.pending_rows == 2
        run.gate.set()
        np.testing.assert_array_equal(await asked, rows(2, 5) * 2)
        await running
        where.append(set(run.threads))
        run.threads, run.gate, run.delay = set(), None, INLINE_BRIEF_S * 2
        await batcher.submit(rows(1), brief=True)  # measured slower than the hand-offs now: a runner thread
        run.threads = set()
        await batcher.submit(rows(1), brief=True)
        where.append(set(run.threads))

    asyncio.run(_with(batcher, body))
    assert where == [{"runner-0"}, {"MainThread"}, {"runner-0"}, {"runner-0"}]
    assert not lone.batches and batcher._trial is not None  # no lone turn taken: its trial is for lone requests


def test_a_brief_run_is_never_inline_when_a_queue_delay_asks_for_batches(clock):
    run = Recorder(clock=clock)
    batcher = DynamicBatcher([run], max_batch=8, max_delay_s=0.05, max_queue=100)

    async def body():
        for _ in range(3):  # the first measures the run time; the others would be inline without the delay
            await batcher.submit(rows(1), brief=True)

    asyncio.run(_with(batcher, body))
    assert run.threads == {"runner-0"}


@pytest.mark.parametrize("lone_delay, instance_delay, kept", [(0.001, 0.002, True), (0.002, 0.001, False)])
def test_the_lone_runner_is_tried_in_turns_with_the_instance_and_kept_only_when_faster(clock, lone_delay, instance_delay, kept):
    lone, instance = Recorder(delay=lone_delay, clock=clock), Recorder(delay=instance_delay, clock=clock)
    verdicts = []
    batcher = DynamicBatcher(
        [instance],
        max_batch=8,
        max_delay_s=0,
        max_queue=100,
        lone_run=lone,
        on_lone_verdict=lambda *v: verdicts.append(v),
        alone=lambda: True,
    )

    async def body():
        await batcher.submit(rows(1), inline=True)  # its run time is not known yet: a runner thread
        for i in range(2 * LONE_TRIALS):
            np.testing.assert_array_equal(await batcher.submit(rows(1, i), inline=True), rows(1, i) * 2)
            assert len(lone.batches) == (i + 2) // 2 and len(instance.batches) == 1 + (i + 1) // 2  # in turns
        for i in range(5):
            await batcher.submit(rows(1), inline=True)

    asyncio.run(_with(batcher, body))
    assert len(verdicts) == 1 and verdicts[0][0] is kept and (verdicts[0][1] >= LONE_GAIN) is kept
    after = lone if kept else instance  # the five lone requests after the trial all went to the one kept
    assert len(after.batches) == LONE_TRIALS + 5 + (0 if kept else 1) and after.threads >= {"MainThread"}


@pytest.mark.parametrize(
    "path, route",
    [
        ("/v2/models/cifar/infer", ("infer", "cifar", None)),
        ("/v2/models/cifar/versions/1/infer", ("infer", "cifar", "1")),
        ("/v1/models/digits/classify", ("classify", "digits", None)),
        ("/v1/classify", ("classify", None, None)),
        ("/v2/models/cifar", None),
        ("/v2/models/cifar/ready", None),
        ("/v2/models/a/b/infer", None),
        ("/v2/models/cifar/infer/", None),
        ("/v1/models/classify", None),
        ("/x/v1/classify", None),
        ("/", None),
    ],
)
def test_the_hot_routes_and_only_they_match(path, route):
    assert match(path) == route
