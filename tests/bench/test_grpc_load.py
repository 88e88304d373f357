"""`prelu-deploy bench http --protocol grpc` against a real `prelu-deploy serve --grpc-port`: the same report
as over HTTP, every call accounted for by the server's own counters, failures by gRPC status code, and
the refusals."""

import json
import re

import pytest

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


def test_failures_are_counted_by_status_code(cli, repo, tmp_path):
    srv = Server(repo, "--max-queue", "4", "--max-batch-size", "2", "--max-queue-delay-ms", "50", "--threads", "1", grpc=True)
    try:
        proc = cli(
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
def test_bad_arguments_are_refused(cli, server, tmp_path, url, extra, rc, message):
    url = url.format(free=free_port(), server=server.grpc_url)
    proc = cli(
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
