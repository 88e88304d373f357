"""What the server shows to whoever can reach it: the page's security headers, readiness that names
the models not ready (with repository-relative reasons), requests counted under the model that
answered, and a warning when it listens beyond loopback (there is no authentication)."""

import base64
import hashlib
import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from prelu_deploy.manifest import sha256_file

from ..manifests import edit_manifest
from ..server import Server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    """digits, and `zz_broken`: an ONNX file that is not one (its sha256 updated, so it fails at load with
    an error that names the file's absolute path)."""
    root = tmp_path_factory.mktemp("exposed")
    shutil.copytree(repo / "digits", root / "digits")
    shutil.copytree(repo / "digits", root / "zz_broken")
    (root / "zz_broken" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    digest = sha256_file(root / "zz_broken" / "1" / "model.onnx")
    edit_manifest(root / "zz_broken", lambda m: (m.update(name="zz_broken"), m["artifacts"].update({"1/model.onnx": digest})))
    srv = Server(root)
    yield srv, root
    assert srv.stop()


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_has_a_csp_with_its_script_by_hash_and_nosniff(served):
    srv, _ = served
    status, headers, body = srv.request("GET", "/")
    page = body.decode()
    assert status == 200 and headers["x-content-type-options"] == "nosniff"
    csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    scripts, styles = re.findall(r"<script>(.*?)</script>", page, re.S), re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == 1 and csp["script-src"] == _sha256(scripts[0])  # that script and nothing else runs
    assert csp["style-src"] == " ".join(map(_sha256, styles))
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'" and csp["connect-src"] == "'self'"
    assert not re.search(r"<script[^>]*\bsrc=|\son\w+=|\sstyle=", page)  # no handler or style attribute a hash misses


def test_readiness_names_the_models_not_ready_without_absolute_paths(served):
    srv, root = served
    status, headers, body = srv.request("GET", "/v2/health/ready")
    answer = json.loads(body)
    assert status == 503 and answer["ready"] is False and list(answer["models"]) == ["zz_broken"], answer
    assert "cannot load" in answer["models"]["zz_broken"] and "model.onnx" in answer["models"]["zz_broken"]
    assert str(root) not in body.decode() and "/tmp" not in body.decode(), answer
    assert srv.json("GET", "/v2/models/digits/ready")[0] == 200


def test_classify_without_a_model_name_is_counted_under_the_model_that_answered(served):
    srv, _ = served
    png = (ROOT / "models" / "samples" / "digit_3.png").read_bytes()
    for _ in range(3):
        status, _, body = srv.request("POST", "/v1/classify", png, {"content-type": "image/png"})
        assert status == 200 and json.loads(body)["model"] == "digits"
    text = srv.request("GET", "/metrics")[2].decode()
    assert re.search(r'prelu_requests_total\{endpoint="classify",model="digits",status="200"\} 3\.0', text), text
    assert 'endpoint="classify",model="-"' not in text


def test_classify_without_a_model_name_is_refused_when_several_models_answer(repo, tmp_path):
    """/v1/classify picks no model by name order: with two ready models it answers 400 naming both, and each
    answers under its own path."""
    root = tmp_path / "two"
    shutil.copytree(repo, root)
    shutil.copytree(repo / "digits", root / "digits_b")
    edit_manifest(root / "digits_b", lambda m: m.update(name="digits_b"))
    png = (ROOT / "models" / "samples" / "digit_3.png").read_bytes()
    srv = Server(root)
    try:
        status, _, body = srv.request("POST", "/v1/classify", png, {"content-type": "image/png"})
        assert status == 400, body
        assert json.loads(body)["error"] == "2 models are served (digits, digits_b): name one, POST /v1/models/{name}/classify"
        for name in ("digits", "digits_b"):
            status, _, body = srv.request("POST", f"/v1/models/{name}/classify", png, {"content-type": "image/png"})
            assert status == 200 and json.loads(body)["model"] == name, body
    finally:
        srv.stop()


def test_listening_beyond_loopback_is_warned_about(cli, repo):
    with socket.socket() as busy:  # a taken port: the server warns, then exits 9 without ever listening
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        wide = cli("serve", repo, "--host", "0.0.0.0", "--port", busy.getsockname()[1], check_rc=9)
        local = cli("serve", repo, "--host", "localhost", "--port", busy.getsockname()[1], check_rc=9)
    assert "listening on 0.0.0.0 (beyond loopback): anyone who can reach" in wide.stderr, wide.stderr
    assert "beyond loopback" not in local.stderr and "Address already in use" in local.stderr


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
    ],
)
def test_a_local_ray_cluster_is_made_local_only_for_a_loopback_server(host, loopback):
    from prelu_deploy.serve.ray.options import local_cluster_env

    assert local_cluster_env(host) == ({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"} if loopback else {})
