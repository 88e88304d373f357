"""The model entry: one typed object for a model directory, read and written here and nowhere else,
torch-free, so export and build write it and the runners, parity, bench and the server read it
without any of them knowing the manifest's keys. Laid out as a Triton model repository entry:

    <repo>/<name>/config.pbtxt     Triton's model config
    <repo>/<name>/manifest.json    ours: labels, preprocessing, lowering, provenance, hashes
    <repo>/<name>/golden.npz       golden inputs and their PyTorch logits (float32 and float64)
    <repo>/<name>/1/model.onnx     (platform onnxruntime_onnx) or 1/model.plan (tensorrt_plan)
    <repo>/<name>/N/…              version N ≥ 2: its manifest, golden I/O and artifact (prelu_deploy.versions)

A malformed manifest is refused when read, with the field named (prelu_deploy.manifest_fields): among
them a name that is not export's (it chooses where `quantize` and `build` write) and a file outside the
directory. Files are read beneath one descriptor of the directory, no link followed (prelu_deploy.snapshot);
`load_entry` reads the manifest and every artifact so, as one version, even while an export replaces the folder.
"""

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from prelu_deploy.atomic import write_bytes
from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest_fields import LOWERINGS, entry_fields  # noqa: F401 (LOWERINGS re-exported)
from prelu_deploy.snapshot import ModelFiles, Unreadable, name_problem, path_problem, sha256_file  # noqa: F401 (re-exported)
from prelu_deploy.specs import BatchProfile, FieldReader, Source, TensorRT, TensorSpec  # noqa: F401 (re-exported)
from prelu_deploy.versions import CONFIG, GOLDEN, MANIFEST, VersionFiles, layout, version_files, version_numbers  # noqa: F401

FORMAT_VERSION = 1
ONNX, PLAN = version_files(1).onnx, version_files(1).plan  # version 1's (every single-version directory's)
PLATFORMS = {"onnxruntime_onnx": ONNX, "tensorrt_plan": PLAN}  # Triton's platform names → the artifact


@dataclass(frozen=True)
class ModelEntry:
    name: str
    platform: str  # onnxruntime_onnx | tensorrt_plan
    input: TensorSpec
    output: TensorSpec
    max_batch_size: int
    lowering: str
    prelu_layers: list[dict]
    source: Source
    preprocess: dict | None  # the checkpoint's preprocessing record (models.preprocess reads it)
    labels: list[str] | None = None
    preprocess_origin: str | None = None  # "checkpoint", or the architecture's defaults
    golden: dict = field(default_factory=dict)  # {"count", "sources", "negative_fraction"}
    versions: dict = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # relative path → sha256
    created: str | None = None
    opset: int | None = None
    flops_per_image: int | None = None
    onnx_source: str | None = None  # a plan entry: the ONNX graph it was built from
    tensorrt: TensorRT | None = None
    int8: dict | None = None  # a quantized entry: how it was calibrated and what it cost (export.quantize)
    path: Path = Path(".")  # the model folder it was read from (not stored)
    files: VersionFiles = version_files(1)  # which version of it, and where its files lie (not stored)
    version: str | None = None  # sha256 of manifest.json as read (not stored): which export this is
    blobs: dict = field(default_factory=dict, repr=False, compare=False)  # load_entry's: path → bytes or Unreadable

    @property
    def is_plan(self) -> bool:
        return self.platform == "tensorrt_plan"

    @property
    def number(self) -> int:
        """The version's number: from where the manifest was read."""
        return self.files.number

    @property
    def artifact_rel(self) -> str:
        """The model file a runner loads, relative to the model folder: 1/model.onnx, N/model.plan…"""
        return self.files.artifact(self.platform)

    @property
    def artifact(self) -> Path:
        return self.path / self.artifact_rel

    @property
    def golden_path(self) -> Path:
        return self.path / self.files.golden

    @property
    def precision(self) -> str:
        """The precision the artifact computes in: what parity tolerances apply."""
        return self.tensorrt.precision if self.tensorrt else "int8" if self.int8 else "fp32"

    @property
    def checkpoint(self) -> Path:
        """The source checkpoint; a relative path (a shipped entry) is relative to the entry's folder."""
        path = Path(self.source.checkpoint)
        return path if path.is_absolute() else (self.path / path).resolve()

    @property
    def shared_prelu_count(self) -> int:
        """Channel-shared PReLU layers (what the lowering rewrites), of len(prelu_layers)."""
        return sum(bool(layer.get("shared")) for layer in self.prelu_layers)

    @property
    def golden_count(self) -> int:
        return int(self.golden.get("count", 0))

    def golden_real(self) -> np.ndarray:
        """Which golden rows are real held-out images (the rest are crafted noise that drives every
        PReLU negative: out of any calibration range, so INT8 is judged on the real rows only)."""
        sources = self.golden.get("sources") or []
        real = np.array([s == "held-out" for s in sources], bool)
        return real if real.any() else np.ones(max(len(sources), self.golden_count), bool)

    @property
    def profile(self) -> BatchProfile:
        if self.tensorrt:
            return self.tensorrt.profile
        return BatchProfile(1, min(8, self.max_batch_size), self.max_batch_size)

    def file_bytes(self, rel: str) -> bytes:
        """`rel`'s bytes: from load_entry's snapshot, else read beneath the directory; Unreadable says why not."""
        if not self.blobs:
            with ModelFiles(self.path) as files:
                return files.read(rel)
        got = self.blobs.get(rel, Unreadable(rel, "was not read with the entry"))
        if isinstance(got, Unreadable):
            raise Unreadable(got.rel, got.why)
        return got

    def artifact_bytes(self) -> bytes:
        """The model file a runner loads, as bytes: of the version the manifest describes (load_entry)."""
        try:
            return self.file_bytes(self.artifact_rel)
        except Unreadable as err:
            raise ModelDirError(f"{self.path}: {err}") from None

    def golden_io(self) -> dict[str, np.ndarray]:
        """{"inputs", "logits", "logits_fp64"} as stored at export."""
        try:
            with np.load(io.BytesIO(self.file_bytes(self.files.golden))) as z:
                return {k: z[k] for k in ("inputs", "logits", "logits_fp64")}
        except (OSError, ValueError, KeyError, ModelDirError) as err:
            raise ModelDirError(f"{self.golden_path}: unreadable golden I/O ({err})") from None

    def verify(self) -> list[str]:
        """Problems with the artifacts: missing or refused files, sha256 that differ from the manifest."""
        problems = []
        for rel, expected in self.artifacts.items():
            if rel == CONFIG:  # older manifests hashed it; it is the model's, shared by its versions, and operators edit it
                continue
            try:
                if hashlib.sha256(self.file_bytes(rel)).hexdigest() != expected:
                    problems.append(f"{rel} sha256 differs from the manifest (file changed after export)")
            except Unreadable as err:
                problems.append(str(err))
        if self.artifact_rel not in self.artifacts:
            problems.append(f"the manifest lists no {self.artifact_rel} for platform {self.platform}")
        return problems

    def verified(self) -> "ModelEntry":
        """This entry, or ModelDirError naming every artifact that does not match."""
        if problems := self.verify():
            raise ModelDirError(f"{self.path}: " + "; ".join(problems))
        return self

    def write(self, folder: Path) -> "ModelEntry":
        """Hash this version's artifact and golden I/O in model folder `folder` and write its manifest there (atomically)."""
        present = [rel for rel in (self.artifact_rel, self.files.golden) if (folder / rel).is_file()]
        entry = replace(self, artifacts={rel: sha256_file(folder / rel) for rel in present}, path=folder, version=None, blobs={})
        write_bytes(folder / self.files.manifest, (json.dumps(entry.to_dict(), indent=2) + "\n").encode())
        return entry

    def to_dict(self) -> dict:
        d = asdict(replace(self, blobs={}))
        for unstored in ("path", "files", "version", "blobs"):
            del d[unstored]
        d["prelu"] = {"lowering": d.pop("lowering"), "layers": d.pop("prelu_layers")}
        for optional in ("onnx_source", "tensorrt", "int8"):
            if d[optional] is None:
                del d[optional]
        return {"format_version": FORMAT_VERSION, **json.loads(json.dumps(d))}  # tuples become lists, as on disk


