"""The model repository at run time (Triton's model-repository extension): the index, load and unload,
under --model-control none (the default: what the repository holds at start is served; load and unload
are refused) or explicit (only what --load-model names at start, then what the API loads).

A load reads the model directory and runs the same parity gate as a start, off the event loop; the new
version takes traffic only once it passed — until then the version before keeps serving — and a version
that fails never takes traffic: the index shows it UNAVAILABLE with the reason, and the version before,
if any, stays. A version replaced or unloaded is retired once the requests that hold it are answered
(`held`: taken where a request finds its model, before any await), then its batcher stops and its
runners close. Under several worker processes a load or unload reaches every worker (serve.repository.relay)."""

import asyncio
import logging
import re

from prelu_deploy.atomic import clean_leftovers
from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import MANIFEST
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.repository.loader import ServedModel, load_model, load_repository, pinned_versions

log = logging.getLogger("prelu_deploy.serve")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MODES = ("none", "explicit")


class Refused(ApiError):
    """What the server's state forbids: 400 over HTTP, FAILED_PRECONDITION over gRPC."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, message: str):
        super().__init__(400, message)


class ModelTable(dict):
    """name → ServedModel, and `gone`: name → why a model that was served is not any more (a 404 says it)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.gone: dict[str, str] = {}


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
    if served.batcher is not None:
        await served.batcher.stop()
    served.close()


def options(mode: str, load: list[str], ray: bool, repo=None) -> dict:
    """The settings of --model-control and --load-model, or UsageError (exit 2); with `repo`, each
    --load-model must be a model directory in it."""
    if mode == "poll":
        raise UsageError("--model-control poll: not in this version; choose none or explicit")
    if mode not in MODES:
        raise UsageError(f"--model-control {mode!r}: choose none or explicit")
    if load and mode != "explicit":
        raise UsageError("--load-model: only with --model-control explicit (none loads every model of the repository)")
    if mode == "explicit" and ray:
        raise UsageError("--model-control explicit: not with --ray (each replica is given the repository at start)")
    if bad := [name for name in load if not NAME.fullmatch(name)]:
        raise UsageError(f"--load-model {bad[0]!r}: not a model name")
    if repo is not None and (missing := [name for name in load if name not in model_dirs(repo)]):
        raise UsageError(f"--load-model {missing[0]!r}: no model directory of that name in {repo} (it holds: "
                         f"{', '.join(model_dirs(repo)) or 'none'})")
    return {"model_control": mode, "load_models": list(dict.fromkeys(load))}


def model_dirs(repo) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())


def unloaded(name: str) -> str:
    return f"model {name!r} was unloaded (POST /v2/repository/models/{name}/unload); load it to serve it again"


def initial_models(settings) -> ModelTable:
    """What a worker serves at start: the whole repository (none), or --load-model's models and the loads
    and unloads the other workers shared since (explicit; serve.repository.relay)."""
    if settings.model_control != "explicit":
        return ModelTable(load_repository(settings.repo, settings))
    for note in clean_leftovers(settings.repo):
        log.warning("%s: %s (left by a writer that was killed)", settings.repo, note)
    pins = pinned_versions(settings.repo) or {}
    wanted, table = {name: pins.get(name) for name in settings.load_models}, ModelTable()
    if settings.control_dir:
        from prelu_deploy.serve.repository.relay import shared_state

        table.started_from = shared_state(settings.control_dir)  # serve.repository.relay goes on from here
        for name, change in sorted(table.started_from["models"].items(), key=lambda i: i[1]["generation"]):
            if change["action"] == "load":
                wanted[name] = change["version"]
            else:
                wanted.pop(name, None)
                table.gone[name] = unloaded(name)
    for name, pin in wanted.items():
        served = table[name] = load_model(settings.repo / name, settings, pin)
        if served.ready:
            log.info("model %s: ready on %s ×%d", name, served.backend, len(served.runners))
        else:
            log.warning("model %s: NOT ready: %s", name, served.detail)
    return table


