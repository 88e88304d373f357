"""The bundled trained digits model as a model repository, exported into a cache on first use.

The export runs in a child process, so the server process itself never imports torch."""

import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from prelu_deploy.errors import PreluDeployError
from prelu_deploy.manifest import MANIFEST, read_entry, sha256_file

NAME = "digits"


def shipped_checkpoint() -> Path:
    return Path(str(files("prelu_deploy.models") / "weights" / "digits_prelu.safetensors"))


def cache_dir() -> Path:
    root = os.environ.get("PRELU_DEPLOY_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prelu-deploy"
    return Path(root)


def bundled_repository() -> Path:
    """The cached repository holding the bundled model, (re-)exported when missing or out of date."""
    ckpt, repo = shipped_checkpoint(), cache_dir() / "model_repository"
    entry = repo / NAME
    if (entry / MANIFEST).is_file():
        try:
            current = read_entry(entry).source.sha256 == sha256_file(ckpt)
        except PreluDeployError:
            current = False
        if current:
            return repo
    cmd = [sys.executable, "-m", "prelu_deploy.cli", "export", str(ckpt), "--name", NAME, "--repo", str(repo),
           "--prelu-mode", "leaky", "--force"]
    print(f"exporting the bundled digits model into {repo} (first use)", file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        raise PreluDeployError(f"could not export the bundled model into {repo}; install the export extra "
                               "(pip install 'prelu-deploy[export]') or pass a model repository")
    return repo
