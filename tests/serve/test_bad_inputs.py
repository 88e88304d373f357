"""A corpus of bad requests: each gets a 4xx with a message, and the server keeps serving."""

import io
import json
import shutil
import zlib

import numpy as np
import pytest
from PIL import Image

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.manifest import read_entry, sha256_file

from ..manifests import edit_manifest
from ..server import Server

INFER = "/v2/models/digits/infer"
CLASSIFY = "/v1/models/digits/classify"
JSON = {"content-type": "application/json"}


def _png(size=(8, 8), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "PNG")
    return buf.getvalue()


def _webp(size) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, 128).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def _noise(fmt: str) -> bytes:
    """A real 64×64 noise image: enough compressed data that cutting it truncates the pixel stream."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _bomb() -> bytes:
    """A valid PNG header claiming 30000×30000 pixels (900 M), with almost no data."""

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = (30000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def _tensor(**over):
    t = {"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
    t.update(over)
    return t


def _body(*tensors, **extra) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


def _multipart(files, boundary="b0undary") -> tuple[bytes, dict]:
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{n}"\r\n\r\n'.encode() + d + b"\r\n"
        for n, d in files
    )
    return parts + f"--{boundary}--\r\n".encode(), {"content-type": f"multipart/form-data; boundary={boundary}"}


def _binary(json_part: dict, raw: bytes, header=None) -> tuple[bytes, dict]:
    head = json.dumps(json_part).encode()
    return head + raw, {
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)) if header is None else header,
    }


CASES = [
    # unknown things
    ("GET", "/v2/models/nope", None, {}, 404),
    ("GET", "/v2/models/digits/versions/2", None, {}, 404),
    ("GET", "/v2/models/digits/versions/%C2%B9", None, {}, 404),  # '¹': str.isdigit() says yes, int() refuses it
    ("GET", "/v2/models/digits/ready?version=%C2%B2", None, {}, 404),  # found by the fuzz test (was a 500)
    ("POST", "/v2/models/nope/infer", _body(_tensor()), JSON, 404),
    ("POST", "/v2/models/digits/versions/7/infer", _body(_tensor()), JSON, 404),
    ("POST", "/v1/models/nope/classify", _png(), {"content-type": "image/png"}, 404),
    ("GET", "/v2/nothing", None, {}, 404),
    ("GET", INFER, None, {}, 405),
    # malformed v2 requests
    ("POST", INFER, b"", JSON, 400),
    ("POST", INFER, b"{not json", JSON, 400),
    ("POST", INFER, b"[1, 2]", JSON, 400),
    ("POST", INFER, b'{"inputs": []}', JSON, 400),
    ("POST", INFER, b'{"inputs": "images"}', JSON, 400),
    ("POST", INFER, b'{"inputs": [42]}', JSON, 400),
    ("POST", INFER, b"\xff\xfe\x00garbage", JSON, 400),
    ("POST", INFER, _body(_tensor(name="pixels")), JSON, 400),
    ("POST", INFER, _body(_tensor(), _tensor()), JSON, 400),
    ("POST", INFER, _body(_tensor(datatype="INT8")), JSON, 400),
    ("POST", INFER, _body(_tensor(datatype="FP64")), JSON, 400),
    ("POST", INFER, _body(_tensor(datatype=None)), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[1, 64])), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[1, 3, 8, 8], data=[0.0] * 192)), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[1, 1, 16, 16], data=[0.0] * 256)), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[0, 1, 8, 8], data=[])), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[-1, 1, 8, 8])), JSON, 400),
    ("POST", INFER, _body(_tensor(shape="1,1,8,8")), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[1.5, 1, 8, 8])), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[True, 1, 8, 8])), JSON, 400),
    ("POST", INFER, _body(_tensor(shape=[10**6, 1, 8, 8], data=[0.0])), JSON, 400),
    ("POST", INFER, _body(_tensor(data=[0.0] * 63)), JSON, 400),
    ("POST", INFER, _body(_tensor(data=[0.0] * 65)), JSON, 400),
    ("POST", INFER, _body(_tensor(data=["a"] * 64)), JSON, 400),
    ("POST", INFER, _body(_tensor(data=None)), JSON, 400),
    ("POST", INFER, _body(_tensor(data=[[0.0] * 8] * 7 + [[0.0] * 7])), JSON, 400),
    (
        "POST",
        INFER,
        b'{"inputs": [{"name": "images", "shape": [1,1,8,8], "datatype": "FP32", "data": [NaN' + b", 0" * 63 + b"]}]}",
        JSON,
        400,
    ),
    (
        "POST",
        INFER,
        b'{"inputs": [{"name": "images", "shape": [1,1,8,8], "datatype": "FP32", "data": [Infinity' + b", 0" * 63 + b"]}]}",
        JSON,
        400,
    ),
    ("POST", INFER, _body(_tensor(), outputs=[{"name": "probs"}]), JSON, 400),
    ("POST", INFER, _body(_tensor(), outputs=["logits"]), JSON, 400),
    # binary tensor extension
    (*("POST", INFER), *_binary({"inputs": [_tensor(data=None, parameters={"binary_data_size": 256})]}, b"\0" * 100), 400),
    (*("POST", INFER), *_binary({"inputs": [_tensor(data=None, parameters={"binary_data_size": 100})]}, b"\0" * 100), 400),
    (*("POST", INFER), *_binary({"inputs": [_tensor(data=None, parameters={"binary_data_size": "256"})]}, b"\0" * 256), 400),
    (*("POST", INFER), *_binary({"inputs": [_tensor()]}, b"", header="abc"), 400),
    (*("POST", INFER), *_binary({"inputs": [_tensor()]}, b"", header="999999"), 400),
    (*("POST", INFER), *_binary({"inputs": [_tensor()]}, b"", header="0"), 400),
    (
        *("POST", INFER),
        *_binary(
            {"inputs": [_tensor(data=None, parameters={"binary_data_size": 256})]}, np.full(64, np.nan, np.float32).tobytes()
        ),
        400,
    ),
    # classify: not images, broken images, limits, content types
    ("POST", CLASSIFY, b"", {"content-type": "image/png"}, 400),
    ("POST", CLASSIFY, b"hello, not an image", {"content-type": "image/png"}, 415),
    ("POST", CLASSIFY, _png()[:40], {"content-type": "image/png"}, 415),
    ("POST", CLASSIFY, _noise("PNG")[:2000], {"content-type": "image/png"}, 400),
    ("POST", CLASSIFY, _noise("JPEG")[:1000], {"content-type": "image/jpeg"}, 400),
    ("POST", CLASSIFY, b"\xff\xd8\xff\xe0" + b"\0" * 50, {"content-type": "image/jpeg"}, 415),
    ("POST", CLASSIFY, b"GIF89a" + b"\0" * 10, {"content-type": "image/gif"}, 415),
    ("POST", CLASSIFY, b"BM" + b"\0" * 30, {"content-type": "image/bmp"}, 400),
    ("POST", CLASSIFY, _bomb(), {"content-type": "image/png"}, 413),
    ("POST", CLASSIFY, _png((3000, 3000)), {"content-type": "image/png"}, 413),
    ("POST", CLASSIFY, _webp((3000, 3000)), {"content-type": "image/webp"}, 413),  # sized before libwebp allocates
    ("POST", CLASSIFY, _webp((64, 64))[:22], {"content-type": "image/webp"}, 400),
    ("POST", CLASSIFY, *_multipart([("a.png", _png((1800, 1800))), ("b.png", _png((1800, 1800)))]), 413),  # request pixels
    ("POST", CLASSIFY, b"x" * (2 << 20), {"content-type": "image/png"}, 413),
    ("POST", CLASSIFY, b"{}", JSON, 415),
    ("POST", CLASSIFY, b"text", {"content-type": "text/plain"}, 415),
    ("POST", CLASSIFY, *_multipart([]), 400),
    ("POST", CLASSIFY, *_multipart([("a.png", b"")]), 400),
    ("POST", CLASSIFY, *_multipart([("a.png", _png()), ("b.txt", b"plain text")]), 415),
    ("POST", CLASSIFY, *_multipart([(f"{i}.png", _png()) for i in range(9)]), 400),
    ("POST", CLASSIFY, b"--x\r\nbroken", {"content-type": "multipart/form-data; boundary=x"}, 400),
    ("POST", CLASSIFY + "?top_k=0", _png(), {"content-type": "image/png"}, 400),
    ("POST", CLASSIFY + "?top_k=abc", _png(), {"content-type": "image/png"}, 400),
    ("POST", "/v1/classify?top_k=-3", _png(), {"content-type": "image/png"}, 400),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, shipped):
    root = tmp_path_factory.mktemp("repo")
    export_model_dir(shipped, "digits", root, mode="native")
    return root


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(
        repo,
        "--max-images",
        "8",
        "--max-body-mb",
        "1",
        "--max-pixels",
        "4000000",
        "--max-request-pixels",
        "6000000",
        "--max-decodes",
        "1",
    )
    yield srv
    assert srv.stop()


def test_corpus_is_large():
    assert len(CASES) >= 50


@pytest.mark.parametrize(
    "method,path,body,headers,status", CASES, ids=[f"{i}-{c[1].split('/')[-1][:12]}-{c[4]}" for i, c in enumerate(CASES)]
)
def test_bad_request_gets_its_4xx_and_the_server_keeps_serving(server, method, path, body, headers, status):
    got, _, raw = server.request(method, path, body, headers)
    assert got == status, raw[:300]
    message = json.loads(raw)["error"]  # every error, routing ones included, in the protocol's form
    assert isinstance(message, str) and len(message) >= 9
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    ok, _, _ = server.request("POST", INFER, _body(_tensor()), JSON)
    assert ok == 200


def test_parity_gate_keeps_a_tampered_or_wrong_model_not_ready(repo, tmp_path):
    bad = tmp_path / "repo"
    shutil.copytree(repo / "digits", bad / "tampered")
    _rename(bad / "tampered", "tampered")
    with open(bad / "tampered" / "1" / "model.onnx", "ab") as f:
        f.write(b"\0")
    shutil.copytree(repo / "digits", bad / "wrong")
    md = _rename(bad / "wrong", "wrong")
    golden = md.golden_io()
    np.savez(
        bad / "wrong" / "golden.npz", inputs=golden["inputs"], logits=golden["logits"] + 1, logits_fp64=golden["logits_fp64"] + 1
    )
    edit_manifest(bad / "wrong", lambda m: m["artifacts"].update({"golden.npz": sha256_file(bad / "wrong" / "golden.npz")}))
    shutil.copytree(repo / "digits", bad / "good")
    _rename(bad / "good", "good")
    srv = Server(bad)
    try:
        assert srv.json("GET", "/v2/health/ready")[0] == 503
        status, meta = srv.json("GET", "/v2/models/tampered")
        assert status == 200 and not meta["ready"] and "1/model.onnx sha256 differs" in meta["reason"]
        status, meta = srv.json("GET", "/v2/models/wrong")
        assert not meta["ready"] and meta["reason"].startswith("parity gate")
        assert srv.json("GET", "/v2/models/wrong/ready")[0] == 503
        status, body = srv.json("POST", "/v2/models/wrong/infer", json.loads(_body(_tensor())))
        assert status == 503 and "not ready" in body["error"]
        assert srv.json("POST", "/v2/models/good/infer", json.loads(_body(_tensor())))[0] == 200
    finally:
        assert srv.stop()


def _rename(path, name):
    edit_manifest(path, lambda m: m.update(name=name))
    return read_entry(path)


def test_chunked_body_over_the_limit_is_refused(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "POST", CLASSIFY, body=iter([b"x" * (256 << 10)] * 8), headers={"content-type": "image/png"}, encode_chunked=True
    )  # 2 MiB, no Content-Length
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "the body is over the limit of 1 MB (--max-body-mb)"
    conn.close()
    assert server.json("GET", "/v2/health/ready")[0] == 200
