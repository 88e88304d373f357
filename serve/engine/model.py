"""A model's engine: its runner instances, the lone-request runner and the dynamic batcher that runs
them, owned in one place. The loader fills it as the runners pass the parity gate (nothing runs yet);
the app starts it on the event loop, injecting whether a request is alone on the server; the batcher's
trial then decides whether the lone runner stays — a dropped one is closed here, its memory back."""

import logging
from functools import partial
from typing import Callable

import numpy as np

from prelu_deploy.runners.runner import Runner, run_batched
from prelu_deploy.serve.engine.batcher import DynamicBatcher
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")


class Engine:
    def __init__(self, name: str, max_batch: int):
        self.name, self.max_batch = name, max_batch
        self.runners: list[Runner] = []  # one per instance: none is shared between threads
        self.lone: Runner | None = None  # more threads, for a request alone on the server (run inline)
        self.batcher: DynamicBatcher | None = None

    def start(self, settings: Settings, on_batch: Callable[[int, list[float], float], None], alone: Callable[[], bool]) -> None:
        """The batcher over the runners, started on the running event loop."""
        lone = partial(run_batched, self.lone) if self.lone else None
        self.lone_threads = settings.lone_threads
        self.batcher = DynamicBatcher(
            [partial(run_batched, r) for r in self.runners],
            self.max_batch,
            settings.max_queue_delay_ms / 1000,
            settings.max_queue,
            on_batch,
            lone_run=lone,
            inline_ok=settings.device == "cpu",  # GPU runners keep their thread
            on_lone_verdict=self._lone_verdict,
            alone=alone,
        )
        self.batcher.start()

    def _lone_verdict(self, kept: bool, gain: float) -> None:
        """After the batcher's trial (on the event loop): the lone runner kept, or closed."""
        if kept:
            log.info(
                "model %s: a lone request runs on %d threads (%.2f× the speed of one instance)",
                self.name,
                self.lone_threads,
                gain,
            )
            return
        log.info(
            "model %s: a lone request runs on the instance (%d threads were only %.2f× its speed: dropped)",
            self.name,
            self.lone_threads,
            gain,
        )
        self.lone.close()
        self.lone = None

    def alive(self) -> bool:
        return self.batcher is not None and self.batcher.alive()

    async def submit(self, x: np.ndarray, inline: bool = False, brief: bool = False) -> np.ndarray:
        return await self.batcher.submit(x, inline, brief)

    async def stop(self) -> None:
        """After the batches in progress; what is still queued fails (serve.engine.batcher)."""
        if self.batcher is not None:
            await self.batcher.stop()

    def close(self) -> None:
        for runner in [*self.runners, *([self.lone] if self.lone else [])]:
            runner.close()
        self.runners, self.lone = [], None
