"""A model directory is untrusted input to the server: a file linked from outside it, external data
that no manifest sha256 covers, are not served; and why a model is not ready is told to callers
relative to the repository (no absolute path, nothing about files elsewhere), in full in the log."""

import logging
import os
import re
import shutil

import onnx
import pytest
from onnx import numpy_helper

from prelu_deploy.manifest import read_entry, sha256_file
from prelu_deploy.serve.repository.loader import load_model, load_repository
from prelu_deploy.serve.settings import Settings

from ..manifests import edit_manifest

ABSOLUTE = re.compile(r"(^|[\s'\"(:=])/[\w.-]")


@pytest.fixture
def entry(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "repo" / "digits")
    return tmp_path / "repo" / "digits"


def test_a_model_file_linked_from_outside_is_not_served(entry, tmp_path):
    shutil.copytree(entry, tmp_path / "outside")  # the same bytes: its sha256 matches the manifest
    (entry / "1" / "model.onnx").unlink()
    os.symlink(tmp_path / "outside" / "1" / "model.onnx", entry / "1" / "model.onnx")
    served = load_model(entry, Settings())
    assert not served.ready and "1/model.onnx is refused: it is a symbolic link" in served.reason


@pytest.mark.parametrize("location", ["weights.bin", "../../../outside.bin"])
def test_external_data_is_not_served_inside_or_outside_the_directory(entry, tmp_path, location):
    """A graph whose weights lie in another file: no manifest sha256 covers that file, and where it
    points outside the directory it reads a file there. (ONNX Runtime before 1.24 follows `../` when
    it loads a graph by path.)"""
    model = entry / "1" / "model.onnx"
    graph = onnx.load(model)
    init = max(graph.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    data = numpy_helper.to_array(init).tobytes()
    for target in (entry / "1" / "weights.bin", tmp_path / "outside.bin"):
        target.write_bytes(data)
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    model.write_bytes(graph.SerializeToString())
    edit_manifest(entry, lambda m: m["artifacts"].update({"1/model.onnx": sha256_file(model)}))
    assert read_entry(entry).verify() == []
    served = load_model(entry, Settings())
    assert not served.ready and "ONNX Runtime cannot load model.onnx" in served.reason, served.reason


def test_not_ready_reasons_are_relative_to_the_repository_and_the_log_has_them_whole(repo, tmp_path, caplog):
    root = tmp_path / "repo"
    for name in ("bad_field", "bad_graph", "outside", "missing_elsewhere"):
        shutil.copytree(repo / "digits", root / name)
    edit_manifest(root / "bad_field", lambda m: (m.update(name="bad_field"), m["input"].pop("shape")))
    graph = root / "bad_graph" / "1" / "model.onnx"
    graph.write_bytes(b"not a protobuf")
    edit_manifest(
        root / "bad_graph", lambda m: (m.update(name="bad_graph"), m["artifacts"].update({"1/model.onnx": sha256_file(graph)}))
    )
    edit_manifest(root / "outside", lambda m: (m.update(name="outside"), m["artifacts"].update({"/etc/hostname": "0" * 64})))
    edit_manifest(
        root / "missing_elsewhere",
        lambda m: (m.update(name="missing_elsewhere"), m["artifacts"].update({"/etc/no-such-file": "0" * 64})),
    )
    with caplog.at_level(logging.WARNING, logger="prelu_deploy.serve"):
        models = load_repository(root, Settings())
    reasons = {name: served.reason for name, served in models.items()}
    assert all(not served.ready for served in models.values()) and len(reasons) == 4
    for name, reason in reasons.items():
        assert str(tmp_path) not in reason and not ABSOLUTE.search(reason), reason
    assert reasons["bad_field"].startswith("cannot load: bad_field/manifest.json: manifest field 'input.shape' is missing")
    assert reasons["bad_graph"].startswith("cannot load: bad_graph: ONNX Runtime cannot load model.onnx")
    # a file elsewhere that exists and one that does not: the same answer
    assert reasons["outside"].replace("outside", "X").replace("hostname", "F") == reasons["missing_elsewhere"].replace(
        "missing_elsewhere", "X"
    ).replace("no-such-file", "F")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{root / 'bad_field' / 'manifest.json'}: manifest field 'input.shape' is missing" in logged
    assert f"{root / 'bad_graph'}: ONNX Runtime cannot load model.onnx" in logged
