"""The one writer of model entries — `export`, `build`, `quantize` and the bench floor all go through
it: the whole entry is staged beside its destination and takes its place in one step
(prelu_deploy.atomic.staged_dir), so a reader sees the old entry or the new one, never a mix. The
caller writes the artifact into the stage; the writer adds the golden I/O, the Triton configuration
made from the entry itself, and the manifest (which hashes what is there) last."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from prelu_deploy.atomic import check_destination, staged_dir
from prelu_deploy.errors import ExportError
from prelu_deploy.export.triton import config_pbtxt
from prelu_deploy.manifest import CONFIG, GOLDEN, ModelEntry


class StagedEntry:
    """A model entry being written: `root` is the staging folder, its version folder `1/` made."""

    def __init__(self, root: Path):
        self.root = root

    def __truediv__(self, relative: str) -> Path:
        return self.root / relative

    def golden(self, source: Path | None = None, **arrays: np.ndarray) -> None:
        """The golden I/O: copied from another entry's file, or written from arrays."""
        if source is not None:
            shutil.copyfile(source, self.root / GOLDEN)
        else:
            np.savez(self.root / GOLDEN, **arrays)

    def finish(self, entry: ModelEntry) -> ModelEntry:
        """config.pbtxt from the entry, then the manifest with every file's sha256."""
        (self.root / CONFIG).write_text(config_pbtxt(entry))
        return entry.write(self.root)


@contextmanager
def writing_entry(dest: str | Path, force: bool = False) -> Iterator[StagedEntry]:
    """Stage the entry for `dest`; it replaces `dest` only if the block succeeds (an existing one only
    with `force`), and on any failure nothing is left."""
    dest = Path(dest)
    check_destination(dest, force, ExportError)
    with staged_dir(dest) as tmp:
        (tmp / "1").mkdir()
        yield StagedEntry(tmp)
