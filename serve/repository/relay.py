"""Loads and unloads reach every worker process (--model-control explicit under --workers N > 1).

The worker a request reaches does the change itself first — a load runs its parity gate there, and
nothing is shared when it fails — then records it in a folder the parent made for the server's life
(`state.json`: a generation number, and per model its last change: load of which manifest sha256, or
unload), under an flock, written atomically. Every worker checks that file's stamp every POLL_S and
applies what it has not applied, in generation order: a load pinned to the recorded version (the same
gate; a directory changed in between is refused, not served beside the other workers' version), an
unload. Each then writes its acknowledgement (`ack-PID.json`: the generation applied, the changes it
could not make), and the first worker answers its client once every live worker has acknowledged, or
says which did not. A worker started later (the replacement of one that died) starts from the file."""

import asyncio
import fcntl
import json
import logging
import os
import time
from pathlib import Path

from prelu_deploy.serve.errors import ApiError

log = logging.getLogger("prelu_deploy.serve")
STATE, LOCK = "state.json", "lock"
POLL_S = 0.1
EMPTY = {"generation": 0, "models": {}}


def shared_state(directory) -> dict:
    try:
        return json.loads((Path(directory) / STATE).read_text())
    except FileNotFoundError:
        return EMPTY


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Relay:
    def __init__(self, control, directory: str, workers: int):
        self.control, self.dir, self.workers = control, Path(directory), workers
        started = getattr(control.models, "started_from", None) or shared_state(self.dir)  # what initial_models read
        self.applied = started["generation"]
        self.seen: dict[str, int] = {name: c["generation"] for name, c in started["models"].items()}
        self.failed: dict[str, str] = {}  # generation → why this worker could not apply it
        self.stamp = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self._ack()
        self.task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def _write(self, action: str, name: str, version: str | None) -> int:
        with open(self.dir / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = shared_state(self.dir)
            generation = state["generation"] + 1
            state = {
                "generation": generation,
                "models": {**state["models"], name: {"action": action, "version": version, "generation": generation}},
            }
            tmp = self.dir / f".{STATE}.{os.getpid()}"
            tmp.write_text(json.dumps(state))
            self.seen[name] = generation  # before the file shows it: this worker's poller must not apply it again
            os.replace(tmp, self.dir / STATE)
        return generation

    async def record(self, action: str, name: str, version: str | None) -> int:
        """Record a change this worker made (under the model's lock); its generation, for confirm()."""
        return await asyncio.to_thread(self._write, action, name, version)

    async def confirm(self, action: str, name: str, generation: int) -> None:
        """Wait until every worker has applied the change (outside the model's lock: a worker applying
        another's change to the same model takes it)."""
        wait_s = max(120.0, self.control.settings.shutdown_timeout_s)  # the others run the parity gate too
        deadline = time.monotonic() + wait_s
        while True:
            acks = self._acks()
            done = {pid: a for pid, a in acks.items() if a["generation"] >= generation}
            if failed := {pid: a["failed"][str(generation)] for pid, a in done.items() if str(generation) in a["failed"]}:
                raise ApiError(
                    500,
                    f"{action} of {name!r} took effect in this worker, but not in worker process "
                    + "; ".join(f"{pid}: {why}" for pid, why in failed.items()),
                )
            if len(done) >= self.workers:
                return
            if time.monotonic() > deadline:
                raise ApiError(
                    504,
                    f"{action} of {name!r}: {len(done)} of {self.workers} worker processes applied it "
                    f"within {wait_s:g} s; the others are still at it, or stuck",
                )
            await asyncio.sleep(POLL_S / 2)

    def _acks(self) -> dict[int, dict]:
        acks = {}
        for path in self.dir.glob("ack-*.json"):
            pid = int(path.stem.removeprefix("ack-"))
            if pid == os.getpid() or _alive(pid):
                try:
                    acks[pid] = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
            else:
                path.unlink(missing_ok=True)  # a worker that died: its replacement acknowledges for itself
        return acks

    def _ack(self) -> None:
        tmp = self.dir / f".ack-{os.getpid()}.json"
        tmp.write_text(json.dumps({"generation": max(self.applied, max(self.seen.values(), default=0)), "failed": self.failed}))
        os.replace(tmp, self.dir / f"ack-{os.getpid()}.json")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self._catch_up()
            except Exception:  # a bug of ours must not stop this worker from following the others
                log.exception("following the other workers' loads and unloads failed; trying again")
                self.stamp = None

    async def _catch_up(self) -> None:
        try:
            stat = os.stat(self.dir / STATE)
        except FileNotFoundError:
            return
        if (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self.stamp:
            return
        self.stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        state = shared_state(self.dir)
        for name, change in sorted(state["models"].items(), key=lambda item: item[1]["generation"]):
            if change["generation"] > self.seen.get(name, 0):
                await self._apply(name, change)
        self.applied = state["generation"]
        self._ack()

    async def _apply(self, name: str, change: dict) -> None:
        async with self.control.lock(name):
            if change["generation"] <= self.seen.get(name, 0):  # this worker made it (record) meanwhile
                return
            try:
                if change["action"] == "load":
                    await self.control.load_here(name, change["version"])
                else:
                    self.control.unload_here(name)
            except ApiError as err:
                log.warning(
                    "model %s: the %s another worker made could not be applied here: %s", name, change["action"], err.message
                )
                self.failed[str(change["generation"])] = err.message
            self.seen[name] = change["generation"]
