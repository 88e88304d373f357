"""The typed model entry: what export writes reads back field for field, and a malformed manifest is
refused when read, with the field named."""

import json
import shutil

import pytest

from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest import BatchProfile, TensorSpec, read_entry

from ..manifests import edit_manifest


@pytest.fixture
def entry(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "digits")
    return tmp_path / "digits"


def test_the_entry_reads_what_export_wrote(entry):
    e = read_entry(entry)
    assert (e.name, e.platform, e.lowering, e.precision, e.is_plan) == ("digits", "onnxruntime_onnx", "leaky", "fp32", False)
    assert e.input == TensorSpec("images", (-1, 1, 8, 8), "FP32") and e.input.dims == [1, 8, 8]
    assert e.output == TensorSpec("logits", (-1, 10), "FP32")
    assert e.artifact == entry / "1" / "model.onnx" and e.profile == BatchProfile(1, 8, 32)
    assert e.source.arch == "digits_prelu" and e.source.dataset == "digits" and e.labels == [str(i) for i in range(10)]
    assert e.verify() == []
    assert e.to_dict() == json.loads((entry / "manifest.json").read_text())  # nothing lost or added on the way


def test_write_hashes_the_artifacts_and_round_trips(entry, tmp_path):
    e = read_entry(entry)
    copy = tmp_path / "copy"
    shutil.copytree(entry, copy)
    (copy / "manifest.json").unlink()
    written = e.write(copy)
    assert written.path == copy and written.artifacts == e.artifacts and read_entry(copy).to_dict() == e.to_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(artifacts=[]), "manifest field 'artifacts' is list, not dict"),
        (lambda m: m.update(artifacts=None), "manifest field 'artifacts' is NoneType, not dict"),
        (lambda m: m.pop("prelu"), "manifest field 'prelu' is missing"),
        (lambda m: m["prelu"].update(lowering="fancy"), "'prelu.lowering' is 'fancy', not one of native, plugin, leaky"),
        (lambda m: m["input"].pop("shape"), "manifest field 'input.shape' is missing"),
        (lambda m: m["input"].update(shape=[1, 1, 8, 8]), "'input.shape' must be [-1, positive dims…], not [1, 1, 8, 8]"),
        (lambda m: m["output"].update(name=3), "manifest field 'output.name' is int, not str"),
        (lambda m: m.update(max_batch_size=0), "'max_batch_size' must be ≥ 1, not 0"),
        (lambda m: m.update(max_batch_size=True), "'max_batch_size' is bool, not int"),
        (lambda m: m["source"].pop("sha256"), "manifest field 'source.sha256' is missing"),
        (
            lambda m: m.update(tensorrt={"flavour": "tensorrt", "precision": "fp32"}),
            "manifest field 'tensorrt.version' is missing",
        ),
        (lambda m: m.update(format_version=99), "unsupported manifest format version 99"),
    ],
)
def test_a_malformed_manifest_is_refused_with_the_field_named(entry, change, message):
    edit_manifest(entry, change)
    with pytest.raises(ModelDirError, match="manifest") as err:
        read_entry(entry)
    assert message in str(err.value) and str(entry) in str(err.value)


def test_deeply_nested_json_is_a_clear_error(entry):
    (entry / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelDirError, match="unreadable manifest"):
        read_entry(entry)


def test_verify_names_a_missing_artifact(entry):
    (entry / "1" / "model.onnx").unlink()
    assert read_entry(entry).verify() == ["1/model.onnx is missing"]
    edit_manifest(entry, lambda m: m["artifacts"].pop("1/model.onnx"))
    assert read_entry(entry).verify() == ["the manifest lists no 1/model.onnx for platform onnxruntime_onnx"]
