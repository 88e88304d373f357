"""KServe v2 gRPC (serve.api.grpc_service) against a real `prelu-deploy serve` process, driven by the real
`tritonclient.grpc` client: every RPC, binary tensors, errors as gRPC status codes with the messages
HTTP gives, the port refused when taken, and gRPC in every worker process under --workers 2."""

import json
import os
import signal
import socket
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg
from tritonclient.utils import InferenceServerException

from prelu_deploy.runners.registry import get_runner

from ..server import Server, free_port
from .test_workers import _children


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, grpc=True)
    yield srv
    assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def golden(repo):
    x = np.load(repo / "digits" / "golden.npz")["inputs"].astype(np.float32)
    return x, get_runner("onnxruntime", repo / "digits").run(x)


def _listening(port: int) -> int:
    """Listening TCP sockets on `port`, IPv4 and IPv6 (grpc binds 127.0.0.1 as a dual-stack socket)."""
    rows = [line.split() for f in ("/proc/net/tcp", "/proc/net/tcp6") for line in open(f).read().splitlines()[1:]]
    return sum(1 for r in rows if r[3] == "0A" and int(r[1].split(":")[-1], 16) == port)


def _input(x: np.ndarray, name: str = "images") -> tc.InferInput:
    tensor = tc.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # raw_input_contents: the binary form
    return tensor


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as err:
        call()
    return err.value


def _http_error(srv: Server, path: str, payload: dict) -> tuple[int, str]:
    status, body = srv.json("POST", path, payload)
    return status, body["error"]


def test_every_rpc_with_tritonclient(server, golden):
    x, want = golden
    client = tc.InferenceServerClient(server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "prelu-deploy" and "binary_tensor_data" in meta.extensions
    model = client.get_model_metadata("digits", as_json=True)
    assert model["name"] == "digits" and model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "images", "datatype": "FP32", "shape": ["-1", "1", "8", "8"]}]
    assert model["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}]
    assert client.get_model_metadata("digits", "1").name == "digits"  # version 1 named
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    # the same metadata as HTTP's
    _, http_meta = server.json("GET", "/v2/models/digits")
    assert [i["shape"] for i in http_meta["inputs"]] == [[int(d) for d in model["inputs"][0]["shape"]]]

    result = client.infer("digits", [_input(x)], outputs=[tc.InferRequestedOutput("logits")], request_id="r-7")
    response = result.get_response()
    assert response.model_name == "digits" and response.model_version == "1" and response.id == "r-7"
    assert len(response.raw_output_contents) == 1 and len(response.raw_output_contents[0]) == x.shape[0] * 10 * 4
    np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    one = client.infer("digits", [_input(x[:1])], model_version="1").as_numpy("logits")  # no outputs named: all
    np.testing.assert_allclose(one, want[:1], rtol=1e-5, atol=1e-5)


def test_typed_contents_as_well_as_raw(server, golden):
    """The protocol's typed form (fp32_contents) through the published stub, beside the raw form."""
    x, want = golden
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[2, 1, 8, 8])
        tensor.contents.fp32_contents.extend(x[:2].ravel().tolist())
        response = stub.ModelInfer(pb.ModelInferRequest(model_name="digits", inputs=[tensor]))
    y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
    np.testing.assert_allclose(y, want[:2], rtol=1e-5, atol=1e-5)


