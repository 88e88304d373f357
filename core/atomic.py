"""Atomic writes: a reader sees the old file or the complete new one, never half of it."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from prelu_deploy.errors import PreluDeployError, UsageError


def check_destination(dest: Path, force: bool, error: type[PreluDeployError] = UsageError) -> None:
    """Refuse before any work is done: an existing `dest` without --force, or a place we cannot write."""
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists; pass --force to replace it")
    folder = next(p for p in [dest.parent, *dest.parent.parents] if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise error(f"cannot write {dest}: {folder} is not a writable folder")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync'd, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file should look like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



@contextmanager
def staged_dir(path: str | Path):
    """Yield an empty temporary sibling of `path` to fill; only if the block succeeds does it take
    `path`'s place (an old folder there is swapped out, then removed). On failure nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
