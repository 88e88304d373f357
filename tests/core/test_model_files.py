"""Nothing in a model directory reaches outside it: a manifest's name is export's (it chooses where
quantize and build write), its file entries are plain paths inside the directory, and no link inside
the directory is followed (prelu_deploy.snapshot)."""

import os
import shutil

import pytest

from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest import read_entry

from ..manifests import edit_manifest


@pytest.fixture
def entry(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "repo" / "digits")
    return tmp_path / "repo" / "digits"


@pytest.mark.parametrize("name", ["/any/absolute/path/victim", "../victim", "a/b", ".hidden", "", "x\\y", "-x"])
def test_a_manifest_name_that_is_not_a_plain_model_name_is_refused(entry, name):
    edit_manifest(entry, lambda m: m.update(name=name))
    with pytest.raises(ModelDirError, match="manifest field 'name': model name .*Triton's rule"):
        read_entry(entry)


@pytest.mark.parametrize("rel", ["/etc/hostname", "../digits2/1/model.onnx", "1/../../x", "./golden.npz", "1//model.onnx"])
def test_a_file_entry_outside_the_model_directory_is_refused_when_read(entry, rel):
    edit_manifest(entry, lambda m: m["artifacts"].update({rel: "0" * 64}))
    with pytest.raises(ModelDirError, match="manifest field 'artifacts'") as err:
        read_entry(entry)
    assert f"{rel!r} is not a path inside the model directory" in str(err.value)


def test_whether_a_file_exists_outside_is_not_told(entry):
    """The refusal is the same for a file that exists and one that does not: no oracle."""
    messages = []
    for outside in ("/etc/hostname", "/etc/no-such-file-here"):
        edit_manifest(
            entry,
            lambda m, outside=outside: m.update(
                artifacts={
                    **{k: v for k, v in m["artifacts"].items() if k.startswith(("1/", "golden", "config"))},
                    outside: "0" * 64,
                }
            ),
        )
        with pytest.raises(ModelDirError) as err:
            read_entry(entry)
        messages.append(str(err.value).replace(outside, "FILE"))
    assert messages[0] == messages[1]


def test_a_linked_file_or_folder_is_refused_wherever_it_points(entry, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(entry, outside)  # the very same bytes: the sha256 in the manifest matches
    (entry / "1" / "model.onnx").unlink()
    os.symlink(outside / "1" / "model.onnx", entry / "1" / "model.onnx")
    assert read_entry(entry).verify() == [
        "1/model.onnx is refused: it is a symbolic link; a model directory holds its own files, no links"
    ]
    shutil.rmtree(entry / "1")
    os.symlink(outside / "1", entry / "1")
    assert read_entry(entry).verify() == [
        "1/model.onnx is refused: its path (1 is a symbolic link); a model directory holds its own files, no links"
    ]
    (entry / "manifest.json").unlink()
    os.symlink(outside / "manifest.json", entry / "manifest.json")
    with pytest.raises(ModelDirError, match="manifest.json is refused: it is a symbolic link"):
        read_entry(entry)


def test_a_fifo_in_place_of_a_file_is_refused_without_hanging(entry):
    (entry / "golden.npz").unlink()
    os.mkfifo(entry / "golden.npz")
    assert read_entry(entry).verify() == ["golden.npz is refused: not a regular file"]
