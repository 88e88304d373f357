"""Atomic writes: a reader sees the old file or folder or the complete new one, under its real name, at
every instant — and what a killed writer left behind is cleaned up (or restored) by the next writer.

Staging names carry the writer's PID (`.<name>.<pid>.<random>.tmp`, `.old` for a swapped-out copy), so
a leftover can be told from the work of a writer that is still running."""

import ctypes
import errno
import os
import re
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
    clean_leftovers(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
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
    `path`'s place. An old folder there is exchanged with the new one in one step (renameat2
    RENAME_EXCHANGE), so `path` always names a complete folder; where the filesystem cannot exchange,
    the old one is renamed aside first and a kill in between is undone by the next writer or loader
    (`clean_leftovers` restores the backup). On failure nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if not path.exists():
            os.replace(tmp, path)
        elif not _exchange(tmp, path):  # tmp now holds the old folder when the exchange worked
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.(?P<kind>tmp|old)$")


def clean_leftovers(folder: Path, name: str | None = None) -> list[str]:
    """Remove the staging files and folders of writers that are gone (of `name`, or of any name), and
    restore a swapped-out `.old` copy whose real name is missing. Returns what was done."""
    done = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return done
    for p in entries:
        m = _LEFTOVER.match(p.name)
        if not m or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        target = p.parent / m["name"]
        try:
            if m["kind"] == "old" and not target.exists():
                os.replace(p, target)
                done.append(f"restored {target} from {p.name}")
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
                done.append(f"removed {p.name}")
            else:
                p.unlink()
                done.append(f"removed {p.name}")
        except OSError:
            continue  # not ours to clean (read-only repository): the loader ignores hidden entries anyway
    return done


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
