"""`export/quantize --version N|next`: a new version is written into N/ beside the model's others, which
stay byte for byte (the operator's config.pbtxt too), the whole folder swapped in at once; a version that
exists is replaced only with --force; without --version nothing changes. The commands are run by the console
script's main() in this process (the script itself, as a process, in tests/runners/test_parity_cli.py)."""

import shutil

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from prelu_deploy.export.quantize import quantize_entry
from prelu_deploy.manifest import load_entry, read_entry, version_numbers

POLICY = "version_policy { latest { num_versions: 2 } }\n"


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def model(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "digits")
    with open(tmp_path / "digits" / "config.pbtxt", "a") as f:
        f.write(POLICY)  # the operator's edit, which a new version must keep
    return tmp_path / "digits"


def test_export_next_writes_version_2_beside_version_1_in_triton_s_layout(model, shipped, cli_in_process):
    before, inode = files(model), model.stat().st_ino
    out = cli_in_process(
        "export", shipped, "--name", "digits", "--repo", model.parent, "--prelu-mode", "native", "--version", "next"
    )
    assert f"{model} version 2 (lowering native" in out.stdout
    after = files(model)
    assert sorted(after) == [
        "1/model.onnx",
        "2/golden.npz",
        "2/manifest.json",
        "2/model.onnx",
        "config.pbtxt",
        "golden.npz",
        "manifest.json",
    ]
    assert {k: after[k] for k in before} == before  # version 1 and the config, byte for byte
    assert model.stat().st_ino != inode and [p.name for p in model.parent.iterdir()] == ["digits"]  # swapped whole
    cfg = text_format.Parse(after["config.pbtxt"].decode(), model_config_pb2.ModelConfig())
    assert cfg.platform == "onnxruntime_onnx" and cfg.version_policy.latest.num_versions == 2
    v1, v2 = load_entry(model, 1), load_entry(model)
    assert (v1.number, v1.lowering, v2.number, v2.lowering) == (1, "leaky", 2, "native")
    assert v1.verify() == [] and v2.verify() == [] and set(v2.artifacts) == {"2/model.onnx", "2/golden.npz"}


def test_an_existing_version_is_replaced_only_with_force(model, shipped, cli_in_process):
    refused = cli_in_process("export", shipped, "--name", "digits", "--repo", model.parent, "--version", "1", check_rc=2)
    assert f"{model} has a version 1; pass --force to replace it, or --version next" in refused.stderr
    bad = cli_in_process("export", shipped, "--name", "digits", "--repo", model.parent, "--version", "two", check_rc=2)
    assert "--version 'two': a version number (1, 2, …) or 'next'" in bad.stderr
    bad = cli_in_process("export", shipped, "--name", "digits", "--repo", model.parent, "--version", "²", check_rc=2)
    assert "--version '²': a version number (1, 2, …) or 'next'" in bad.stderr  # a digit to str.isdigit(), not to int()
    before = files(model)
    cli_in_process(
        "export", shipped, "--name", "digits", "--repo", model.parent, "--prelu-mode", "native", "--version", "1", "--force"
    )
    assert version_numbers(model) == [1] and read_entry(model).lowering == "native" and read_entry(model).verify() == []
    assert files(model)["config.pbtxt"] == before["config.pbtxt"] and files(model)["1/model.onnx"] != before["1/model.onnx"]


def test_a_new_model_s_first_version_is_today_s_layout(repo, shipped, cli_in_process, tmp_path):
    cli_in_process("export", shipped, "--name", "digits", "--repo", tmp_path, "--version", "next")
    assert files(tmp_path / "digits") == files(repo / "digits") | {"manifest.json": files(tmp_path / "digits")["manifest.json"]}
    cli_in_process("export", shipped, "--name", "later", "--repo", tmp_path, "--version", "3")
    assert sorted(files(tmp_path / "later")) == ["3/golden.npz", "3/manifest.json", "3/model.onnx", "config.pbtxt"]
    assert version_numbers(tmp_path / "later") == [3] and load_entry(tmp_path / "later").verify() == []


def test_quantize_writes_its_next_version_from_the_source_s_newest(model, shipped, cli_in_process):
    cli_in_process("export", shipped, "--name", "digits", "--repo", model.parent, "--prelu-mode", "native", "--version", "next")
    dest = model.parent / "q"
    for _ in range(2):
        quantize_entry(model, n=16, dest=dest, version="next")
    assert version_numbers(dest) == [1, 2] and all(load_entry(dest, n).verify() == [] for n in (1, 2))
    assert load_entry(dest, 2).golden_path == dest / "2" / "golden.npz"
    assert (dest / "2" / "golden.npz").read_bytes() == (model / "2" / "golden.npz").read_bytes()
