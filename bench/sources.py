"""Where a runner benchmark's candidates come from (bench.runners): the model directory given, or those
exported, quantized and built from it on demand. Apart from the measuring, which needs none of how a
model directory is made."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import ModelEntry, read_entry
from prelu_deploy.runners.registry import BACKENDS

if TYPE_CHECKING:
    from prelu_deploy.bench.runners import Candidate


class Sources:
    """The model directories the candidates need, made on demand: the one given is used where it
    fits; other lowerings are exported from its source checkpoint, TensorRT plans built from those."""

    def __init__(self, target: str, arch_kwargs: dict, seed: int, max_batch: int, workdir: Path):
        self.workdir, self.max_batch = workdir, max_batch
        self.given: ModelEntry | None = None
        if Path(target).is_dir():
            self.given = read_entry(target)
            self.checkpoint, self.name = self.given.checkpoint, self.given.source.arch
            if max_batch > self.given.profile.max:
                raise UsageError(
                    f"--batch {max_batch} is over {target}'s max batch size "
                    f"{self.given.profile.max} (export or build it with a larger --max-batch)"
                )
        else:
            self.checkpoint, self.name = self._from_architecture(target, arch_kwargs, seed), target
        self._onnx: dict[str, Path] = {}

    def _from_architecture(self, arch: str, kwargs: dict, seed: int) -> Path:
        try:
            import torch

            from prelu_deploy.models import create_model, list_models, save_checkpoint
        except ImportError:
            raise UsageError(
                f"{arch!r} is not a model directory; benchmarking an architecture needs pip install 'prelu-deploy[export]'"
            ) from None
        if arch not in list_models():
            raise UsageError(f"{arch!r} is neither a model directory nor an architecture ({', '.join(list_models())})")
        torch.manual_seed(seed)  # He-initialised weights: the speed of a trained model, not its accuracy
        return save_checkpoint(create_model(arch, **kwargs), self.workdir / f"{arch}.safetensors")

    @property
    def own_lowering(self) -> str:
        return self.given.lowering if self.given else "native"

    def onnx(self, lowering: str) -> Path:
        g = self.given
        if g and not g.is_plan and g.precision == "fp32" and g.lowering == lowering:
            return g.path
        if lowering not in self._onnx:
            from prelu_deploy.export.model_dir import export_model_dir

            if not self.checkpoint.is_file():
                raise UsageError(
                    f"the {lowering} lowering needs a re-export, but the source checkpoint {self.checkpoint} is gone"
                )
            self._onnx[lowering] = export_model_dir(
                self.checkpoint, self.name, self.workdir / lowering, mode=lowering, max_batch=self.max_batch
            )
        return self._onnx[lowering]

    def plan(self, lowering: str, precision: str) -> Path:
        g = self.given
        if g and g.is_plan and (g.lowering, g.precision) == (lowering, precision):
            return g.path
        from prelu_deploy.export.build import build_plan

        return build_plan(
            self.onnx(lowering),
            precision,
            max_batch=self.max_batch,
            dest=self.workdir / lowering / f"{self.name}_trt_{precision}",
        )

    def int8(self, lowering: str) -> Path:
        g = self.given
        if g and g.precision == "int8" and g.lowering == lowering:
            return g.path
        from prelu_deploy.export.quantize import quantize_entry

        fp32 = read_entry(self.onnx(lowering))  # calibrated on its golden inputs: real held-out images where known
        return quantize_entry(
            fp32.path, dest=self.workdir / lowering / f"{self.name}_int8", inputs=fp32.golden_io()["inputs"][fp32.golden_real()]
        )

    def model_dir(self, c: Candidate) -> Path:
        loads = BACKENDS[c.backend].loads
        if loads == "onnx":
            return self.int8(c.lowering) if c.precision == "int8" else self.onnx(c.lowering)
        if loads == "plan":
            return self.plan(c.lowering, c.precision)
        return self.given.path if self.given else self.onnx(self.own_lowering)  # the entry naming the source checkpoint
