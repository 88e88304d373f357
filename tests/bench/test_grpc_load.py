"""`prelu-deploy bench http --protocol grpc` against a real `prelu-deploy serve --grpc-port`: the same report
as over HTTP, every call accounted for by the server's own counters, failures by gRPC status code, and
the refusals: the report by the console script as a process, the failures and refusals by its main() in
this process."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as tg

from prelu_deploy.bench import grpc_load
from prelu_deploy.bench.http_load import HttpBench

from ..server import Server, free_port


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, grpc=True)
    yield srv
    srv.stop()


def _served(srv: Server, status: str) -> int:
    _, _, body = srv.request("GET", "/metrics")
    m = re.search(rf'prelu_requests_total{{endpoint="grpc_infer",model="digits",status="{status}"}} (\S+)', body.decode())
    return int(float(m.group(1))) if m else 0


def test_a_grpc_report_from_a_live_server(cli, server, repo, tmp_path):
    before = _served(server, "OK")
    proc = cli(
        "bench",
        "http",
        server.grpc_url,
        "--protocol",
        "grpc",
        "--model",
        "digits",
        "--concurrency",
        "1,3",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--data",
        repo / "digits" / "golden.npz",
        "--batch",
        "2",
        "--out",
        tmp_path,
    )
    r = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert r["protocol"] == "grpc" and r["target"] == f"grpc://{server.grpc_url}"
    assert r["endpoint"] == "/inference.GRPCInferenceService/ModelInfer (gRPC)" and r["server"]["name"] == "prelu-deploy"
    assert r["model_metadata"]["inputs"][0]["shape"] == [-1, 1, 8, 8] and "raw_input_contents" in r["workload"]
    for lv in r["levels"]:
        assert lv["ok"] == lv["requests"] == lv["latency"]["n"] > 5 and lv["errors"] == {}
        assert lv["images_per_s"] == pytest.approx(2 * lv["throughput_rps"])
    assert _served(server, "OK") - before == 1 + sum(lv["ok"] for lv in r["levels"])  # + the checked call
    assert "/inference.GRPCInferenceService/ModelInfer (gRPC)" in next(tmp_path.glob("*.md")).read_text()
    assert "wrote" in proc.stdout


def test_failures_are_counted_by_status_code(cli_in_process, repo, tmp_path):
    srv = Server(repo, "--max-queue", "4", "--max-batch-size", "2", "--max-queue-delay-ms", "50", "--threads", "1", grpc=True)
    try:
        proc = cli_in_process(
            "bench",
            "http",
            srv.grpc_url,
            "--protocol",
            "grpc",
            "--model",
            "digits",
            "--concurrency",
            "8",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--batch",
            "2",
            "--out",
            tmp_path,
            "--json",
        )
        lv = json.loads(proc.stdout)["levels"][0]
        assert set(lv["errors"]) == {"UNAVAILABLE"} and lv["ok"] > 0
        assert _served(srv, "UNAVAILABLE") == lv["errors"]["UNAVAILABLE"] and _served(srv, "OK") == lv["ok"] + 1
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "url, extra, rc, message",
    [
        ("10.1.2.3:8001", [], 2, "10.1.2.3 resolves to 10.1.2.3, not a loopback address; pass --allow-remote"),
        ("http://127.0.0.1:8001", [], 2, "give the gRPC server as host:port or grpc://host:port"),
        ("127.0.0.1:{free}", [], 8, "grpc://127.0.0.1:"),
        ("{server}", ["--encoding", "json"], 2, "--encoding json: HTTP only"),
        ("{server}", ["--protocol", "thrift"], 2, "--protocol 'thrift': http or grpc"),
        ("{server}", ["--model", "nope"], 8, "NOT_FOUND: unknown model 'nope'; served: digits"),
    ],
)
def test_bad_arguments_are_refused(cli_in_process, server, tmp_path, url, extra, rc, message):
    url = url.format(free=free_port(), server=server.grpc_url)
    proc = cli_in_process(
        "bench",
        "http",
        url,
        "--protocol",
        "grpc",
        "--model",
        "digits",
        "--duration",
        "0.2",
        *extra,
        "--out",
        tmp_path,
        check_rc=rc,
    )
    assert message in proc.stderr and not list(tmp_path.glob("*.json"))


def test_the_grpc_floor_answers_the_generator_with_the_models_shape(repo):
    """bench/grpc_floor.py (docs/grpc.sh's measure of grpcio alone): a real process the load generator
    drives like the server, zeros of the model's output shape for every call, its metadata the model's."""
    port = free_port()
    cmd = [sys.executable, "-m", "prelu_deploy.bench.grpc_floor", str(repo / "digits"), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("grpc floor on"), proc.poll()
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        meta = client.get_model_metadata("digits")
        assert [list(t.shape) for t in (*meta.inputs, *meta.outputs)] == [[-1, 1, 8, 8], [-1, 10]]
        x = tg.InferInput("images", [3, 1, 8, 8], "FP32")
        x.set_data_from_numpy(np.ones((3, 1, 8, 8), np.float32))
        y = client.infer("digits", [x]).as_numpy(meta.outputs[0].name)
        assert y.shape == (3, 10) and not y.any()
        bench = HttpBench(model="digits", concurrency=(2,), duration_s=0.3)
        _, gmeta = grpc_load.model_metadata(f"127.0.0.1:{port}", "digits", 5)
        bodies, _ = grpc_load.requests(bench, gmeta)
        level = grpc_load.drive(f"127.0.0.1:{port}", bodies, 1, 2, 0.3, 1000, 5)
        assert level["ok"] > 0 and not level["errors"]
    finally:
        proc.terminate()
        proc.wait(10)
