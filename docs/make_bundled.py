"""models/bundled/: the bundled digits model as a ready model repository, shipped inside the package so
that a torch-free install (`pip install 'prelu-deploy[serve]'`) serves it with no export step. It is
`prelu-deploy export models/weights/digits_prelu.safetensors --name digits --prelu-mode leaky` with the
source checkpoint recorded relative to the entry (the package moves). Rerun: `make bundled`."""

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.manifest import read_entry

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "weights" / "digits_prelu.safetensors"
REPO = ROOT / "models" / "bundled"


def main() -> None:
    with tempfile.TemporaryDirectory(dir=ROOT / "models") as tmp:
        entry = read_entry(export_model_dir(CHECKPOINT, "digits", tmp, mode="leaky"))
        relative = Path("..", "..", "weights", CHECKPOINT.name)  # from models/bundled/digits/
        replace(entry, source=replace(entry.source, checkpoint=str(relative))).write(entry.path)
        shutil.rmtree(REPO, ignore_errors=True)
        REPO.mkdir()
        shutil.move(entry.path, REPO / "digits")
    print(f"wrote {REPO / 'digits'}")


if __name__ == "__main__":
    main()
