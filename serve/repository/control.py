"""The model repository at run time (Triton's model-repository extension): the index, load and unload,
under --model-control none (the default: what the repository holds at start is served; load and unload
are refused), explicit (only what --load-model names at start, then what the API loads) or poll (what
the repository holds, followed as it changes: serve.repository.poll). Of each model, the versions its
config.pbtxt's version_policy names are served (serve.repository.versions); a load of a loaded model
loads the versions that are new or changed on disk, beside those that serve.

A load reads the model directory and runs the same parity gate as a start, off the event loop; the new
version takes traffic only once it passed — until then the version before keeps serving — and a version
that fails never takes traffic: the index shows it UNAVAILABLE with the reason, and the version before,
if any, stays. A version replaced or unloaded is retired once the requests that hold it are answered
(serve.repository.holds), then its batcher stops and its runners close. Under several worker processes
a load or unload reaches every worker (serve.repository.relay)."""

import asyncio
import logging
import re

from prelu_deploy.atomic import clean_leftovers
from prelu_deploy.errors import ModelDirError, UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.repository.loader import (
    ServedModel,
    load_repository,
    load_versions,
    log_loaded,
    model_dirs,
    pinned_versions,
)
from prelu_deploy.serve.repository.holds import retire
from prelu_deploy.serve.repository.versions import ModelTable, pins_of, selected

log = logging.getLogger("prelu_deploy.serve")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MODES = ("none", "explicit", "poll")


class Refused(ApiError):
    """What the server's state forbids: 400 over HTTP, FAILED_PRECONDITION over gRPC."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, message: str):
        super().__init__(400, message)


def options(mode: str, load: list[str], ray: bool, repo=None, poll_interval: float | None = None) -> dict:
    """The settings of --model-control, --load-model and --poll-interval, or UsageError (exit 2); with
    `repo`, each --load-model must be a model directory in it."""
    if mode not in MODES:
        raise UsageError(f"--model-control {mode!r}: choose none, explicit or poll")
    if load and mode != "explicit":
        raise UsageError(f"--load-model: only with --model-control explicit ({mode} loads every model of the repository)")
    if mode != "none" and ray:
        raise UsageError(f"--model-control {mode}: not with --ray (each replica is given the repository at start)")
    if poll_interval is not None and mode != "poll":
        raise UsageError("--poll-interval: only with --model-control poll")
    if poll_interval is not None and not poll_interval > 0:
        raise UsageError(f"--poll-interval {poll_interval:g}: seconds between two looks at the repository, more than 0")
    if bad := [name for name in load if not NAME.fullmatch(name)]:
        raise UsageError(f"--load-model {bad[0]!r}: not a model name")
    if repo is not None and (missing := [name for name in load if name not in model_dirs(repo)]):
        raise UsageError(
            f"--load-model {missing[0]!r}: no model directory of that name in {repo} (it holds: "
            f"{', '.join(model_dirs(repo)) or 'none'})"
        )
    return {
        "model_control": mode,
        "load_models": list(dict.fromkeys(load)),
        **({"poll_interval_s": poll_interval} if poll_interval is not None else {}),
    }


def unloaded(name: str) -> str:
    return f"model {name!r} was unloaded (POST /v2/repository/models/{name}/unload); load it to serve it again"


def initial_models(settings) -> ModelTable:
    """What a worker serves at start: the whole repository (none), or --load-model's models and the loads
    and unloads the other workers shared since (explicit; serve.repository.relay)."""
    if settings.model_control != "explicit":
        return load_repository(settings.repo, settings)
    for note in clean_leftovers(settings.repo):
        log.warning("%s: %s (left by a writer that was killed)", settings.repo, note)
    pins = pinned_versions(settings.repo)
    # name → (pins, the versions to load: None for those its policy names)
    wanted, table = {name: (pins_of(pins, name), None) for name in settings.load_models}, ModelTable()
    if settings.control_dir:
        from prelu_deploy.serve.repository.relay import shared_state

        table.started_from = shared_state(settings.control_dir)  # serve.repository.relay goes on from here
        for name, change in sorted(table.started_from["models"].items(), key=lambda i: i[1]["generation"]):
            if change["action"] == "load":
                wanted[name] = (pins := relayed(change["version"]), sorted(pins))
            else:
                wanted.pop(name, None)
                table.gone[name] = unloaded(name)
    for name, (pins, numbers) in wanted.items():
        table.put(name, versions := load_versions(settings.repo / name, settings, pins, numbers))
        for served in versions.values():
            log_loaded(served, settings)
    return table


def relayed(versions: dict[str, str]) -> dict[int, str]:
    """A load's versions as the relay carries them (JSON: {"2": manifest sha256}) → {2: sha256}."""
    return {int(number): sha for number, sha in versions.items()}


