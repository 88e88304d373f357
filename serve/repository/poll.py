"""--model-control poll (Triton's poll mode): every --poll-interval seconds each worker process looks at
the repository on its own and loads what appeared or changed — a new version folder, a rewritten
version, an edited version_policy — and unloads a model whose folder is gone.

Each change goes through the same gated load as the repository API (serve.repository.control): the new
version loads beside the one that serves and takes traffic only once its parity gate passed (what
Triton's poll mode does not: triton-inference-server/server#2076). What is read is one version whole —
export writes a model folder atomically and the loader reads a version beneath one descriptor, checking
every file against its manifest's sha256 — so a version still being written is never served (#356); a
copy that is not atomic fails those checks until it is complete, and then reads differently, so it is
loaded again. A version that failed is not retried until its files change, and does not stop a later
one from being picked up (#6534).

Every worker polls for itself rather than one polling for all (serve.repository.relay does that for the
API's loads): each sees the same folder, so all come to the same versions within one interval, and
none waits on another."""

import asyncio
import logging

from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.repository.loader import model_dirs
from prelu_deploy.serve.repository.versions import fingerprint

log = logging.getLogger("prelu_deploy.serve")


class Poller:
    def __init__(self, control, interval_s: float):
        self.control, self.interval_s = control, interval_s
        # nothing seen yet: the first look compares every model with what it serves (a load keeps the versions
        # unchanged on disk), so a version written while the server started is not missed
        self.seen: dict[str, tuple] = {}
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.once()
            except Exception:  # a bug of ours must not stop the server from following its repository
                log.exception("polling the model repository failed; trying again in %g s", self.interval_s)

    async def once(self) -> None:
        repo, control = self.control.settings.repo, self.control
        on_disk = await asyncio.to_thread(lambda: {name: fingerprint(repo / name) for name in model_dirs(repo)})
        for name, seen in on_disk.items():
            if self.seen.get(name) == seen:
                continue
            self.seen[name] = seen  # tried once per change: a version that failed waits for its files to change
            async with control.lock(name):
                try:
                    await control.load_here(name)
                except ApiError as err:  # a version that failed its gate was logged as NOT ready by the load
                    log.info("model %s: a change in the repository was not taken: %s", name, err.message)
        for name in sorted(set(self.seen) - set(on_disk)):
            del self.seen[name]
            async with control.lock(name):
                if name in control.models:
                    control.unload_here(name, f"model {name!r} was removed from the repository")
