"""Which requests still use a served version: a version swapped out or unloaded (serve.repository.control)
is retired — its batcher stopped, its runners closed — only once the requests holding it are answered.
Apart from the control because the routes take a hold on every request, and need nothing else of it."""

import asyncio
import logging

from prelu_deploy.serve.repository.loader import ServedModel

log = logging.getLogger("prelu_deploy.serve")

_HOLDS: dict[int, int] = {}  # id(ServedModel) → requests holding it
_DRAINED: dict[int, asyncio.Event] = {}  # set once a retiring version's last request let it go


class held:
    """`with held(served):` around all a request does with its model after finding it — entered with no
    await in between, so that a version swapped out can tell when nothing uses it any more."""

    __slots__ = ("key",)

    def __init__(self, served: ServedModel):
        self.key = id(served)

    def __enter__(self):
        _HOLDS[self.key] = _HOLDS.get(self.key, 0) + 1

    def __exit__(self, *exc) -> None:
        left = _HOLDS.pop(self.key) - 1
        if left:
            _HOLDS[self.key] = left
        elif self.key in _DRAINED:
            _DRAINED.pop(self.key).set()


async def retire(served: ServedModel, timeout_s: float) -> None:
    """After the requests holding `served` are answered (at most `timeout_s`): its batcher stopped, runners closed."""
    if _HOLDS.get(id(served)):
        drained = _DRAINED.setdefault(id(served), asyncio.Event())
        try:
            await asyncio.wait_for(drained.wait(), timeout_s)
        except TimeoutError:
            log.warning("model %s: requests still held the retired version after %g s; stopping it", served.name, timeout_s)
        _DRAINED.pop(id(served), None)
    if served.engine is not None:
        await served.engine.stop()
    served.close()
