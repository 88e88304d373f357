"""The one writer of model entries (export, build, quantize and the bench floor go through it): a
failed write leaves the old entry whole and nothing beside it; the Triton config is made from the entry."""

import shutil

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from prelu_deploy.export.entry_writer import writing_entry
from prelu_deploy.export.triton import config_pbtxt
from prelu_deploy.manifest import CONFIG, ONNX, read_entry


def test_a_failed_write_leaves_the_old_entry_whole_and_nothing_beside_it(repo, tmp_path):
    dest = tmp_path / "digits"
    shutil.copytree(repo / "digits", dest)
    before = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="midway"):
        with writing_entry(dest, force=True) as stage:
            (stage / ONNX).write_bytes(b"half a graph")
            raise RuntimeError("midway")
    assert {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert read_entry(dest).verify() == [] and sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


def test_an_existing_entry_is_replaced_only_with_force(repo, tmp_path):
    from prelu_deploy.errors import UsageError

    dest = tmp_path / "digits"
    shutil.copytree(repo / "digits", dest)
    with pytest.raises(UsageError, match="exists; pass --force"):
        with writing_entry(dest):
            pass


def test_the_floor_replaces_its_earlier_self_in_one_step(repo, tmp_path):
    """The floor deleted and rewrote its folder in place; now a second make swaps a complete entry in."""
    from prelu_deploy.bench.floor import make_floor_entry

    first = make_floor_entry(repo / "digits", tmp_path)
    inode = first.stat().st_ino
    second = make_floor_entry(repo / "digits", tmp_path)
    assert second == first and second.stat().st_ino != inode and read_entry(second).verify() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_floor"]


def test_the_triton_config_is_made_from_the_entry(repo):
    entry = read_entry(repo / "digits")
    cfg = text_format.Parse(config_pbtxt(entry), model_config_pb2.ModelConfig())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == (entry.name, entry.platform, entry.max_batch_size)
    assert [(t.name, list(t.dims)) for t in cfg.output] == [(entry.output.name, entry.output.dims)]
    assert (repo / "digits" / CONFIG).read_text() == config_pbtxt(entry)
