"""What a new user meets first: any checkpoint the public API can save is served, and a model whose
preprocessing cannot be used still answers tensors."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.manifest import read_entry
from prelu_deploy.models import create_model, model_config, save_checkpoint
from prelu_deploy.models.registry import register_model

from ..manifests import edit_manifest
from ..server import Server

TENSOR = {"inputs": [{"name": "images", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.1] * 3072}]}


def _png(size=(50, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """`save_checkpoint(create_model("cifar_prelu"), path)`: the documented call, no preprocessing record."""
    root = tmp_path_factory.mktemp("bare")
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("cifar_prelu"), root / "c.safetensors")
    export_model_dir(ckpt, "cifar", root / "repo", mode="leaky")
    return root / "repo"


def test_a_checkpoint_without_preprocessing_gets_its_architecture_defaults(bare):
    e = read_entry(bare / "cifar")
    cfg = model_config("cifar_prelu")
    assert e.preprocess["size"] == [32, 32] and e.preprocess["channels"] == 3
    assert tuple(e.preprocess["mean"]) == cfg.mean and tuple(e.preprocess["std"]) == cfg.std
    assert e.preprocess_origin.startswith("architecture defaults")


def test_it_is_served_tensors_and_images(bare, tmp_path):
    broken = tmp_path / "repo"
    shutil.copytree(bare, broken)
    shutil.copytree(bare / "cifar", broken / "broken")
    edit_manifest(broken / "broken", lambda m: m.update(name="broken", preprocess={**m["preprocess"], "channels": 2}))
    srv = Server(broken)
    try:
        assert srv.json("POST", "/v2/models/cifar/infer", TENSOR)[0] == 200
        status, _, body = srv.request("POST", "/v1/models/cifar/classify", _png(), {"content-type": "image/png"})
        assert status == 200 and len(json.loads(body)["predictions"][0]["top_k"]) == 5
        # an unusable record: tensors still served, /classify says why (no Python repr in the message)
        assert srv.json("GET", "/v2/models/broken/ready")[0] == 200
        assert srv.json("POST", "/v2/models/broken/infer", TENSOR)[0] == 200
        status, _, body = srv.request("POST", "/v1/models/broken/classify", _png(), {"content-type": "image/png"})
        error = json.loads(body)["error"]
        assert status == 503 and "preprocessing record is malformed: channels must be 1 or 3, not 2" in error
        assert "Error(" not in error and "/v2/models/broken/infer" in error
    finally:
        assert srv.stop()


def test_registering_a_name_twice_is_refused():
    def digits_prelu(num_classes: int = 10):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="architecture 'digits_prelu' is already registered"):
        register_model((0.5,), (0.5,))(digits_prelu)
