"""The model repository loader with its parity gate: a version of a model is served only when its
artifacts match its manifest's sha256 and every runner instance reproduces the entry's golden PyTorch
logits. Of each model, the versions its config.pbtxt's version_policy names are loaded, each gated
on its own (serve.repository.versions).

Each version is loaded from one snapshot of its directory (manifest.load_entry): the runners get the
bytes that were hashed, so a load that races an export's swap serves one version whole. Under several
worker processes the supervisor pins each version (its manifest's sha256) when it starts and at each
SIGHUP; a worker started in between — the replacement of one that died — refuses a version other than
the pinned one (not ready, saying why) rather than serve a second one beside it. Under
--model-control poll nothing is pinned: every worker follows the repository (serve.repository.poll).

A reason that is not ready is shown to unauthenticated callers: relative to the repository, no
absolute path; the log keeps the full text."""

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from prelu_deploy.atomic import clean_leftovers
from prelu_deploy.errors import ModelDirError, PreluDeployError
from prelu_deploy.manifest import ModelEntry, load_entry
from prelu_deploy.versions import is_model_folder
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.runners.registry import BACKENDS, default_backend, get_runner
from prelu_deploy.runners.runner import Runner, run_batched
from prelu_deploy.serve.engine.model import Engine
from prelu_deploy.serve.repository.versions import ModelTable, manifest_shas, pin_key, pins_of, selected
from prelu_deploy.serve.settings import Settings
from prelu_deploy.tolerances import judge, judged_rows

log = logging.getLogger("prelu_deploy.serve")
PINS_ENV = "PRELU_DEPLOY_SERVE_PINS"  # {"repo": path, "versions": {folder: manifest sha256}}: set by the supervisor


@dataclass
class ServedModel:
    name: str
    path: Path
    backend: str
    entry: ModelEntry | None = None
    engine: Engine | None = None  # its runners, lone-request runner and batcher (serve.engine.model)
    preprocess: Preprocess | None = None
    reason: str | None = None  # why it is not ready, as callers see it (no absolute path)
    detail: str | None = None  # the full reason, for the log
    parity: dict | None = None  # the gate's numbers
    max_batch: int = 32  # rows in one runner call: --max-batch-size within what the entry accepts
    no_classify: str | None = None  # why /classify cannot take images (tensors still work)
    number: int = 1  # which version of the model (prelu_deploy.versions)

    @property
    def ready(self) -> bool:
        return self.reason is None

    @property
    def runners(self) -> list[Runner]:
        return self.engine.runners if self.engine else []

    def close(self) -> None:
        if self.engine:
            self.engine.close()


def _gate(served: ServedModel, runner: Runner) -> None:
    """The golden inputs through `runner` (in batches it accepts) against PyTorch's logits."""
    golden, rows = served.entry.golden_io(), judged_rows(served.entry.golden_real(), runner.precision)
    report = judge(
        run_batched(runner, golden["inputs"][rows]),
        golden["logits"][rows],
        golden["logits_fp64"][rows],
        precision=runner.precision,
    )
    served.parity = {k: report[k] for k in ("max_abs", "logit_scale", "min_cosine", "top1_agreement", "passed")}
    if not report["passed"]:
        served.reason = "parity gate: golden outputs disagree with PyTorch: " + "; ".join(report["failures"])


def load_model(path: Path, settings: Settings, pinned: str | None = None, number: int | None = None) -> ServedModel:
    """Version `number` (None: the newest) of the model at `path`, ready or with its reason; `pinned`: the
    only manifest (its sha256) to serve of it."""
    served = ServedModel(path.name, path, settings.backend, number=number or 1)
    try:
        entry = served.entry = load_entry(path, number)
        served.number = entry.number
        served.name = entry.name
        served.max_batch = min(settings.max_batch_size, entry.profile.max)
        if served.backend == "auto":
            served.backend = default_backend(entry)
        if pinned is not None and entry.version != pinned:  # another version than the other workers': not shown
            served.entry = None
            served.reason = (
                f"{pin_key(path.name, served.number)} changed on disk after the server started "
                f"(manifest sha256 {entry.version[:12]}; "
                f"the server's other workers were started on {pinned[:12] or 'none'}), so it is not served "
                "beside that version: reload the workers (SIGHUP) or restart the server to serve it"
            )
        elif problems := entry.verify():
            served.reason = "; ".join(problems)
        if served.reason:
            return _not_ready(served)
        try:  # without usable preprocessing a model still serves tensors; only /classify is refused
            served.preprocess = Preprocess.from_dict(entry.preprocess or {})
        except ValueError as err:
            served.no_classify = (
                f"its preprocessing record is unusable ({err})"
                if entry.preprocess
                else "it has no preprocessing record (exported before records were kept); re-export it"
            )
        engine = served.engine = Engine(served.name, served.max_batch)  # what opens from here, it closes
        for _ in range(settings.instances):
            engine.runners.append(get_runner(served.backend, entry, settings.device, threads=settings.threads))
            _gate(served, engine.runners[-1])
            if not served.ready:
                break
        # a lone request's own runner, where the CPU pool is the session's (torch's threads are process-wide)
        if served.ready and settings.lone_threads and settings.device == "cpu" and BACKENDS[served.backend].own_pool:
            engine.lone = get_runner(served.backend, entry, settings.device, threads=settings.lone_threads)
            _gate(served, engine.lone)
    except (PreluDeployError, ImportError, RuntimeError, ValueError, OSError, KeyError, TypeError) as err:
        served.reason = f"cannot load: {err}"  # one broken model must not stop the others from serving
    return _not_ready(served) if not served.ready else served


