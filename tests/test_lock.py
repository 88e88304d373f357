"""requirements.lock, what `make` installs in pip's hash-checking mode: every package pinned to one
version with its sha256, the lock within pyproject.toml's ranges, and this environment built from it."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("export", "serve", "trt", "bench", "dev", "ray")  # what the Makefile installs


def _locked() -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256, …])} of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text):
        head = block.split("\\")[0].strip()
        if not head or head.startswith("#"):
            continue
        req = Requirement(head)
        pins = [s.version for s in req.specifier if s.operator == "=="]
        out[canonicalize_name(req.name)] = (
            pins[0] if len(pins) == 1 and len(req.specifier) == 1 else "",
            re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
        )
    return out


def test_every_locked_package_is_one_version_with_its_sha256():
    locked = _locked()
    assert len(locked) > 100 and {"torch", "onnxruntime", "fastapi", "setuptools"} <= locked.keys()
    assert [name for name, (v, hashes) in locked.items() if not v or not hashes] == []
    assert locked["torch"][0] == "2.13.0+cpu"  # the CPU build on this machine's disk, not PyPI's CUDA one


def test_the_lock_is_within_pyproject_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for extra in EXTRAS for r in project["optional-dependencies"][extra])]
    locked, outside = _locked(), []
    for line in wanted:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate():
            continue
        v = locked.get(canonicalize_name(req.name), ("missing",))[0]
        if v == "missing" or not req.specifier.contains(v, prereleases=True):
            outside.append(f"{line}: locked {v}")
    assert outside == [], "run `make lock`: " + "; ".join(outside)


def test_the_onnxruntime_floor_is_the_release_that_refuses_external_data_outside():
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    assert "onnxruntime>=1.24.1" in [r.split("#")[0].strip() for r in serve]


def test_this_environment_is_the_lock():
    """The tests run on what the lock names (a package the gpu extra swaps, such as onnxruntime for
    onnxruntime-gpu, is simply absent)."""
    differ = []
    for name, (v, _) in _locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed != v:
            differ.append(f"{name} {installed} (locked {v})")
    assert differ == [], "reinstall with `make` (the venv is not the lock): " + ", ".join(differ)
