"""The model repository loader with its parity gate: a model is served only when its artifacts match
the manifest's sha256 and every runner instance reproduces the entry's golden PyTorch logits."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from prelu_deploy.atomic import clean_leftovers
from prelu_deploy.errors import PreluDeployError
from prelu_deploy.manifest import MANIFEST, ModelEntry, read_entry
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.runners.parity import compare, judged
from prelu_deploy.runners.runner import Runner, default_backend, get_runner, run_batched
from prelu_deploy.serve.batching import DynamicBatcher
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")


@dataclass
class ServedModel:
    name: str
    path: Path
    backend: str
    entry: ModelEntry | None = None
    runners: list[Runner] = field(default_factory=list)  # one per instance: none is shared between threads
    lone_runner: Runner | None = None  # more threads, for a request alone on the server (run inline; serve.batching)
    batcher: DynamicBatcher | None = None
    preprocess: Preprocess | None = None
    reason: str | None = None  # why it is not ready
    parity: dict | None = None  # the gate's numbers
    max_batch: int = 32  # rows in one runner call: --max-batch-size within what the entry accepts
    no_classify: str | None = None  # why /classify cannot take images (tensors still work)

    @property
    def ready(self) -> bool:
        return self.reason is None

    def close(self) -> None:
        for runner in self.runners:
            runner.close()
        if self.lone_runner:
            self.lone_runner.close()
        self.runners, self.lone_runner = [], None


def _gate(served: ServedModel, runner: Runner) -> None:
    """The golden inputs through `runner` (in batches it accepts) against PyTorch's logits."""
    golden, rows = served.entry.golden_io(), judged(served.entry.golden_real(), runner.precision)
    report = compare(run_batched(runner, golden["inputs"][rows]), golden["logits"][rows], golden["logits_fp64"][rows],
                     precision=runner.precision)
    served.parity = {k: report[k] for k in ("max_abs", "logit_scale", "min_cosine", "top1_agreement", "passed")}
    if not report["passed"]:
        served.reason = "parity gate: golden outputs disagree with PyTorch: " + "; ".join(report["failures"])


def load_model(path: Path, settings: Settings) -> ServedModel:
    served = ServedModel(path.name, path, settings.backend)
    try:
        entry = served.entry = read_entry(path)
        served.name = entry.name
        served.max_batch = min(settings.max_batch_size, entry.profile.max)
        if served.backend == "auto":
            served.backend = default_backend(entry)
        if problems := entry.verify():
            served.reason = "; ".join(problems)
            return served
        try:  # without usable preprocessing a model still serves tensors; only /classify is refused
            served.preprocess = Preprocess.from_dict(entry.preprocess or {})
        except ValueError as err:
            served.no_classify = f"its preprocessing record is unusable ({err})" if entry.preprocess else \
                "it has no preprocessing record (exported before records were kept); re-export it"
        for _ in range(settings.instances):
            served.runners.append(get_runner(served.backend, entry, settings.device, threads=settings.threads))
            _gate(served, served.runners[-1])
            if not served.ready:
                break
        if served.ready and settings.lone_threads and served.backend == "onnxruntime" and settings.device == "cpu":
            served.lone_runner = get_runner(served.backend, entry, settings.device, threads=settings.lone_threads)
            _gate(served, served.lone_runner)
    except (PreluDeployError, ImportError, RuntimeError, ValueError, OSError, KeyError, TypeError) as err:
        served.reason = f"cannot load: {err}"  # one broken model must not stop the others from serving
    if not served.ready:
        served.close()
    return served


def load_repository(repo: Path, settings: Settings) -> dict[str, ServedModel]:
    """Every model directory under `repo` (a folder holding manifest.json), ready or with its reason."""
    if not repo.is_dir():
        raise PreluDeployError(f"{repo}: no such model repository (make one with `prelu-deploy export`)")
    log.info("runner instances per model: %d; threads per instance: %s; --max-batch-size %d; --max-queue-delay-ms %g",
             settings.instances, settings.threads or "the runtime's default", settings.max_batch_size,
             settings.max_queue_delay_ms)
    for note in clean_leftovers(repo):  # what a killed export/build left: restored or removed
        log.warning("%s: %s (left by a writer that was killed)", repo, note)
    models: dict[str, ServedModel] = {}
    # hidden folders are staging or backup copies of a writer, never models
    for path in sorted(p for p in repo.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()):
        served = load_model(path, settings)
        if served.name in models:
            log.error("%s: model name %r is already served from %s; this entry is NOT served (rename it in its "
                      "manifest, or remove one)", path, served.name, models[served.name].path)
            served.close()
            continue
        models[served.name] = served
        if served.ready:
            log.info("model %s: ready on %s ×%d%s (parity gate max abs %.2g of logit scale %.3g)", served.name,
                     served.backend, len(served.runners),
                     f" + a lone-request runner on {settings.lone_threads} threads, on trial" if served.lone_runner else "",
                     served.parity["max_abs"], served.parity["logit_scale"])
        else:
            log.warning("model %s: NOT ready: %s", served.name, served.reason)
    if not models:
        log.warning("%s holds no model directories", repo)
    return models
