"""The bundled trained digits model as a ready model repository, shipped inside the package
(models/bundled/, made by `make bundled`): a torch-free install serves it with no export step.

Where that copy is absent or does not match the shipped checkpoint (a source tree whose weights were
retrained), it is exported into a cache on first use, in a child process so that the server process
itself never imports torch."""

import os
import subprocess
import sys
from pathlib import Path

from prelu_deploy.errors import PreluDeployError
from prelu_deploy.manifest import MANIFEST, read_entry, sha256_file
from prelu_deploy.models import packaged

NAME = "digits"


def shipped_checkpoint() -> Path:
    return packaged("weights", "digits_prelu.safetensors")


def packaged_repository() -> Path:
    return packaged("bundled")  # its real folder: a strict editable install links each file, a model directory holds none


def cache_dir() -> Path:
    root = os.environ.get("PRELU_DEPLOY_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prelu-deploy"
    return Path(root)


def _current(repo: Path, ckpt: Path) -> bool:
    """The repository's entry exists, reads, and was exported from the shipped checkpoint."""
    if not (repo / NAME / MANIFEST).is_file():
        return False
    try:
        return read_entry(repo / NAME).source.sha256 == sha256_file(ckpt)
    except (PreluDeployError, OSError):
        return False


def bundled_repository() -> Path:
    """The repository holding the bundled model: the packaged one, else a cached export."""
    ckpt, packaged, cached = shipped_checkpoint(), packaged_repository(), cache_dir() / "model_repository"
    for repo in (packaged, cached):
        if _current(repo, ckpt):
            return repo
    cmd = [
        sys.executable,
        "-m",
        "prelu_deploy.cli",
        "export",
        str(ckpt),
        "--name",
        NAME,
        "--repo",
        str(cached),
        "--prelu-mode",
        "leaky",
        "--force",
    ]
    print(f"exporting the bundled digits model into {cached} (the packaged copy is missing or out of date)", file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        raise PreluDeployError(
            f"could not export the bundled model into {cached}; install the export extra "
            "(pip install 'prelu-deploy[export]') or pass a model repository"
        )
    return cached
