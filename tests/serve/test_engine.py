"""A model's engine (serve.engine.model) owns its runners: the lone runner's trial ends in the engine,
which keeps the runner or closes it; nothing outside the engine changes."""

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from prelu_deploy.serve.engine.batcher import LONE_TRIALS
from prelu_deploy.serve.engine.model import Engine
from prelu_deploy.serve.settings import Settings


class Runner:
    """A runner (the protocol's run, profile and close): doubles its rows after `delay` seconds."""

    profile = SimpleNamespace(min=1, max=8)

    def __init__(self, delay: float):
        self.delay, self.closed = delay, False

    def run(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return x * 2

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("lone_delay, instance_delay, kept", [(0.0, 0.002, True), (0.002, 0.0, False)])
def test_the_engine_keeps_its_lone_runner_only_when_faster_and_closes_it_otherwise(lone_delay, instance_delay, kept):
    engine = Engine("m", max_batch=8)
    instance, lone = Runner(instance_delay), Runner(lone_delay)
    engine.runners.append(instance)
    engine.lone = lone

    async def body():
        engine.start(Settings(lone_threads=2), on_batch=None, alone=lambda: True)
        try:
            for i in range(2 * LONE_TRIALS + 1):  # the first measures the run time; then the trial, in turns
                x = np.full((1, 1), i, np.float32)
                np.testing.assert_array_equal(await engine.submit(x, inline=True), x * 2)
        finally:
            await engine.stop()

    asyncio.run(body())
    assert (engine.lone is lone) is kept and lone.closed is not kept and not instance.closed
    engine.close()
    assert instance.closed and lone.closed and engine.runners == [] and engine.lone is None
