"""The parts of a model entry (prelu_deploy.manifest): tensor specs, the batch profile, provenance and
how a TensorRT plan was built — plain values — and the typed reads of the manifest's fields. Only
prelu_deploy.manifest reads or writes them."""

from dataclasses import dataclass, field
from pathlib import Path

from prelu_deploy.errors import ModelDirError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for the batch dimension
    datatype: str = "FP32"  # Open Inference Protocol name

    @property
    def dims(self) -> list[int]:
        """The shape without the batch dimension."""
        return list(self.shape[1:])


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes a runner accepts: TensorRT's optimisation profile, or 1..max_batch_size."""

    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class Source:
    """Provenance: the checkpoint the entry was exported from."""

    checkpoint: str
    sha256: str
    arch: str
    kwargs: dict = field(default_factory=dict)
    metrics: dict | None = None

    @property
    def dataset(self) -> str | None:
        return (self.metrics or {}).get("dataset")


@dataclass(frozen=True)
class TensorRT:
    """How a plan was built (the `tensorrt` section of a plan entry)."""

    flavour: str  # tensorrt | tensorrt_rtx
    version: str
    precision: str
    profile: BatchProfile
    target_compute_capabilities: list[str]
    fp16_conversion: str | None = None
    workspace_mb: int | None = None
    timing_cache: str | None = None
    timing_cache_written: bool = False
    build_seconds: float | None = None
    network_layers: list[dict] = field(default_factory=list)
    plugin: dict | None = None  # {"name", "version", "namespace", "path"} for the plugin lowering
    tf32: bool = False  # whether the builder was allowed TF32 (never for fp32)

    @property
    def plugin_path(self) -> str | None:
        """How the ChannelSharedPReLU node was built: a registered plugin or the ONNX function body."""
        return self.plugin["path"] if self.plugin else None

    @property
    def uses_registered_plugin(self) -> bool:
        return (self.plugin_path or "").startswith("registered")


class FieldReader:
    """Typed reads of the manifest's fields; a wrong or missing one is a ModelDirError that names it."""

    def __init__(self, where: Path):
        self.where = where

    def get(self, d, key: str, kind, path: str, optional: bool = False):
        if not isinstance(d, dict):
            raise ModelDirError(f"{self.where}: manifest field {path.rpartition('.')[0] or 'top level'} must be an object")
        value = d.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            state = "is missing" if key not in d else f"is {type(value).__name__}, not {kind.__name__}"
            raise ModelDirError(f"{self.where}: manifest field {path!r} {state}")
        return value

    def tensor(self, d, key: str) -> TensorSpec:
        t = self.get(d, key, dict, key)
        shape = self.get(t, "shape", list, f"{key}.shape")
        if len(shape) < 2 or shape[0] != -1 or not all(isinstance(s, int) and s > 0 for s in shape[1:]):
            raise ModelDirError(f"{self.where}: manifest field '{key}.shape' must be [-1, positive dims…], not {shape}")
        return TensorSpec(self.get(t, "name", str, f"{key}.name"), tuple(shape), self.get(t, "datatype", str, f"{key}.datatype"))

    def profile(self, d, path: str) -> BatchProfile:
        p = BatchProfile(*(self.get(d, k, int, f"{path}.{k}") for k in ("min", "opt", "max")))
        if not 1 <= p.min <= p.opt <= p.max:
            raise ModelDirError(f"{self.where}: manifest field {path!r} must satisfy 1 ≤ min ≤ opt ≤ max, not {p}")
        return p
