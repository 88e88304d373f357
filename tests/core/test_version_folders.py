"""Numbered version folders (prelu_deploy.versions): a single-version directory is version 1 unchanged,
version N lies whole in N/, either is read by number or as the newest, and config.pbtxt's
version_policy is read as Triton reads it."""

import shutil
from dataclasses import replace

import pytest

from prelu_deploy import versions
from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest import load_entry, read_entry, version_files, version_numbers
from prelu_deploy.versions import Policy, is_model_folder, read_policy


@pytest.fixture
def model(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "digits")
    return tmp_path / "digits"


def add_version(model, number: int, root: bool = False):
    """Version `number` of `model`: version 1's files, placed and hashed where that version keeps them."""
    v1, files = read_entry(model, 1), version_files(number, root)
    (model / files.folder).mkdir(exist_ok=True)
    for src, dst in ((v1.artifact, model / files.onnx), (v1.golden_path, model / files.golden)):
        if src != dst:
            shutil.copyfile(src, dst)
    return replace(v1, files=files, lowering="native").write(model)


def test_a_single_version_directory_is_version_1_as_before(model):
    e = load_entry(model)
    assert version_numbers(model) == [1] and e.number == 1 and e.artifact == model / "1" / "model.onnx"
    assert e.golden_path == model / "golden.npz" and e.verify() == [] and "number" not in e.to_dict()


def test_version_n_lies_whole_in_its_folder_and_is_read_by_number_or_as_the_newest(model):
    add_version(model, 2)
    assert sorted(p.name for p in (model / "2").iterdir()) == ["golden.npz", "manifest.json", "model.onnx"]
    assert version_numbers(model) == [1, 2]
    newest, first = load_entry(model), load_entry(model, 1)
    assert (newest.number, newest.lowering, first.number, first.lowering) == (2, "native", 1, "leaky")
    assert set(newest.artifacts) == {"2/model.onnx", "2/golden.npz"}  # relative to the model folder; no config.pbtxt
    assert newest.verify() == [] and first.verify() == [] and read_entry(model, 2).to_dict() == newest.to_dict()
    assert newest.artifact_bytes() == first.artifact_bytes() and newest.golden_io()["logits"].shape[1] == 10
    (model / "2" / "model.onnx").write_bytes(b"tampered")
    assert load_entry(model).verify() == ["2/model.onnx sha256 differs from the manifest (file changed after export)"]
    assert load_entry(model, 1).verify() == []


def test_a_root_without_a_manifest_keeps_every_version_in_its_folder(model, tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    shutil.copyfile(model / "config.pbtxt", only / "config.pbtxt")
    shutil.copytree(model / "1", only / "1")
    shutil.copyfile(model / "golden.npz", only / "golden.npz")
    shutil.copyfile(model / "manifest.json", only / "manifest.json")
    add_version(only, 3)
    (only / "manifest.json").unlink()
    assert version_numbers(only) == [3] and read_entry(only).number == 3
    assert is_model_folder(only) and not is_model_folder(tmp_path)  # what the server and the Ray pack take as models
    with pytest.raises(ModelDirError, match=r"no version 1 \(it holds 3\)"):
        read_entry(only, 1)


def test_a_root_manifest_beside_1_manifest_is_refused_naming_both(model):
    add_version(model, 1, root=False)
    with pytest.raises(ModelDirError, match=r"both manifest.json and 1/manifest.json claim version 1"):
        version_numbers(model)
    with pytest.raises(ModelDirError, match=r"both manifest.json and 1/manifest.json"):
        load_entry(model)


def test_an_old_manifest_s_config_hash_is_ignored_as_operators_edit_the_config(model):
    from prelu_deploy.manifest import sha256_file
    from tests.manifests import edit_manifest

    edit_manifest(model, lambda m: m["artifacts"].update({"config.pbtxt": sha256_file(model / "config.pbtxt")}))
    with open(model / "config.pbtxt", "a") as f:
        f.write("version_policy { all { } }\n")
    assert read_entry(model).verify() == [] and "config.pbtxt" in read_entry(model).artifacts


POLICIES = [
    ("", Policy("latest", 1)),
    ("version_policy { latest { num_versions: 2 } }", Policy("latest", 2)),
    ("version_policy: { all: { } }", Policy("all")),
    ("version_policy { specific { versions: [1, 3] } }", Policy("specific", versions=(1, 3))),
    ("version_policy { specific { versions: 1 versions: 3 } }  # two fields", Policy("specific", versions=(1, 3))),
]


@pytest.mark.parametrize("parser", ["protobuf", "own"])
@pytest.mark.parametrize("text, policy", POLICIES)
def test_the_version_policy_is_read_as_triton_reads_it(model, monkeypatch, parser, text, policy):
    if parser == "own":  # a bare install without tritonclient
        monkeypatch.setattr(versions, "_policy_protobuf", lambda text: (_ for _ in ()).throw(ImportError()))
    with open(model / "config.pbtxt", "a") as f:
        f.write(text + "\n")
    assert read_policy(model) == policy


@pytest.mark.parametrize("parser", ["protobuf", "own"])
@pytest.mark.parametrize(
    "text",
    [
        "version_policy { newest { } }",
        "version_policy { latest { num_versions: x } }",
        "version_policy { latest { num_versions: 0 } }",
    ],
)
def test_a_malformed_policy_is_a_clear_error_naming_the_file(model, monkeypatch, parser, text):
    if parser == "own":
        monkeypatch.setattr(versions, "_policy_protobuf", lambda text: (_ for _ in ()).throw(ImportError()))
    with open(model / "config.pbtxt", "a") as f:
        f.write(text + "\n")
    with pytest.raises(ModelDirError, match=r"config.pbtxt: .*(version_policy|num_versions|not Triton's)") as err:
        read_policy(model)
    assert "\n" not in str(err.value)


def test_a_policy_selects_of_the_versions_on_disk():
    assert Policy("latest", 1).select([3, 1, 2]) == [3] and Policy("latest", 5).select([1, 2]) == [1, 2]
    assert Policy("all").select([2, 1]) == [1, 2] and Policy("specific", versions=(1, 4)).select([1, 2, 3]) == [1]