class ModelControl:
    def __init__(self, app):
        self.app, self.settings = app, app.state.settings
        self.loading: set[tuple[str, int]] = set()
        self.refused: dict[str, dict[int, str]] = {}  # name → {number: why its new copy takes no traffic (the old one serves)}
        self.locks: dict[str, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task] = set()
        self.relay = self.poller = None
        if self.settings.control_dir and self.settings.model_control == "explicit":
            from prelu_deploy.serve.repository.relay import Relay

            self.relay = Relay(self, self.settings.control_dir, self.settings.workers)
        if self.settings.model_control == "poll":
            from prelu_deploy.serve.repository.poll import Poller

            self.poller = Poller(self, self.settings.poll_interval_s)

    @property
    def models(self) -> ModelTable:
        return self.app.state.models

    def index(self, ready_only: bool = False) -> list[dict]:
        """One row per version of each model of the repository: READY, UNAVAILABLE with the reason, LOADING."""
        rows = []
        for name in sorted(set(model_dirs(self.settings.repo)) | set(self.models) | set(self.models.gone)):
            versions = self.models.versions.get(name, {})
            numbers = sorted({*versions, *self.refused.get(name, {}), *(n for m, n in self.loading if m == name)})
            for n in numbers:
                if (served := versions.get(n)) is not None:
                    rows.append(
                        {
                            "name": name,
                            "version": str(n),
                            "state": "READY" if served.ready else "UNAVAILABLE",
                            **({"reason": served.reason} if served.reason else {}),
                        }
                    )
                if (name, n) in self.loading:
                    rows.append({"name": name, "version": str(n), "state": "LOADING"})
                if n in self.refused.get(name, {}):
                    rows.append({"name": name, "version": str(n), "state": "UNAVAILABLE", "reason": self.refused[name][n]})
            if not numbers:
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": self.models.gone.get(name, "not loaded")})
        return [r for r in rows if r["state"] == "READY"] if ready_only else rows

    def check(self, name: str) -> None:
        if self.settings.model_control != "explicit":
            why = (
                "--model-control poll loads and unloads what the repository holds as it changes (each --poll-interval)"
                if self.settings.model_control == "poll"
                else "--model-control none (the default) serves what the repository held at start"
            )
            raise Refused(
                f"load and unload are refused: {why}; start the server with --model-control explicit to load and unload models"
            )
        if not NAME.fullmatch(name):
            raise ApiError(400, f"{name!r} is not a model name (letters, digits, '_', '.', '-'; not hidden)")

    def lock(self, name: str) -> asyncio.Lock:
        """The lock one model's loads and unloads take in turn (the API's, the relay's and the poll's)."""
        return self.locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> dict:
        """Load (or reload: the versions new or changed on disk) `name`, on every worker; its row once it serves."""
        self.check(name)
        async with self.lock(name):
            versions = await self.load_here(name)
            pins = {str(n): served.entry.version for n, served in versions.items() if served.ready}
            shared = self.relay and await self.relay.record("load", name, pins)
        if shared:
            await self.relay.confirm("load", name, shared)
        return {"name": name, "version": str(self.models[name].number), "state": "READY"}

    async def unload(self, name: str) -> dict:
        self.check(name)
        async with self.lock(name):
            self.unload_here(name)
            shared = self.relay and await self.relay.record("unload", name, None)
        if shared:
            await self.relay.confirm("unload", name, shared)
        return {"name": name, "state": "UNAVAILABLE", "reason": self.models.gone[name]}

    async def load_here(self, name: str, pins: dict | None = None) -> dict[int, ServedModel]:
        """The versions of `name` its policy names (`pins`: exactly these, {number: manifest sha256}) in this
        worker: those new or changed on disk loaded beside those that serve, each taking traffic once its gate
        passed; a version no longer named retired once one that is passed. Refused (400) when one failed."""
        path = self.settings.repo / name
        if name not in (on_disk := model_dirs(self.settings.repo)):
            raise ApiError(404, f"no model directory {name!r} in the repository; it holds: {', '.join(on_disk) or 'none'}")
        pins = relayed(pins) if pins else None
        try:
            numbers = sorted(pins) if pins else selected(path)
        except ModelDirError as err:
            raise Refused(f"failed to load {name!r}: {err}") from None
        current = self.models.versions.get(name, {})
        keep = {n: current[n] for n in numbers if n in current and current[n].ready and _unchanged(current[n])}
        todo = [n for n in numbers if n not in keep]
        self.loading.update((name, n) for n in todo)
        try:
            loaded = await asyncio.to_thread(load_versions, path, self.settings, pins, todo) if todo else {}
        finally:
            self.loading.difference_update((name, n) for n in todo)
        for served in loaded.values():
            self.app.state.metrics.loads.labels(name, "serving" if served.ready and served.name == name else "refused").inc()
        if misnamed := [s for s in loaded.values() if s.ready and s.name != name]:
            for served in loaded.values():
                served.close()
            raise Refused(f"the manifest in {name}/ names the model {misnamed[0].name!r}: a model is loaded by its name")
        new, refused = {**keep}, {}
        for n, served in loaded.items():
            if served.ready:
                self.app.state.start_batcher(served)
                new[n] = served
            elif n in current and current[n].ready:  # a changed copy of a version that serves: the old copy stays
                new[n], refused[n] = current[n], served
            else:
                new[n] = served  # shown UNAVAILABLE with its reason; never routed to
        if not any(s.ready for s in new.values()):  # nothing named passed: what served before keeps serving
            new.update({n: s for n, s in current.items() if s.ready and n not in new})
        self.models.put(name, new)
        self.refused[name] = {
            n: f"a new version failed to load: {s.reason}; the version loaded before keeps serving" for n, s in refused.items()
        }
        for served in current.values():
            if all(served is not s for s in new.values()):
                self._retire(served)
        failed = {n: s for n, s in loaded.items() if not s.ready}
        for n, served in loaded.items():
            log_loaded(served, self.settings)
        if failed:
            serving = any(s.ready for s in new.values())
            why = "; ".join(f"{'' if n == 1 else f'version {n}: '}{s.reason}" for n, s in failed.items())
            raise Refused(
                f"failed to load {name!r}: {why}"
                + ("; the version loaded before keeps serving" if serving else "; it is not served")
            )
        log.info("model %s: serving versions %s", name, ", ".join(str(n) for n, s in new.items() if s.ready))
        return new

    def unload_here(self, name: str, why: str | None = None) -> None:
        if name not in self.models and name not in self.models.gone and name not in model_dirs(self.settings.repo):
            raise ApiError(404, f"unknown model {name!r}")
        old = self.models.drop(name, why or unloaded(name))
        self.refused.pop(name, None)
        if old:
            log.info("model %s: unloaded; requests already accepted finish on it", name)
        for served in old.values():
            self._retire(served)

    def _retire(self, served: ServedModel) -> None:
        task = asyncio.create_task(retire(served, self.settings.shutdown_timeout_s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        for task in (self.relay, self.poller):
            if task is not None:
                await task.start()

    async def close(self) -> None:
        for task in (self.relay, self.poller):
            if task is not None:
                await task.stop()
        await asyncio.gather(*self.tasks)


def _unchanged(served: ServedModel) -> bool:
    """Whether the version on disk is still the one `served` was loaded from (its manifest's sha256)."""
    try:
        return read_entry(served.path, served.number).version == served.entry.version
    except ModelDirError:
        return False