def _not_ready(served: ServedModel) -> ServedModel:
    """Close what was opened; the reason kept in full for the log, and public for HTTP."""
    served.close()
    served.detail, served.reason = served.reason, public_reason(served.reason, served.path.parent)
    return served


_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"()\[\],;]+/)*([^\s/'\"()\[\],;]+)")


def public_reason(reason: str, repo: Path) -> str:
    """`reason` as an unauthenticated caller may read it: paths in the repository relative to it, any
    other absolute path cut to its last part (whether a file exists elsewhere is not theirs to learn)."""
    roots = {os.path.abspath(repo), os.path.realpath(repo), str(repo)} - {".", ""}
    for root in sorted(roots, key=len, reverse=True):
        reason = reason.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE.sub(lambda m: f"…/{m[1]}", reason)


def pin_versions(repo: Path | None = None) -> dict[str, str]:
    """The supervisor's pin (serve.workers.processes, at start and at SIGHUP): {folder: sha256 of its manifest.json}
    for every model directory of `repo` (by default the one pinned last), put in the environment that the
    worker processes it starts inherit. Leftovers of killed writers are cleaned first, as workers do."""
    repo = Path(repo or json.loads(os.environ[PINS_ENV])["repo"])
    for note in clean_leftovers(repo):
        log.warning("%s: %s (left by a writer that was killed)", repo, note)
    versions = {}
    for path in _model_dirs(repo):
        versions.update(manifest_shas(path))
    os.environ[PINS_ENV] = json.dumps({"repo": str(repo), "versions": versions})
    return versions


def pinned_versions(repo: Path) -> dict[str, str] | None:
    """The supervisor's pin for `repo` ({folder: manifest sha256}), or None: no pin, or one made for another
    repository (an environment inherited from elsewhere must not make this server refuse its models)."""
    if PINS_ENV not in os.environ:
        return None
    pin = json.loads(os.environ[PINS_ENV])
    return pin["versions"] if os.path.realpath(pin["repo"]) == os.path.realpath(repo) else None


def model_dirs(repo: Path) -> list[str]:
    """The model folders of `repo`: each holding a version (hidden ones are a writer's staging or backup copies)."""
    return [p.name for p in _model_dirs(repo)]


def _model_dirs(repo: Path) -> list[Path]:
    return sorted(p for p in repo.iterdir() if not p.name.startswith(".") and p.is_dir() and is_model_folder(p))


def load_versions(
    path: Path, settings: Settings, pins: dict[int, str] | None = None, numbers: list[int] | None = None
) -> dict[int, ServedModel]:
    """{number: ServedModel} of the model at `path`: the versions its version_policy names (or `numbers`),
    each through the parity gate; `pins`: {number: the only manifest sha256 to serve} (a version missing
    from it is not served). A folder whose versions cannot be chosen is one not-ready model saying why."""
    try:
        numbers = numbers or selected(path)
    except ModelDirError as err:
        return {1: _not_ready(ServedModel(path.name, path, settings.backend, reason=f"cannot load: {err}"))}
    return {n: load_model(path, settings, None if pins is None else pins.get(n, ""), n) for n in numbers}


def load_repository(repo: Path, settings: Settings) -> ModelTable:
    """Every model folder under `repo`, the versions its policy names, each ready or with its reason."""
    if not repo.is_dir():
        raise PreluDeployError(f"{repo}: no such model repository (make one with `prelu-deploy export`)")
    log.info(
        "runner instances per model: %d; threads per instance: %s; --max-batch-size %d; --max-queue-delay-ms %g",
        settings.instances,
        settings.threads or "the runtime's default",
        settings.max_batch_size,
        settings.max_queue_delay_ms,
    )
    for note in clean_leftovers(repo):  # what a killed export/build left: restored or removed
        log.warning("%s: %s (left by a writer that was killed)", repo, note)
    models = ModelTable()
    # several workers serve what the supervisor pinned; a poll follows the repository instead
    pins = None if settings.model_control == "poll" else pinned_versions(repo)
    for path in _model_dirs(repo):
        versions = load_versions(path, settings, pins_of(pins, path.name))
        name = versions[max(versions)].name
        if name in models:
            log.error(
                "%s: model name %r is already served from %s; this entry is NOT served (rename it in its "
                "manifest, or remove one)",
                path,
                name,
                models[name].path,
            )
            for served in versions.values():
                served.close()
            continue
        models.put(name, versions)
        for served in versions.values():
            log_loaded(served, settings)
    if not models:
        log.warning("%s holds no model directories", repo)
    return models


def log_loaded(served: ServedModel, settings: Settings) -> None:
    label = served.name if served.number == 1 else f"{served.name} version {served.number}"
    if served.ready:
        log.info(
            "model %s: ready on %s ×%d%s (parity gate max abs %.2g of logit scale %.3g)",
            label,
            served.backend,
            len(served.runners),
            f" + a lone-request runner on {settings.lone_threads} threads, on trial" if served.engine.lone else "",
            served.parity["max_abs"],
            served.parity["logit_scale"],
        )
    else:
        log.warning("model %s: NOT ready: %s", label, served.detail)