def test_errors_are_status_codes_with_the_messages_http_gives(server, golden):
    x, _ = golden
    client = tc.InferenceServerClient(server.grpc_url)
    body = {"inputs": [{"name": "images", "shape": [1, 1, 8, 9], "datatype": "FP32", "data": [0.0] * 72}]}

    err = _error(lambda: client.infer("nope", [_input(x[:1])]))
    assert err.status() == "StatusCode.NOT_FOUND"
    assert _http_error(server, "/v2/models/nope/infer", body) == (404, err.message())
    err = _error(lambda: client.get_model_metadata("nope"))
    assert err.status() == "StatusCode.NOT_FOUND" and err.message() == "unknown model 'nope'; served: digits"
    err = _error(lambda: client.infer("digits", [_input(x[:1])], model_version="2"))
    assert err.status() == "StatusCode.NOT_FOUND" and _http_error(server, "/v2/models/digits/versions/2/infer", body) == (
        404,
        err.message(),
    )

    err = _error(lambda: client.infer("digits", [_input(np.zeros((1, 1, 8, 9), np.float32))]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert _http_error(server, "/v2/models/digits/infer", body) == (400, err.message())
    assert err.message() == "input 'images' shape [1, 1, 8, 9] does not fit [N, 1, 8, 8] with N ≥ 1"
    for bad, http in (
        (lambda: client.infer("digits", [_input(x[:1], "pixels")]), {"name": "pixels", "shape": [1, 1, 8, 8]}),
        (lambda: client.infer("digits", [_input(np.full((1, 1, 8, 8), np.nan, np.float32))]), {"data": [float("nan")] * 64}),
        (lambda: client.infer("digits", [_input(x[:1])], outputs=[tc.InferRequestedOutput("probs")]), None),
    ):
        err = _error(bad)
        assert err.status() == "StatusCode.INVALID_ARGUMENT", err
        if http is not None:
            tensor = {**body["inputs"][0], "shape": [1, 1, 8, 8], "data": [0.0] * 64, **http}
            raw = json.dumps({"inputs": [tensor]}).replace("NaN", "NaN").encode()
            status, _, answer = server.request("POST", "/v2/models/digits/infer", raw, {"content-type": "application/json"})
            assert (status, json.loads(answer)["error"]) == (400, err.message())
    assert "unknown output 'probs'; this model gives 'logits'" in err.message()

    with grpc.insecure_channel(server.grpc_url) as channel:  # raw bytes that do not match the shape
        tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[1, 1, 8, 8])
        with pytest.raises(grpc.RpcError) as rpc_err:
            pbg.GRPCInferenceServiceStub(channel).ModelInfer(
                pb.ModelInferRequest(model_name="digits", inputs=[tensor], raw_input_contents=[b"\0" * 12])
            )
    assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents holds 12 bytes" in rpc_err.value.details() and "needs one of 256" in rpc_err.value.details()

    _, _, metrics = server.request("GET", "/metrics")
    text = metrics.decode()
    assert 'prelu_requests_total{endpoint="grpc_infer",model="digits",status="INVALID_ARGUMENT"}' in text
    assert 'prelu_requests_total{endpoint="grpc_infer",model="unknown",status="NOT_FOUND"}' in text


def test_overload_is_unavailable_with_the_http_message(repo):
    srv = Server(repo, "--max-queue", "4", "--max-batch-size", "2", "--max-queue-delay-ms", "50", "--threads", "1", grpc=True)
    try:
        client = tc.InferenceServerClient(srv.grpc_url)
        x = np.zeros((4, 1, 8, 8), np.float32)
        answers: list = []
        for _ in range(48):
            client.async_infer("digits", [_input(x)], callback=lambda result, error: answers.append(error or result))
        deadline = time.monotonic() + 30
        while len(answers) < 48 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answers) == 48  # none hung
        errors = [a for a in answers if isinstance(a, InferenceServerException)]
        assert errors and len(errors) < 48
        assert {e.status() for e in errors} == {"StatusCode.UNAVAILABLE"}
        assert all(e.message().startswith("model 'digits' is overloaded: ") and "retry shortly" in e.message() for e in errors)
        assert client.infer("digits", [_input(x)]).as_numpy("logits").shape == (4, 10)  # and it recovers
    finally:
        assert srv.stop()


def test_a_taken_grpc_port_exits_9_before_loading(cli, serve_in_process, repo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("serve", repo, "--port", free_port(), "--grpc-port", port, check_rc=9)
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in proc.stderr and "--grpc-port (0: no gRPC)" in proc.stderr
    assert "model digits" not in proc.stderr  # refused before any model loaded
    proc = serve_in_process("serve", repo, "--ray", "--grpc-port", "8001", check_rc=2)
    assert "--grpc-port: not with --ray" in proc.stderr


def test_grpc_in_every_worker_process(repo, golden):
    """--workers 2: each worker binds the gRPC port (SO_REUSEPORT), channels spread over them, and the
    replacement of a killed worker binds it again."""
    x, want = golden
    srv = Server(repo, "--workers", "2", grpc=True)
    try:
        deadline = time.monotonic() + 60  # the server answers HTTP once one worker has loaded its models
        while _listening(srv.grpc_port) < 2:
            assert time.monotonic() < deadline, "the workers did not both bind the gRPC port"
            time.sleep(0.1)
        assert _listening(srv.grpc_port) == 2 and _listening(srv.port) == 2
        workers = _children(srv.proc.pid)
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own per client

        def infer_on_new_connections(n: int) -> None:
            for i in range(n):
                client = tc.InferenceServerClient(srv.grpc_url, channel_args=options)
                y = client.infer("digits", [_input(x[i % len(x) :][:1])]).as_numpy("logits")
                np.testing.assert_allclose(y, want[i % len(x) :][:1], rtol=1e-5, atol=1e-5)
                client.close()

        infer_on_new_connections(12)
        _, _, metrics = srv.request("GET", "/metrics")  # summed over both workers
        assert 'prelu_requests_total{endpoint="grpc_infer",model="digits",status="OK"} 12.0' in metrics.decode()

        os.kill(next(iter(workers)), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (len(_children(srv.proc.pid) - workers) == 1 and _listening(srv.grpc_port) == 2):
            assert time.monotonic() < deadline, "the replacement worker did not bind the gRPC port"
            time.sleep(0.1)
        infer_on_new_connections(6)
    finally:
        assert srv.stop()
    assert "Traceback" not in srv.proc.stdout.read()
