"""The server, really run: uvicorn on a loopback port, real images, a real third-party client."""

import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as httpclient
from PIL import Image

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.models.data import load_digits
from prelu_deploy.runners.registry import get_runner

from ..server import Server, wait_for


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, "--max-queue-delay-ms", "5")
    yield srv
    assert srv.stop()  # SIGTERM: a graceful exit, no kill needed


@pytest.fixture(scope="module")
def runner(repo):
    return get_runner("onnxruntime", repo / "digits")


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_health_and_metadata(server):
    assert server.json("GET", "/v2/health/live") == (200, {"live": True})
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = server.json("GET", "/v2")
    assert status == 200 and "binary_tensor_data" in meta["extensions"]
    status, meta = server.json("GET", "/v2/models/digits/versions/1")
    assert status == 200 and meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["parity_gate"]["passed"]
    assert server.json("GET", "/v2/models/digits/ready")[0] == 200


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_equals_the_runner(server, runner, digits, binary):
    x = runner.entry.golden_io()["inputs"][:5]
    client = httpclient.InferenceServerClient(url=server.url[len("http://") :])
    assert client.is_server_live() and client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["inputs"][0]["name"] == "images"
    inp = httpclient.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)])
    np.testing.assert_array_equal(result.as_numpy("logits"), runner.run(x))
    client.close()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP"])
def test_classify_held_out_digits(server, digits, fmt):
    images, labels = digits.test.images[:40], digits.test.labels[:40]
    files = [_encoded(im, fmt) for im in images]
    body, ctype = _multipart([(f"{i}.{fmt.lower()}", f) for i, f in enumerate(files)])
    status, _, raw = server.request("POST", "/v1/models/digits/classify?top_k=3", body, {"content-type": ctype})
    assert status == 200, raw
    preds = json.loads(raw)["predictions"]
    assert [p["filename"] for p in preds] == [f"{i}.{fmt.lower()}" for i in range(40)]
    assert all(len(p["top_k"]) == 3 and p["top_k"][0]["probability"] >= p["top_k"][1]["probability"] for p in preds)
    correct = sum(p["top_k"][0]["label"] == str(y) for p, y in zip(preds, labels))
    assert correct >= (39 if fmt != "JPEG" else 36), correct  # lossy JPEG of an 8×8 image may cost a few
    status, _, raw = server.request("POST", "/v1/classify", files[0], {"content-type": f"image/{fmt.lower()}"})
    assert status == 200 and json.loads(raw)["predictions"][0]["top_k"][0]["label"] == str(labels[0])


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----prelu-deploy-test"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _infer_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def test_64_concurrent_clients_get_their_own_rows(server, runner, digits):
    pre = runner.entry.preprocess
    from prelu_deploy.models.preprocess import Preprocess

    x = Preprocess.from_dict(pre).to_tensor(digits.test.images[:64])
    expected = [runner.run(x[i : i + 1 + i % 3]) for i in range(64)]  # 1–3 rows each, overlapping
    sequential = [
        np.asarray(server.json("POST", "/v2/models/digits/infer", _infer_body(x[i : i + 1 + i % 3]))[1]["outputs"][0]["data"])
        for i in range(64)
    ]
    with ThreadPoolExecutor(64) as pool:
        concurrent = list(
            pool.map(lambda i: server.json("POST", "/v2/models/digits/infer", _infer_body(x[i : i + 1 + i % 3])), range(64))
        )
    for i, (status, body) in enumerate(concurrent):
        assert status == 200
        got = np.asarray(body["outputs"][0]["data"], np.float32).reshape(expected[i].shape)
        np.testing.assert_array_equal(got, sequential[i].reshape(expected[i].shape))
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-5)  # batch composition may change rounding
    _, _, metrics = server.request("GET", "/metrics")
    text = metrics.decode()
    assert 'prelu_requests_total{endpoint="infer",model="digits",status="200"}' in text
    batches = [line for line in text.splitlines() if line.startswith('prelu_batch_size_count{model="digits"}')]
    rows = [line for line in text.splitlines() if line.startswith('prelu_batch_size_sum{model="digits"}')]
    assert float(batches[0].split()[-1]) < float(rows[0].split()[-1])  # some calls carried several requests


