"""Where `quantize` and `build` write: beside the entry, in its repository, under a name export's rule
allows — never where a manifest's `name` points (it once made `quantize --force` replace a folder
outside the repository)."""

import shutil

import pytest

from prelu_deploy.errors import ModelDirError
from prelu_deploy.export.build import build_plan
from prelu_deploy.export.quantize import quantize_entry

from ..manifests import edit_manifest


def _hostile(repo, tmp_path, name: str):
    """A repository whose one entry's manifest names `name`, and the folders outside that its siblings
    `<name>_int8` and `<name>_trt` would be, each holding a file to keep."""
    entry = tmp_path / "repo" / "digits"
    shutil.copytree(repo / "digits", entry)
    outside = tmp_path / "outside"
    for suffix in ("_int8", "_trt"):
        (outside / f"victim{suffix}").mkdir(parents=True)
        (outside / f"victim{suffix}" / "precious.txt").write_text("keep me")
    edit_manifest(entry, lambda m: m.update(name=name.replace("OUTSIDE", str(outside))))
    return entry, outside


def _untouched(entry, outside) -> bool:
    return (
        sorted(p.name for p in entry.parent.iterdir()) == ["digits"]
        and all((outside / f"victim{s}" / "precious.txt").read_text() == "keep me" for s in ("_int8", "_trt"))
        and sorted(p.name for p in outside.iterdir()) == ["victim_int8", "victim_trt"]
    )


@pytest.mark.parametrize("name", ["OUTSIDE/victim", "../outside/victim"])
def test_quantize_force_never_writes_where_a_manifest_name_points(repo, tmp_path, name):
    entry, outside = _hostile(repo, tmp_path, name)
    with pytest.raises(ModelDirError, match="manifest field 'name': model name .*Triton's rule"):
        quantize_entry(entry, n=64, force=True)
    assert _untouched(entry, outside)


def test_build_force_never_writes_where_a_manifest_name_points(repo, tmp_path):
    entry, outside = _hostile(repo, tmp_path, "OUTSIDE/victim")
    with pytest.raises(ModelDirError, match="manifest field 'name': model name .*Triton's rule"):
        build_plan(entry, force=True)
    assert _untouched(entry, outside)
