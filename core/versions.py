"""The versions of a model folder, laid out as Triton's numbered version folders, and the policy in its
config.pbtxt that says which of them to serve.

    <name>/config.pbtxt                  Triton's, for the model (its version_policy is the operator's to edit)
    <name>/manifest.json, golden.npz     version 1 as every model directory has it …
    <name>/1/model.onnx                  … with its artifact in 1/ (or 1/model.plan)
    <name>/N/manifest.json, golden.npz   version N ≥ 2 (or any N when the root holds no manifest): all in N/
    <name>/N/model.onnx                  (or N/model.plan): what Triton loads as version N

Every existing single-version directory is version 1 of this layout, unchanged."""

import re
from dataclasses import dataclass
from pathlib import Path

from prelu_deploy.errors import ModelDirError

MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
CONFIG = "config.pbtxt"
NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # a version folder's name (Triton's: a positive integer)


@dataclass(frozen=True)
class VersionFiles:
    """Where one version's files lie, relative to the model folder."""

    number: int
    manifest: str
    golden: str
    onnx: str
    plan: str

    @property
    def folder(self) -> str:
        return str(self.number)

    def artifact(self, platform: str) -> str:
        return self.plan if platform == "tensorrt_plan" else self.onnx

    def all(self) -> list[str]:
        return [self.manifest, self.golden, self.onnx, self.plan]


def version_files(number: int, root: bool = True) -> VersionFiles:
    """Version `number`'s files: version 1 in the root form (`root`, how every model directory began), any
    other version — or version 1 of a folder whose root holds no manifest — all in its own folder."""
    if number == 1 and root:
        return VersionFiles(1, MANIFEST, GOLDEN, "1/model.onnx", "1/model.plan")
    return VersionFiles(number, f"{number}/{MANIFEST}", f"{number}/{GOLDEN}", f"{number}/model.onnx", f"{number}/model.plan")


def layout(names: list[str], is_file, where: Path) -> dict[int, VersionFiles]:
    """{number: its files} of a model folder, from the names in it and `is_file(rel)`; a root manifest
    beside 1/manifest.json is refused (which would be version 1 is not for a reader to guess)."""
    root = is_file(MANIFEST)
    found = {int(n): version_files(int(n), root=False) for n in names if NUMBER.fullmatch(n) and is_file(f"{n}/{MANIFEST}")}
    if root and 1 in found:
        raise ModelDirError(f"{where}: both {MANIFEST} and 1/{MANIFEST} claim version 1; remove one")
    if root:
        found[1] = version_files(1)
    return dict(sorted(found.items()))


def version_layout(model_dir: str | Path) -> dict[int, VersionFiles]:
    """{number: its files} of a model folder, read by path (none when it cannot be listed)."""
    model_dir = Path(model_dir)
    try:
        names = [p.name for p in model_dir.iterdir()]
    except OSError:
        return {}
    return layout(names, lambda rel: (model_dir / rel).is_file(), model_dir)


def version_numbers(model_dir: str | Path) -> list[int]:
    """The versions a model folder holds: 1 when its root has a manifest, and each N/ holding one."""
    return list(version_layout(model_dir))


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` holds a version of a model (or versions read wrongly, which loading it names)."""
    try:
        return bool(version_layout(path))
    except ModelDirError:
        return True


def next_number(numbers: list[int]) -> int:
    """The number a new version takes with `--version next`: one past the newest (1 for a new model)."""
    return max(numbers, default=0) + 1


# --- the version policy (Triton's model_config.proto: ModelVersionPolicy) ---


@dataclass(frozen=True)
class Policy:
    kind: str  # latest | all | specific
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, numbers: list[int]) -> list[int]:
        """Of the versions on disk, those this policy serves, oldest first."""
        numbers = sorted(numbers)
        if self.kind == "all":
            return numbers
        if self.kind == "specific":
            return [n for n in numbers if n in self.versions]
        return numbers[-self.latest :] if self.latest > 0 else []

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest {{ num_versions: {self.latest} }}"
        return "all {}" if self.kind == "all" else f"specific {{ versions: {list(self.versions)} }}"


LATEST_1 = Policy("latest", 1)  # Triton's default
_POLICY = re.compile(r"\bversion_policy\s*:?\s*\{(?P<body>[^{}]*(?:\{[^{}]*\}[^{}]*)?)\}", re.S)
_LATEST = re.compile(r"\s*latest\s*:?\s*\{\s*num_versions\s*:\s*(\d+)\s*\}\s*")
_ALL = re.compile(r"\s*all\s*:?\s*\{\s*\}\s*")
_SPECIFIC = re.compile(r"\s*specific\s*:?\s*\{(?P<v>(?:\s*versions\s*:\s*(?:\d+|\[[\d\s,]*\])\s*,?)+)\}\s*")


def read_policy(model_dir: str | Path) -> Policy:
    """The version_policy of `model_dir`'s config.pbtxt (latest 1 when it has none, or no config);
    ModelDirError naming the file when the policy is malformed."""
    path = Path(model_dir) / CONFIG
    try:
        text = path.read_text()
    except FileNotFoundError:
        return LATEST_1
    except (OSError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{path}: unreadable ({err})") from None
    try:
        policy = _policy_protobuf(text)
    except ImportError:  # the serve extra brings tritonclient; a bare install reads the one field itself
        policy = _policy_text(text)
    except ValueError as err:
        raise ModelDirError(f"{path}: {err}") from None
    if policy is None:
        raise ModelDirError(
            f"{path}: malformed version_policy: write latest {{ num_versions: N }}, all {{ }} "
            f"or specific {{ versions: [1, 2] }} (Triton's model_config.proto)"
        )
    if policy.kind == "latest" and policy.latest < 1:
        raise ModelDirError(f"{path}: version_policy latest {{ num_versions: {policy.latest} }}: serve at least 1")
    return policy


def _policy_protobuf(text: str) -> Policy | None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as err:
        raise ValueError(f"not Triton's model configuration ({err})") from None
    if not config.HasField("version_policy"):
        return LATEST_1
    p = config.version_policy
    kind = p.WhichOneof("policy_choice")
    if kind == "latest":
        return Policy("latest", p.latest.num_versions)
    return Policy("all") if kind == "all" else Policy("specific", versions=tuple(p.specific.versions))


def _policy_text(text: str) -> Policy | None:
    text = re.sub(r"#[^\n]*", "", text)
    if "version_policy" not in text:
        return LATEST_1
    if not (m := _POLICY.search(text)):
        return None
    body = m["body"]
    if latest := _LATEST.fullmatch(body):
        return Policy("latest", int(latest[1]))
    if _ALL.fullmatch(body):
        return Policy("all")
    if specific := _SPECIFIC.fullmatch(body):
        return Policy("specific", versions=tuple(int(n) for n in re.findall(r"\d+", specific["v"])))
    return None
