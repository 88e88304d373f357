"""The one writer of model entries — `export`, `build`, `quantize` and the bench floor all go through
it: the whole entry is staged beside its destination and takes its place in one step
(prelu_deploy.atomic.staged_dir), so a reader sees the old entry or the new one, never a mix. The
caller writes the artifact into the stage; the writer adds the golden I/O, the Triton configuration
made from the entry itself, and the manifest (which hashes what is there) last.

A new version of an existing model (`version=N` or "next") is written the same way: the model folder
is staged whole — its other versions hard-linked into the stage, its config.pbtxt (and the operator's
version_policy in it) kept — the version's files added (prelu_deploy.versions' layout), and the whole
folder swapped in, so a reader sees the versions before or all of them after. Two writers of one model
at once: the second swap wins, and the first writer's version is lost with the folder it staged."""

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from prelu_deploy.atomic import check_destination, staged_dir
from prelu_deploy.errors import ExportError, UsageError
from prelu_deploy.export.triton import config_pbtxt
from prelu_deploy.manifest import CONFIG, MANIFEST, ModelEntry, version_files
from prelu_deploy.versions import VersionFiles, next_number, version_numbers


class StagedEntry:
    """A model entry being written: `root` is the staging model folder, `files` where the version being
    written puts its own (its version folder made); `keep_config`: the model's config.pbtxt stays."""

    def __init__(self, root: Path, files: VersionFiles = version_files(1), keep_config: bool = False):
        self.root, self.files, self.keep_config = root, files, keep_config

    def __truediv__(self, relative: str) -> Path:
        return self.root / relative

    def golden(self, source: Path | None = None, **arrays: np.ndarray) -> None:
        """The golden I/O: copied from another entry's file, or written from arrays."""
        if source is not None:
            shutil.copyfile(source, self.root / self.files.golden)
        else:
            np.savez(self.root / self.files.golden, **arrays)

    def finish(self, entry: ModelEntry) -> ModelEntry:
        """config.pbtxt from the entry (a new model's), then the manifest with every file's sha256."""
        entry = replace(entry, files=self.files)
        if not self.keep_config:
            (self.root / CONFIG).write_text(config_pbtxt(entry))
        elif not re.search(rf'\bplatform:\s*"{entry.platform}"', (self.root / CONFIG).read_text()):
            raise ExportError(
                f"model {entry.name}: its config.pbtxt names another platform than "
                f"{entry.platform}; Triton serves one platform per model (write a new model instead)"
            )
        return entry.write(self.root)


@contextmanager
def writing_entry(dest: str | Path, force: bool = False, version: int | str | None = None) -> Iterator[StagedEntry]:
    """Stage the entry for `dest`; it replaces `dest` only if the block succeeds (an existing one only
    with `force`), and on any failure nothing is left. `version` (a number, or "next"): only that version
    of the model is written, beside the others (an existing one replaced only with `force`)."""
    dest = Path(dest)
    if version is None:
        check_destination(dest, force, ExportError)
        with staged_dir(dest) as tmp:
            (tmp / "1").mkdir()
            yield StagedEntry(tmp)
        return
    check_destination(dest, True, ExportError)
    with staged_dir(dest) as tmp:
        keep = dest.is_dir() and (dest / CONFIG).is_file()
        if dest.is_dir():
            shutil.copytree(dest, tmp, symlinks=True, copy_function=_link, dirs_exist_ok=True)
        numbers = version_numbers(tmp)
        number = next_number(numbers) if version == "next" else check_version(tmp, version, force, dest)
        files = version_files(number, root=number == 1 and ((tmp / MANIFEST).is_file() or not numbers))
        if number in numbers:
            for rel in files.all():  # unlinked, not written through: the stage's files are links to the live ones
                (tmp / rel).unlink(missing_ok=True)
        (tmp / files.folder).mkdir(exist_ok=True)
        yield StagedEntry(tmp, files, keep_config=keep)


def check_target(dest: Path, force: bool, version: int | str | None) -> int | str | None:
    """Refuse before any work is done what writing_entry would refuse at the end; returns `version` checked."""
    if version is None:
        check_destination(dest, force, ExportError)
        return None
    check_destination(dest, True, ExportError)
    return check_version(dest, version, force)


def check_version(folder: Path, version: int | str, force: bool, dest: Path | None = None) -> int | str:
    """--version's value (a number, or "next"), refused before any work when it is neither, or names a
    version the model folder holds and `force` is not given."""
    if version == "next":
        return version
    if (
        not (isinstance(version, int) and not isinstance(version, bool) or str(version).isdecimal())
        or not 1 <= int(version) <= 999_999_999
    ):
        raise UsageError(f"--version {version!r}: a version number (1, 2, …) or 'next'")
    if not force and int(version) in version_numbers(folder):
        raise UsageError(f"{dest or folder} has a version {version}; pass --force to replace it, or --version next")
    return int(version)


def _link(src: str, dst: str) -> None:
    """A file of the versions kept: hard-linked into the stage where the filesystem allows, else copied."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