def test_overload_answers_503_at_once_and_recovers(repo, digits):
    srv = Server(repo, "--max-queue", "4", "--max-batch-size", "2", "--max-queue-delay-ms", "50", "--threads", "1")
    try:
        x = np.zeros((2, 1, 8, 8), np.float32)
        with ThreadPoolExecutor(48) as pool:
            start = time.monotonic()
            results = list(
                pool.map(
                    lambda _: srv.request("POST", "/v2/models/digits/infer", json.dumps(_infer_body(x)).encode(), timeout=20),
                    range(96),
                )
            )
            elapsed = time.monotonic() - start
        statuses = [s for s, _, _ in results]
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
        assert all(h.get("retry-after") == "1" for s, h, _ in results if s == 503)
        assert elapsed < 20  # no request hung
        assert srv.json("POST", "/v2/models/digits/infer", _infer_body(x))[0] == 200
    finally:
        assert srv.stop()


def test_server_on_onnxruntime_never_imports_torch(repo):
    code = f"""
import sys, threading, time, urllib.request
import uvicorn
from prelu_deploy.serve.api.app import create_app
from prelu_deploy.serve.settings import Settings
from pathlib import Path
server = uvicorn.Server(uvicorn.Config(create_app(Settings(repo=Path({str(repo)!r}))), port=0, log_level="error"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started: time.sleep(0.05)
port = server.servers[0].sockets[0].getsockname()[1]
assert urllib.request.urlopen(f"http://127.0.0.1:{{port}}/v2/health/ready").status == 200
print("torch" in sys.modules, "prelu_deploy.serve.repository.loader" in sys.modules)
server.should_exit = True
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_torch_backend_serves_the_same_answers(repo, runner):
    srv = Server(repo, "--backend", "torch")
    try:
        status, meta = srv.json("GET", "/v2/models/digits")
        assert status == 200 and meta["backend"] == "torch" and meta["ready"]
        x = runner.entry.golden_io()["inputs"][:3]
        body = {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        status, out = srv.json("POST", "/v2/models/digits/infer", body)
        got = np.asarray(out["outputs"][0]["data"], np.float32).reshape(3, 10)
        np.testing.assert_allclose(got, runner.run(x), atol=1e-4 * np.abs(got).max())
    finally:
        assert srv.stop()


def test_sigterm_finishes_in_flight_requests(tmp_path):
    """SIGTERM while a long request is in flight: it still gets its full answer, then the server exits.
    The request is provably in flight at the signal: its head is in and counted (prelu_in_flight_requests),
    and its body's last byte is sent only after the signal."""
    import http.client
    import signal
    import socket

    import torch

    from prelu_deploy.models import create_model, save_checkpoint
    from prelu_deploy.models.preprocess import Preprocess

    torch.manual_seed(0)
    ckpt = save_checkpoint(
        create_model("cifar_prelu"), tmp_path / "c.safetensors", preprocess=Preprocess((32, 32), 3, (0.5,) * 3, (0.25,) * 3)
    )
    export_model_dir(ckpt, "cifar", tmp_path / "repo", mode="leaky")
    srv = Server(tmp_path / "repo", "--max-queue", "1024")
    x = np.random.default_rng(0).standard_normal((512, 3, 32, 32)).astype(np.float32)  # ~1 s of compute here
    head = json.dumps(
        {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}]}
    ).encode()
    body = head + x.tobytes()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(
            b"POST /v2/models/cifar/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(head), len(body)) + body[:-1]
        )
        wait_for(lambda: srv.metric("prelu_in_flight_requests") >= 2)  # ours, and the /metrics request asking
        srv.proc.send_signal(signal.SIGTERM)
        sock.sendall(body[-1:])
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        status, out = answer.status, answer.read()
    assert status == 200 and json.loads(out)["outputs"][0]["shape"] == [512, 10]
    assert srv.stop()  # exited by itself
