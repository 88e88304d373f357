"""The parts of a model entry (prelu_deploy.manifest): tensor specs, the batch profile, provenance and
how a TensorRT plan was built. Plain values; only prelu_deploy.manifest reads or writes them."""

from dataclasses import dataclass, field


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
