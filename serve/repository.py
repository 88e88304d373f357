"""The model repository loader with its parity gate: a model is served only when its artifacts match
the manifest's sha256 and its runner reproduces the manifest's golden PyTorch logits."""

import logging
from dataclasses import dataclass
from pathlib import Path

from prelu_deploy.errors import PreluDeployError
from prelu_deploy.manifest import MANIFEST, ModelDir, read_model_dir
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.serve.batching import DynamicBatcher
from prelu_deploy.runners.parity import compare
from prelu_deploy.runners.runner import Runner, get_runner
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")


@dataclass
class ServedModel:
    name: str
    path: Path
    backend: str
    model_dir: ModelDir | None = None
    runner: Runner | None = None
    batcher: DynamicBatcher | None = None
    preprocess: Preprocess | None = None
    reason: str | None = None  # why it is not ready
    parity: dict | None = None  # the gate's numbers

    @property
    def ready(self) -> bool:
        return self.reason is None


def load_model(path: Path, settings: Settings) -> ServedModel:
    served = ServedModel(path.name, path, settings.backend)
    try:
        md = served.model_dir = read_model_dir(path)
        served.name = md.name
        if served.backend == "auto":  # a plan entry runs on TensorRT, an ONNX entry on ONNX Runtime
            served.backend = "tensorrt" if "tensorrt" in md.manifest else "onnxruntime"
        if problems := md.verify():
            served.reason = "; ".join(problems)
            return served
        served.runner = get_runner(served.backend, path, threads=settings.threads)
        served.preprocess = Preprocess.from_dict(md.manifest["preprocess"])
        golden = md.golden()
        report = compare(served.runner.run(golden["inputs"]), golden["logits"], golden["logits_fp64"],
                         precision=served.runner.precision)
        served.parity = {k: report[k] for k in ("max_abs", "logit_scale", "min_cosine", "top1_agreement", "passed")}
        if not report["passed"]:
            served.reason = "parity gate: golden outputs disagree with PyTorch: " + "; ".join(report["failures"])
    except (PreluDeployError, ImportError, RuntimeError, ValueError, OSError, KeyError) as err:
        served.reason = f"cannot load: {err}"  # one broken model must not stop the others from serving
    return served


def load_repository(repo: Path, settings: Settings) -> dict[str, ServedModel]:
    """Every model directory under `repo` (a folder holding manifest.json), ready or with its reason."""
    if not repo.is_dir():
        raise PreluDeployError(f"{repo}: no such model repository (make one with `prelu-deploy export`)")
    models = {}
    for path in sorted(p for p in repo.iterdir() if (p / MANIFEST).is_file()):
        served = load_model(path, settings)
        models[served.name] = served
        if served.ready:
            log.info("model %s: ready on %s (parity gate max abs %.2g of logit scale %.3g)", served.name,
                     served.backend, served.parity["max_abs"], served.parity["logit_scale"])
        else:
            log.warning("model %s: NOT ready: %s", served.name, served.reason)
    if not models:
        log.warning("%s holds no model directories", repo)
    return models