class ModelControl:
    def __init__(self, app):
        self.app, self.settings = app, app.state.settings
        self.loading: set[str] = set()
        self.refused: dict[str, str] = {}  # name → why its newest version takes no traffic (another one serves)
        self.locks: dict[str, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task] = set()
        self.relay = None
        if self.settings.control_dir and self.settings.model_control == "explicit":
            from prelu_deploy.serve.repository.relay import Relay

            self.relay = Relay(self, self.settings.control_dir, self.settings.workers)

    @property
    def models(self) -> ModelTable:
        return self.app.state.models

    def index(self, ready_only: bool = False) -> list[dict]:
        """One row per model of the repository (and per version refused beside the one that serves)."""
        rows = []
        for name in sorted(set(model_dirs(self.settings.repo)) | set(self.models) | set(self.models.gone)):
            if (served := self.models.get(name)) is not None:
                rows.append({"name": name, "version": "1", "state": "READY" if served.ready else "UNAVAILABLE",
                             **({"reason": served.reason} if served.reason else {})})
            if name in self.loading:
                rows.append({"name": name, "version": "1", "state": "LOADING"})
            if name in self.refused:
                rows.append({"name": name, "version": "1", "state": "UNAVAILABLE", "reason": self.refused[name]})
            elif served is None and name not in self.loading:
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": self.models.gone.get(name, "not loaded")})
        return [r for r in rows if r["state"] == "READY"] if ready_only else rows

    def check(self, name: str) -> None:
        if self.settings.model_control != "explicit":
            raise Refused("load and unload are refused: --model-control none (the default) serves what the repository "
                          "held at start; start the server with --model-control explicit to load and unload models")
        if not NAME.fullmatch(name):
            raise ApiError(400, f"{name!r} is not a model name (letters, digits, '_', '.', '-'; not hidden)")

    def _lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> dict:
        """Load (or reload: its newest version) `name`, on every worker; its index row once it serves."""
        self.check(name)
        async with self._lock(name):
            served = await self.load_here(name)
            shared = self.relay and await self.relay.record("load", name, served.entry.version)
        if shared:
            await self.relay.confirm("load", name, shared)
        return {"name": name, "version": "1", "state": "READY"}

    async def unload(self, name: str) -> dict:
        self.check(name)
        async with self._lock(name):
            self.unload_here(name)
            shared = self.relay and await self.relay.record("unload", name, None)
        if shared:
            await self.relay.confirm("unload", name, shared)
        return {"name": name, "state": "UNAVAILABLE", "reason": self.models.gone[name]}

    async def load_here(self, name: str, pin: str | None = None) -> ServedModel:
        """`name` loaded in this worker (`pin`: only that manifest sha256) and swapped in once its gate passed."""
        if name not in (on_disk := model_dirs(self.settings.repo)):
            raise ApiError(404, f"no model directory {name!r} in the repository; it holds: {', '.join(on_disk) or 'none'}")
        self.loading.add(name)
        try:
            served = await asyncio.to_thread(load_model, self.settings.repo / name, self.settings, pin)
        finally:
            self.loading.discard(name)
        old = self.models.get(name)
        self.app.state.metrics.loads.labels(name, "serving" if served.ready and served.name == name else "refused").inc()
        if served.ready and served.name != name:
            served.close()
            raise Refused(f"the manifest in {name}/ names the model {served.name!r}: a model is loaded by its name")
        if not served.ready and old is not None and old.ready:
            log.warning("model %s: a new version failed to load and takes no traffic: %s", name, served.detail)
            self.refused[name] = f"a new version failed to load: {served.reason}; the version loaded before keeps serving"
            raise Refused(f"failed to load {name!r}: {served.reason}; the version loaded before keeps serving")
        if served.ready:
            self.app.state.start_batcher(served)
        self.models[name] = served
        self.models.gone.pop(name, None)
        self.refused.pop(name, None)
        if old is not None:
            self._retire(old)
        if not served.ready:
            log.warning("model %s: NOT ready: %s", name, served.detail)
            raise Refused(f"failed to load {name!r}: {served.reason}; it is not served")
        log.info("model %s: loaded and serving (manifest sha256 %s; parity gate max abs %.2g)", name,
                 served.entry.version[:12], served.parity["max_abs"])
        return served

    def unload_here(self, name: str) -> None:
        old = self.models.pop(name, None)
        if old is None and name not in self.models.gone and name not in model_dirs(self.settings.repo):
            raise ApiError(404, f"unknown model {name!r}")
        self.models.gone[name] = unloaded(name)
        self.refused.pop(name, None)
        if old is not None:
            log.info("model %s: unloaded; requests already accepted finish on it", name)
            self._retire(old)

    def _retire(self, served: ServedModel) -> None:
        task = asyncio.create_task(retire(served, self.settings.shutdown_timeout_s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        if self.relay is not None:
            await self.relay.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        await asyncio.gather(*self.tasks)