def read_entry(path: str | Path, number: int | None = None) -> ModelEntry:
    """Version `number` (None: the newest) of the model at `path`; ModelDirError (exit 6) naming the field
    when the manifest is malformed."""
    with ModelFiles(path) as files:
        vf = _version(files, number)
        return _parse(files.read_many([vf.manifest])[vf.manifest], files.path, vf)


def _version(files: ModelFiles, number: int | None) -> VersionFiles:
    """Where version `number` (None: the newest) lies in the open folder; a folder with no version is read
    as version 1, whose missing manifest then says it is not a model directory."""
    found = layout(files.names(), files.is_file, files.path)
    if number is None:
        return found[max(found)] if found else version_files(1)
    if number not in found:
        raise ModelDirError(f"{files.path}: no version {number} (it holds {', '.join(map(str, found)) or 'none'})")
    return found[number]


def load_entry(path: str | Path, number: int | None = None, attempts: int = 50) -> ModelEntry:
    """The entry at `path` with the bytes of its artifacts and golden I/O, all read through one descriptor of
    the directory: the version its manifest describes, even while an export replaces the folder (a read
    that loses a file to the swap's deletion of the old folder starts again from the path). verify(),
    artifact_bytes() and golden_io() use those bytes; a file that cannot be read is a problem verify() names."""
    for attempt in range(attempts):
        try:
            files = ModelFiles(path)
        except ModelDirError:  # no folder: only between the two renames of a swap without renameat2, or none
            if attempt == attempts - 1:
                raise
            time.sleep(0.001)
            continue
        with files:
            try:
                vf = _version(files, number)
            except ModelDirError:
                if files.swapped():
                    continue
                raise
            got = files.read_many(vf.all())  # the usual files opened at once
            try:
                entry = _parse(got[vf.manifest], files.path, vf)
            except ModelDirError:
                if files.swapped():
                    continue
                raise
            needed = {*entry.artifacts, entry.artifact_rel, vf.golden}
            got.update(files.read_many(needed - got.keys()))
            blobs = {rel: got[rel] for rel in needed}
            if not any(isinstance(b, Unreadable) for b in blobs.values()) or not files.swapped():
                return replace(entry, blobs=blobs)
    raise ModelDirError(f"{path}: replaced while it was read, {attempts} times over")


def _parse(data: bytes | Unreadable, path: Path, vf: VersionFiles) -> ModelEntry:
    mf = path / vf.manifest
    if isinstance(data, Unreadable):
        raise ModelDirError(
            f"{path}: not a model directory (no {vf.manifest}); make one with `prelu-deploy export`"
            if data.why == "is missing"
            else f"{path}: {data}"
        )
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ModelDirError(f"{mf}: unreadable manifest ({err})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise ModelDirError(f"{mf}: unsupported manifest format version {version!r} (this prelu-deploy reads {FORMAT_VERSION})")
    return ModelEntry(**entry_fields(manifest, mf), path=path, files=vf, version=hashlib.sha256(data).hexdigest())
