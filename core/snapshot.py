"""A model directory read as one version, and nothing read from outside it.

Export replaces a model directory in one step (atomic.staged_dir: a renameat2 exchange) and deletes
the old one right after. A reader that went by path could read the manifest of one version and an
artifact of the next. `ModelFiles` opens the directory once (O_DIRECTORY) and every file beneath
that descriptor: an exchanged directory stays reachable through it, so the manifest and the
artifacts read through one `ModelFiles` are of one version. Only what the swap deletes can go
missing under a reader; `swapped()` tells it so, and the reader starts again from the path.

Files are opened component by component with O_NOFOLLOW: a symbolic link inside a model directory is
refused wherever it points, and so is anything but a regular file. A path that is absolute, empty or
climbs out ('..') is refused before anything is opened. (The model directory itself may be a link:
where a repository's entries live is its operator's choice.)"""

import errno
import hashlib
import os
import re
import stat
from pathlib import Path

from prelu_deploy.errors import ModelDirError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a model's name, export's rule (Triton's): one plain folder name
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO put there cannot hang the open


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a model (and so a folder of the repository), or None."""
    if NAME.match(name):
        return None
    return f"model name {name!r}: use letters, digits, '_', '.', '-' (Triton's rule)"


def path_problem(rel: str) -> str | None:
    """Why `rel` is not a plain relative path inside a model directory, or None."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        return f"{rel!r} is not a path inside the model directory"
    return None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Unreadable(ModelDirError):
    """A file of a model directory that cannot be read: `why` says so, relative to the directory."""

    def __init__(self, rel: str, why: str):
        super().__init__(f"{rel} {why}")
        self.rel, self.why = rel, why


class ModelFiles:
    """An open model directory: every read goes through its descriptor (a context manager)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, _DIR)
        except OSError as err:
            raise ModelDirError(
                f"{self.path}: not a model directory ({err.strerror}); make one with `prelu-deploy export`"
            ) from None

    def __enter__(self) -> "ModelFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, rel: str) -> bytes:
        """The bytes of `rel` as this directory holds it; Unreadable saying why not."""
        with os.fdopen(self._open(rel), "rb") as f:
            return f.read()

    def read_many(self, rels) -> dict:
        """{rel: its bytes, or the Unreadable saying why not}, every file opened before any is read: a file
        deleted after the opens (by a swap) is read all the same, and the window for losing one is a few calls."""
        opened = {}
        for rel in rels:
            try:
                opened[rel] = os.fdopen(self._open(rel), "rb")
            except Unreadable as err:
                opened[rel] = err
        out = {}
        for rel, f in opened.items():
            if isinstance(f, Unreadable):
                out[rel] = f
                continue
            with f:
                out[rel] = f.read()
        return out

    def names(self) -> list[str]:
        """The names in the directory as this descriptor holds it."""
        return os.listdir(self.fd)

    def is_file(self, rel: str) -> bool:
        """Whether `rel` is a regular file beneath the directory (no link followed)."""
        try:
            os.close(self._open(rel))
        except Unreadable:
            return False
        return True

    def swapped(self) -> bool:
        """Whether the path names another directory than the one open here (an export replaced it)."""
        try:
            now, mine = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return True
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)

    def _open(self, rel: str) -> int:
        if why := path_problem(rel):
            raise Unreadable(rel, why.removeprefix(f"{rel!r} "))
        *folders, name = rel.split("/")
        at, opened = self.fd, []
        try:
            for i, part in enumerate([*folders, name]):
                last = i == len(folders)
                try:
                    at = os.open(part, _FILE if last else _DIR | os.O_NOFOLLOW, dir_fd=at)
                except FileNotFoundError:
                    raise Unreadable(rel, "is missing") from None
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise Unreadable(rel, f"cannot be read ({err.strerror})") from None
                    kind = "a symbolic link" if _is_link(part, at) else "not a folder"
                    where = "" if last else f" ({'/'.join([*folders, name][: i + 1])} is {kind})"
                    raise Unreadable(
                        rel,
                        f"is refused: {'it is ' + kind if last else 'its path'}{where}; a model "
                        "directory holds its own files, no links",
                    ) from None
                opened.append(at)
            if not stat.S_ISREG(os.fstat(at).st_mode):
                raise Unreadable(rel, "is refused: not a regular file")
            return opened.pop()
        finally:
            for fd in opened:
                os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:  # gone meanwhile
        return False


def sibling_dir(folder: str | Path, name: str) -> Path:
    """The folder `name` beside model directory `folder`, where `quantize` and `build` write: refused
    (ModelDirError) unless `name` is a plain model name and that folder, every link resolved, lies in
    the repository that holds `folder`."""
    if why := name_problem(name):
        raise ModelDirError(f"{folder}: {why}")
    repo = Path(os.path.abspath(folder)).parent  # the repository as named, not where a linked entry points
    dest = repo / name
    if dest.is_symlink() or dest.resolve().parent != repo.resolve():
        raise ModelDirError(f"{dest} is a link that leads out of the repository {repo}; remove it first")
    return dest
